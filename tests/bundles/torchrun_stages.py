"""Run by ``torchrun`` for ``test_multi_gpu_train.py``: every process trains each stage of the JSON file
``sys.argv[1]`` in turn, as ``python -m monai.bundle <argv>`` would in the stage's folder (:func:`support.monai_bundle`:
``fire`` parses the same command line), so that the two processes import PyTorch, MONAI and Ignite once for all
stages. The process group that the first stage's ``multi_gpu_train.json`` creates serves the later stages
(``common.engines.init_process_group`` joins an existing one); the last stage's ``finalize`` destroys it.

A stage that fails prints its output and ends the launch with exit status 1 (``torchrun`` then stops the other
process), so no process waits for a collective its peer never reaches.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for support

from support import monai_bundle  # noqa: E402


def main(spec_file: str) -> None:
    for stage in json.loads(Path(spec_file).read_text()):
        result = monai_bundle(stage["argv"], cwd=Path(stage["cwd"]))
        if result.returncode != 0:
            print(f"stage {stage['name']} failed:\n{result.stdout}\n{result.stderr}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1])
