"""Kind ``esrgan``: ESRGAN (Wang et al., ECCVW 2018) x8, Table 1(c)'s GAN row, as BasicSR trains it.

One stage, ``gan`` (BasicSR ``options/train/ESRGAN/train_ESRGAN_x4.yml`` @ 8d56e3a; numbers and
sources in params.yaml ``defaults.methods.esrgan`` and RECIPE.md): the generator is the project's
RRDBNet x8 (:mod:`ugpnet.models.backbones.rrdbnet`, constructor ``backbones.rrdbnet.sr``, UGPNet's
``RRDBNetX8``) initialised from the PSNR-oriented model, as the official recipe does
(``path.pretrain_network_g``): the final model of the regression method named at
``methods.<m>.init_from.sr`` (the DAG's ``rrdbnet``), or a file at ``methods.<m>.pretrained.sr``
(e.g. UGPNet's ``rrdbnet_x8_bicubic.pth``). With neither the plan is refused: ESRGAN from
scratch is not the authors' recipe. The discriminator is BasicSR's VGGStyleDiscriminator
(:mod:`.arch`), trained on GT crops of its input size; the loss and the step are :mod:`.train`.
The EMA generator is validated and exported. Official files load through :mod:`.keymap`.
"""
from __future__ import annotations

from pathlib import Path

from ugpnet.checkpoints import load_state_dict_strict, read_checkpoint
from ugpnet.errors import CheckpointError, ConfigError
from ugpnet.methods import (Data, MethodKind, MethodModel, Stage, StageContext, UserFile,
                            data_options, final_weights, loaders, new_run, register_kind)
from ugpnet.models.build import build_backbone
from ugpnet.training import count_params, run_stage

from .arch import OFFICIAL_INPUT_SIZES, VGGStyleDiscriminator

BACKBONE = "rrdbnet"  # backbones.rrdbnet.sr: the generator's constructor arguments
PRETRAINED_HINT = ("an x8 RRDBNet to start from (UGPNet's rrdbnet_x8_bicubic.pth, params_ema, "
                   "or a finished rrdbnet run's model.pt)")
_NUM = {"type": "number", "minimum": 0}
_POS = {"type": "number", "exclusiveMinimum": 0}
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "tasks", "sr_input", "init_from", "pretrained", "discriminator", "loss",
                 "d", "ema_decay", "select", "train"],
    "properties": {
        "kind": True,
        "tasks": {"items": {"enum": ["sr"]}},
        "sr_input": {"enum": ["lr"]},
        "init_from": {"type": "object", "additionalProperties": False,
                      "properties": {"sr": {"type": ["string", "null"]}}},
        "pretrained": {"type": "object", "additionalProperties": False,
                       "properties": {"sr": {"$ref": "#/$defs/nullable_path"}}},
        "discriminator": {"type": "object", "additionalProperties": False,
                          "required": ["num_feat", "input_size"],
                          "properties": {"num_feat": {"$ref": "#/$defs/posint"},
                                         "input_size": {"$ref": "#/$defs/posint"}}},
        "loss": {"type": "object", "additionalProperties": False,
                 "required": ["l1", "perceptual", "layers", "vgg", "gan"],
                 "properties": {"l1": _NUM, "perceptual": _NUM, "gan": _NUM,
                                "layers": {"type": "object", "minProperties": 1,
                                           "additionalProperties": _NUM},
                                "vgg": {"enum": ["vgg19", "vgg16"]}}},
        "d": {"type": "object", "additionalProperties": False, "required": ["lr", "betas"],
              "properties": {"lr": _POS,
                             "betas": {"type": "array", "minItems": 2, "maxItems": 2,
                                       "items": {"type": "number", "minimum": 0, "maximum": 1}}}},
        "ema_decay": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "select": {"enum": ["final", "psnr", "ssim", "lpips"]},
        "train": {"$ref": "#/$defs/train"},
    },
}


def terms(m) -> dict:
    """The loss terms a run of entry ``m`` uses (weights; 0: off) and the perceptual VGG."""
    loss = m["loss"]
    return {"l1": loss["l1"], "perceptual": loss["perceptual"],
            "perceptual_vgg": loss["vgg"] if loss["perceptual"] > 0 else None,
            "perceptual_layers": dict(loss["layers"]) if loss["perceptual"] > 0 else None,
            "gan_relativistic": loss["gan"]}


def deviations_of(m) -> list[str]:
    t, out = terms(m), []
    if t["perceptual_vgg"] == "vgg16":
        out.append("perceptual: VGG16 for VGG19")
    elif t["perceptual_vgg"] is None:
        out.append("no perceptual loss")
    if t["gan_relativistic"] == 0:
        out.append("no GAN loss")
    # train_ESRGAN_x4.yml datasets.train.use_rot: true; our data pipeline flips only
    out.append("no rot90 augmentation (hflip only)")
    return out


def d_input_size(cfg, m) -> int:
    """What the D sees: the GT training crop (``train.crop_size``), else the whole image."""
    crop = m["train"].get("crop_size")
    return int(crop if crop is not None else cfg["data"]["resolution"])


def build_d(m) -> VGGStyleDiscriminator:
    d = m["discriminator"]
    return VGGStyleDiscriminator(3, d["num_feat"], d["input_size"])


@register_kind("esrgan")
class ESRGANKind(MethodKind):
    family = "generative"
    outputs = ("x_hat",)
    schema = SCHEMA

    def stages(self, mcfg, task):
        return (Stage("gan", reads=(Data(), UserFile("pretrained", hint=PRETRAINED_HINT),
                                    MethodModel("init_from")),
                      select=mcfg.get("select", "final")),)

    def stage_config(self, cfg, method, task, stage):
        m = cfg["methods"][method]
        return {"method": m, "backbone": cfg["backbones"][BACKBONE][task],
                "degradations": cfg["degradations"][task], "data": cfg["data"]}

    def check_stage(self, cfg, method, task, stage, inputs):
        m = cfg["methods"][method]
        other = (m.get("init_from") or {}).get(task)
        if "pretrained" not in inputs and "init_from" not in inputs:
            raise ConfigError(
                f"{method}/{task}: ESRGAN starts from the PSNR-oriented RRDBNet "
                f"(train_ESRGAN_x4.yml path.pretrain_network_g), but nothing initialises it: set "
                f"methods.{method}.init_from.{task}: rrdbnet (a regression method of backbone "
                f"rrdbnet, trained first by the DAG) or methods.{method}.pretrained.{task}: "
                f"{PRETRAINED_HINT}. Training ESRGAN from scratch is not the authors' recipe.")
        if other is not None and "pretrained" not in inputs:
            theirs = cfg["methods"].get(other, {})
            if theirs.get("kind") != "regression" or theirs.get("backbone") != BACKBONE:
                raise ConfigError(
                    f"methods.{method}.init_from.{task} = '{other}' is not a regression method "
                    f"of backbone {BACKBONE} (kind {theirs.get('kind')!r}, backbone "
                    f"{theirs.get('backbone')!r}): ESRGAN's generator is backbones.{BACKBONE}."
                    f"{task}; name such a method (e.g. rrdbnet) or set init_from.{task}: null "
                    f"and pretrained.{task}: <file>")
        size, want = m["discriminator"]["input_size"], d_input_size(cfg, m)
        if size != want:
            raise ConfigError(
                f"methods.{method}.discriminator.input_size = {size}, but the D sees GT crops of "
                f"{want} px (methods.{method}.train.crop_size, else data.resolution): the "
                f"VGG-style D has a fixed linear head, so set them equal (the official D: "
                f"{' or '.join(map(str, OFFICIAL_INPUT_SIZES))})")
        if size < 32 or size & (size - 1):
            raise ConfigError(f"methods.{method}.discriminator.input_size = {size}: a power of "
                              f"two >= 32 (the official D: 128 or 256)")
        t = terms(m)
        if t["perceptual_vgg"] == "vgg19":
            from ugpnet.pretrained import torch_hub_checkpoints_dir
            from ugpnet.pretrained.vgg import VGG19_FILE, VGG19_URL, vgg19_checkpoint

            if vgg19_checkpoint() is None:
                raise ConfigError(
                    f"methods.{method}.loss.vgg = vgg19 (ESRGAN's perceptual loss, VGG19 conv5_4) "
                    f"but {torch_hub_checkpoints_dir() / VGG19_FILE} does not exist: download "
                    f"{VGG19_URL} there, or set methods.{method}.loss.vgg: vgg16 (our offline "
                    f"weights, a recorded deviation) or methods.{method}.loss.perceptual: 0")

    def deviations(self, cfg, method, task):
        return deviations_of(cfg["methods"][method])

    def build(self, cfg, method, task):
        return build_backbone(cfg, BACKBONE, task)

    # ------------------------------------------------------------------ training
    def _init_generator(self, ctx: StageContext, net) -> str:
        from .keymap import load_esrgan_generator

        user = ctx.optional_input("pretrained")
        if user is not None:
            if user.is_dir() or (user.suffix == ".pt" and "weights" in read_checkpoint(
                    user, "pretrained generator")):
                load_state_dict_strict(net, final_weights(user), str(user))
            else:
                load_esrgan_generator(user, net)
            return f"pretrained: {user}"
        other = ctx.input("init_from")
        load_state_dict_strict(net, final_weights(other), f"{other} (init_from)")
        return f"init_from {ctx.mcfg['init_from'][ctx.task]}: {other}"

    def _perceptual(self, m):
        from .train import PerceptualLoss

        loss = m["loss"]
        return PerceptualLoss(loss["layers"], loss["vgg"]) if loss["perceptual"] > 0 else None

    def train_stage(self, ctx: StageContext) -> dict:
        from .train import make_esrgan_stage

        m, task, dev = ctx.mcfg, ctx.task, ctx.device
        net = self.build(ctx.cfg, ctx.method, task)
        init = self._init_generator(ctx, net)  # before the stage copies G into its EMA
        D = build_d(m)
        perceptual = self._perceptual(m)
        net.to(dev)
        D.to(dev)
        if perceptual is not None:
            perceptual.to(dev)
        stage = make_esrgan_stage(m, net, D, dev, ctx.precision, perceptual)
        train = m["train"]
        train_loader, val_loader = loaders(ctx, train, self.input_mode(m, task))
        run = new_run(ctx, {
            "backbone": BACKBONE, "backbone_kwargs": ctx.cfg["backbones"][BACKBONE][task],
            "init": init, "terms": terms(m), "discriminator": m["discriminator"],
            "perceptual_source": getattr(perceptual, "source", None),
            "deviations": deviations_of(m), "d": m["d"], "ema_decay": m["ema_decay"],
            "train": train, "input": self.input_mode(m, task), "value_range": "[0, 1]",
            **data_options(ctx)})
        return run_stage(stage, run=run, train=train, train_loader=train_loader,
                         val_loader=val_loader, device=dev, progress=ctx.progress,
                         extra_summary={"loss_terms": terms(m)})

    def benchmark_stage(self, cfg, method, task, stage, device):
        """The GAN step at the configured size, batch 1, GT crop = the D's input size; the
        perceptual term only when its VGG is available offline (else left out, said so)."""
        import torch

        from ugpnet.methods import bench_precision

        from .train import make_esrgan_stage

        m = cfg["methods"][method]
        net = self.build(cfg, method, task).to(device).train()
        D = build_d(m).to(device)
        note, perceptual = None, None
        try:
            perceptual = self._perceptual(m)
        except CheckpointError:
            note = "without the perceptual term (VGG19 file absent)"
            m = {**m, "loss": {**m["loss"], "perceptual": 0.0}}
        if perceptual is not None:
            perceptual.to(device)
        st = make_esrgan_stage(m, net, D, device, bench_precision(cfg, device), perceptual)
        gt = m["discriminator"]["input_size"]
        lr = gt // net.scale
        batch = {"lq": torch.rand(1, 3, lr, lr, device=device),
                 "gt": torch.rand(1, 3, gt, gt, device=device)}
        return st, batch, note

    # ------------------------------------------------------------------ inference
    def load(self, cfg, method, task, checkpoint, device, extra=None):
        """A finished run's ``model.pt`` (the EMA generator), or an official generator file
        (BasicSR ``params``/``params_ema`` or the original flat ESRGAN layout, :mod:`.keymap`)."""
        from .keymap import load_esrgan_generator

        if extra:
            raise ConfigError(f"--weights {sorted(extra)}: an ESRGAN model is one file")
        net = self.build(cfg, method, task)
        path = Path(checkpoint)
        if path.is_file() and path.suffix == ".pth":
            load_esrgan_generator(path, net)
        else:
            load_state_dict_strict(net, final_weights(path), str(path))
        return net.to(device).eval()

    def parameter_breakdown(self, model) -> dict[str, int]:
        return {"generator (RRDBNet)": count_params(model)}
