"""Kind ``gcfsr``: GCFSR (He et al., CVPR 2022), x8 face SR without facial or GAN priors, as
UGPNet's Table 1(c) ran it ("from scratch ... using the authors' code").

One stage, ``train`` (sr only): the authors' ``options/train_gcfsr_gan.yml`` recipe (RECIPE.md,
:mod:`.train`) on the shared adversarial stage: wgan_softplus GAN 1e-2 + L1 1 + VGG16 conv4_3
1e-2, R1 10 every 16 in the D step, Adam 2e-3 with the lazy-regularisation scaling, EMA
generator evaluated. The input is the LR image bicubic-upsampled back to the output size
(``sr_input: bicubic_up``, as GCFSR's MATLAB imresize), the condition ``in_size`` = upscale /
``cond_norm`` (8 / 32). Network: :mod:`.arch` (GCFSR, 62.35 M at 512; D 28.98 M), official
names: :mod:`.keymap`. No external file is needed (VGG16 comes from the LPIPS carrier); ``load``
also reads the official ``gcfsr_blind_512.pth`` (GCFSR_blind, in_size fixed) and BasicSR
training outputs ``net_g_*.pth``.
"""
from __future__ import annotations

from pathlib import Path

from ugpnet.checkpoints import load_state_dict_strict, read_checkpoint
from ugpnet.errors import CheckpointError, ConfigError
from ugpnet.methods import (Data, MethodKind, Stage, StageContext, data_options, final_weights,
                            loaders, new_run, register_kind)
from ugpnet.training import AdversarialStage, Critic, count_params, make_scheduler, run_stage

from .arch import GCFSR, GCFSRBlind, build_discriminator, build_gcfsr

PAPER_ARCHITECTURE = {"style_dim": 512, "channel_multiplier": 2, "narrow": 1.0,
                      "const_size": 16}

_NUM = {"type": "number", "minimum": 0}
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "tasks", "sr_input", "architecture", "cond_norm", "loss", "r1",
                 "g_reg_every", "ema_half_life_iters", "select", "train"],
    "properties": {
        "kind": True,
        "tasks": {"items": {"enum": ["sr"]}},
        "sr_input": {"enum": ["bicubic_up"]},
        "architecture": {
            "type": "object", "additionalProperties": False,
            "required": list(PAPER_ARCHITECTURE),
            "properties": {"style_dim": {"$ref": "#/$defs/posint"},
                           "channel_multiplier": {"type": "number", "exclusiveMinimum": 0},
                           "narrow": {"type": "number", "exclusiveMinimum": 0},
                           "const_size": {"enum": [4, 8, 16, 32, 64, 128, 256]}}},
        "cond_norm": {"type": "number", "exclusiveMinimum": 0},
        "loss": {"type": "object", "additionalProperties": False,
                 "required": ["gan", "l1", "perceptual"],
                 "properties": {"gan": _NUM, "l1": _NUM, "perceptual": _NUM}},
        "r1": {"type": "object", "additionalProperties": False, "required": ["gamma", "every"],
               "properties": {"gamma": _NUM, "every": {"$ref": "#/$defs/posint"}}},
        "g_reg_every": {"$ref": "#/$defs/posint"},
        "ema_half_life_iters": {"type": "number", "exclusiveMinimum": 0},
        "select": {"enum": ["final", "psnr", "ssim", "lpips"]},
        "train": {"$ref": "#/$defs/train"},
    },
}

BLIND_FILE = "gcfsr_blind_512.pth"


def terms(m) -> dict:
    """The loss terms and regularisers a run of entry ``m`` uses (weights; 0: off)."""
    return {"gan_wgan_softplus": m["loss"]["gan"], "l1": m["loss"]["l1"],
            "perceptual_vgg16_conv4_3": m["loss"]["perceptual"], "r1": m["r1"]["gamma"],
            "path_length": 0.0}


def in_size_of(cfg, method: str, task: str) -> float:
    """The condition ``in_size`` = upscale / cond_norm (ffhq_control_dataset.py: scale /
    cond_norm; 8 / 32 = 0.25 for UGPNet's x8)."""
    return cfg["degradations"][task]["scale"] / cfg["methods"][method]["cond_norm"]


@register_kind("gcfsr")
class GCFSRKind(MethodKind):
    family = "generative"
    outputs = ("x_hat",)
    schema = SCHEMA

    def stages(self, mcfg, task):
        return (Stage("train", reads=(Data(),), select=mcfg.get("select", "final")),)

    def check_stage(self, cfg, method, task, stage, inputs):
        m, size = cfg["methods"][method], cfg["data"]["resolution"]
        const = m["architecture"]["const_size"]
        if const >= size or size & (size - 1):
            raise ConfigError(
                f"methods.{method}.architecture.const_size = {const}: GCFSR's encoder goes down "
                f"from the resolution ({size}, a power of two) to const_size, which must be "
                f"smaller (paper: 16 at 512; e.g. 16 at 64 px)")

    def deviations(self, cfg, method, task):
        loss, out = cfg["methods"][method]["loss"], []
        if loss["perceptual"] == 0:
            out.append("no perceptual (VGG16 conv4_3) loss")
        if loss["gan"] == 0:
            out.append("no GAN loss")
        return out

    def build(self, cfg, method, task) -> GCFSR:
        return build_gcfsr(cfg["methods"][method]["architecture"], cfg["data"]["resolution"],
                           in_size_of(cfg, method, task))

    def make_stage(self, m, net, D, device, precision, vgg=None):
        """The stage object of entry ``m`` (weights already loaded), see :mod:`.train`."""
        from ugpnet.training import reg_scaled_optimizer

        from .train import gcfsr_recon

        train, r1 = m["train"], m["r1"]
        betas = train.get("betas", [0.9, 0.999])  # the schema default; params.yaml: [0, 0.99]
        opt_g = reg_scaled_optimizer(net.parameters(), train["lr"], betas, m["g_reg_every"])
        opt_d = reg_scaled_optimizer(D.parameters(), train["lr"], betas, r1["every"])
        critic = Critic(D, opt_d, weight=1.0, input_range=(-1.0, 1.0), r1_gamma=r1["gamma"],
                        r1_every=r1["every"], name="d")
        return AdversarialStage(
            net, opt_g, [critic], forward=lambda batch, it: (net.restore(batch["lq"]),
                                                             batch["gt"]),
            recon=gcfsr_recon(m["loss"], vgg), adv_weight=m["loss"]["gan"], loss="nonsaturating",
            order="d_first", fresh_fake=True, scheduler=make_scheduler(opt_g, train),
            ema_beta=0.5 ** (1.0 / m["ema_half_life_iters"]),
            frozen=[vgg] if vgg is not None else [], predict=lambda g, lq: g.restore(lq),
            precision=precision, device=device, name="g")

    def _vgg(self, m, device):
        from .train import VGG16Conv43

        return VGG16Conv43().to(device) if m["loss"]["perceptual"] > 0 else None

    def train_stage(self, ctx: StageContext) -> dict:
        m, size = ctx.mcfg, ctx.cfg["data"]["resolution"]
        net = self.build(ctx.cfg, ctx.method, ctx.task).to(ctx.device)
        D = build_discriminator(m["architecture"], size).to(ctx.device)
        vgg = self._vgg(m, ctx.device)
        stage = self.make_stage(m, net, D, ctx.device, ctx.precision, vgg)
        train = m["train"]
        train_loader, val_loader = loaders(ctx, train, self.input_mode(m, ctx.task))
        run = new_run(ctx, {
            "architecture": m["architecture"], "terms": terms(m),
            "in_size": in_size_of(ctx.cfg, ctx.method, ctx.task), "cond_norm": m["cond_norm"],
            "perceptual_features": vgg.source if vgg is not None else None,
            "init": "from scratch", "deviations": self.deviations(ctx.cfg, ctx.method, ctx.task),
            "ema_half_life_iters": m["ema_half_life_iters"], "g_reg_every": m["g_reg_every"],
            "train": train, "input": self.input_mode(m, ctx.task),
            "value_range": "[-1, 1] inside", **data_options(ctx)})
        return run_stage(stage, run=run, train=train, train_loader=train_loader,
                         val_loader=val_loader, device=ctx.device, progress=ctx.progress)

    def benchmark_stage(self, cfg, method, task, stage, device):
        from ugpnet.methods import bench_precision, random_batch

        m = cfg["methods"][method]
        net = self.build(cfg, method, task).to(device)
        D = build_discriminator(m["architecture"], cfg["data"]["resolution"]).to(device)
        st = self.make_stage(m, net, D, device, bench_precision(cfg, device), self._vgg(m, device))
        return st, random_batch(cfg, self, m, task, 1, device), None

    def load(self, cfg, method, task, checkpoint, device, extra=None):
        """A finished run's ``model.pt``; or an official file: ``gcfsr_blind_512.pth`` (flat,
        GCFSR_blind at 512, no condition) or a BasicSR ``net_g_*.pth`` (``params_ema``) of this
        entry's GCFSR."""
        from .keymap import load_gcfsr_blind, load_gcfsr_training

        if extra:
            raise ConfigError(f"--weights {sorted(extra)}: a GCFSR model is one file (model.pt, "
                              f"{BLIND_FILE} or a BasicSR net_g_*.pth)")
        path = Path(checkpoint)
        if path.is_dir() or path.suffix == ".pt":
            net = self.build(cfg, method, task)
            load_state_dict_strict(net, final_weights(path), str(path))
        elif path.is_file() and path.suffix == ".pth":
            state = read_checkpoint(path, "official GCFSR generator")
            if isinstance(state, dict) and ("params_ema" in state or "params" in state):
                net = self.build(cfg, method, task)
                key = "params_ema" if "params_ema" in state else "params"
                load_gcfsr_training(path, net, key, state=state)
            else:
                size, arch = cfg["data"]["resolution"], cfg["methods"][method]["architecture"]
                if size != 512 or dict(arch) != PAPER_ARCHITECTURE:
                    raise ConfigError(
                        f"'{path}' is a flat GCFSR_blind file ({BLIND_FILE}), the 512-px paper "
                        f"network; this run's GCFSR is {size} px, architecture {dict(arch)}: "
                        f"use the paper profile")
                net = GCFSRBlind(512)
                load_gcfsr_blind(path, net, state=state)
        else:
            raise CheckpointError(f"'{path}' is neither a ugpnet-bench model.pt nor an official "
                                  f"GCFSR file ({BLIND_FILE} or a BasicSR net_g_*.pth)")
        return net.to(device).eval()

    def predict(self, model, x):
        return {"x_hat": model.restore(x)}

    def parameter_breakdown(self, model) -> dict[str, int]:
        parts = {
            "encoder": [model.conv_body_first, model.conv_body_down],
            "latent_head": [model.final_down1, model.final_down2, model.final_linear],
            "conditions": [model.condition_scale1, model.condition_scale2,
                           model.condition_shift],
            "decoder": [model.final_conv, model.style_conv1, model.to_rgb1, model.style_convs,
                        model.to_rgbs]}
        return {k: sum(count_params(m) for m in mods) for k, mods in parts.items()}


__all__ = ["GCFSRKind", "PAPER_ARCHITECTURE", "SCHEMA", "in_size_of", "terms"]
