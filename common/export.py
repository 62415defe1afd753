"""Example inputs from a bundle's ``network_data_format`` and export of its network with ``torch.export``.

``python -m monai.bundle ckpt_export`` writes TorchScript, which no network of these bundles compiles to:
MONAI's ``DiffusionModelUNet`` fails ``torch.jit.script`` in its ``SpatialAttentionBlock`` (``x.reshape(*shape[:2],
-1)``: TorchScript cannot infer the list size; DiffuseMorph's score network has that block in its middle even without
attention levels), cDPM's ``SliceDiffusionUNet`` wraps that U-Net and also shares the slice positions with its
attention blocks through a mutable ``SliceLayout`` set in a ``try``/``finally``, as does the ``FactorisedDiffusionUNet``
of Medical Diffusion and of DiffuseMorph's field DDPM (TorchScript has no ``try``), and the VQ-GAN's
``RestartingEMAQuantizer`` calls a ``torch.no_grad``-decorated method that TorchScript cannot resolve. Besides,
``ckpt_export --use_trace`` feeds a single random tensor, while most networks take several inputs (image, timesteps,
slice positions). ``torch.export`` traces the Python code as it runs, so it handles all of them: the exported
program (``.pt2``) carries the bundle's metadata and configs as extra files, and its batch dimension is dynamic.

Several networks: ``network_data_format`` describes the bundle's main network (config id ``network_def``); each
further network has its own top-level ``<name>_data_format`` entry, the MONAI schema's convention for several
networks (e.g. ``autoencoder_data_format`` for Medical Diffusion's VQ-GAN ``autoencoder_def``,
``registration_data_format`` for DiffuseMorph's ``network_def`` of ``train_registration.json``); pass it as
``data_format`` to :func:`export_network`. Outputs are listed in the order the network returns them. Weights are named
as in the MONAI model zoo (:func:`weights_file`): ``models/model.pt`` for the main network, ``models/model_<name>.pt``
for the network of ``<name>_data_format`` (``model_autoencoder.pt``, ``model_registration.pt``).

Tensor layouts: an entry of a data format may give ``"layout"``, the axes of the whole tensor in order,
e.g. ``"B K C X Y"`` for cDPM's slice sets, ``"B"`` for one timestep per sample or ``""`` for a 0-d tensor (a loss).
``B`` is the batch, ``C`` has ``num_channels`` entries and every other axis takes the next size of
``spatial_shape``. Without ``"layout"`` the MONAI convention ``(B, C, *spatial_shape)`` applies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.utils import get_equivalent_dtype
from torch import nn

from common.bundle_runner import bundle_dir


def tensor_layout(spec: Mapping[str, Any]) -> list[str]:
    """Axis names of a ``network_data_format`` tensor entry, e.g. ``["B", "C", "X", "Y", "Z"]`` (``[]``: 0-d)."""
    layout = spec.get("layout")
    if layout is None:
        return ["B", "C"] + [f"S{i}" for i in range(len(spec["spatial_shape"]))]
    axes = layout.split()
    spatial_axes = [axis for axis in axes if axis not in ("B", "C")]
    batch_ok = axes.count("B") == 1 or not axes  # "" is a 0-d tensor
    if not batch_ok or axes.count("C") > 1 or len(spatial_axes) != len(spec["spatial_shape"]):
        raise ValueError(
            f"layout {layout!r} does not match spatial_shape {spec['spatial_shape']} (one B, at most one C, or none)"
        )
    return axes


def tensor_shape(spec: Mapping[str, Any], batch_size: int = 1, max_spatial_size: int | None = None) -> tuple[int, ...]:
    """Full shape of a ``network_data_format`` tensor entry for ``batch_size`` samples.

    Args:
        spec: the entry, e.g. ``{"num_channels": 3, "spatial_shape": [128, 128, 128], ...}``.
        batch_size: size of the ``B`` axis.
        max_spatial_size: shrink every spatial size to at most this (tests and quick exports).
    """
    spatial = [int(size) for size in spec["spatial_shape"]]
    if max_spatial_size is not None:
        spatial = [min(size, max_spatial_size) for size in spatial]
    sizes = iter(spatial)
    named = {"B": batch_size, "C": int(spec["num_channels"])}
    return tuple(named[axis] if axis in named else next(sizes) for axis in tensor_layout(spec))


def example_input(
    spec: Mapping[str, Any], batch_size: int = 1, max_spatial_size: int | None = None, seed: int = 0
) -> torch.Tensor:
    """A random tensor with the shape, dtype and value range that a ``network_data_format`` entry declares.

    Integer tensors are uniform over ``value_range`` (inclusive); float tensors are uniform over it, or standard
    normal where it is empty (e.g. noisy images ``x_t``).
    """
    shape = tensor_shape(spec, batch_size, max_spatial_size)
    dtype = get_equivalent_dtype(spec["dtype"], torch.Tensor)
    generator = torch.Generator().manual_seed(seed)
    value_range = spec.get("value_range") or []
    if not dtype.is_floating_point:
        if len(value_range) != 2:
            raise ValueError(f"integer input {spec} needs a value_range [low, high]")
        return torch.randint(int(value_range[0]), int(value_range[1]) + 1, shape, generator=generator, dtype=dtype)
    if len(value_range) == 2:
        low, high = value_range
        return (torch.rand(shape, generator=generator) * (high - low) + low).to(dtype)
    return torch.randn(shape, generator=generator).to(dtype)


def example_inputs(
    data_format: Mapping[str, Any], batch_size: int = 1, max_spatial_size: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """The network's positional inputs, in the order of ``data_format["inputs"]`` (the order of ``forward``)."""
    return tuple(
        example_input(spec, batch_size, max_spatial_size, seed + i)
        for i, spec in enumerate(data_format["inputs"].values())
    )


def weights_file(bundle: str | Path, data_format: str = "network_data_format") -> Path:
    """The weights of the network that a metadata entry describes, named as in the MONAI model zoo.

    ``<bundle>/models/model.pt`` for ``network_data_format``, ``<bundle>/models/model_<name>.pt`` for
    ``<name>_data_format`` (e.g. ``model_autoencoder.pt`` for ``autoencoder_data_format``).
    """
    folder = bundle_dir(str(bundle))
    if data_format == "network_data_format":
        return folder / "models" / "model.pt"
    if not data_format.endswith("_data_format") or data_format == "_data_format":
        raise ValueError(f"{data_format!r}: a metadata entry is network_data_format or <name>_data_format")
    return folder / "models" / f"model_{data_format.removesuffix('_data_format')}.pt"


def load_network(
    bundle: str | Path,
    configs: Sequence[str] = ("inference.json",),
    ckpt_file: str | Path | None = None,
    net_id: str = "network_def",
    **overrides: Any,
) -> tuple[nn.Module, ConfigParser]:
    """The bundle's network ``net_id`` in eval mode on the CPU, with ``ckpt_file`` weights if given.

    Returns the network and the parser (configs merged in order, metadata under ``_meta_``).
    """
    folder = bundle_dir(str(bundle))
    parser = ConfigParser()
    parser.read_config([str(folder / "configs" / name) for name in configs])
    parser.read_meta(str(folder / "configs" / "metadata.json"))
    parser.update({"bundle_root": str(folder), **overrides})
    network = parser.get_parsed_content(net_id).eval()
    if ckpt_file is not None:
        state = torch.load(ckpt_file, map_location="cpu", weights_only=True)
        try:
            network.load_state_dict(state)
        except RuntimeError as error:
            raise RuntimeError(f"{ckpt_file}: weights do not fit {net_id} of {configs} ({error})") from error
    return network, parser


def export_network(
    bundle: str | Path,
    output: str | Path,
    configs: Sequence[str] = ("inference.json",),
    ckpt_file: str | Path | None = None,
    max_spatial_size: int | None = None,
    net_id: str = "network_def",
    data_format: str = "network_data_format",
    **overrides: Any,
) -> Path:
    """Export a bundle's network with ``torch.export`` to ``output`` (``.pt2``), batch dimension dynamic.

    The example inputs come from the ``data_format`` entry of the bundle's ``metadata.json``; the exported
    program's other shapes are those. Load it with ``torch.export.load(output).module()``.

    Args:
        bundle: bundle name or folder.
        output: file to write (never one of the bundle's inputs).
        configs: config files of the bundle merged in order; they define ``net_id``.
        ckpt_file: weights (a state dict); default :func:`weights_file` of ``data_format``, e.g.
            ``<bundle>/models/model.pt``, or ``<bundle>/models/model_autoencoder.pt`` for ``autoencoder_data_format``.
        max_spatial_size: shrink the metadata's spatial sizes to at most this, e.g. for tiny-config networks.
        net_id: config id of the network.
        data_format: metadata entry describing that network: ``network_data_format`` or ``<name>_data_format``.
        overrides: config values, e.g. ``spatial_size=[32, 32, 16]``.
    """
    folder = bundle_dir(str(bundle))
    ckpt_file = Path(ckpt_file) if ckpt_file is not None else weights_file(folder, data_format)
    if not ckpt_file.is_file():
        raise FileNotFoundError(f"{ckpt_file}: no weights to export; train the bundle or pass ckpt_file")
    output = Path(output)
    if output.resolve() == ckpt_file.resolve():
        raise ValueError(f"{output}: the export would overwrite its input weights")
    network, parser = load_network(folder, configs, ckpt_file, net_id, **overrides)
    # a batch of 2, not 1: export would specialise a dynamic dimension whose example size is 1
    inputs = example_inputs(parser["_meta_"][data_format], batch_size=2, max_spatial_size=max_spatial_size)
    dynamic = tuple({0: torch.export.Dim.AUTO} for _ in inputs)
    with torch.no_grad():
        program = torch.export.export(network, inputs, dynamic_shapes=dynamic)
    config = {key: value for key, value in parser.get().items() if key != "_meta_"}
    extra_files = {"metadata.json": json.dumps(parser["_meta_"]), "config.json": json.dumps(config)}
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, output, extra_files=extra_files)
    return output
