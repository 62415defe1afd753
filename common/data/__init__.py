from .datalist import load_datalist, mask_items, sample_items
from .demo_cohort import DEMO_WARNING, build_demo_cohort
from .nifti import NIFTI_EXTENSIONS, centred_affine, nifti_files, nifti_stem
from .prepare import DatasetValidationError, prepare_brats, prepare_images, prepare_paired, validate_volume
from .template import TemplateVolumes, load_mni152

__all__ = [
    "DEMO_WARNING",
    "DatasetValidationError",
    "TemplateVolumes",
    "build_demo_cohort",
    "centred_affine",
    "load_datalist",
    "load_mni152",
    "mask_items",
    "NIFTI_EXTENSIONS",
    "nifti_files",
    "nifti_stem",
    "prepare_brats",
    "prepare_images",
    "prepare_paired",
    "sample_items",
    "validate_volume",
]
