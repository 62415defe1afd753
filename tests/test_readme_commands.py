"""The READMEs' command blocks, run command by command as a newcomer on a CPU would (issue 16).

A ```` ```bash ```` block of ``README.md`` or of a bundle's ``docs/README.md`` runs here when the line before it is
a marker naming the documented CPU settings::

    <!-- readme-test: tiny_cpu.json downstream_segmentation.json+downstream_tiny_cpu.json --max_iterations 2 -->

- ``X.json`` is added to every config list of the block (``--config_file`` of ``python -m monai.bundle run``,
  ``--configs`` of ``brainsynth train|generate|export``, ``--run`` of ``brainsynth fetch``) that lacks it;
  ``A.json+X.json`` adds ``X.json`` only to the lists that hold ``A.json``;
- ``--key value`` is set (or replaces the value given) on every bundle run of the block: ``python -m monai.bundle
  run``, ``brainsynth train|generate``, ``brainsynth fetch --run``;
- ``@root`` runs the block from the repository root instead of the README's folder.

The placeholders of the READMEs stand for files of a temporary folder: ``/data`` holds ``images/``, ``masks/``,
``t1/`` (3 subjects of the single-modality demo cohort) and ``BraTS2021_Training_Data/`` (their BraTS layout);
``DEMO_COHORT`` is the 8-subject 32³ demo cohort; ``/out``, ``/eval`` and ``/tmp/`` are folders of the temporary
folder, ``RUN`` the bundle folder, ``GENERATED_FOLDER`` its ``outputs``; ``https://example.org/`` is a local HTTP
server that serves the archives ``brainsynth package`` wrote (``/x/...`` from its ``--output_dir dist_x``),
``<published SHA-256>`` their digest, and the FID weights ``/weights/resnet_10_23dataset.pth`` are
``random-for-testing`` (random networks; FID meaningless).

Each README runs in a copy of the repository's layout (``bundles/<name>`` with its configs and docs, ``common``
linked); each block starts in the folder the README says: the repository root for ``README.md``, the bundle
folder for a bundle's README. ``python -m monai.bundle`` and ``brainsynth`` run in this process, as their entry
points would: :func:`support.monai_bundle` (fire parses the command line as ``python -m monai.bundle`` does) and
:func:`common.cli.main` (same parsing, user errors exit with code 1), which saves importing torch, MONAI and Ignite
for each command; the ``python -m monai.bundle run`` that ``brainsynth fetch --run`` starts runs through
:func:`support.monai_bundle` too (``tests/test_packaging.py`` runs that nested process for real). One command, the
first ``brainsynth`` command of ``README.md``, runs as the installed console script in a new process: no other test
starts ``brainsynth`` itself. ``cd`` changes the folder of the block's next commands; ``source`` is skipped (the
suite runs inside the environment already).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from support import monai_bundle

from common import cli
from common.data import build_demo_cohort

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ("med_ddpm_brain_mri", "cdpm_brain_mri", "diffusemorph_brain_mri", "medical_diffusion_brain_mri")
#: README -> the folder (relative to the repository root) its commands run from.
READMES = {"README.md": ".", **{f"bundles/{name}/docs/README.md": f"bundles/{name}" for name in BUNDLES}}
MARKER = re.compile(r"^<!-- readme-test(?::\s*(?P<options>.*?))?\s*-->$")
#: Config-list flags, and the config a command uses without one.
CONFIG_FLAGS = {"monai": "--config_file", "train": "--configs", "generate": "--configs", "export": "--configs"}
DEFAULT_CONFIGS = {"train": "train.json", "generate": "inference.json", "export": "inference.json"}
FID_WEIGHTS = "/weights/resnet_10_23dataset.pth"
ROOT_OPTION = "@root"
#: The README whose first ``brainsynth`` command runs as the installed console script, in a new process.
CONSOLE_SCRIPT_README = "README.md"
#: Subjects of the ``/data`` folder (of the 8 of the demo cohort): 2 for training and 1 for validation.
DATA_SUBJECTS = 3


@dataclass
class Block:
    """A marked ```` ```bash ```` block: where it is, its marker's options and its commands."""

    readme: str
    line: int
    options: list[str]
    commands: list[str]


def _commands(lines: list[str]) -> list[str]:
    """Shell commands of a block: continuation lines joined, comment and blank lines dropped."""
    joined = "\n".join(lines).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def marked_blocks(readme: str) -> list[Block]:
    """The blocks of ``readme`` (relative to the repository root) preceded by a ``readme-test`` marker."""
    lines = (REPO / readme).read_text().splitlines()
    blocks = []
    for index, line in enumerate(lines):
        match = MARKER.match(line.strip())
        if match is None:
            continue
        assert lines[index + 1].strip() == "```bash", f"{readme}:{index + 1}: a readme-test marker precedes ```bash"
        end = lines.index("```", index + 2)
        options = shlex.split(match.group("options") or "")
        blocks.append(Block(readme, index + 1, options, _commands(lines[index + 2 : end])))
    return blocks


def _kind(words: list[str]) -> str | None:
    """``"monai"`` for ``python -m monai.bundle run``, the subcommand for ``brainsynth``, else ``None``."""
    if words[:4] == ["python", "-m", "monai.bundle", "run"]:
        return "monai"
    if words[0] == "brainsynth" and len(words) > 1:
        return words[1]
    return None


def _parse_list(value: str) -> list[str]:
    return [item.strip(" '\"") for item in value.strip("[]").split(",") if item.strip(" '\"")]


def _with_configs(words: list[str], kind: str, additions: list[tuple[str | None, str]]) -> list[str]:
    """``words`` with the marker's config files added to the command's config list."""
    flag = "--run" if kind == "fetch" else CONFIG_FLAGS.get(kind)
    if flag is None or (flag not in words and kind not in DEFAULT_CONFIGS):
        return words
    words = list(words)
    if flag not in words:
        words += [flag, DEFAULT_CONFIGS[kind]]
    position = words.index(flag) + 1
    items = _parse_list(words[position])
    prefix = "configs/" if items[0].startswith("configs/") else ""
    names = [Path(item).name for item in items]
    for after, name in additions:
        if name not in names and (after is None or after in names):
            items.append(prefix + name)
            names.append(name)
    if kind == "monai":
        words[position] = "[" + ",".join(f"'{item}'" for item in items) + "]"
    elif kind == "fetch":
        words[position] = "[" + ",".join(items) + "]"
    else:
        words[position] = ",".join(items)
    return words


def cpu_command(words: list[str], options: list[str]) -> list[str]:
    """A README command with the marker's CPU settings (see the module docstring)."""
    kind = _kind(words)
    if kind is None:
        return words
    additions = []
    overrides: dict[str, str] = {}
    position = 0
    while position < len(options):
        option = options[position]
        if option == ROOT_OPTION:
            position += 1
            continue
        if option.startswith("--"):
            overrides[option] = options[position + 1]
            position += 2
            continue
        after, _, name = option.rpartition("+")
        additions.append((after or None, name))
        position += 1
    words = _with_configs(words, kind, additions)
    if kind in ("monai", "train", "generate") or (kind == "fetch" and "--run" in words):
        words = list(words)
        for key, value in overrides.items():
            if key in words:
                words[words.index(key) + 1] = value
            else:
                words += [key, value]
    return words


class _ArchiveServer(http.server.SimpleHTTPRequestHandler):
    """Serves what ``brainsynth package`` wrote under ``root``: ``/<path>`` from a ``dist/<path>``, and
    ``/<x>/<path>`` from a ``dist_<x>/<path>`` (archives, their ``.sha256`` and weights folders)."""

    root: Path

    def translate_path(self, path: str) -> str:
        relative = path.split("?")[0].lstrip("/")
        first, _, rest = relative.partition("/")
        found = sorted(self.root.rglob(f"dist/{relative}")) + sorted(self.root.rglob(f"dist_{first}/{rest}"))
        return str(found[0]) if found else str(self.root / "missing")

    def log_message(self, *args) -> None:  # quiet
        pass


@contextlib.contextmanager
def archive_server(root: Path) -> Iterator[str]:
    """A local HTTP server for the archives under ``root``; yields its base URL."""
    handler = type("Handler", (_ArchiveServer,), {"root": root})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def _published_sha256(line: str, root: Path) -> str:
    """The digest in the ``.sha256`` file beside the archive the command's URL names."""
    name = re.search(r"/([^/\s]+\.zip)", line).group(1)
    return sorted(root.rglob(f"dist/{name}.sha256"))[0].read_text().split()[0]


def substitute(line: str, root: Path, cohort: Path, base_url: str) -> str:
    """The README command ``line`` with its placeholders replaced by files under ``root`` (module docstring)."""
    line = line.replace("https://example.org/", f"{base_url}/").replace(FID_WEIGHTS, "random-for-testing")
    if "<published SHA-256>" in line:
        line = line.replace("<published SHA-256>", _published_sha256(line, root))
    folders = {"/data": root / "data", "/out": root / "out", "/eval": root / "eval", "/tmp": root / "tmp"}
    names = {"DEMO_COHORT": cohort, "GENERATED_FOLDER": "outputs", "RUN": "."}
    pattern = rf"(?<![\w./-])({'|'.join(folders)})(?=[/\s\"',]|$)|\b({'|'.join(names)})\b"
    return re.sub(pattern, lambda m: str(folders[m[1]] if m[1] else names[m[2]]), line)


@contextlib.contextmanager
def _process_state(cwd: Path, argv: list[str], path_first: str | None = None) -> Iterator[None]:
    """Run in folder ``cwd`` with ``sys.argv`` = ``argv`` (and ``path_first`` first on ``sys.path``), as a new
    process started there would."""
    old_cwd, old_argv, old_path = Path.cwd(), sys.argv, list(sys.path)
    os.chdir(cwd)
    sys.argv = argv
    if path_first is not None:
        sys.path.insert(0, path_first)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        sys.argv, sys.path[:] = old_argv, old_path


def _run_in_process(command, cwd=None, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` for :mod:`common.cli`: its ``python -m monai.bundle ...`` (``brainsynth fetch --run``) runs
    in this process through :func:`support.monai_bundle`, printing what it printed; anything else really runs."""
    command = [str(word) for word in command]
    if command[:3] != [sys.executable, "-m", "monai.bundle"]:
        return subprocess.run(command, cwd=cwd, **kwargs)
    result = monai_bundle(command[3:], Path(cwd or "."))
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result


@contextlib.contextmanager
def _cli_subprocesses_in_process() -> Iterator[None]:
    """:mod:`common.cli` sees :func:`_run_in_process` as its ``subprocess.run`` for the duration."""
    original = cli.subprocess
    cli.subprocess = SimpleNamespace(run=_run_in_process)
    try:
        yield
    finally:
        cli.subprocess = original


def _console_script() -> Path:
    """The ``brainsynth`` console script installed beside this interpreter (``[project.scripts]``)."""
    script = Path(sys.executable).with_name("brainsynth")
    assert script.is_file(), f"{script}: the brainsynth console script is not installed (pip install -e .)"
    return script


def execute(words: list[str], cwd: Path, new_process: bool = False) -> Path:
    """Run one command from folder ``cwd``, in this process unless ``new_process`` (a ``brainsynth`` command then
    runs as the installed console script); returns the folder of the next command.

    Raises:
        AssertionError: the command failed (a non-zero exit or an exception, with its traceback or output).
    """
    if words[0] == "cd":
        return (cwd / words[1]).resolve()
    if words[0] == "source":
        return cwd  # the environment is active already
    if new_process:
        assert words[0] == "brainsynth", f"only brainsynth runs as a new process here: {shlex.join(words)}"
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        result = subprocess.run(
            [str(_console_script()), *words[1:]], cwd=cwd, capture_output=True, text=True, env=env, timeout=600
        )
    elif words[:3] == ["python", "-m", "monai.bundle"]:
        result = monai_bundle(words[3:], cwd)
    else:
        result = None
    if result is not None:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        if result.returncode != 0:
            raise AssertionError(f"exit code {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
        return cwd
    try:
        if words[:2] == ["python", "-c"]:
            with _process_state(cwd, ["-c"], path_first=""):  # ``python -c`` puts the current folder first
                exec(compile(words[2], "<readme>", "exec"), {"__name__": "__main__"})
        elif words[0] == "brainsynth":
            with _process_state(cwd, ["brainsynth", *words[1:]]), _cli_subprocesses_in_process():
                cli.main(words[1:])
        else:
            raise AssertionError(f"a marked block holds a command this test cannot run: {shlex.join(words)}")
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            raise AssertionError(f"exit code {exit_.code}") from None
    except Exception:
        raise AssertionError(traceback.format_exc()) from None
    return cwd


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory) -> dict[str, Path]:
    """The 8-subject 32³ demo cohorts the READMEs name: with tumours in half the subjects (``t0.5``) and without."""
    root = tmp_path_factory.mktemp("cohorts")
    return {
        fraction: build_demo_cohort(root, num_subjects=8, size=32, seed=0, tumour_fraction=float(fraction))
        for fraction in ("0.5", "0")
    }


def _layout(root: Path, cohorts: dict[str, Path]) -> None:
    """A copy of the repository's layout under ``root``: bundles (configs, docs, LICENSE, demo weights), ``common``
    linked, the ``/data`` folder of the placeholders and the demo cohorts where the READMEs build them."""
    for name in BUNDLES:
        source = REPO / "bundles" / name
        shutil.copytree(source, root / "bundles" / name, ignore=shutil.ignore_patterns("models", "outputs", "eval"))
        if (source / "models" / "demo").is_dir():
            shutil.copytree(source / "models" / "demo", root / "bundles" / name / "models" / "demo")
    (root / "common").symlink_to(REPO / "common")
    single, brats = cohorts["0.5"] / "single", cohorts["0.5"] / "brats"
    subjects = sorted(path.name for path in (single / "images").glob("*.nii.gz"))[:DATA_SUBJECTS]
    for folder, source in (("images", "images"), ("masks", "masks"), ("t1", "images")):
        for name in subjects:
            (root / "data" / folder).mkdir(parents=True, exist_ok=True)
            (root / "data" / folder / name).symlink_to(single / source / name)
    (root / "data" / "BraTS2021_Training_Data").mkdir()
    for case in sorted(path for path in brats.iterdir() if path.is_dir())[:DATA_SUBJECTS]:
        (root / "data" / "BraTS2021_Training_Data" / case.name).symlink_to(case)
    for fraction, folder in (("0.5", root / "data" / "demo"), ("0", root / "tmp" / "b" / "demo")):
        folder.mkdir(parents=True)
        (folder / cohorts[fraction].name).symlink_to(cohorts[fraction])


def test_markers_precede_runnable_blocks():
    blocks = [block for readme in READMES for block in marked_blocks(readme)]
    assert {block.readme for block in blocks} == set(READMES)  # every README has marked blocks
    for block in blocks:
        for command in block.commands:
            words = shlex.split(command, comments=True)
            assert words[0] in ("python", "brainsynth", "cd", "source"), f"{block.readme}:{block.line}: {command}"


def test_cpu_command_adds_configs_and_overrides():
    options = ["tiny_cpu.json", "downstream_segmentation.json+downstream_tiny_cpu.json", "--max_iterations", "2"]
    monai = shlex.split("python -m monai.bundle run training --config_file configs/train.json --max_iterations 9")
    assert cpu_command(monai, options)[6:] == [
        "['configs/train.json','configs/tiny_cpu.json']",
        "--max_iterations",
        "2",
    ]
    downstream = shlex.split("python -m monai.bundle run --config_file configs/downstream_segmentation.json")
    assert cpu_command(downstream, options)[5] == (
        "['configs/downstream_segmentation.json','configs/tiny_cpu.json','configs/downstream_tiny_cpu.json']"
    )
    assert cpu_command(["brainsynth", "export", "b", "--output", "m.pt2"], options)[5:] == [
        "--configs",
        "inference.json,tiny_cpu.json",
    ]
    fetch = cpu_command(shlex.split('brainsynth fetch URL --sha256 S --run "[inference.json]"'), options)
    assert fetch[-4:] == ["--run", "[inference.json,tiny_cpu.json]", "--max_iterations", "2"]
    assert cpu_command(["brainsynth", "package", "b"], options) == ["brainsynth", "package", "b"]


@pytest.mark.parametrize("readme", list(READMES))
def test_readme_commands_run_on_a_cpu(readme, cohorts, tmp_path):
    _layout(tmp_path, cohorts)
    console_script_pending = readme == CONSOLE_SCRIPT_README
    with archive_server(tmp_path) as base_url:
        for block in marked_blocks(readme):
            cwd = tmp_path / ("." if ROOT_OPTION in block.options else READMES[readme])
            for command in block.commands:
                line = substitute(command, tmp_path, cohorts["0.5"], base_url)
                words = cpu_command(shlex.split(line, comments=True), block.options)
                new_process = console_script_pending and words[0] == "brainsynth"
                console_script_pending &= not new_process
                start = time.perf_counter()
                try:
                    cwd = execute(words, cwd, new_process=new_process)
                except AssertionError as error:
                    pytest.fail(f"{readme}:{block.line}: {command}\nran as: {shlex.join(words)}\n{error}")
                print(f"{time.perf_counter() - start:6.1f} s  {readme}:{block.line}: {command}", file=sys.__stdout__)
