"""Kind ``input``: the degraded input itself as a Table 1 row (family ``reference``).

Trains nothing (no stages, no checkpoint). Its "restoration" is the input as the method receives
it: the degraded image for denoising and deblurring, and for SR the low-resolution image
upsampled back with the degradation's own bicubic kernel (``sr_input: bicubic_up``), so a reader
sees what every method must beat.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError
from .contract import MethodKind
from .registry import register_kind

SCHEMA = Path(__file__).with_name("schemas") / "reference.yaml"


class _Identity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register_kind("input")
class InputKind(MethodKind):
    family = "reference"
    outputs = ("x_hat",)
    schema = SCHEMA

    def stages(self, mcfg, task):
        return ()

    def input_mode(self, mcfg, task):
        if task == "sr" and mcfg.get("sr_input") != "bicubic_up":
            raise ConfigError("the input reference row needs sr_input: bicubic_up (the LR image "
                              "upsampled back to the output size)")
        return super().input_mode(mcfg, task)

    def build(self, cfg, method, task):
        return _Identity()

    def load(self, cfg, method, task, checkpoint, device, extra=None):
        if checkpoint is not None or extra:
            raise ConfigError(f"method '{method}' (the degraded input) takes no checkpoint")
        return _Identity().to(device).eval()

    def parameter_breakdown(self, model):
        return {"input": 0}
