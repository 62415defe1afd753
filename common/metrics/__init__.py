from .c2st import c2st, c2st_network, stratified_folds
from .deformation import folding_fraction, jacobian_determinant
from .distribution import (
    FeatureExtractor,
    SliceFeatureExtractor,
    VolumeFeatureExtractor,
    extract_features,
    fid,
    frechet_distance,
    load_feature_network,
    mmd,
    random_feature_network,
    slice_indices,
)
from .memorisation import nearest_neighbours
from .ms_ssim import diversity_report, ms_ssim, ms_ssim_weights, pairwise_ms_ssim, sample_pairs
from .ncc import normalised_cross_correlation
from .paired import paired_metrics
from .physical import background_intensity, background_mask, tumour_brain_ratio
from .volumes import stack_volumes

__all__ = [
    "FeatureExtractor",
    "SliceFeatureExtractor",
    "VolumeFeatureExtractor",
    "background_intensity",
    "background_mask",
    "c2st",
    "c2st_network",
    "diversity_report",
    "extract_features",
    "fid",
    "folding_fraction",
    "frechet_distance",
    "jacobian_determinant",
    "load_feature_network",
    "mmd",
    "ms_ssim",
    "ms_ssim_weights",
    "nearest_neighbours",
    "normalised_cross_correlation",
    "paired_metrics",
    "pairwise_ms_ssim",
    "random_feature_network",
    "sample_pairs",
    "slice_indices",
    "stack_volumes",
    "stratified_folds",
    "tumour_brain_ratio",
]
