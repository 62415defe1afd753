"""MONAI Label app serving the synthesis bundles (optional extra ``label``: ``pip install -e .[label]``).

``APP_DIR`` is the app folder to give ``monailabel start_server --app``; ``brainsynth label`` does that for you.
Nothing here is imported by ``common`` itself, so the bundles run without MONAI Label installed.
"""

from pathlib import Path

APP_DIR = Path(__file__).resolve().parent

__all__ = ["APP_DIR"]
