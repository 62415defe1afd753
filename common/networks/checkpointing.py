"""Activation checkpointing of MONAI's diffusion U-Net, a training option that trades compute for memory."""

from __future__ import annotations

from functools import partial

from monai.networks.nets import DiffusionModelUNet
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    CheckpointImpl,
    apply_activation_checkpointing,
    checkpoint_wrapper,
)


def checkpoint_blocks(network: DiffusionModelUNet, enabled: bool = True) -> DiffusionModelUNet:
    """Recompute the activations of every down, middle and up block of ``network`` in the backward pass.

    Only each block's inputs are kept during the forward pass; its activations are computed again when its
    gradients are needed, which costs about one more forward pass per iteration and saves most of the activation
    memory of a 3D U-Net. Each block is wrapped in place by PyTorch's ``checkpoint_wrapper`` (non-reentrant
    ``torch.utils.checkpoint``), whose state-dict hooks keep the parameter names, so checkpoints load with or
    without the option. Inference (``torch.no_grad``) is unaffected.

    Args:
        network: a ``monai.networks.nets.DiffusionModelUNet``.
        enabled: ``False`` returns ``network`` unchanged (the config option off).

    Returns:
        ``network``, modified in place.

    Raises:
        TypeError: if ``enabled`` is not a boolean (``"false"`` from a command line would read as True).
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a boolean, got {enabled!r}")
    if enabled:
        blocks = {*network.down_blocks, network.middle_block, *network.up_blocks}
        apply_activation_checkpointing(
            network,
            checkpoint_wrapper_fn=partial(checkpoint_wrapper, checkpoint_impl=CheckpointImpl.NO_REENTRANT),
            check_fn=lambda module: module in blocks,
        )
    return network
