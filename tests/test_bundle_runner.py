"""``support.write_untrained_weights`` (test support, not shipped): what each bundle's inference loads, from initial
networks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from support import TINY_CONFIGS as TINY
from support import write_untrained_weights

from common.bundle_runner import run_bundle

REPO = Path(__file__).resolve().parents[1]
#: Files each bundle's inference loads, relative to the bundle folder.
LOADED = {
    "cdpm_brain_mri": ["models/model.pt"],
    "med_ddpm_brain_mri": ["models/model.pt"],
    "medical_diffusion_brain_mri": ["models/model.pt", "models/model_autoencoder.pt"],
    "diffusemorph_brain_mri": ["models/model.pt", "models/field_scale.json"],
}


def configs_copy(bundle: str, root: Path) -> Path:
    folder = root / bundle
    shutil.copytree(REPO / "bundles" / bundle / "configs", folder / "configs")
    return folder


@pytest.mark.parametrize("bundle", sorted(LOADED))
def test_writes_what_inference_loads(bundle, tmp_path: Path):
    folder = configs_copy(bundle, tmp_path)
    written = write_untrained_weights(folder, TINY)
    assert sorted(str(path.relative_to(folder)) for path in written) == sorted(LOADED[bundle])
    for path in written:
        if path.suffix == ".pt":
            assert all(torch.isfinite(w).all() for w in torch.load(path, weights_only=True).values())
        else:
            assert json.loads(path.read_text())["field_scale"] > 0
    with pytest.raises(FileExistsError, match="model.pt: already exists"):
        write_untrained_weights(folder, TINY)


def test_inference_runs_on_them(tmp_path: Path):
    folder = configs_copy("medical_diffusion_brain_mri", tmp_path)
    write_untrained_weights(folder, TINY)
    run_bundle(folder, TINY, output_dir=str(tmp_path / "out"), num_volumes=1, num_inference_steps=2)
    (record,) = json.loads((tmp_path / "out" / "outputs.json").read_text())
    assert Path(record["t1"]).is_file()
