"""Kind ``glean``: GLEAN (Chan et al., CVPR 2021), mmagic ``GLEANStyleGANv2``, for 8x face SR.

One stage, ``train``, reading the data (the LR image itself: ``sr_input: lr``, in_size = size/8)
and the named prior ``priors.<methods.<m>.prior>`` (default ``stylegan2``, the FFHQ-512 cm-2
StyleGAN2 UGPNet uses): its G is GLEAN's frozen latent bank and its D initialises GLEAN's
discriminator (glean_x16_2xb8_ffhq.py: both from the official StyleGAN2 checkpoint). The recipe
(configs/_base_/models/base_glean.py + glean_x16_2xb8_ffhq.py, the SRGAN model) is params.yaml's
default, every number with its source there and in RECIPE.md. No EMA: the raw G is evaluated.

Package: :mod:`.arch` (the network, 166.92 M at 512), :mod:`.keymap` (mmagic checkpoints),
:mod:`.train` (the training step on the shared adversarial stage, the cosine schedule with its own
T_max, the VGG16 conv4_3 term). ``bench/official_glean.py`` checks the math against mmagic.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ugpnet.checkpoints import load_state_dict_strict
from ugpnet.errors import CheckpointError, ConfigError
from ugpnet.methods import (Data, MethodKind, Prior, Stage, StageContext, data_options,
                            final_weights, loaders, new_run, prior_architecture, register_kind)
from ugpnet.models.build import build_discriminator, generator_kwargs

from .arch import GLEANStyleGANv2, parameter_breakdown

SCHEMA = Path(__file__).with_name("schema.yaml")
SR_SCALE_HINT = "GLEAN takes the LR image (in_size = data.resolution / degradations.sr.scale)"


def build_net(cfg, method: str) -> GLEANStyleGANv2:
    m = cfg["methods"][method]
    arch = prior_architecture(cfg, m["prior"])
    scale = cfg["degradations"]["sr"]["scale"]
    if arch["size"] % scale:
        raise ConfigError(f"{method}: the prior's size {arch['size']} is not a multiple of the SR "
                          f"scale {scale}; {SR_SCALE_HINT}")
    a = m["arch"]
    return GLEANStyleGANv2(generator_kwargs(arch), in_size=arch["size"] // scale,
                           rrdb_channels=a["rrdb_channels"], num_rrdbs=a["num_rrdbs"],
                           growth_channels=a["growth_channels"])


def terms(m) -> dict:
    """The loss terms a run of entry ``m`` uses (weights; 0: off)."""
    loss = m["loss"]
    return {"mse": loss["mse"], "perceptual_vgg16_conv4_3": loss["perceptual"],
            "gan_vanilla": loss["gan"]}


def deviations_of(m, official_prior: bool) -> list[str]:
    out = []
    if m["loss"]["perceptual"] == 0:
        out.append("no perceptual loss")
    if m["loss"]["gan"] == 0:
        out.append("no GAN loss")
    if not m["d"]["init_from_prior"] and m["loss"]["gan"] > 0:
        out.append("D from scratch (not the prior's)")
    if m["cosine"] is None:
        out.append("constant learning rate (not cosine)")
    if not official_prior:
        out.append("latent bank: a StyleGAN2 pretrained here (not FFHQ config-f)")
    return out


@register_kind("glean")
class GLEANKind(MethodKind):
    family = "generative"
    outputs = ("x_hat",)
    schema = SCHEMA

    def stages(self, mcfg, task):
        return (Stage("train", reads=(Data(), Prior(mcfg.get("prior", "stylegan2"))),
                      select=mcfg.get("select", "final")),)

    def stage_config(self, cfg, method, task, stage):
        m = cfg["methods"][method]
        return {"method": m, "prior_architecture": prior_architecture(cfg, m["prior"]),
                "degradations": cfg["degradations"][task], "data": cfg["data"]}

    def check_stage(self, cfg, method, task, stage, inputs):
        m = cfg["methods"][method]
        if task != "sr":
            raise ConfigError(f"methods.{method}: GLEAN is a super-resolution network (tasks: "
                              f"[sr]), not {task}")
        if m["train"].get("lr_schedule", "constant") != "constant":
            raise ConfigError(f"methods.{method}.train.lr_schedule: GLEAN's schedule is "
                              f"methods.{method}.cosine ({{t_max_iters, eta_min}}, or null for a "
                              f"constant rate); leave train.lr_schedule out")
        if m["train"].get("crop_size") is not None:
            raise ConfigError(f"methods.{method}.train.crop_size: GLEAN's encoder maps the whole "
                              f"in_size LR image to the latent codes; set it to null")
        arch = prior_architecture(cfg, m["prior"])
        if arch["size"] != cfg["data"]["resolution"]:
            raise ConfigError(f"methods.{method}.prior = {m['prior']} is a {arch['size']}-px "
                              f"StyleGAN2 but data.resolution is {cfg['data']['resolution']}: "
                              f"GLEAN's output is its latent bank's size")
        build_net(cfg, method)  # the scale / size checks

    def deviations(self, cfg, method, task):
        m = cfg["methods"][method]
        return deviations_of(m, cfg["priors"][m["prior"]].get("checkpoint") is not None)

    def build(self, cfg, method, task):
        return build_net(cfg, method)

    def make_stage(self, m, net, D, device, precision, perceptual=None):
        from ugpnet.training import Critic, make_optimizer

        from .train import GLEANStage, cosine_annealing

        train, d = m["train"], m["d"]
        opt_g = make_optimizer(net.trainable_parameters(), train)  # Adam (weight decay 0)
        opt_d = torch.optim.Adam(D.parameters(), lr=d["lr"], betas=tuple(d["betas"]))
        cos = m["cosine"]
        sched = (lambda o: cosine_annealing(o, cos["t_max_iters"], cos["eta_min"])) if cos \
            else (lambda o: None)
        critic = Critic(D, opt_d, weight=m["loss"]["gan"], input_range=(-1.0, 1.0), name="d")
        return GLEANStage(net, opt_g, [critic] if m["loss"]["gan"] > 0 else [],
                          weights=m["loss"], perceptual=perceptual, d_scheduler=sched(opt_d),
                          adv_weight=1.0, scheduler=sched(opt_g), precision=precision,
                          device=device, name="g")

    # ------------------------------------------------------------------ training
    def train_stage(self, ctx: StageContext) -> dict:
        from ugpnet.training import PRIOR_FORMAT, load_prior, run_stage

        from .train import VGG16Conv43

        cfg, m, dev = ctx.cfg, ctx.mcfg, ctx.device
        net = build_net(cfg, ctx.method)
        arch = prior_architecture(cfg, m["prior"])
        D = build_discriminator(arch)
        prior_d = ctx.optional_input("prior_d")
        fmt = load_prior(ctx.input("prior"), net.generator,
                         D if m["d"]["init_from_prior"] else None, prior_d)
        net.to(dev)
        D.to(dev)
        perceptual = VGG16Conv43().to(dev) if m["loss"]["perceptual"] > 0 else None
        stage = self.make_stage(m, net, D, dev, ctx.precision, perceptual)
        train = m["train"]
        train_loader, val_loader = loaders(ctx, train, self.input_mode(m, ctx.task))
        run = new_run(ctx, {
            "arch": m["arch"], "in_size": net.in_size, "terms": terms(m),
            "perceptual_source": getattr(perceptual, "source", None),
            "prior": {"name": m["prior"], "file": str(ctx.input("prior")),
                      "d_file": str(prior_d) if prior_d else None, "format": fmt,
                      "architecture": arch},
            "d": m["d"], "cosine": m["cosine"], "train": train,
            "deviations": deviations_of(m, fmt != PRIOR_FORMAT),
            "input": self.input_mode(m, ctx.task), "value_range": "[-1, 1] inside",
            **data_options(ctx)})
        return run_stage(stage, run=run, train=train, train_loader=train_loader,
                         val_loader=val_loader, device=dev, progress=ctx.progress,
                         extra_summary={"terms": terms(m)})

    def benchmark_stage(self, cfg, method, task, stage, device):
        from ugpnet.methods import bench_precision, random_batch

        from .train import VGG16Conv43

        m = cfg["methods"][method]
        net = build_net(cfg, method).to(device)
        D = build_discriminator(prior_architecture(cfg, m["prior"])).to(device)
        perceptual = VGG16Conv43().to(device) if m["loss"]["perceptual"] > 0 else None
        st = self.make_stage(m, net, D, device, bench_precision(cfg, device), perceptual)
        return st, random_batch(cfg, self, m, task, 1, device), None

    # ------------------------------------------------------------------ inference
    def load(self, cfg, method, task, checkpoint, device, extra=None):
        """A finished run's ``model.pt``, or an official mmagic GLEAN ``.pth`` of the same sizes."""
        from .keymap import load_official

        if extra:
            raise ConfigError(f"--weights {sorted(extra)}: a GLEAN model is one file (model.pt "
                              f"or an mmagic GLEAN .pth)")
        net = build_net(cfg, method)
        path = Path(checkpoint)
        if path.is_file() and path.suffix == ".pth":
            load_official(net, path)
        elif path.is_dir() or path.suffix == ".pt":
            load_state_dict_strict(net, final_weights(path), str(path))
        else:
            raise CheckpointError(f"'{path}' is neither a ugpnet-bench model.pt nor an mmagic "
                                  f"GLEAN .pth")
        return net.to(device).eval()

    def predict(self, model, x):
        from .train import predict01

        with torch.no_grad():
            return {"x_hat": predict01(model, x)}

    def parameter_breakdown(self, model):
        return parameter_breakdown(model)
