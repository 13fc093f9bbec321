"""A toy *generative* method in its own package, plugged in without touching any other file.

Used by tests/test_plugin_generative.py exactly as the README's "add a method" describes: one
package that registers its kind (architecture, losses, stages, schema) using only the public
``ugpnet`` API, and one params entry (here in a ``--configfile`` override).

The method: ``x_hat = x + tail([head(x), P(w(x))])`` where ``P`` is a *frozen* StyleGAN2 prior,
the named prior ``priors.<methods.<m>.prior>`` (the ``Prior(name)`` input), and ``w(x)`` a small
encoder into its W space.

Stages:

- ``clean`` (shared: trained once for every task): L1 reconstruction of clean faces;
- ``warmup`` (L1, from ``clean``; reads the task's data and the prior);
- ``adversarial`` (L1 + non-saturating GAN loss with its own discriminator, on the shared
  :class:`ugpnet.training.AdversarialStage`; reads the data, the prior and the warmup model).
"""
from __future__ import annotations

import torch
from torch import nn

from ugpnet.checkpoints import load_state_dict_strict
from ugpnet.methods import (Data, MethodKind, Previous, Prior, Stage, StageContext, data_options,
                            final_weights, loaders, new_run, prior_architecture, register_kind)
from ugpnet.models.build import build_generator
from ugpnet.training import (AdversarialStage, Critic, SupervisedStage, load_prior,
                             make_optimizer, make_scheduler, run_stage, weighted_loss)

_TRAIN = {"$ref": "#/$defs/train"}
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "tasks", "width", "prior", "stages"],
    "properties": {
        "kind": True,
        "tasks": {"items": {"enum": ["denoise", "deblur", "sr"]}},
        "sr_input": {"enum": ["bicubic_up"]},  # same-size input: the SR image upsampled back
        "width": {"$ref": "#/$defs/posint"},
        "prior": {"type": "string"},  # a key of priors:
        "stages": {
            "type": "object",
            "additionalProperties": False,
            "required": ["clean", "warmup", "adversarial"],
            "properties": {
                "clean": {"type": "object", "additionalProperties": False,
                          "required": ["train"], "properties": {"train": _TRAIN}},
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


def adversarial_stage(net: ToyPriorNet, D: ToyDiscriminator, st, device,
                      precision: str) -> AdversarialStage:
    """L1 + adv_weight * non-saturating G loss; D (logistic loss, no R1) with its own optimiser:
    the shared adversarial stage, D step first."""
    train = st["train"]
    opt_g = make_optimizer([p for p in net.parameters() if p.requires_grad], train)
    critic = Critic(D, make_optimizer(D.parameters(), train, lr=st["d_lr"]), input_range=(0, 1))
    return AdversarialStage(net, opt_g, [critic], recon=weighted_loss({"l1": 1.0}, device),
                            adv_weight=st["adv_weight"], scheduler=make_scheduler(opt_g, train),
                            name="net", precision=precision, device=device)


@register_kind("toy_generative")
class ToyGenerativeKind(MethodKind):
    family = "generative"
    outputs = ("x_hat",)
    schema = SCHEMA

    def stages(self, mcfg, task):
        prior = Prior(mcfg.get("prior", "stylegan2"))
        return (Stage("clean", reads=(Data(), prior), select="psnr", shared=True),
                Stage("warmup", reads=(Data(), prior, Previous("clean")), select="psnr"),
                Stage("adversarial", reads=(Data(), prior, Previous("warmup")),
                      select="final"))

    def stage_config(self, cfg, method, task, stage):
        m = cfg["methods"][method]
        out = {"width": m["width"], "stage": m["stages"][stage],
               "prior_architecture": prior_architecture(cfg, m["prior"]), "data": cfg["data"]}
        if task is not None:  # the shared stage ("clean") sees clean faces only
            out["degradations"] = cfg["degradations"][task]
        if task == "sr":
            out["sr_input"] = m.get("sr_input")
        return out

    def build(self, cfg, method, task):
        m = cfg["methods"][method]
        return ToyPriorNet(build_generator(prior_architecture(cfg, m["prior"])), m["width"])

    def train_stage(self, ctx: StageContext) -> dict:
        net = self.build(ctx.cfg, ctx.method, ctx.task)
        load_prior(ctx.input("prior"), net.prior)
        before = {"warmup": "clean", "adversarial": "warmup"}.get(ctx.stage.name)
        if before:
            load_state_dict_strict(net, final_weights(ctx.input(before)), f"{before} model")
        net.to(ctx.device)
        st = ctx.mcfg["stages"][ctx.stage.name]
        mode = "lq" if ctx.task is None else self.input_mode(ctx.mcfg, ctx.task)
        train_loader, val_loader = loaders(ctx, st["train"], mode)
        run = new_run(ctx, {"width": ctx.mcfg["width"], "stage_options": st,
                            "inputs": {k: str(v) for k, v in ctx.inputs.items()},
                            **data_options(ctx)})
        if ctx.stage.name == "adversarial":
            stage = adversarial_stage(net, ToyDiscriminator(ctx.mcfg["width"]).to(ctx.device), st,
                                      ctx.device, ctx.precision)
        else:
            stage = SupervisedStage(net, net, net.parameters(), {"l1": 1.0}, st["train"],
                                    ctx.device, precision=ctx.precision)
        return run_stage(stage, run=run, train=st["train"], train_loader=train_loader,
                         val_loader=val_loader, device=ctx.device, progress=ctx.progress)

    def load(self, cfg, method, task, checkpoint, device, extra=None):
        net = self.build(cfg, method, task)
        load_state_dict_strict(net, final_weights(checkpoint), str(checkpoint))
        return net.to(device).eval()
