"""Kind ``ugpnet``: restoration → synthesis → fusion, trained in three stages (paper Sec. 3.4).

Stages and what they read:

- ``restoration`` (data; optional ``pretrained`` file or ``init_from`` method): the regression
  network's own loss; the backbone starts from an official file (``pretrained.<task>``) or from
  the final model of another method (``init_from.<task>``, e.g. the NAFNet baseline), else from
  scratch; structure_encoder/merging_net from scratch. Selected on val PSNR.
- ``synthesis`` (data, restoration, prior): see :mod:`.ugpnet_stages`. Selected on val LPIPS.
- ``fusion`` (data, restoration, synthesis): exports the whole UGPNet. Selected on val LPIPS.

Outputs: ``x_hat`` (the result), ``x_reg`` and ``x_syn``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError
from ..models.build import (backbone_name, build_discriminator, build_restoration,
                            build_synthesis, build_ugpnet)
from ..checkpoints import load_state_dict_strict, read_checkpoint
from ..training.prior import load_prior
from .common import data_options, final_weights, loaders, new_run
from .contract import Data, MethodKind, MethodModel, Previous, Prior, Stage, StageContext, UserFile
from .registry import register_kind
from .ugpnet_stages import FusionStage, SynthesisStage

SCHEMA = Path(__file__).with_name("schemas") / "ugpnet.yaml"


@register_kind("ugpnet")
class UGPNetKind(MethodKind):
    family = "generative"
    outputs = ("x_hat", "x_reg", "x_syn")
    schema = SCHEMA

    def stages(self, mcfg, task):
        return (
            Stage("restoration", reads=(Data(), UserFile("pretrained"), MethodModel("init_from")),
                  select="psnr"),
            Stage("synthesis", reads=(Data(), Previous("restoration"), Prior()), select="lpips"),
            Stage("fusion", reads=(Data(), Previous("restoration"), Previous("synthesis")),
                  select="lpips"),
        )

    def stage_config(self, cfg, method, task, stage):
        m = cfg["methods"][method]
        bname = backbone_name(m, task)
        out = {"backbone": bname, "backbone_kwargs": cfg["backbones"].get(bname, {}).get(task),
               "sr_input": m.get("sr_input"), "stage": m["stages"][stage],
               "degradations": cfg["degradations"][task], "data": cfg["data"]}
        if stage == "restoration":
            out["pretrained"] = (m.get("pretrained") or {}).get(task)
            out["init_from"] = (m.get("init_from") or {}).get(task)
        else:
            out["stylegan2"] = {k: v for k, v in cfg["stylegan2"].items() if k != "pretrain"}
            out["randomize_noise"] = m.get("randomize_noise", False)
        if stage == "fusion":
            out["fusion"] = m["fusion"]
        return out

    def build(self, cfg, method, task):
        return build_ugpnet(cfg, method, task)

    # ------------------------------------------------------------------ training
    def train_stage(self, ctx: StageContext) -> dict:
        from ..training.loop import run_stage
        from ..training.regression import SupervisedStage

        cfg, m, task, name = ctx.cfg, ctx.mcfg, ctx.task, ctx.stage.name
        st = m["stages"][name]
        train = st["train"]
        bname = backbone_name(m, task)
        train_loader, val_loader = loaders(ctx, train, self.input_mode(m, task))
        options = {"backbone": bname, "backbone_kwargs": cfg["backbones"][bname][task],
                   "stage_options": st, "stylegan2": cfg["stylegan2"], "fusion": m["fusion"],
                   **data_options(ctx)}
        restoration = build_restoration(cfg, ctx.method, task)
        common = dict(train=train, train_loader=train_loader, val_loader=val_loader,
                      device=ctx.device, progress=ctx.progress)
        if name == "restoration":
            options["initialised_from"] = self._init_backbone(ctx, restoration.backbone)
            restoration.to(ctx.device)
            loss = _restoration_loss(st, bname)
            options["loss"] = loss
            s = SupervisedStage(restoration, lambda x: restoration(x)[0],
                                restoration.parameters(), loss, train, ctx.device)
            return run_stage(s, run=new_run(ctx, options), **common)
        _load(restoration, ctx.input("restoration"), "restoration")
        if name == "synthesis":
            sg = cfg["stylegan2"]
            synthesis = build_synthesis(sg, m.get("randomize_noise", False))
            D = build_discriminator(sg)
            prior = ctx.input("prior")
            options["prior"] = {"path": str(prior),
                                "format": load_prior(prior, synthesis.generator, D)}
            s = SynthesisStage(restoration.to(ctx.device), synthesis.to(ctx.device),
                               D.to(ctx.device), st, train, ctx.device)
            return run_stage(s, run=new_run(ctx, options), **common)
        if name == "fusion":
            model = build_ugpnet(cfg, ctx.method, task)
            model.restoration.load_state_dict(restoration.state_dict())
            _load(model.synthesis, ctx.input("synthesis"), "synthesis")
            model.to(ctx.device)
            s = FusionStage(model, st, train, ctx.device)
            options["contextual_features"] = s.feature_source()
            return run_stage(s, run=new_run(ctx, options), **common,
                             extra_summary={"contextual_features": s.feature_source()})
        raise ConfigError(f"unknown UGPNet stage '{name}'")

    @staticmethod
    def _init_backbone(ctx: StageContext, backbone: torch.nn.Module) -> str | None:
        """Backbone weights: an official/user file, else another method's final model."""
        from ..models.keymaps import load_pretrained_backbone

        user = ctx.optional_input("pretrained")
        if user is not None:
            if user.is_dir() or (user.suffix == ".pt" and "summary" in read_checkpoint(user, "pretrained backbone")):
                _load(backbone, user, "pretrained backbone")
            else:
                load_pretrained_backbone(user, backbone)
            return str(user)
        other = ctx.optional_input("init_from")
        if other is not None:
            _load(backbone, other, "backbone from " + str(ctx.mcfg["init_from"][ctx.task]))
            return str(other)
        return None

    # ------------------------------------------------------------------ inference
    def load(self, cfg, method, task, checkpoint, device):
        from ..models.keymaps import load_official_ugpnet

        model = build_ugpnet(cfg, method, task)
        path = Path(checkpoint)
        if path.is_file() and path.suffix != ".pt":
            raise CheckpointError(f"'{path}' is not a ugpnet-bench checkpoint (model.pt) nor an "
                                  f"official UGPNet release folder")
        if path.is_dir() and not (path / "model.pt").exists():
            load_official_ugpnet(path, model)  # official resmodule/synmodule/fusmodule folder
            return model.to(device).eval()
        load_state_dict_strict(model, final_weights(path), str(path))
        return model.to(device).eval()

    def predict(self, model, x):
        return model.forward_all(x)

    def parameter_breakdown(self, model):
        from ..models.ugpnet import parameter_breakdown

        return parameter_breakdown(model)


def _restoration_loss(stage_cfg, backbone: str) -> dict:
    losses = stage_cfg["loss"]
    if backbone in losses:
        return losses[backbone]
    if "default" in losses:
        return losses["default"]
    raise ConfigError(f"methods.<ugpnet>.stages.restoration.loss has no entry for backbone "
                      f"'{backbone}' (nor 'default')")


def _load(module: torch.nn.Module, path: Path, what: str) -> None:
    load_state_dict_strict(module, final_weights(path), f"{path} ({what})")
