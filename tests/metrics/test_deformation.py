import pytest
import torch

from common.metrics import folding_fraction, jacobian_determinant, normalised_cross_correlation


def _grid(shape: tuple[int, int, int]) -> torch.Tensor:
    """Voxel coordinates (1, 3, X, Y, Z)."""
    return torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij"))[None]


def test_zero_field_has_unit_determinant_and_no_folding():
    field = torch.zeros(2, 3, 6, 5, 4)
    torch.testing.assert_close(jacobian_determinant(field), torch.ones(2, 6, 5, 4))
    torch.testing.assert_close(folding_fraction(field), torch.zeros(2))


def test_affine_field_has_the_determinant_of_its_matrix():
    matrix = torch.tensor([[0.1, 0.2, 0.0], [0.0, -0.1, 0.3], [0.05, 0.0, 0.2]])
    field = torch.einsum("ij,bjxyz->bixyz", matrix, _grid((7, 6, 5)))
    expected = torch.linalg.det(torch.eye(3) + matrix)
    torch.testing.assert_close(jacobian_determinant(field), expected.expand(1, 7, 6, 5), rtol=1e-5, atol=1e-5)


def test_folding_fraction_counts_exactly_the_folded_slab():
    # x -> x - 2x on the first k + 1 planes (det -1; det 0 on plane k, where the central difference averages the
    # slopes -2 and 0), identity beyond: (k + 1) of n planes fold.
    n, k = 10, 3
    x = torch.arange(n, dtype=torch.float32)
    profile = torch.where(x <= k, -2 * x, torch.full_like(x, -2.0 * k))
    field = torch.zeros(1, 3, n, 4, 4)
    field[0, 0] = profile[:, None, None]
    det = jacobian_determinant(field)[0, :, 0, 0]
    torch.testing.assert_close(det, torch.tensor([-1.0] * k + [0.0] + [1.0] * (n - k - 1)))
    assert folding_fraction(field).item() == pytest.approx((k + 1) / n)


def test_field_shape_is_checked():
    with pytest.raises(ValueError, match=r"\(B, 3, X, Y, Z\)"):
        jacobian_determinant(torch.zeros(1, 2, 4, 4, 4))


def test_ncc_is_one_for_linear_maps_and_minus_one_for_inverted_volumes():
    a = torch.rand(2, 1, 5, 5, 5)
    torch.testing.assert_close(normalised_cross_correlation(a, 3 * a + 1), torch.ones(2))
    torch.testing.assert_close(normalised_cross_correlation(a, -a), -torch.ones(2))
    assert normalised_cross_correlation(a, torch.rand_like(a)).abs().max() < 0.5
