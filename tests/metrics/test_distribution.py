import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from common.metrics import (
    SliceFeatureExtractor,
    VolumeFeatureExtractor,
    fid,
    frechet_distance,
    load_feature_network,
    mmd,
    random_feature_network,
    slice_indices,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Matrix is singular"),  # fewer feature rows than features
    pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated"),  # from MONAI FID under SciPy 1.17
]


def _volumes(num: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(num, 1, size, size, size, generator=torch.Generator().manual_seed(seed))


def _closed_form(mu1, sigma1, mu2, sigma2) -> float:
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * covmean))


def _linear_mmd_unbiased(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||² - V_a / (k - 1) - V_b / (k - 1), V the mean squared distance to the set mean."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    spread = [((x - x.mean(0)) ** 2).sum(1).mean() / (len(x) - 1) for x in (a, b)]
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() - sum(spread))


def test_mmd_of_a_set_against_itself_is_zero():
    volumes = _volumes(4, size=8)
    assert mmd(volumes, volumes.clone()) == 0.0  # MONAI's unbiased estimate is -2V/(k-1) here, clipped at 0


def test_mmd_of_different_sets_matches_the_linear_kernel_closed_form():
    real, synthetic = _volumes(5, size=8, seed=1), _volumes(5, size=8, seed=2) + 0.5
    expected = _linear_mmd_unbiased(synthetic.double().numpy(), real.double().numpy())
    assert expected > 0
    assert mmd(synthetic, real) == pytest.approx(expected, rel=1e-9)


def test_mmd_cuts_sets_to_the_smaller_size():
    real, synthetic = _volumes(3, size=8, seed=1), _volumes(5, size=8, seed=2) + 0.5
    assert mmd(list(synthetic), real) == pytest.approx(mmd(synthetic[:3], real))


def test_frechet_distance_of_a_set_against_itself_is_zero():
    features = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(features, features.clone()) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_closed_form_of_sample_statistics():
    rng = np.random.default_rng(0)
    a = rng.multivariate_normal([0.0, 1.0, 2.0], [[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 0.5]], size=300)
    b = rng.multivariate_normal([1.0, -1.0, 0.0], [[1.0, 0.0, 0.2], [0.0, 3.0, 0.0], [0.2, 0.0, 1.0]], size=200)
    expected = _closed_form(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_large_gaussian_samples_approaches_population_value():
    rng = np.random.default_rng(1)
    mu1, mu2 = np.array([0.0, 0.0, 0.0]), np.array([1.0, 2.0, 0.0])
    sigma1, sigma2 = np.diag([1.0, 2.0, 0.5]), np.diag([4.0, 0.5, 0.5])
    a = rng.multivariate_normal(mu1, sigma1, size=20000)
    b = rng.multivariate_normal(mu2, sigma2, size=20000)
    expected = 5.0 + (1 - 2) ** 2 + (2**0.5 - 0.5**0.5) ** 2  # ||mu1-mu2||² + sum (sqrt s1 - sqrt s2)² = 6.5
    assert _closed_form(mu1, sigma1, mu2, sigma2) == pytest.approx(expected)
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(expected, rel=0.03)


def test_frechet_distance_of_a_pure_mean_shift_is_its_squared_length():
    features = torch.randn(500, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    assert frechet_distance(features + shift, features) == pytest.approx(5.25, rel=1e-8)


def test_frechet_distance_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected features"):
        frechet_distance(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least 2 rows"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(4, 3))


def test_slice_indices_are_evenly_spaced_in_the_central_part():
    assert slice_indices(32, 4, central_fraction=0.5).tolist() == [8, 13, 18, 23]
    assert slice_indices(32, 4, central_fraction=1.0).tolist() == [0, 10, 21, 31]
    assert slice_indices(10, 20, central_fraction=0.4).tolist() == [3, 4, 5, 6]


def test_slice_extractor_gives_one_pooled_row_per_slice_volume_by_volume():
    network = nn.Conv2d(1, 3, kernel_size=3)  # feature maps (S, 3, h, w): global-average pooled
    volumes = _volumes(2, size=16)
    features = SliceFeatureExtractor(network, axis=0, num_slices=4, central_fraction=0.5)(volumes)
    assert features.shape == (8, 3)
    with torch.no_grad():
        expected = network(volumes[1, :, slice_indices(16, 4, 0.5)].movedim(1, 0)).mean((2, 3))  # slices along X
    torch.testing.assert_close(features[4:], expected)


def test_volume_extractor_pools_feature_maps():
    network = nn.Conv3d(1, 2, kernel_size=1)
    volumes = _volumes(3, size=8)
    with torch.no_grad():
        expected = network(volumes).mean((2, 3, 4))
    torch.testing.assert_close(VolumeFeatureExtractor(network, batch_size=2)(volumes), expected)


def test_fid_with_random_networks_is_zero_for_one_set_and_positive_for_two():
    volumes, other = _volumes(3), _volumes(3, seed=1) * 0.5 + 0.3
    extractors = [
        SliceFeatureExtractor(random_feature_network("resnet2d", depth=10), num_slices=4),
        VolumeFeatureExtractor(random_feature_network("medicalnet3d", depth=10)),
    ]
    rows = [extractor(volumes).shape for extractor in extractors]
    assert rows == [(12, 512), (3, 512)]
    for extractor in extractors:
        assert fid(volumes, list(volumes), extractor, batch_size=2, verbose=False) == pytest.approx(0.0, abs=1e-5)
        assert fid(volumes, other, extractor, batch_size=2, verbose=False) > 1e-2


def test_random_networks_are_seeded():
    first, again = (random_feature_network("resnet2d", seed=3, depth=10) for _ in range(2))
    other = random_feature_network("resnet2d", seed=4, depth=10)
    assert torch.equal(first.conv1.weight, again.conv1.weight)
    assert not torch.equal(first.conv1.weight, other.conv1.weight)


@pytest.mark.parametrize("path", [None, "/nonexistent/resnet_10_23dataset.pth"])
def test_missing_weights_say_what_to_provide(path):
    with pytest.raises(FileNotFoundError, match=r"weights_path=/path/to/resnet_10_23dataset\.pth") as error:
        load_feature_network("medicalnet3d", path)
    assert "MedicalNet" in str(error.value) and "nothing is downloaded" in str(error.value)


@pytest.mark.parametrize("kind, wrapped", [("resnet2d", False), ("medicalnet3d", True)])
def test_saved_weights_load_identically(tmp_path, kind, wrapped):
    network = random_feature_network(kind, seed=7, depth=10)
    state = network.state_dict()
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}} if wrapped else state, path)
    loaded = load_feature_network(kind, path, depth=10).state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_rgb_first_convolution_is_summed_to_one_channel(tmp_path):
    rgb = torch.randn(64, 3, 7, 7)
    torch.save({"conv1.weight": rgb}, tmp_path / "rgb.pth")
    network = load_feature_network("resnet2d", tmp_path / "rgb.pth", depth=10)
    torch.testing.assert_close(network.conv1.weight, rgb.sum(1, keepdim=True))


def test_checkpoint_without_matching_tensors_raises(tmp_path):
    torch.save({"encoder.weight": torch.zeros(3), "conv1.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="0 of"):
        load_feature_network("resnet2d", tmp_path / "other.pth", depth=10)
    with pytest.raises(ValueError, match="unknown feature network"):
        load_feature_network("inception", tmp_path / "other.pth")
