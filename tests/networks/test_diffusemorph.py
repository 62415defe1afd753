import pytest
import torch
from monai.networks.blocks import Warp
from support import deformation_head, tiny_diffusemorph

from common.networks import DiffuseMorph

SHAPE = (1, 1, 16, 16, 8)


def test_the_outputs_start_near_zero():
    """Why the tests re-initialise the output layers: MONAI's initial DiffuseMorph gives almost no field."""
    assert deformation_head(tiny_diffusemorph(0, visible_fields=False)).weight.abs().max() < 1e-4


@pytest.fixture(scope="module")
def network() -> DiffuseMorph:
    return tiny_diffusemorph(0).eval()  # output layers re-initialised: visibly non-zero fields


def test_warp_with_zero_field_is_the_identity():
    image = torch.rand(2, 3, 8, 7, 6)
    torch.testing.assert_close(Warp()(image, torch.zeros(2, 3, 8, 7, 6)), image)


def test_integer_translation_moves_the_image_by_that_many_voxels():
    image = torch.rand(1, 1, 10, 9, 8)
    field = torch.zeros(1, 3, 10, 9, 8)
    field[:, 0], field[:, 2] = 2.0, -1.0  # warped(x, y, z) = image(x + 2, y, z - 1)
    warped = Warp(mode="bilinear", padding_mode="border")(image, field)
    torch.testing.assert_close(warped[..., :-2, :, 1:], image[..., 2:, :, :-1])


@torch.no_grad()
def test_eta_zero_gives_the_template_and_eta_one_the_registration(network):
    moving, fixed = torch.rand(SHAPE), torch.rand(SHAPE)
    fields = network.trajectory(moving, fixed, [0.0, 0.5, 1.0])
    assert fields.shape == (3, 1, 3, 16, 16, 8)
    assert fields[0].abs().max() == 0
    torch.testing.assert_close(Warp()(moving, fields[0]), moving)
    full = network.register(moving, fixed)
    assert full.abs().max() > 1e-3
    torch.testing.assert_close(fields[2], full)
    torch.testing.assert_close(network.register(moving, fixed, eta=0.5), fields[1])


@torch.no_grad()
def test_forward_returns_noise_prediction_and_field(network):
    moving, fixed = torch.rand(2, *SHAPE[1:]), torch.rand(2, *SHAPE[1:])
    noise_prediction, field = network(moving, fixed, torch.randn(2, *SHAPE[1:]), torch.tensor([3, 7]))
    assert noise_prediction.shape == (2, 1, 16, 16, 8) and field.shape == (2, 3, 16, 16, 8)
    latent = network.latent(moving, fixed)  # t = 0 with x_0 = f (paper Eq. 7)
    torch.testing.assert_close(network.register(moving, fixed), network.deform(moving, latent))


def test_deformation_network_needs_a_three_channel_head():
    score = torch.nn.Conv3d(3, 1, 1)
    with pytest.raises(ValueError, match="3 output channels"):
        DiffuseMorph(score, torch.nn.Conv3d(2, 2, 3))
