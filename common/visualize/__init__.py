from .preview import save_triplanar_preview, triplanar_grid

__all__ = ["save_triplanar_preview", "triplanar_grid"]
