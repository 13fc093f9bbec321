"""UGPNet = restoration → synthesis → fusion (paper Fig. 2; names as in the paper).

- restoration: ``x_reg, f_reg = R(x)`` (residual nets: ``x_reg = R_mg(R'(x) + R_se(x))``)
- synthesis:   ``x_syn, f_syn = G(E(x_reg))`` in BDInvert's F/W+ space
- fusion:      ``x_hat = Conv(R_fusion(Conv(f_syn) + f_reg))`` (Eq. 1; ``+ x_reg`` with the
  ``xreg_skip`` option, see :mod:`.fusion`)

Ablations (:mod:`.options`) are sibling modules with the same interfaces: R without R_se/R_mg
(``restoration_head: none``), the fusion of images (``fusion_input: images``, called with the same
keywords ``f_syn, f_reg, x_reg, x_syn`` as every fusion), one map2style per latent.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


class UGPNet(nn.Module):
    def __init__(self, restoration: nn.Module, synthesis: nn.Module, fusion: nn.Module,
                 channels_last: bool = True):
        super().__init__()
        self.channels_last = channels_last
        self.restoration = restoration
        self.synthesis = synthesis
        self.fusion = fusion

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x [N,3,h,w] in [0,1] → {'x_hat', 'x_reg', 'x_syn'} each [N,3,H,W] in [0,1].

        Runs channels-last inside when ``channels_last`` (the input is converted once here; every
        submodule keeps the format; the outputs are returned contiguous)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x_reg, f_reg = self.restoration(x)
        x_syn, f_syn = self.synthesis(x_reg)
        assert f_syn.shape[-2:] == f_reg.shape[-2:], (
            f"f_syn {tuple(f_syn.shape)} and f_reg {tuple(f_reg.shape)} must share their spatial "
            f"size: the restoration output resolution must equal the StyleGAN2 size")
        x_hat = self.fusion(f_syn=f_syn, f_reg=f_reg, x_reg=x_reg, x_syn=x_syn)
        return {"x_hat": x_hat.contiguous(), "x_reg": x_reg.contiguous(), "x_syn": x_syn}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)["x_hat"]


def parameter_breakdown(model: UGPNet) -> dict[str, int]:
    def n(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    out = {"restoration": n(model.restoration)}
    r = model.restoration
    for name in ("backbone", "structure_encoder", "merging_net"):
        if getattr(r, name, None) is not None:
            out[f"restoration.{name}"] = n(getattr(r, name))
    out["synthesis"] = n(model.synthesis)
    s = model.synthesis
    enc = getattr(s, "encoder", None)
    if enc is not None:
        out["synthesis.encoder"] = n(enc)
        for name in ("f_encoder", "map2style"):
            if getattr(enc, name, None) is not None:
                out[f"synthesis.encoder.{name}"] = n(getattr(enc, name))
    out["synthesis.generator"] = n(s.generator)
    out["fusion"] = n(model.fusion)
    return out
