"""Errors that belong to the user, and how ``brainsynth`` tells them from bugs.

A problem the user can fix (a file that fails validation, a missing file or weights, a wrong option, a refused
download) is raised as :class:`UserError` (or :class:`InputError`, which is also a ``ValueError``), or as one of
Python's file errors (``FileNotFoundError``, ``FileExistsError``, ...). ``brainsynth`` prints such an error as one
line per problem, without a traceback, and exits with code 1; any other exception is a bug and keeps its traceback.

MONAI wraps the exceptions of transforms and config components (``RuntimeError(...) from error``), and PyTorch's
``DataLoader`` re-raises a worker's exception with the worker's traceback as text: :func:`find_user_error` looks
through both.
"""

from __future__ import annotations

import re

__all__ = ["USER_ERROR_TYPES", "InputError", "UserError", "find_user_error", "problem_lines", "root_cause"]


class UserError(Exception):
    """A problem the user can fix; its message says what is wrong (naming the file) and what to do."""


class InputError(UserError, ValueError):
    """A value or a file that cannot be used, e.g. a volume that fails a check; also a ``ValueError``."""


USER_ERROR_TYPES: tuple[type[BaseException], ...] = (
    UserError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
"""Exception types that are the user's to fix."""

# a line of a DataLoader worker's traceback text naming a user error: "common.errors.InputError: <message>"
_WORKER_LINE = re.compile(
    r"^(?:[\w.]+\.)?(?:" + "|".join(t.__name__ for t in USER_ERROR_TYPES) + r"|InputError|DatasetValidationError)"
    r": (.+)$",
    re.MULTILINE,
)


def find_user_error(error: BaseException) -> BaseException | None:
    """The user error behind ``error``: ``error`` itself or one it was raised from (``raise ... from``), or ``None``
    when it is a bug.

    An exception re-raised from a ``DataLoader`` worker carries the worker's traceback as text; a user error named
    there is returned as a :class:`UserError` with its message.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, USER_ERROR_TYPES):
            return current
        seen.add(id(current))
        text = str(current)
        if "Original Traceback" in text and (match := _WORKER_LINE.search(text)):
            return UserError(match.group(1))
        current = current.__cause__
    return None


def root_cause(error: BaseException) -> BaseException:
    """The first exception of ``error``'s ``raise ... from`` chain: the original problem behind MONAI's wrappers
    (e.g. a NIfTI reader's own message)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def problem_lines(error: BaseException) -> list[str]:
    """The problems of a user error, one line each: its ``problems`` when it lists several (dataset validation),
    else its message (for ``OSError``: ``<file>: <reason>``)."""
    problems = getattr(error, "problems", None)
    if problems:
        return [str(problem) for problem in problems]
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return [f"{error.filename}: {error.strerror}"]
    return [line for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
