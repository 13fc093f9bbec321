"""VQFR v1 (Gu et al., ECCV 2022) as a method kind ``vqfr``: the authors' two stages.

- ``codebook`` (shared: trained once for every task, on clean faces): the VQGAN
  (:class:`.arch.VQGAN`, ``train_vqgan_v1_B16_800K.yml``). Not declared when
  ``methods.<m>.codebook`` names the official ``VQ_Codebook_FFHQ512-39165968.pth``.
- ``restoration`` (per task): :class:`.arch.VQFR` initialised from the codebook network
  (encoder, quantiser, texture decoder; ``lq_features`` and ``main_decoder`` fresh, the authors'
  ``strict_load_sr: false``), codebook frozen, a frozen teacher VQGAN
  (``train_vqfr_v1_B16_200K.yml``).

The result is the main (fidelity) branch. Images are [-1, 1] inside (converted here); the SR
input is the bicubic-upsampled image (``sr_input: bicubic_up``). Recipe numbers and their
sources: params.yaml ``methods.vqfr`` and ``RECIPE.md``; stage objects: :mod:`.stages`.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ugpnet.checkpoints import load_state_dict_strict
from ugpnet.errors import ConfigError
from ugpnet.methods import (Data, MethodKind, Previous, Stage, StageContext, UserFile,
                            data_options, final_weights, loaders, new_run, register_kind)
from ugpnet.training import run_stage

from .arch import VQFR, VQGAN, PatchDiscriminator, SWAGANDiscriminator

CODEBOOK_HINT = ("the official VQGAN codebook VQ_Codebook_FFHQ512-39165968.pth from "
                 "https://github.com/TencentARC/VQFR/releases/tag/v1.0.0 (stage 1 of VQFR; "
                 "null: the DAG trains it, the authors' stage 1)")

_TRAIN = {"$ref": "#/$defs/train"}
_W = {"type": "number", "minimum": 0}
_IT = {"type": "integer"}
_STAGE1 = {
    "type": "object", "additionalProperties": False,
    "required": ["loss", "gan_start_iter", "bypass_iters", "kmeans", "d_lr", "r1_gamma",
                 "r1_every", "train"],
    "properties": {
        "loss": {"type": "object", "additionalProperties": False,
                 "required": ["l1", "lpips", "codebook", "gan"],
                 "properties": {k: _W for k in ("l1", "lpips", "codebook", "gan")}},
        "gan_start_iter": _IT, "bypass_iters": _IT,
        "kmeans": {"type": "object", "additionalProperties": False,
                   "required": ["every", "until", "reservoir"],
                   "properties": {"every": {"$ref": "#/$defs/posint"}, "until": _IT,
                                  "reservoir": {"$ref": "#/$defs/posint"},
                                  "max_iters": {"$ref": "#/$defs/posint"}}},
        "d_lr": {"type": "number", "exclusiveMinimum": 0},
        "r1_gamma": _W, "r1_every": {"$ref": "#/$defs/posint"},
        "select": {"enum": ["psnr", "ssim", "lpips", "final"]},
        "train": _TRAIN}}
_STAGE2 = {
    "type": "object", "additionalProperties": False,
    "required": ["loss", "gan_start_iter", "main_gan_start_iter", "d_lr", "r1_gamma", "r1_every",
                 "train"],
    "properties": {
        "loss": {"type": "object", "additionalProperties": False,
                 "required": ["l1", "l1_main", "latent", "lpips", "style", "gan_global",
                              "gan_local"],
                 "properties": {k: _W for k in ("l1", "l1_main", "latent", "lpips", "style",
                                                "gan_global", "gan_local")}},
        "gan_start_iter": _IT, "main_gan_start_iter": _IT,
        "d_lr": {"type": "number", "exclusiveMinimum": 0},
        "r1_gamma": _W, "r1_every": {"$ref": "#/$defs/posint"},
        "select": {"enum": ["psnr", "ssim", "lpips", "final"]},
        "train": _TRAIN}}
SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["kind", "tasks", "sr_input", "codebook", "arch", "discriminators", "stages"],
    "properties": {
        "kind": True,
        "tasks": {"items": {"enum": ["denoise", "deblur", "sr"]}},
        "sr_input": {"enum": ["bicubic_up"]},
        "codebook": {"type": ["string", "null"]},
        "main_start": {"enum": ["random", "input"]},
        "arch": {"type": "object", "additionalProperties": False,
                 "required": ["base_channels", "patch_size", "scale_rates", "channel_multipliers",
                              "encoder_blocks", "decoder_blocks", "num_code", "code_dim",
                              "cond_channels", "deformable_groups"],
                 "properties": {
                     "base_channels": {"$ref": "#/$defs/posint"},
                     "patch_size": {"$ref": "#/$defs/posint"},
                     "scale_rates": {"type": "array", "items": {"enum": [1, 2]}},
                     "channel_multipliers": {"type": "array", "items": {"$ref": "#/$defs/posint"}},
                     **{k: {"$ref": "#/$defs/posint"} for k in (
                         "encoder_blocks", "decoder_blocks", "num_code", "code_dim",
                         "cond_channels", "deformable_groups")}}},
        "discriminators": {
            "type": "object", "additionalProperties": False, "required": ["global", "local"],
            "properties": {
                "global": {"type": "object", "additionalProperties": False,
                           "required": ["channel_multiplier", "channel_max"],
                           "properties": {"channel_multiplier": {"$ref": "#/$defs/posint"},
                                          "channel_max": {"$ref": "#/$defs/posint"},
                                          "blur_kernel": {"type": "array"}}},
                "local": {"type": "object", "additionalProperties": False,
                          "required": ["ndf", "n_layers"],
                          "properties": {"ndf": {"$ref": "#/$defs/posint"},
                                         "n_layers": {"$ref": "#/$defs/posint"}}}}},
        "stages": {"type": "object", "additionalProperties": False,
                   "required": ["codebook", "restoration"],
                   "properties": {"codebook": _STAGE1, "restoration": _STAGE2}},
    },
}


class VQFRRestorer(nn.Module):
    """The evaluated model: ``x [N,3,H,W] in [0,1] -> main branch in [0,1]`` (clamped as the
    authors' ``tensor2img(min_max=(-1, 1))``)."""

    def __init__(self, net: VQFR):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((self.net(x * 2.0 - 1.0)["main_dec"] + 1.0) * 0.5).clamp(0.0, 1.0)


def build_vqfr(arch: Mapping) -> VQFR:
    return VQFR(**dict(arch))


def build_vqgan(arch: Mapping) -> VQGAN:
    a = {k: v for k, v in arch.items() if k not in ("cond_channels", "deformable_groups")}
    return VQGAN(**a)


def build_global_d(cfg: Mapping, dcfg: Mapping) -> SWAGANDiscriminator:
    return SWAGANDiscriminator(cfg["data"]["resolution"], dcfg["channel_multiplier"],
                               tuple(dcfg.get("blur_kernel", (1, 3, 3, 1))), dcfg["channel_max"])


def _codebook_file(mcfg: Mapping) -> str | None:
    return mcfg.get("codebook")


@register_kind("vqfr")
class VQFRKind(MethodKind):
    family = "generative"
    outputs = ("x_hat",)
    schema = SCHEMA

    def stages(self, mcfg, task):
        st = mcfg["stages"]
        restore = Stage("restoration",
                        reads=(Data(), UserFile("codebook", name="official_codebook",
                                                optional=True, per_task=False,
                                                hint=CODEBOOK_HINT))
                        if _codebook_file(mcfg) else (Data(), Previous("codebook")),
                        select=st["restoration"].get("select", "final"))
        if _codebook_file(mcfg):
            return (restore,)
        return (Stage("codebook", reads=(Data(),), select=st["codebook"].get("select", "final"),
                      shared=True), restore)

    def stage_config(self, cfg, method, task, stage):
        m = cfg["methods"][method]
        out = {"arch": m["arch"], "stage": m["stages"][stage], "data": cfg["data"]}
        if stage == "codebook":
            out["d_global"] = m["discriminators"]["global"]
        else:  # the official codebook file itself is an input (its content is hashed)
            out.update(discriminators=m["discriminators"], codebook=m.get("codebook"),
                       main_start=m.get("main_start", "random"))
        if task is not None:
            out["degradations"] = cfg["degradations"][task]
        if task == "sr":
            out["sr_input"] = m.get("sr_input")
        return out

    def check_stage(self, cfg, method, task, stage, inputs):
        m = cfg["methods"][method]
        st = m["stages"][stage]
        bs = st["train"]["batch_size"]
        if bs > 4 and bs % 4:
            raise ConfigError(f"methods.{method}.stages.{stage}.train.batch_size = {bs}: the "
                              f"SWAGAN discriminator's minibatch-stddev group is 4, so a batch "
                              f"above 4 must be a multiple of 4 (the authors': 16)")

    def deviations(self, cfg, method, task):
        m = cfg["methods"][method]
        out = ["k-means: torch (sklearn absent)"] if not _codebook_file(m) else []
        if _codebook_file(m):
            out.append("official VQ codebook (stage 1 not trained)")
        if m.get("main_start", "random") == "input":
            out.append("main branch starts at the input (main_start: input)")
        return out

    # -- models
    def build(self, cfg, method, task):
        return VQFRRestorer(build_vqfr(cfg["methods"][method]["arch"]))

    def load(self, cfg, method, task, checkpoint, device, extra=None):
        if extra:
            raise ConfigError(f"--weights {sorted(extra)}: a VQFR model is one file (use the "
                              f"kind's keymap to convert VQFR_v1-33a1fac5.pth)")
        model = self.build(cfg, method, task)
        load_state_dict_strict(model.net, final_weights(checkpoint), str(checkpoint))
        return model.to(device).eval()

    def predict(self, model, x):
        return {"x_hat": model(x)}

    def parameter_breakdown(self, model):
        net = model.net if isinstance(model, VQFRRestorer) else model
        return {name: sum(p.numel() for p in getattr(net, name).parameters())
                for name in ("encoder", "quantizer", "texture_decoder", "main_decoder",
                             "lq_features")}

    # -- training
    def _stage_object(self, cfg, mcfg, stage, device, precision, codebook: Mapping | None):
        from .keymap import load_codebook_into_vqfr
        from .losses import LPIPSStyle
        from .stages import CodebookStage, RestorationStage

        st = mcfg["stages"][stage]
        dcfg = mcfg["discriminators"]
        if stage == "codebook":
            net = build_vqgan(mcfg["arch"]).to(device)
            d = build_global_d(cfg, dcfg["global"]).to(device)
            perceptual = LPIPSStyle(1.0, 0.0, device)
            return CodebookStage(net, d, perceptual, st, device, precision), net
        net = build_vqfr(mcfg["arch"])
        teacher = build_vqgan(mcfg["arch"])
        if mcfg.get("main_start", "random") == "input":
            net.start_main_at_input()
        if codebook is not None:
            load_codebook_into_vqfr(net, codebook, "codebook stage")
            load_state_dict_strict(teacher, codebook, "codebook stage (teacher)")
        critics = {"global": build_global_d(cfg, dcfg["global"]),
                   "local": PatchDiscriminator(dcfg["local"]["ndf"], dcfg["local"]["n_layers"]),
                   "main_global": build_global_d(cfg, dcfg["global"]),
                   "main_local": PatchDiscriminator(dcfg["local"]["ndf"],
                                                    dcfg["local"]["n_layers"])}
        critics = {k: v.to(device) for k, v in critics.items()}
        perceptual = LPIPSStyle(1.0, st["loss"]["style"], device)
        return RestorationStage(net.to(device), teacher.to(device), critics, perceptual, st,
                                device, precision), net

    def train_stage(self, ctx: StageContext) -> dict:
        from .keymap import read_official

        mcfg, name = ctx.mcfg, ctx.stage.name
        st = mcfg["stages"][name]
        codebook, source = None, None
        if name == "restoration":
            user = ctx.optional_input("official_codebook")
            if user is not None:
                codebook, source = read_official(user, "official VQ codebook"), str(user)
            else:
                codebook, source = final_weights(ctx.input("codebook")), "codebook stage"
        stage, _ = self._stage_object(ctx.cfg, mcfg, name, ctx.device, ctx.precision, codebook)
        mode = "lq" if ctx.task is None else self.input_mode(mcfg, ctx.task)
        train_loader, val_loader = loaders(ctx, st["train"], mode)
        total = int(st["train"]["total_iters"])
        gan = {"gan": "gan_start_iter"} if name == "codebook" else \
            {"gan_global": "gan_start_iter", "gan_local": "gan_start_iter"}
        terms = sorted(k for k, v in st["loss"].items()
                       if v > 0 and (k not in gan or total > st[gan[k]]))
        if name == "restoration" and total > st["main_gan_start_iter"]:
            terms += ["gan_global_main", "gan_local_main"]
        options = {"arch": mcfg["arch"], "stage_options": st, "loss_terms_run": terms,
                   "lpips": stage.perceptual.feature_source, "value_range": "[-1, 1] inside",
                   "kmeans": "torch k-means (k-means++ seeding, Lloyd), sklearn absent",
                   "inputs": {k: str(v) for k, v in ctx.inputs.items()}, **data_options(ctx)}
        if name == "restoration":
            options["init"] = (f"{source}: encoder, quantizer, texture_decoder (strict); "
                               f"lq_features, main_decoder initialised (authors' strict=False)")
            options["main_start"] = mcfg.get("main_start", "random")
            options["teacher"] = f"frozen VQGAN from {source}; latent target = its codes"
        run = new_run(ctx, options)
        return run_stage(stage, run=run, train=st["train"], train_loader=train_loader,
                         val_loader=val_loader, device=ctx.device, progress=ctx.progress)

    def benchmark_stage(self, cfg, method, task, stage, device):
        """One training step of ``stage`` at the configured size, random weights, batch 1,
        every loss term on (GAN start thresholds ignored: the step of the long run)."""
        from ugpnet.methods import bench_precision, random_batch

        m = dict(cfg["methods"][method])
        st = dict(m["stages"][stage])
        for k in ("gan_start_iter", "main_gan_start_iter"):
            if k in st:
                st[k] = -1
        if stage == "codebook":
            st["bypass_iters"] = 0
        m["stages"] = {**m["stages"], stage: st}
        obj, _ = self._stage_object(cfg, m, stage, device, bench_precision(cfg, device), None)
        batch = random_batch(cfg, self, m, task, 1, device)
        if stage == "codebook":
            batch = {"lq": batch["gt"], "gt": batch["gt"]}
        return obj, batch, "random weights; every loss term of the stage on"
