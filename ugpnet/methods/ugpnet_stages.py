"""UGPNet's synthesis and fusion training recipes (paper Sec. 3.4); restoration is supervised.

- synthesis: restoration frozen; E from scratch, G and D from the StyleGAN2 prior, fine-tuned
  with L1 + LPIPS(VGG) + non-saturating adversarial; D with the logistic loss and lazy R1.
- fusion: restoration and synthesis frozen; fusion with L1 + LPIPS + contextual(x_hat, x_syn).
"""
from __future__ import annotations

from typing import Mapping

import torch

from ..training.common import autocast, lr_of, make_optimizer, make_scheduler, requires_grad
from ..training.gan import d_step, g_adv_loss
from ..training.regression import SupervisedStage, weighted_loss


def lpips_kwargs(st: Mapping, device) -> dict:
    return {"net": st.get("lpips_net", "vgg"), "resize_px": st.get("lpips_resize_px"),
            "device": str(device)}


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    requires_grad(module, False)
    return module.eval()


class SynthesisStage:
    """E and G against the frozen restoration; ``augment`` (official: one geometric transform
    per iteration, the same for x_reg and gt) is a :class:`~ugpnet.training.augment.CycleAugment`
    or None; D sees images in ``st["d_input_range"]``."""

    def __init__(self, restoration, synthesis, discriminator, st: Mapping, train: Mapping,
                 device, augment=None, precision: str = "fp32"):
        self.restoration = frozen(restoration)
        # bf16: the frozen restoration, E+G and the losses under autocast; D's own step (and its
        # R1 penalty) stays fp32
        self.precision = precision
        self.autocast = lambda: autocast(precision, device)
        self.augment = augment
        self.d_range = tuple(st.get("d_input_range", (-1, 1)))
        self.synthesis, self.D = synthesis, discriminator
        self.modules = [synthesis, discriminator]
        self.st = st
        gen_params = [p for p in synthesis.generator.parameters()]
        enc_params = [p for p in synthesis.encoder.parameters()]
        self.opt_g = make_optimizer([{"params": enc_params, "lr": train["lr"]},
                                     {"params": gen_params, "lr": st["g_lr"]}], train)
        self.opt_d = make_optimizer(discriminator.parameters(), train, lr=st["d_lr"])
        self.sched = make_scheduler(self.opt_g, train)
        weights = {k: v for k, v in st["loss"].items() if k != "adversarial"}
        self.adv_weight = float(st["loss"].get("adversarial", 0.0))
        self.loss_fn = weighted_loss(weights, device, {"lpips": lpips_kwargs(st, device)})

    def inputs(self, batch, it):
        """(x_reg, gt) of iteration ``it``: the frozen restoration's output and the ground truth,
        augmented together when the stage augments."""
        with torch.no_grad(), self.autocast():
            x_reg = self.restoration(batch["lq"])[0].float()
            gt = batch["gt"]
            if self.augment is not None:
                x_reg, gt = self.augment(it, x_reg, gt)
        return x_reg, gt

    def step(self, batch, it):
        x_reg, gt = self.inputs(batch, it)
        with self.autocast():
            x_syn = self.synthesis(x_reg)[0].float()
        parts = {}
        if self.adv_weight > 0:
            parts.update(d_step(self.D, self.opt_d, gt, x_syn, it, self.st["r1_gamma"],
                                self.st["r1_every"], input_range=self.d_range))
        requires_grad(self.D, False)
        with self.autocast():
            loss, rec = self.loss_fn(x_syn, gt)
            if self.adv_weight > 0:
                adv = g_adv_loss(self.D, x_syn, input_range=self.d_range).float()
                loss = loss + self.adv_weight * adv
                rec["adversarial"] = float(adv.detach())
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.sched.step()
        requires_grad(self.D, True)
        return {"loss": float(loss.detach()), **rec, **parts, "lr": lr_of(self.opt_g)}

    @torch.no_grad()
    def predict(self, lq):
        return self.synthesis(self.restoration(lq)[0])[0]

    def weights(self):
        return self.synthesis.state_dict()

    def state(self):
        return {"synthesis": self.synthesis.state_dict(), "d": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "sched": self.sched.state_dict()}

    def load_state(self, s):
        self.synthesis.load_state_dict(s["synthesis"])
        self.D.load_state_dict(s["d"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        self.sched.load_state_dict(s["sched"])


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
            x_hat = self.ugpnet.fusion(f_syn, f_reg, x_reg).float()
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
