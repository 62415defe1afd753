"""Run by ``torchrun`` for ``test_multi_gpu_train.py``: every process runs ``python -m monai.bundle <argv>`` for each
stage of the JSON file ``sys.argv[1]`` in turn, in the stage's folder: MONAI's own ``__main__`` module, run as
``python -m`` runs it (``runpy``, with ``sys.argv`` the stage's command line), so that the two processes import
PyTorch, MONAI and Ignite once for all stages instead of once per stage. The process group that the first stage's
``multi_gpu_train.json`` creates serves the later stages (``common.engines.init_process_group`` joins an existing
one); the last stage's ``finalize`` destroys it.

A stage that fails raises, as ``python -m monai.bundle`` would, and ends the launch (``torchrun`` then stops the other
process), so no process waits for a collective its peer never reaches.
"""

from __future__ import annotations

import contextlib
import json
import runpy
import sys
from pathlib import Path


def main(spec_file: str) -> None:
    for stage in json.loads(Path(spec_file).read_text()):
        print(f"stage {stage['name']}: python -m monai.bundle {' '.join(stage['argv'])}", flush=True)
        sys.argv = ["monai.bundle", *stage["argv"]]
        with contextlib.chdir(stage["cwd"]):
            try:
                runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
            except SystemExit as exit:  # fire's own exits: bad flags, help
                if exit.code not in (None, 0):
                    raise


if __name__ == "__main__":
    main(sys.argv[1])
