"""Validation on the val split: PSNR/SSIM (scikit-image) and LPIPS, as the metric module computes them.

Settings come from params.yaml ``validation`` (LPIPS net, the PSNR cap that keeps an identical
image from making the mean infinite)."""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

from ..io import to_uint8
from ..metrics import LPIPSMetric, psnr, ssim

_LPIPS: dict = {}


def _lpips(device, net: str) -> LPIPSMetric:
    key = (str(device), net)
    if key not in _LPIPS:
        _LPIPS[key] = LPIPSMetric(net=net, device=str(device))
    return _LPIPS[key]


@torch.no_grad()
def validate(predict: Callable[[torch.Tensor], Mapping[str, torch.Tensor] | torch.Tensor],
             loader, device, max_images: int = 100, lpips_net: str = "alex",
             psnr_cap_db: float = 100.0, lpips: bool = True,
             on_image: Callable[[int, Mapping, object], None] | None = None) -> dict:
    """Mean metrics of ``predict(lq)`` over the val loader (batch size 1).

    ``predict`` returns an image tensor, or a dict of named image tensors (e.g. x_reg, x_syn, x_hat
    for UGPNet); the first entry is reported unprefixed, the others as ``<name>/<metric>``.
    Per-image PSNR is capped at ``psnr_cap_db`` before averaging. ``lpips=False`` leaves LPIPS
    out (``validation.lpips: when_selected`` for a stage that does not select on it: the LPIPS
    network's imports (torchvision, ~3 s) are most of a small job's validation cost).
    ``on_image(index, batch, prediction)`` is called for every validated image, in the val
    split's order (the run's image grid keeps the first few, :mod:`.visuals`).
    """
    sums: dict[str, list[float]] = {}
    lp = _lpips(device, lpips_net) if lpips else None
    n = 0
    for batch in loader:
        if n >= max_images:
            break
        out = predict(batch["lq"].to(device))
        outs = out if isinstance(out, Mapping) else {"": out}
        if on_image is not None:
            on_image(n, batch, out)
        gt = to_uint8(batch["gt"][0])
        for i, (name, img) in enumerate(outs.items()):
            pred = to_uint8(img[0])
            prefix = "" if i == 0 else f"{name}/"
            values = [("psnr", psnr(gt, pred)), ("ssim", ssim(gt, pred))]
            if lp is not None:
                values.append(("lpips", lp(gt, pred)))
            for metric, value in values:
                sums.setdefault(prefix + metric, []).append(float(value))
        n += 1
    return {k: float(np.mean(np.minimum(v, psnr_cap_db) if k.endswith("psnr") else v))
            for k, v in sums.items()}
