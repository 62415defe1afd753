import pytest
import torch

from common.metrics import nearest_neighbours


def test_copy_is_flagged_and_noise_is_not():
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(3, 1, 32, 32, 32, generator=generator)
    synthetic = [real[2].clone(), torch.rand(1, 32, 32, 32, generator=generator)]
    copy, novel = nearest_neighbours(synthetic, real, kernel_size=7, batch_size=2, verbose=False)
    assert copy["synthetic"] == 0 and copy["nearest_real"] == 2
    assert copy["ms_ssim"] == pytest.approx(1.0, abs=1e-5) and copy["memorised"]
    assert novel["synthetic"] == 1 and novel["ms_ssim"] < 0.3 and not novel["memorised"]


def test_nearest_is_the_most_similar_real_volume():
    generator = torch.Generator().manual_seed(1)
    real = torch.rand(3, 1, 32, 32, 32, generator=generator)
    near_copy = real[1] + 0.05 * torch.randn(1, 32, 32, 32, generator=generator)
    (result,) = nearest_neighbours([near_copy], real, threshold=0.999, kernel_size=7, verbose=False)
    assert result["nearest_real"] == 1 and 0.3 < result["ms_ssim"] < 0.999 and not result["memorised"]
