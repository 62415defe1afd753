from .mask import AddBrainLabeld, OneHotConditiond
from .mask_editing import ScaleTumourd, ShiftTumourd, move_tumour

__all__ = ["AddBrainLabeld", "OneHotConditiond", "ScaleTumourd", "ShiftTumourd", "move_tumour"]
