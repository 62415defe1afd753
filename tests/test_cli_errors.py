"""``brainsynth`` tells user errors from bugs: one line per problem and exit code 1, tracebacks only for bugs."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from support import REPO, untrained_bundle

from common import cli
from common.errors import InputError, find_user_error, root_cause

DIGEST = "0" * 64


def _save(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4)), path)


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run ``brainsynth argv`` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
        raise SystemExit(0)
    captured = capsys.readouterr()
    return caught.value.code or 0, captured.out, captured.err


def test_validation_problems_are_one_line_each_without_traceback(tmp_path, capsys):
    rng = np.random.default_rng(0)
    _save(tmp_path / "images" / "a.nii.gz", np.zeros((8, 8, 8), np.float32))  # constant image
    _save(tmp_path / "masks" / "a.nii.gz", np.ones((8, 8, 8), np.uint8))
    _save(tmp_path / "images" / "b.nii.gz", rng.random((8, 8, 8), dtype=np.float32))
    _save(tmp_path / "masks" / "b.nii.gz", np.zeros((8, 8, 8), np.uint8))  # empty mask
    code, _, err = _run(["prepare", "paired", str(tmp_path / "images"), str(tmp_path / "masks"), "out.json"], capsys)
    lines = [line for line in err.splitlines() if line.startswith("brainsynth: ")]
    assert code == 1 and "Traceback" not in err
    assert lines == [
        f"brainsynth: {tmp_path / 'images' / 'a.nii.gz'}: constant volume (every voxel is 0): an empty or failed "
        "export?",
        f"brainsynth: {tmp_path / 'masks' / 'b.nii.gz'}: empty label map (every voxel is 0); a mask needs its "
        "head/brain label",
    ]
    assert not (tmp_path / "out.json").exists()


def test_debug_shows_the_traceback_of_a_user_error(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="not a bundle folder"):
        cli.main(["export", str(tmp_path / "nowhere"), "--output", "x.pt2", "--debug"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "no_such_bundle", "--output", "x.pt2"], "no_such_bundle: not a bundle folder (one with configs/)"),
        (["preview"], "give at least one NIfTI volume"),
        (["fetch", "http://127.0.0.1:9/b.zip", "--sha256", DIGEST], "http://127.0.0.1:9/b.zip: cannot download"),
        (["fetch", "http://127.0.0.1:9/b.zip", DIGEST], "http://127.0.0.1:9/b.zip: cannot download"),
        (["fetch", "http://127.0.0.1:9/b.zip", f"--sha256={DIGEST}"], "http://127.0.0.1:9/b.zip: cannot download"),
        (["evaluate", "--real", "nowhere.json", "--synthetic", "."], "nowhere.json: no such datalist JSON"),
    ],
)
def test_user_errors_are_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(argv, capsys)
    assert code == 1 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("brainsynth: ")][0].startswith(
        f"brainsynth: {message}"
    )  # the all-digit --sha256 stays a string: the download is tried, no TypeError


def test_a_bug_keeps_its_traceback(monkeypatch):
    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "package", broken)
    with pytest.raises(TypeError, match="a bug"):
        cli.main(["package", "x"])


@pytest.mark.parametrize("command", [*cli.COMMANDS, "prepare paired"])
def test_help_of_every_command_exits_0(command, monkeypatch, capsys):
    monkeypatch.setenv("PAGER", "cat")
    code, out, err = _run([*command.split(), "--help"], capsys)
    assert code == 0 and f"brainsynth {command}" in out + err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["package"], "The function received no value for the required argument: bundle"),
        (["trian"], "Cannot find key: trian"),
    ],
)
def test_bad_command_line_exits_2(argv, message, capsys):
    code, _, err = _run(argv, capsys)
    assert code == 2 and f"ERROR: {message}" in err and "Traceback" not in err


def test_user_error_inside_a_dataloader_worker_is_found():
    worker_text = (
        "Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\ncommon.errors.InputError: a.nii.gz: constant volume (every voxel is 0)\n\n'
        "The above exception was the direct cause of the following exception:\n\nRuntimeError: applying transform"
    )
    found = find_user_error(RuntimeError(worker_text))
    assert str(found) == "a.nii.gz: constant volume (every voxel is 0)"
    assert find_user_error(RuntimeError("a bug")) is None
    wrapped = RuntimeError("Failed to instantiate")
    wrapped.__cause__ = InputError("x.nii.gz: bad")
    assert str(find_user_error(wrapped)) == "x.nii.gz: bad"


def test_root_cause_is_the_first_error_of_the_chain():
    reader = OSError("x.nii.gz: not a gzip file")
    wrapped = RuntimeError("applying transform")
    wrapped.__cause__ = ValueError("cannot read")
    wrapped.__cause__.__cause__ = reader
    assert root_cause(wrapped) is reader
    assert root_cause(reader) is reader


def test_weights_of_a_tiny_network_name_the_override_they_fit(tmp_path, monkeypatch, capsys):
    folder = untrained_bundle("med_ddpm_brain_mri", tmp_path)
    _save(tmp_path / "masks" / "m.nii.gz", np.resize(np.array([0, 1, 2], np.uint8), (32, 32, 32)))
    monkeypatch.chdir(folder)  # as a bundle README runs it: the bundle name means this folder
    argv = ["generate", "med_ddpm_brain_mri", "--masks", str(tmp_path / "masks"), "--device", "$torch.device('cpu')"]
    code, _, err = _run(argv, capsys)
    lines = [line for line in err.splitlines() if line.startswith("brainsynth: ")]
    assert code == 1 and "Traceback" not in err and len(lines) == 1
    assert lines[0].startswith(f"brainsynth: {folder / 'models' / 'model.pt'}: the weights do not fit the network")
    assert "they fit inference.json + tiny_cpu.json" in lines[0]
    assert "--config_file \"['configs/inference.json','configs/tiny_cpu.json']\"" in lines[0]


@pytest.mark.parametrize(
    "bundle, problem",
    [
        ("medical_diffusion_brain_mri", "they set keys inside `train`, which no earlier file defines"),
        ("diffusemorph_brain_mri", "the referring item `@seed` is not defined in these files"),
    ],
)
def test_a_later_stage_given_alone_is_named_as_an_overlay(bundle, problem, tmp_path, capsys):
    argv = ["train", bundle, "--configs", "train_diffusion.json,tiny_cpu.json", "--bundle_root", str(tmp_path)]
    code, _, err = _run(argv, capsys)
    lines = [line for line in err.splitlines() if line.startswith("brainsynth: ")]
    assert code == 1 and "Traceback" not in err and len(lines) == 1
    prefix = f"brainsynth: {REPO / 'bundles' / bundle / 'configs'}: train_diffusion.json, tiny_cpu.json: {problem}"
    assert lines[0].startswith(prefix)
    assert "overlay: give the config of the bundle's first stage before it" in lines[0]
    assert not any(tmp_path.iterdir()), "nothing written"
