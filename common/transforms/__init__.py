from common.slice_roles import CONDITION, PADDING, TARGET  # re-exported: the slot roles of SampleSliceSetsd

from .loading import LoadVolumesd
from .mask import AddBrainLabeld, OneHotConditiond
from .mask_editing import ScaleTumourd, ShiftTumourd, move_tumour
from .slice_sets import SampleSliceSetsd
from .validation import CheckVolumesd

__all__ = [
    "AddBrainLabeld",
    "CONDITION",
    "CheckVolumesd",
    "LoadVolumesd",
    "OneHotConditiond",
    "PADDING",
    "SampleSliceSetsd",
    "ScaleTumourd",
    "ShiftTumourd",
    "TARGET",
    "move_tumour",
]
