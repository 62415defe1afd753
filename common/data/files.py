"""Writing a file so that no reader ever sees part of it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["write_atomically"]


def write_atomically(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then rename it to ``path`` (``os.replace``).

    A reader, or a process killed mid-write, finds the previous file or the whole new one, never part of one.
    Processes and threads writing the same ``path`` at once (the processes of a multi-GPU run, the workers of the
    MONAI Label server) each write their own temporary file, ``.<name>.<process>.<thread>.tmp``; the last rename wins.
    The file gets the usual permissions (the umask's); the folder is created.

    Returns:
        ``path``.

    Raises:
        OSError: or whatever ``write`` raises, after the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(partial, "wb") as file:
            write(file)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path
