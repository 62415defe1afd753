"""Datalists for training and inference: load MONAI decathlon-style JSON, list mask folders, repeat samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monai.data import load_decathlon_datalist

from common.data.nifti import nifti_files


def load_datalist(datalist: str | Path, keys: str | list[str] = "training") -> list[dict[str, Any]]:
    """Items of one or several sections of a datalist JSON, with paths resolved against the JSON's folder.

    Raises:
        FileNotFoundError: naming the datalist, or the first listed file that does not exist.
    """
    datalist = Path(datalist)
    if not datalist.is_file():
        raise FileNotFoundError(f"{datalist}: datalist not found; build one with `brainsynth prepare`")
    items = []
    for key in [keys] if isinstance(keys, str) else keys:
        items += load_decathlon_datalist(str(datalist), is_segmentation=True, data_list_key=key)
    for item in items:
        for value in item.values():
            for path in value if isinstance(value, list) else [value]:
                if isinstance(path, str) and path.endswith((".nii", ".nii.gz")) and not Path(path).is_file():
                    raise FileNotFoundError(f"{datalist}: listed file {path} does not exist")
    return items


def mask_items(
    source: str | Path, num_samples_per_mask: int = 1, key: str = "label", sections: str | list[str] = "validation"
) -> list[dict[str, Any]]:
    """Inference items, one per (mask, sample index): ``{key: mask path, "sample_index": k, ...}``.

    Args:
        source: a datalist JSON (the items of its ``sections``, with all their keys, e.g. the images that a
            BraTS brain label is derived from), a folder of NIfTI masks, or a single NIfTI mask.
        num_samples_per_mask: how many images to generate from each mask.
        key: item key of the mask.
        sections: datalist sections to read when ``source`` is a JSON file.
    """
    if num_samples_per_mask < 1:
        raise ValueError(f"num_samples_per_mask must be at least 1, got {num_samples_per_mask}")
    source = Path(source)
    if source.suffix == ".json":
        items = load_datalist(source, sections)
    elif source.is_dir():
        items = [{key: str(p)} for p in nifti_files(source)]
    elif source.is_file():
        items = [{key: str(source)}]
    else:
        raise FileNotFoundError(f"{source}: no such mask file, folder or datalist")
    if not items:
        raise FileNotFoundError(f"{source}: no masks found")
    return [{**item, "sample_index": k} for item in items for k in range(num_samples_per_mask)]


def sample_items(num_volumes: int) -> list[dict[str, int]]:
    """Inference items of an unconditional model: ``{"sample_index": k}`` for k in 0..num_volumes-1."""
    if num_volumes < 1:
        raise ValueError(f"num_volumes must be at least 1, got {num_volumes}")
    return [{"sample_index": k} for k in range(num_volumes)]
