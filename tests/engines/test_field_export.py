"""DiffuseMorph's field export: a ``SupervisedEvaluator`` with ``RegistrationInferer``, the registration weights loaded
by ``inference_handlers`` (MONAI's ``CheckpointLoader``) and ``RegisteredFieldWriter`` writing stage 2's data."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.networks.blocks import Warp
from support import tiny_diffusemorph

from common.engines import RegisteredFieldWriter, RegistrationInferer, inference_handlers
from common.errors import InputError

SHAPE = (16, 16, 8)


def subjects(count: int) -> list[dict[str, MetaTensor]]:
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    return [
        {"image": MetaTensor(torch.rand(1, *SHAPE), affine=affine, meta={"filename_or_obj": f"/data/s{k}.nii.gz"})}
        for k in range(count)
    ]


def exporter(network, template, weights, tmp_path, trajectory_steps: int = 0) -> SupervisedEvaluator:
    writer = RegisteredFieldWriter(template, tmp_path / "out", trajectory_steps=trajectory_steps, kernel_size=3)
    return SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=DataLoader(Dataset(subjects(3)), batch_size=2), network=network,
        inferer=RegistrationInferer(template),
        val_handlers=inference_handlers(
            network, weights, tmp_path / "configs", "cpu", writer, base_config="train_registration.json"
        ),
    )  # fmt: skip


def test_export_loads_the_weights_and_writes_fields_quality_and_trajectories(tmp_path):
    trained = tiny_diffusemorph(seed=0)
    torch.save(trained.state_dict(), tmp_path / "model_registration.pt")
    network = tiny_diffusemorph(seed=1)  # other initial weights: the handlers must load the trained ones
    template = torch.rand(3, *SHAPE)
    engine = exporter(network, template, tmp_path / "model_registration.pt", tmp_path, trajectory_steps=3)
    engine.run()

    out = tmp_path / "out"
    datalist = json.loads((out / "fields.json").read_text())
    assert [item["field"] for item in datalist["training"]] == [f"fields/s{k}_field.nii.gz" for k in range(3)]
    field = nib.load(out / "fields" / "s0_field.nii.gz")
    assert field.shape == (*SHAPE, 3)
    np.testing.assert_allclose(field.affine, np.diag([2.0, 2.0, 2.0, 1.0]))
    largest = max(np.abs(nib.load(out / item["field"]).get_fdata()).max() for item in datalist["training"])
    assert datalist["field_scale"] == pytest.approx(largest, rel=1e-5) and largest > 0
    quality = json.loads((out / "registration_quality.json").read_text())
    assert [s["subject"] for s in quality["subjects"]] == ["s0", "s1", "s2"]
    assert {"ncc_before_mean", "ncc_after_mean", "ssim_after_mean", "psnr_after_mean"} <= set(quality["mean"])
    warped = nib.load(out / "warped" / "s0_warped_template.nii.gz").get_fdata()
    field_voxels = torch.as_tensor(np.moveaxis(field.get_fdata(), -1, 0), dtype=torch.float32)[None]
    expected = Warp(mode="bilinear", padding_mode="border")(template[None, :1], field_voxels)[0, 0].numpy()
    np.testing.assert_allclose(warped, expected, atol=1e-5)
    trajectory = nib.load(out / "trajectory" / "s0_trajectory.nii.gz").get_fdata()
    assert trajectory.shape == (*SHAPE, 3)
    np.testing.assert_allclose(trajectory[..., 0], template[0].numpy(), atol=1e-6)  # eta = 0: the template
    np.testing.assert_allclose(trajectory[..., -1], warped, atol=1e-5)  # eta = 1: the registration


def test_the_loaded_weights_are_the_trained_ones(tmp_path):
    trained = tiny_diffusemorph(seed=0)
    torch.save(trained.state_dict(), tmp_path / "model_registration.pt")
    network = tiny_diffusemorph(seed=1)
    exporter(network, torch.rand(3, *SHAPE), tmp_path / "model_registration.pt", tmp_path).run()
    for name, weight in trained.state_dict().items():
        torch.testing.assert_close(network.state_dict()[name], weight)


def test_missing_weights_are_named(tmp_path):
    engine = exporter(tiny_diffusemorph(seed=0), torch.rand(3, *SHAPE), tmp_path / "none.pt", tmp_path)
    with pytest.raises(FileNotFoundError, match="none.pt: no trained weights"):
        engine.run()


def test_subjects_off_the_template_grid_are_named():
    inferer = RegistrationInferer(torch.rand(3, *SHAPE))
    subject = MetaTensor(torch.rand(1, 1, 8, 8, 8), meta={"filename_or_obj": "/data/small.nii.gz"})
    with pytest.raises(InputError, match="small.nii.gz: shape \\(8, 8, 8\\) differs from the template's"):
        inferer(subject, tiny_diffusemorph(seed=0))
