"""Every bundle samples with the respaced samplers at 50 steps through ``brainsynth generate``; bad counts refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import bundle_config
from support import TINY_CONFIGS as TINY
from support import untrained_bundle

from common import cli
from common.diffusion import RespacedDDIMScheduler, RespacedDDPMScheduler

BUNDLES = ["med_ddpm_brain_mri", "cdpm_brain_mri", "medical_diffusion_brain_mri", "diffusemorph_brain_mri"]
SCHEDULERS = {"ddpm": RespacedDDPMScheduler, "ddim": RespacedDDIMScheduler}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Sample on one torch thread, as the label server's workers do on two cores: the tiny networks' operations are
    too small to share, and with ``OMP_WAIT_POLICY=PASSIVE`` waking a second thread for each costs more than it
    saves (cDPM's 50 steps: 6 s on two threads, 2.3 s on one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> dict[str, Path]:
    """Each bundle's configs with what its tiny inference loads, untrained, in a temporary bundle folder."""
    root = tmp_path_factory.mktemp("bundles")
    return {name: untrained_bundle(name, root) for name in BUNDLES}


def _inputs(bundle: str, cohort: Path) -> dict:
    """What a bundle generates from: Med-DDPM the cohort's validation masks (cropped to 16³), the others one volume,
    cDPM's of 16x16 slices (its 16 slices in 4 stages as in tiny_cpu.json, a quarter of the work of 32x32)."""
    if bundle == "med_ddpm_brain_mri":
        return {"masks": str(cohort / "datalist.json"), "spatial_size": [16, 16, 16]}
    if bundle == "cdpm_brain_mri":
        return {"num_volumes": 1, "spatial_size": [16, 16, 16]}
    return {"num_volumes": 1}


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("bundle", BUNDLES)
def test_fifty_step_sampling_from_the_command_line(untrained, tiny_cohort, tmp_path, bundle, sampler):
    overrides = {"sampler": sampler, "num_inference_steps": 50, "seed": 0, **_inputs(bundle, tiny_cohort)}
    parser = bundle_config(bundle, *TINY)
    parser.update(overrides)
    scheduler = parser.get_parsed_content("noise_scheduler")
    assert isinstance(scheduler, SCHEDULERS[sampler]) and len(scheduler.timesteps) == 50
    assert scheduler.timesteps[0] == parser["num_train_timesteps"] - 1  # trailing spacing starts from pure noise

    output_dir = cli.generate(str(untrained[bundle]), configs=TINY, output_dir=str(tmp_path / "out"), **overrides)
    records = json.loads((Path(output_dir) / "outputs.json").read_text())
    volumes = [value for record in records for value in record.values() if str(value).endswith(".nii.gz")]
    assert volumes and all(Path(path).is_file() for path in volumes)


@pytest.mark.parametrize("steps", [0, 1000])
def test_impossible_step_counts_are_refused_before_sampling(untrained, tiny_cohort, tmp_path, steps):
    with pytest.raises(Exception) as raised:
        cli.generate(
            str(untrained["med_ddpm_brain_mri"]), configs=TINY, output_dir=str(tmp_path / "out"),
            num_inference_steps=steps, **_inputs("med_ddpm_brain_mri", tiny_cohort),
        )  # fmt: skip
    cause = raised.value
    while cause.__cause__ is not None:  # the config parser wraps the scheduler factory's error
        cause = cause.__cause__
    assert isinstance(cause, ValueError) and "num_inference_steps must be from 1 to 250" in str(cause)
    assert not (tmp_path / "out" / "outputs.json").exists()
