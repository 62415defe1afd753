from .mask import AddBrainLabeld, OneHotConditiond
from .mask_editing import ScaleTumourd, ShiftTumourd, move_tumour
from .validation import CheckVolumesd

__all__ = ["AddBrainLabeld", "CheckVolumesd", "OneHotConditiond", "ScaleTumourd", "ShiftTumourd", "move_tumour"]
