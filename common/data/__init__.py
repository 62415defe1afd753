from .datalist import load_datalist, mask_items, sample_items
from .demo_cohort import DEMO_WARNING, build_demo_cohort
from .fields import FIELD_DESCRIPTION, load_field_scale, record_field_scale, save_field, write_fields_datalist
from .nifti import NIFTI_EXTENSIONS, centred_affine, nifti_files, nifti_stem
from .prepare import DatasetValidationError, prepare_brats, prepare_images, prepare_paired, validate_volume
from .template import TemplateVolumes, load_mni152
from .template_loader import load_template

__all__ = [
    "DEMO_WARNING",
    "DatasetValidationError",
    "FIELD_DESCRIPTION",
    "TemplateVolumes",
    "build_demo_cohort",
    "centred_affine",
    "load_datalist",
    "load_field_scale",
    "load_mni152",
    "load_template",
    "mask_items",
    "NIFTI_EXTENSIONS",
    "nifti_files",
    "nifti_stem",
    "prepare_brats",
    "prepare_images",
    "record_field_scale",
    "prepare_paired",
    "sample_items",
    "save_field",
    "validate_volume",
    "write_fields_datalist",
]
