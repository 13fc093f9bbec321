"""Kind ``ugpnet``: restoration → synthesis → fusion, trained in three stages (paper Sec. 3.4).

Stages and what they read (the official recipe is params.yaml's default, with sources there):

- ``restoration`` (data; ``pretrained`` file or ``init_from`` method): the regression network's
  own loss; the backbone starts from an official file (``pretrained.<task>``) or from the final
  model of the regression method of the same backbone and task (``init_from.<task>``); R_se and
  R_mg from scratch. A *direct* backbone (RRDBNet) is used as trained and frozen
  (``direct_backbone: frozen``): the stage exports it without training. Selected by
  ``stages.restoration.select`` (official: val PSNR).
- ``synthesis`` (data, restoration, the prior ``priors.<methods.<m>.prior>``): see :mod:`.ugpnet_stages`; official: the final
  iteration.
- ``fusion`` (data, restoration, synthesis): exports the whole UGPNet; official: best val PSNR.

Outputs: ``x_hat`` (the result), ``x_reg`` and ``x_syn``.

Ablations (method-level keys, :data:`ugpnet.models.options.ABLATIONS`, docs/ABLATIONS.md): each is
in the identity of exactly the stages that build what it changes (left out at its official value):
``restoration_head`` every stage (every stage builds R), ``map2style`` synthesis and fusion,
``fusion_input`` fusion.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from ..checkpoints import load_state_dict_strict, read_checkpoint
from ..errors import CheckpointError, ConfigError
from ..models.build import (backbone_name, build_discriminator, build_restoration,
                            build_synthesis, build_ugpnet, check_restoration_head, fusion_input,
                            map2style_design, prior_architecture, restoration_head,
                            restoration_skip)
from ..training.augment import CycleAugment
from ..training.prior import load_prior
from .common import (bench_precision, data_options, final_weights, loaders, new_run,
                     random_batch)
from .contract import Data, MethodKind, MethodModel, Previous, Prior, Stage, StageContext, UserFile
from .registry import register_kind
from .ugpnet_stages import FusionStage, SynthesisStage

SCHEMA = Path(__file__).with_name("schemas") / "ugpnet.yaml"
DEFAULT_SELECT = {"restoration": "psnr", "synthesis": "final", "fusion": "psnr"}


def _backbone_kind(mcfg: Mapping, task: str) -> str | None:
    from ..models.backbones import BACKBONES

    try:
        return getattr(BACKBONES.get(backbone_name(mcfg, task)), "kind", None)
    except (KeyError, ConfigError):
        return None


def frozen_direct(mcfg: Mapping, task: str) -> bool:
    """A direct backbone used as trained (official): the restoration stage does not train."""
    return (mcfg.get("direct_backbone", "frozen") == "frozen"
            and _backbone_kind(mcfg, task) == "direct")


@register_kind("ugpnet")
class UGPNetKind(MethodKind):
    family = "generative"
    outputs = ("x_hat", "x_reg", "x_syn")
    schema = SCHEMA

    def stages(self, mcfg, task):
        sel = {name: (mcfg.get("stages", {}).get(name, {}) or {}).get("select", default)
               for name, default in DEFAULT_SELECT.items()}
        if mcfg and frozen_direct(mcfg, task):
            sel["restoration"] = "final"  # nothing is trained: the initial weights are the model
        return (
            Stage("restoration", reads=(Data(), UserFile("pretrained"), MethodModel("init_from")),
                  select=sel["restoration"]),
            Stage("synthesis", reads=(Data(), Previous("restoration"),
                                      Prior(mcfg.get("prior", "stylegan2"))),
                  select=sel["synthesis"]),
            Stage("fusion", reads=(Data(), Previous("restoration"), Previous("synthesis")),
                  select=sel["fusion"]),
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
            out["frozen_direct"] = frozen_direct(m, task)
        else:  # the named prior's architecture (its file is an input: its content is hashed)
            out["stylegan2"] = prior_architecture(cfg, m.get("prior", "stylegan2"))
            out["randomize_noise"] = m.get("randomize_noise", False)
        if stage == "fusion":
            out["fusion"] = m["fusion"]
        # every stage builds R (x_reg's skip included), not only the one that trains it (last:
        # the restoration stage's slice keeps the order it had, which Snakemake's params compare)
        out["restoration_skip"] = restoration_skip(m, task)
        # ablations, appended (the plan leaves each out at its official value: existing slices
        # and identities are unchanged), each in the stages that build what it changes
        out["restoration_head"] = restoration_head(m)
        if stage != "restoration":
            out["map2style"] = map2style_design(m)
        if stage == "fusion":
            out["fusion_input"] = fusion_input(m)
        return out

    def check_stage(self, cfg, method, task, stage, inputs):
        m = cfg["methods"][method]
        if _backbone_kind(m, task) == "residual":  # every stage builds R
            check_restoration_head(m, method, task)
        if stage != "restoration":
            return
        skip = restoration_skip(m, task)
        if skip != "none" and _backbone_kind(m, task) == "direct":
            raise ConfigError(
                f"methods.{method}.restoration_skip.{task} = '{skip}', but the backbone "
                f"'{backbone_name(m, task)}' is direct (its output is x_reg and has no skip): "
                f"set restoration_skip.{task}: none")
        other = (m.get("init_from") or {}).get(task)
        if other is not None and "pretrained" not in inputs:
            theirs = cfg["methods"][other].get("backbone")
            theirs = backbone_name(cfg["methods"][other], task) if theirs is not None else None
            ours = backbone_name(m, task)
            if theirs != ours:
                raise ConfigError(
                    f"methods.{method}.init_from.{task} = '{other}', whose backbone is "
                    f"'{theirs}', but {method} uses '{ours}' for {task}: initialise from a "
                    f"regression method of the same backbone, or set init_from.{task}: null")
        if frozen_direct(m, task) and "pretrained" not in inputs and "init_from" not in inputs:
            raise ConfigError(
                f"{method}/{task}: the direct backbone '{backbone_name(m, task)}' is used as "
                f"trained and frozen (methods.{method}.direct_backbone: frozen, as official), but "
                f"nothing initialises it: set methods.{method}.init_from.{task} (e.g. rrdbnet) or "
                f"methods.{method}.pretrained.{task} (e.g. rrdbnet_x8_bicubic.pth), or "
                f"direct_backbone: train")

    def build(self, cfg, method, task):
        return build_ugpnet(cfg, method, task)

    # ------------------------------------------------------------------ training
    def train_stage(self, ctx: StageContext) -> dict:
        from ..training.loop import run_stage
        from ..training.regression import SupervisedStage

        cfg, m, task, name = ctx.cfg, ctx.mcfg, ctx.task, ctx.stage.name
        st = m["stages"][name]
        train = dict(st["train"])
        frozen = name == "restoration" and frozen_direct(m, task)
        if frozen:
            train["total_iters"] = 0  # exported as initialised (validated once, at iteration 0)
        bname = backbone_name(m, task)
        train_loader, val_loader = loaders(ctx, train, self.input_mode(m, task))
        options = {"backbone": bname, "backbone_kwargs": cfg["backbones"][bname][task],
                   "restoration_skip": restoration_skip(m, task), "stage_options": st,
                   "inputs": {k: str(v) for k, v in ctx.inputs.items()}, **data_options(ctx),
                   "restoration_head": restoration_head(m)}
        if name != "restoration":
            options["prior_name"] = m.get("prior", "stylegan2")
            options["prior_architecture"] = prior_architecture(cfg, options["prior_name"])
            options["map2style"] = map2style_design(m)
        if name == "fusion":
            options["fusion"] = m["fusion"]
            options["fusion_input"] = fusion_input(m)
        restoration = build_restoration(cfg, ctx.method, task)
        common = dict(train=train, train_loader=train_loader, val_loader=val_loader,
                      device=ctx.device, progress=ctx.progress)
        if name == "restoration":
            options["initialised_from"] = self._init_backbone(ctx, restoration.backbone)
            options["frozen_direct_backbone"] = frozen
            restoration.to(ctx.device)
            loss = _restoration_loss(st, bname)
            options["loss"] = loss
            s = SupervisedStage(restoration, lambda x: restoration(x)[0],
                                restoration.parameters(), loss, train, ctx.device,
                                precision=ctx.precision)
            s.output_label = "x_reg"  # what it predicts (the run's validation grid)
            return run_stage(s, run=new_run(ctx, options), **common)
        _load(restoration, ctx.input("restoration"), "restoration")
        if name == "synthesis":
            sg = options["prior_architecture"]
            synthesis = build_synthesis(sg, m.get("randomize_noise", False), options["map2style"])
            D = build_discriminator(sg)
            prior, prior_d = ctx.input("prior"), ctx.optional_input("prior_d")
            options["prior"] = {"g": str(prior), "d": str(prior_d or prior),
                                "format": load_prior(prior, synthesis.generator, D, prior_d)}
            options["d_input_range"] = list(st.get("d_input_range", (-1, 1)))
            augment = _augment(st, cfg)
            s = SynthesisStage(restoration.to(ctx.device), synthesis.to(ctx.device),
                               D.to(ctx.device), st, train, ctx.device, augment=augment,
                               precision=ctx.precision)
            return run_stage(s, run=new_run(ctx, options), **common)
        if name == "fusion":
            model = build_ugpnet(cfg, ctx.method, task)
            model.restoration.load_state_dict(restoration.state_dict())
            _load(model.synthesis, ctx.input("synthesis"), "synthesis")
            model.to(ctx.device)
            s = FusionStage(model, st, train, ctx.device, precision=ctx.precision)
            options["contextual_features"] = s.feature_source()
            return run_stage(s, run=new_run(ctx, options), **common,
                             extra_summary={"contextual_features": s.feature_source()})
        raise ConfigError(f"unknown UGPNet stage '{name}'")

    def benchmark_stage(self, cfg, method, task, stage, device):
        """One stage's training step at the configured size, random weights, batch 1. Offline,
        a missing VGG19 is replaced by the LPIPS VGG16 for the contextual loss (noted)."""
        from ..errors import CheckpointError
        from ..training.regression import SupervisedStage

        m = cfg["methods"][method]
        st = m["stages"][stage]
        train = st["train"]
        batch = random_batch(cfg, self, m, task, 1, device)
        precision = bench_precision(cfg, device)
        model = build_ugpnet(cfg, method, task).to(device)
        if stage == "restoration":
            if frozen_direct(m, task):
                return None
            r = model.restoration.train()
            loss = _restoration_loss(st, backbone_name(m, task))
            return SupervisedStage(r, lambda x: r(x)[0], r.parameters(), loss, train,
                                   device, precision=precision), batch, None
        if stage == "synthesis":
            D = build_discriminator(prior_architecture(cfg, m.get("prior", "stylegan2"))).to(device)
            model.synthesis.train()
            return SynthesisStage(model.restoration, model.synthesis, D, st, train, device,
                                  augment=_augment(st, cfg), precision=precision), batch, None
        note = None
        try:
            s = FusionStage(model, st, train, device, precision=precision)
        except CheckpointError:
            st = {**st, "contextual": {**st.get("contextual", {}), "features": "vgg16_relu3_3"}}
            s = FusionStage(model, st, train, device, precision=precision)
            note = "VGG19 weights absent: contextual loss timed with VGG16 relu3_3"
        model.fusion.train()
        return s, batch, note

    @staticmethod
    def _init_backbone(ctx: StageContext, backbone: torch.nn.Module) -> str | None:
        """Backbone weights: an official/user file, else another method's final model."""
        from ..models.keymaps import load_pretrained_backbone

        user = ctx.optional_input("pretrained")
        if user is not None:
            if user.is_dir() or (user.suffix == ".pt" and "summary" in read_checkpoint(
                    user, "pretrained backbone")):
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
    def load(self, cfg, method, task, checkpoint, device, extra=None):
        """A finished run's ``model.pt``, or an official release folder (``resmodule``,
        ``synmodule``, ``fusmodule`` files; ``extra`` names any of them elsewhere, e.g. the SR
        release's ``resmodule=…/ckpt/pretrained/rrdbnet_x8_bicubic.pth``)."""
        from ..models.keymaps import load_official_ugpnet

        model = build_ugpnet(cfg, method, task)
        path = Path(checkpoint)
        if path.is_file() and path.suffix != ".pt":
            raise CheckpointError(f"'{path}' is not a ugpnet-bench checkpoint (model.pt) nor an "
                                  f"official UGPNet release folder")
        if extra or (path.is_dir() and not (path / "model.pt").exists()):
            unknown = sorted(set(extra or {}) - {"resmodule", "synmodule", "fusmodule"})
            if unknown:
                raise ConfigError(f"--weights {unknown}: an official UGPNet release has the files "
                                  f"resmodule, synmodule and fusmodule")
            load_official_ugpnet(path, model, files=extra)
            return model.to(device).eval()
        load_state_dict_strict(model, final_weights(path), str(path))
        return model.to(device).eval()

    def predict(self, model, x):
        return model.forward_all(x)

    def parameter_breakdown(self, model):
        from ..models.ugpnet import parameter_breakdown

        return parameter_breakdown(model)


def _augment(stage_cfg, cfg) -> CycleAugment | None:
    """The synthesis stage's augmentation (official cycle), None when the stage has none."""
    aug = stage_cfg.get("augment")
    if not aug:
        return None
    return CycleAugment(aug["cycle"], aug["scale"], aug["translate_px_at_512"], aug["rotate_deg"],
                        resolution=cfg["data"]["resolution"], seed=cfg["data"]["seed"])


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
