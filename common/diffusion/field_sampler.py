"""Generate new volumes by sampling displacement fields from a field DDPM and warping a template with them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from monai.inferers import DiffusionInferer
from monai.networks.blocks import Warp
from monai.networks.schedulers import Scheduler
from monai.utils import convert_to_tensor

from common.diffusion.sampler import SeededSampler


class TemplateWarpSampler(SeededSampler):
    """Sample fields (B, 3, X, Y, Z) from noise, rescale them to voxels and warp every template channel with them.

    Used as the ``inferer`` of a ``SupervisedEvaluator`` whose batch input only sets the batch size (e.g. the
    sample indices of ``common.data.sample_items``). The model generates fields divided by ``field_scale`` (so in
    [-1, 1]); they are multiplied back and applied to the template with MONAI's ``Warp`` (bilinear, border padding),
    the same warp as in registration, so the T1 and its tissue maps move together.

    Args:
        scheduler: DDPM/DDIM scheduler with its timesteps set (see ``common.diffusion.make_noise_scheduler``).
        template: (C, X, Y, Z) template volumes, e.g. [t1, gm, wm] from ``common.data.load_template``.
        field_scale: voxels per unit of the model's field (``fields.json``'s ``field_scale``).
        seed: seed of the sampling chain, see :class:`SeededSampler`.
        verbose: show a tqdm progress bar over the sampling steps.

    Returns (from a call):
        (B, C + 3, X, Y, Z): the warped template channels, then the field in voxels (channel order X, Y, Z).
    """

    def __init__(
        self,
        scheduler: Scheduler,
        template: torch.Tensor,
        field_scale: float,
        seed: int | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__(seed)
        if field_scale <= 0:
            raise ValueError(f"field_scale must be positive, got {field_scale}")
        self.inferer = DiffusionInferer(scheduler)
        self.template = convert_to_tensor(template, dtype=torch.float32, track_meta=False)
        if self.template.ndim != 4:
            raise ValueError(f"template must be (C, X, Y, Z), got {tuple(self.template.shape)}")
        self.field_scale = field_scale
        self.warp = Warp(mode="bilinear", padding_mode="border")
        self.verbose = verbose

    @staticmethod
    def split_output(item: Mapping[str, Any], pred_key: str = "pred", field_key: str = "field") -> dict[str, Any]:
        """Postprocessing of one decollated item: its ``pred`` (C + 3, X, Y, Z) split into the warped template
        channels (C, X, Y, Z), kept as ``pred_key``, and the field (3, X, Y, Z) in voxels, as ``field_key``.

        Use it as the evaluator's ``postprocessing`` (``{"_target_": "Lambda", "func": "$common.diffusion.
        TemplateWarpSampler.split_output"}``) before ``GeneratedVolumeWriter`` and ``GeneratedFieldWriter``.
        """
        output = torch.as_tensor(item[pred_key])
        if output.shape[0] < 4:
            raise ValueError(f"expected template channels and a field (C + 3, X, Y, Z), got {tuple(output.shape)}")
        return {**item, pred_key: item[pred_key][:-3], field_key: item[pred_key][-3:]}

    def sample(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor]) -> torch.Tensor:
        template = self.template.to(inputs.device)
        noise = torch.randn((inputs.shape[0], 3, *template.shape[1:]), device=inputs.device)
        field = self.inferer.sample(input_noise=noise, diffusion_model=network, verbose=self.verbose)
        field = field * self.field_scale
        warped = self.warp(template[None].expand(field.shape[0], -1, -1, -1, -1), field)
        return torch.cat([warped, field], dim=1)
