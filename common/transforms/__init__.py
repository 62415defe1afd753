from .mask import AddBrainLabeld, OneHotConditiond
from .mask_editing import ScaleTumourd, ShiftTumourd, move_tumour
from .slice_sets import CONDITION, PADDING, TARGET, SampleSliceSetsd
from .validation import CheckVolumesd

__all__ = [
    "AddBrainLabeld",
    "CONDITION",
    "CheckVolumesd",
    "OneHotConditiond",
    "PADDING",
    "SampleSliceSetsd",
    "ScaleTumourd",
    "ShiftTumourd",
    "TARGET",
    "move_tumour",
]
