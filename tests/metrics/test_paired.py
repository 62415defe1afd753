import math

import pytest
import torch

from common.metrics import paired_metrics


def _volumes() -> torch.Tensor:
    return torch.rand(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))


def test_volume_against_itself():
    volumes = _volumes()
    report = paired_metrics(volumes, volumes.clone())
    assert report["mse"] == [0.0, 0.0] and report["mse_mean"] == 0.0
    assert report["psnr"] == [math.inf, math.inf] and report["psnr_mean"] == math.inf  # MONAI: log10(0) = -inf
    assert report["ssim"] == pytest.approx([1.0, 1.0]) and report["ssim_mean"] == pytest.approx(1.0)


@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_constant_offset_gives_closed_form_mse_and_psnr(data_range):
    volumes, offset = _volumes(), 0.25
    report = paired_metrics(volumes + offset, volumes, data_range=data_range)
    assert report["mse"] == pytest.approx([offset**2] * 2, rel=1e-5)
    assert report["psnr_mean"] == pytest.approx(10 * math.log10(data_range**2 / offset**2), rel=1e-5)


def test_ssim_of_constant_volumes_is_the_luminance_term():
    a, b, c1 = 0.3, 0.5, 0.01**2  # zero variance: contrast-structure term 1 (up to float32 roundoff, ~3e-4)
    report = paired_metrics([torch.full((1, 8, 8, 8), a)], [torch.full((1, 8, 8, 8), b)])
    assert report["ssim"][0] == pytest.approx((2 * a * b + c1) / (a**2 + b**2 + c1), rel=1e-3)


def test_mismatched_shapes_and_small_volumes_raise():
    with pytest.raises(ValueError, match="shapes differ"):
        paired_metrics(_volumes(), _volumes()[:1])
    with pytest.raises(ValueError, match="kernel_size 7"):
        paired_metrics(torch.zeros(1, 1, 6, 16, 16), torch.zeros(1, 1, 6, 16, 16))
