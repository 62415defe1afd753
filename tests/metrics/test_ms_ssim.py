import pytest
import torch
from monai.metrics import compute_ms_ssim

from common.metrics import diversity_report, ms_ssim, ms_ssim_weights, pairwise_ms_ssim, sample_pairs
from common.metrics.ms_ssim import STANDARD_WEIGHTS


def _noise(num: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(num, 1, size, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "size, kernel_size, levels", [((64, 64, 64), 11, 3), ((128, 128, 128), 11, 4), ((32, 32, 32), 7, 3)]
)
def test_weights_keep_the_finest_scales_that_fit(size, kernel_size, levels):
    weights = ms_ssim_weights(size, kernel_size)
    assert len(weights) == levels
    assert sum(weights) == pytest.approx(1.0)
    expected = torch.tensor(STANDARD_WEIGHTS[:levels]) / sum(STANDARD_WEIGHTS[:levels])
    torch.testing.assert_close(torch.tensor(weights), expected)


def test_weights_follow_the_smallest_side_and_the_full_set_needs_176():
    assert len(ms_ssim_weights((176, 176, 64))) == 3  # the smallest side decides
    assert ms_ssim_weights((176, 176)) == pytest.approx(STANDARD_WEIGHTS, rel=1e-3)  # they already sum to 1.0001


@pytest.mark.parametrize("side, levels", [(21, 1), (22, 2), (43, 2), (44, 3), (98, 3), (99, 4)])
def test_level_boundaries_are_accepted_by_monai(side, levels):
    weights = ms_ssim_weights((side, side), kernel_size=11)
    assert len(weights) == levels
    image = torch.rand(1, 1, side, side, generator=torch.Generator().manual_seed(side))
    assert ms_ssim(image, image.flip(-1), kernel_size=11).shape == (1,)  # neither MONAI nor the convolution objects


def test_monai_check_is_stricter_than_halving_for_four_levels():
    image = torch.rand(1, 1, 98, 98)  # 98 // 2**3 = 12 >= 11, but MONAI divides by (4 - 1)**2 = 9
    with pytest.raises(ValueError, match="larger than 90"):
        compute_ms_ssim(image, image, spatial_dims=2, kernel_size=11, weights=STANDARD_WEIGHTS[:4])


def test_too_small_volume_raises():
    with pytest.raises(ValueError, match=r"size \(10, 10, 10\)"):
        ms_ssim_weights((10, 10, 10), kernel_size=11)


def test_identical_volumes_score_one():
    volumes = _noise(2)
    torch.testing.assert_close(ms_ssim(volumes, volumes.clone(), kernel_size=7), torch.ones(2))
    images = volumes[:, :, 0]
    torch.testing.assert_close(ms_ssim(images, images.clone(), kernel_size=7), torch.ones(2))


def test_constant_volumes_match_closed_form():
    # Zero variance: the contrast-structure term is 1 at every scale, so MS-SSIM is the luminance term
    # (2ab + C1) / (a² + b² + C1) raised to the weight of the coarsest scale. MONAI computes in float32, where
    # E[x²] - E[x]² of a constant is ~1e-7 rather than 0, hence the 1e-3 tolerance.
    a, b, c1 = 0.2, 0.6, 0.01**2
    luminance = (2 * a * b + c1) / (a**2 + b**2 + c1)
    expected = luminance ** ms_ssim_weights((32, 32, 32), 7)[-1]
    score = ms_ssim(torch.full((1, 1, 32, 32, 32), a), torch.full((1, 1, 32, 32, 32), b), kernel_size=7)
    assert score.item() == pytest.approx(expected, rel=1e-3)


def test_pairwise_ms_ssim_of_copies_is_one_and_of_noise_is_low():
    copies = [_noise(1)[0]] * 4
    assert pairwise_ms_ssim(copies, kernel_size=7, verbose=False) == pytest.approx(1.0, abs=1e-5)
    assert pairwise_ms_ssim(_noise(4), kernel_size=7, verbose=False) < 0.3


def test_pairwise_ms_ssim_is_the_mean_over_the_sampled_pairs():
    volumes = _noise(4)
    pairs = sample_pairs(4, num_pairs=3, seed=5)
    expected = torch.cat([ms_ssim(volumes[[i]], volumes[[j]], kernel_size=7) for i, j in pairs]).mean()
    score = pairwise_ms_ssim(volumes, num_pairs=3, seed=5, kernel_size=7, verbose=False)
    assert score == pytest.approx(expected.item())


def test_pair_sampling_is_seeded_distinct_and_complete_when_asked_for_more():
    pairs = sample_pairs(10, num_pairs=5, seed=3)
    assert pairs.shape == (5, 2) and (pairs[:, 0] < pairs[:, 1]).all()
    assert len({tuple(p) for p in pairs}) == 5
    assert (sample_pairs(10, num_pairs=5, seed=3) == pairs).all()
    assert not (sample_pairs(10, num_pairs=5, seed=4) == pairs).all()
    assert sample_pairs(4, num_pairs=100).tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    with pytest.raises(ValueError, match="at least 2"):
        sample_pairs(1, num_pairs=1)


def test_diversity_report_compares_both_sets():
    real = _noise(3)
    synthetic = real[:1].expand(3, -1, -1, -1, -1)  # mode collapse: one volume three times
    report = diversity_report(synthetic, real, kernel_size=7, verbose=False)
    assert report["ms_ssim_synthetic"] == pytest.approx(1.0, abs=1e-5)
    assert report["ms_ssim_real"] < 0.3
    assert report["ms_ssim_abs_difference"] == pytest.approx(report["ms_ssim_synthetic"] - report["ms_ssim_real"])
