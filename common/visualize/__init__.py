from .figures import evaluation_figure
from .preview import load_ras, save_triplanar_preview, triplanar_grid, triplanar_image

__all__ = ["evaluation_figure", "load_ras", "save_triplanar_preview", "triplanar_grid", "triplanar_image"]
