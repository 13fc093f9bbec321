"""UGPNet's synthesis and fusion training recipes (paper Sec. 3.4); restoration is supervised.

- synthesis: restoration frozen; E from scratch, G and D from the StyleGAN2 prior, fine-tuned
  with L1 + LPIPS(VGG) + non-saturating adversarial; D with the logistic loss and lazy R1
  (the shared :class:`~ugpnet.training.AdversarialStage`).
- fusion: restoration and synthesis frozen; fusion with L1 + LPIPS + contextual(x_hat, x_syn).
"""
from __future__ import annotations

from typing import Mapping

import torch

from ..training import (AdversarialStage, Critic, SupervisedStage, make_optimizer, make_scheduler,
                        requires_grad, weighted_loss)


def lpips_kwargs(st: Mapping, device) -> dict:
    return {"net": st.get("lpips_net", "vgg"), "resize_px": st.get("lpips_resize_px"),
            "device": str(device)}


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    requires_grad(module, False)
    return module.eval()


class SynthesisStage(AdversarialStage):
    """E and G against the frozen restoration (:class:`~ugpnet.training.AdversarialStage`, D step
    first): E at ``train.lr`` and G at ``g_lr`` in one optimiser, D (``d_lr``, lazy R1 with
    ``r1_gamma``/``r1_every``) sees images in ``st["d_input_range"]``; ``augment`` (official: one
    geometric transform per iteration, the same for x_reg and gt) is a
    :class:`~ugpnet.training.augment.CycleAugment` or None."""

    output_label = "x_syn"  # what it predicts (the run's validation grid, training.visuals)

    def __init__(self, restoration, synthesis, discriminator, st: Mapping, train: Mapping,
                 device, augment=None, precision: str = "fp32"):
        self.restoration = frozen(restoration)
        self.augment = augment
        self.synthesis, self.D, self.st = synthesis, discriminator, st
        opt_g = make_optimizer([{"params": list(synthesis.encoder.parameters()), "lr": train["lr"]},
                                {"params": list(synthesis.generator.parameters()),
                                 "lr": st["g_lr"]}], train)
        critic = Critic(discriminator, make_optimizer(discriminator.parameters(), train,
                                                      lr=st["d_lr"]),
                        input_range=tuple(st.get("d_input_range", (-1, 1))),
                        r1_gamma=st["r1_gamma"], r1_every=st["r1_every"])
        weights = {k: v for k, v in st["loss"].items() if k != "adversarial"}
        super().__init__(synthesis, opt_g, [critic], scheduler=make_scheduler(opt_g, train),
                         recon=weighted_loss(weights, device, {"lpips": lpips_kwargs(st, device)}),
                         adv_weight=float(st["loss"].get("adversarial", 0.0)),
                         frozen=[self.restoration], precision=precision, device=device,
                         predict=lambda g, lq: g(self.restoration(lq)[0])[0], name="synthesis")

    def inputs(self, batch, it):
        """(x_reg, gt) of iteration ``it``: the frozen restoration's output and the ground truth,
        augmented together when the stage augments."""
        with torch.no_grad(), self.autocast():
            x_reg = self.restoration(batch["lq"])[0].float()
            gt = batch["gt"]
            if self.augment is not None:
                x_reg, gt = self.augment(it, x_reg, gt)
        return x_reg, gt

    def forward(self, batch, it):
        """(x_syn, gt): E and G on the restoration's output."""
        x_reg, gt = self.inputs(batch, it)
        return self.synthesis(x_reg)[0], gt


class FusionStage(SupervisedStage):
    def __init__(self, model, st: Mapping, train: Mapping, device, precision: str = "fp32"):
        frozen(model.restoration)
        frozen(model.synthesis)
        self.ugpnet = model
        ctx = dict(st.get("contextual", {}))
        super().__init__(model.fusion, None, model.fusion.parameters(), st["loss"], train, device,
                         loss_kwargs={"lpips": lpips_kwargs(st, device), "contextual": ctx},
                         precision=precision)
        self.modules = [model.fusion]

    def step(self, batch, it):
        with torch.no_grad(), self.autocast():
            x_reg, f_reg = self.ugpnet.restoration(batch["lq"])
            x_syn, f_syn = self.ugpnet.synthesis(x_reg)
        with self.autocast():
            x_hat = self.ugpnet.fusion(f_syn=f_syn, f_reg=f_reg, x_reg=x_reg, x_syn=x_syn).float()
            loss, parts = self.loss_fn(x_hat, batch["gt"], contextual=x_syn.float())
        return self.optimise(loss, parts)

    @torch.no_grad()
    def predict(self, lq):
        return self.ugpnet.forward_all(lq)

    def weights(self):
        return self.ugpnet.state_dict()

    def feature_source(self) -> str | None:
        for name, _, loss in self.loss_fn.terms:
            if name == "contextual":
                return getattr(loss, "feature_source", None)
        return None
