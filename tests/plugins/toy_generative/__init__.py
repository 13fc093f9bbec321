"""A toy *generative* method in its own package, plugged in without touching any other file.

Used by tests/test_plugin_generative.py exactly as the README's "add a method" describes: one
package that registers its kind (architecture, losses, stages, schema) using only the public
``ugpnet`` API, and one params entry (here in a ``--configfile`` override).

The method: ``x_hat = x + tail([head(x), P(w(x))])`` where ``P`` is a *frozen* StyleGAN2 prior
read from a file (the ``Prior()`` input) and ``w(x)`` a small encoder into its W space.

Stages: ``warmup`` (L1; reads the data and the prior) and ``adversarial`` (L1 + non-saturating
GAN loss with its own discriminator; reads the data, the prior and the warmup model).
"""
from __future__ import annotations

import torch
from torch import nn

from ugpnet.checkpoints import load_state_dict_strict
from ugpnet.losses import d_logistic_loss, g_nonsaturating_loss
from ugpnet.methods import (Data, MethodKind, Previous, Prior, Stage, StageContext, data_options,
                            final_weights, loaders, new_run, register_kind)
from ugpnet.models.build import build_generator
from ugpnet.training import (SupervisedStage, load_prior, lr_of, make_optimizer, make_scheduler,
                             requires_grad, run_stage, weighted_loss)

_TRAIN = {"$ref": "#/$defs/train"}
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "tasks", "width", "stages"],
    "properties": {
        "kind": True,
        "tasks": {"items": {"enum": ["denoise", "deblur"]}},
        "width": {"$ref": "#/$defs/posint"},
        "stages": {
            "type": "object",
            "additionalProperties": False,
            "required": ["warmup", "adversarial"],
            "properties": {
                "warmup": {"type": "object", "additionalProperties": False,
                           "required": ["train"], "properties": {"train": _TRAIN}},
                "adversarial": {"type": "object", "additionalProperties": False,
                                "required": ["train", "d_lr", "adv_weight"],
                                "properties": {"train": _TRAIN,
                                               "d_lr": {"type": "number", "exclusiveMinimum": 0},
                                               "adv_weight": {"type": "number", "minimum": 0}}},
            },
        },
    },
}


class ToyPriorNet(nn.Module):
    """``x [N,3,S,S] -> x + tail(cat(relu(head(x)), P(w(x))))``; ``prior`` stays frozen."""

    def __init__(self, prior: nn.Module, width: int):
        super().__init__()
        self.prior = prior.requires_grad_(False)
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.to_w = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(width, prior.style_dim))
        self.tail = nn.Conv2d(width + 3, 3, 3, padding=1)

    def train(self, mode: bool = True):
        super().train(mode)
        self.prior.eval()  # frozen prior: never in training mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = (self.prior(w=self.to_w(x), noise="const") + 1.0) * 0.5
        f = torch.relu(self.head(x))
        return x + self.tail(torch.cat([f, p.contiguous()], dim=1))


class ToyDiscriminator(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0)


class AdversarialStage:
    """L1 + adv_weight * non-saturating G loss; D with the logistic loss, its own optimiser."""

    def __init__(self, net: ToyPriorNet, D: ToyDiscriminator, st, device):
        self.net, self.D = net, D
        self.modules = [net, D]
        train = st["train"]
        self.opt_g = make_optimizer([p for p in net.parameters() if p.requires_grad], train)
        self.opt_d = make_optimizer(D.parameters(), train, lr=st["d_lr"])
        self.sched = make_scheduler(self.opt_g, train)
        self.adv_weight = float(st["adv_weight"])
        self.l1 = weighted_loss({"l1": 1.0}, device)

    def step(self, batch, it):
        fake = self.net(batch["lq"])
        d_loss = d_logistic_loss(self.D(batch["gt"]), self.D(fake.detach()))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        requires_grad(self.D, False)
        l1, parts = self.l1(fake, batch["gt"])
        adv = g_nonsaturating_loss(self.D(fake))
        loss = l1 + self.adv_weight * adv
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.sched.step()
        requires_grad(self.D, True)
        return {"loss": float(loss.detach()), **parts, "adversarial": float(adv.detach()),
                "d_loss": float(d_loss.detach()), "lr": lr_of(self.opt_g)}

    @torch.no_grad()
    def predict(self, lq):
        return self.net(lq)

    def weights(self):
        return self.net.state_dict()

    def state(self):
        return {"net": self.net.state_dict(), "d": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "sched": self.sched.state_dict()}

    def load_state(self, s):
        self.net.load_state_dict(s["net"])
        self.D.load_state_dict(s["d"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        self.sched.load_state_dict(s["sched"])


@register_kind("toy_generative")
class ToyGenerativeKind(MethodKind):
    family = "generative"
    outputs = ("x_hat",)
    schema = SCHEMA

    def stages(self, mcfg, task):
        return (Stage("warmup", reads=(Data(), Prior()), select="psnr"),
                Stage("adversarial", reads=(Data(), Prior(), Previous("warmup")),
                      select="final"))

    def stage_config(self, cfg, method, task, stage):
        m = cfg["methods"][method]
        return {"width": m["width"], "stage": m["stages"][stage],
                "prior_architecture": {k: v for k, v in cfg["stylegan2"].items()
                                       if k not in ("pretrain", "checkpoint")},
                "degradations": cfg["degradations"][task], "data": cfg["data"]}

    def build(self, cfg, method, task):
        return ToyPriorNet(build_generator(cfg["stylegan2"]), cfg["methods"][method]["width"])

    def train_stage(self, ctx: StageContext) -> dict:
        net = self.build(ctx.cfg, ctx.method, ctx.task)
        load_prior(ctx.input("prior"), net.prior)
        if ctx.stage.name == "adversarial":
            load_state_dict_strict(net, final_weights(ctx.input("warmup")), "warmup model")
        net.to(ctx.device)
        st = ctx.mcfg["stages"][ctx.stage.name]
        train_loader, val_loader = loaders(ctx, st["train"], self.input_mode(ctx.mcfg, ctx.task))
        run = new_run(ctx, {"width": ctx.mcfg["width"], "stage_options": st,
                            "inputs": {k: str(v) for k, v in ctx.inputs.items()},
                            **data_options(ctx)})
        if ctx.stage.name == "warmup":
            stage = SupervisedStage(net, net, net.parameters(), {"l1": 1.0}, st["train"],
                                    ctx.device)
        else:
            stage = AdversarialStage(net, ToyDiscriminator(ctx.mcfg["width"]).to(ctx.device), st,
                                     ctx.device)
        return run_stage(stage, run=run, train=st["train"], train_loader=train_loader,
                         val_loader=val_loader, device=ctx.device, progress=ctx.progress)

    def load(self, cfg, method, task, checkpoint, device):
        net = self.build(cfg, method, task)
        load_state_dict_strict(net, final_weights(checkpoint), str(checkpoint))
        return net.to(device).eval()
