"""Kind ``gfpgan``: GFP-GAN v1 (Wang et al. 2021), the variant of UGPNet's Table 2 (76.2 M).

One stage per task, ``train`` (the authors train in one stage), reading the data, the named prior
``priors.<methods.<m>.prior>`` (the frozen StyleGAN2 decoder, channel multiplier 1 at paper
scale: ``stylegan2_cm1``) and, for ``variant: full``, the user's ArcFace and FFHQ-landmark files
(``methods.<m>.arcface``, ``methods.<m>.landmarks``, one file for every task). The recipe
(options/train_gfpgan_v1.yml) is params.yaml's default, every number with its source there;
``variant: simple`` is the authors' train_gfpgan_v1_simple.yml (no identity, no components).
The EMA generator is what validation runs and what is exported, as the authors test it.

Package: :mod:`.arch` (the network), :mod:`.keymap` (official ``GFPGANv1.pth``), :mod:`.nets`
(component critic, ArcFace, perceptual + style loss, landmark boxes), :mod:`.stage` (the training
step on the shared adversarial stage). ``bench/official_gfpgan.py`` checks the math.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ugpnet.checkpoints import load_state_dict_strict
from ugpnet.errors import ConfigError
from ugpnet.methods import (Data, MethodKind, Prior, Stage, StageContext, UserFile, data_options,
                            final_weights, loaders, new_run, prior_architecture, register_kind)
from ugpnet.models.build import build_discriminator, generator_kwargs

from .arch import GFPGANv1, parameter_breakdown
from .nets import ARCFACE_FILE, GFPGAN_RELEASE, LANDMARKS_FILE

SCHEMA = Path(__file__).with_name("schema.yaml")
ARCFACE_HINT = (f"GFP-GAN's identity network {ARCFACE_FILE} ({GFPGAN_RELEASE}{ARCFACE_FILE}); "
                f"variant: simple trains without it")
LANDMARKS_HINT = (f"GFP-GAN's FFHQ eye/mouth boxes {LANDMARKS_FILE} ({GFPGAN_RELEASE}"
                  f"{LANDMARKS_FILE}, or scripts/parse_landmark.py on ffhq-dataset-v2.json); "
                  f"variant: simple trains without them")


def build_net(cfg, method: str) -> GFPGANv1:
    m = cfg["methods"][method]
    a = m["arch"]
    return GFPGANv1(generator_kwargs(prior_architecture(cfg, m["prior"])),
                    unet_narrow=a["unet_narrow"], sft_half=a["sft_half"],
                    different_w=a["different_w"])


def terms(mcfg) -> dict:
    """Which loss terms run (recorded in the run's options), from the entry alone."""
    loss, full = mcfg["loss"], mcfg["variant"] == "full"
    return {"l1": loss["l1"] > 0, "pyramid": loss["pyramid"] > 0 and loss["pyramid_until"] > 0,
            "perceptual": loss["perceptual"] > 0, "style": loss["style"] > 0,
            "perceptual_vgg": loss["vgg"] if loss["perceptual"] > 0 or loss["style"] > 0 else None,
            "gan": loss["gan"] > 0,
            "identity": full and loss["identity"] > 0,
            "component_gan": full and loss["component_gan"] > 0,
            "component_style": full and loss["component_style"] > 0}


def deviations_of(mcfg, official_prior: bool) -> list[str]:
    """The departures from the authors' recipe of entry ``mcfg`` (labels for the tables)."""
    t, out = terms(mcfg), []
    if mcfg["variant"] == "simple":
        out.append("train_gfpgan_v1_simple (no identity, no facial components)")
    elif t["component_gan"] or t["component_style"]:
        out.append("no horizontal flip (component boxes)")
    if t["perceptual_vgg"] == "vgg16":
        out.append("perceptual + style: VGG16 for VGG19")
    elif t["perceptual_vgg"] is None:
        out.append("no perceptual/style loss")
    if not official_prior:
        out.append("decoder: a StyleGAN2 pretrained here (not StyleGAN2_512_Cmul1_FFHQ)")
    return out


@register_kind("gfpgan")
class GFPGANKind(MethodKind):
    family = "generative"
    outputs = ("x_hat",)
    schema = SCHEMA

    def stages(self, mcfg, task):
        return (Stage("train", reads=(
            Data(), Prior(mcfg.get("prior", "stylegan2_cm1")),
            UserFile("arcface", per_task=False, hint=ARCFACE_HINT),
            UserFile("landmarks", per_task=False, hint=LANDMARKS_HINT)),
            select=mcfg.get("select", "final")),)

    def stage_config(self, cfg, method, task, stage):
        m = cfg["methods"][method]
        return {"method": m, "prior_architecture": prior_architecture(cfg, m["prior"]),
                "degradations": cfg["degradations"][task], "data": cfg["data"]}

    def check_stage(self, cfg, method, task, stage, inputs):
        m = cfg["methods"][method]
        t = terms(m)
        missing = [(k, f, h) for k, f, h, need in (
            ("arcface", ARCFACE_FILE, ARCFACE_HINT, t["identity"]),
            ("landmarks", LANDMARKS_FILE, LANDMARKS_HINT,
             t["component_gan"] or t["component_style"])) if need and k not in inputs]
        if missing:
            raise ConfigError(
                f"{method}: variant full (the authors' train_gfpgan_v1.yml) needs "
                + "; ".join(f"methods.{method}.{k} = the path of {f} ({h.split('(')[1].split(')')[0]})"
                            for k, f, h in missing)
                + f". Set the file(s), or methods.{method}.variant: simple (the authors' "
                  f"train_gfpgan_v1_simple.yml: no identity, no facial components).")
        if m["variant"] == "full" and m["train"].get("crop_size") is not None:
            raise ConfigError(f"methods.{method}.train.crop_size: the facial components of "
                              f"variant full read boxes of whole images; set it to null")
        if t["perceptual_vgg"] == "vgg19":
            from ugpnet.pretrained import torch_hub_checkpoints_dir
            from ugpnet.pretrained.vgg import VGG19_FILE, VGG19_URL, vgg19_checkpoint

            if vgg19_checkpoint() is None:
                raise ConfigError(
                    f"methods.{method}.loss.vgg = vgg19 (the authors' perceptual and style loss) "
                    f"but {torch_hub_checkpoints_dir() / VGG19_FILE} does not exist: "
                    f"download {VGG19_URL} there, or set methods.{method}.loss.vgg: vgg16 (our "
                    f"offline weights, a recorded deviation) or loss.perceptual and loss.style: 0")

    def deviations(self, cfg, method, task):
        m = cfg["methods"][method]
        return deviations_of(m, cfg["priors"][m["prior"]].get("checkpoint") is not None)

    def build(self, cfg, method, task):
        return build_net(cfg, method)

    # ------------------------------------------------------------------ training
    def train_stage(self, ctx: StageContext) -> dict:
        from ugpnet.training import (Critic, load_prior, make_optimizer, make_scheduler,
                                     run_stage)
        from ugpnet.training import PRIOR_FORMAT

        from .nets import (ComponentBoxes, FacialComponentDiscriminator, PerceptualStyleLoss,
                           crop_view, load_arcface)
        from .stage import GFPGANStage

        cfg, m, task, dev = ctx.cfg, ctx.mcfg, ctx.task, ctx.device
        t, loss, train = terms(m), m["loss"], dict(m["train"])
        net = build_net(cfg, ctx.method)
        prior_fmt = load_prior(ctx.input("prior"), net.stylegan_decoder)
        net.to(dev)
        arch = prior_architecture(cfg, m["prior"])
        D = build_discriminator(arch).to(dev)
        d = m["d"]
        c = d["r1_every"] / (d["r1_every"] + 1)  # StyleGAN2 lazy-R1 correction (official)
        critics = [Critic(D, torch.optim.Adam(D.parameters(), lr=d["lr"] * c,
                                              betas=(0.0, 0.99 ** c)),
                          weight=loss["gan"], input_range=(-1, 1), r1_gamma=d["r1_gamma"],
                          r1_every=d["r1_every"], name="d")]
        comp, boxes, arcface, perceptual = [], None, None, None
        if t["component_gan"] or t["component_style"]:
            cd, res = m["component_d"], cfg["data"]["resolution"]
            boxes = ComponentBoxes(ctx.input("landmarks"), res, cd["eye_enlarge"])
            train["hflip"] = False  # the boxes are those of the unflipped images
            for i, part in enumerate(("left_eye", "right_eye", "mouth")):
                size = max(8, round(cd["mouth_size" if part == "mouth" else "eye_size"]
                                    * res / 512))
                net_c = FacialComponentDiscriminator().to(dev)
                comp.append(Critic(net_c, torch.optim.Adam(net_c.parameters(), lr=cd["lr"],
                                                           betas=tuple(cd["betas"])),
                                   weight=loss["component_gan"], input_range=(-1, 1),
                                   view=crop_view(i, size), name=f"d_{part}"))
            critics += comp
        if t["identity"]:
            arcface = load_arcface(ctx.input("arcface")).to(dev)
        if t["perceptual_vgg"]:
            perceptual = PerceptualStyleLoss(loss["layers"], loss["vgg"]).to(dev)
        opt_g = make_optimizer(net.trainable_parameters(), train)
        stage = GFPGANStage(net, opt_g, critics, weights={**loss, "component_style": loss[
            "component_style"] if t["component_style"] else 0.0},
            perceptual=perceptual, arcface=arcface, component_critics=comp, boxes=boxes,
            adv_weight=1.0, loss="nonsaturating", scheduler=make_scheduler(opt_g, train),
            ema_beta=0.5 ** (1.0 / m["ema_half_life_iters"]), frozen=[net.stylegan_decoder],
            precision=ctx.precision, device=dev, name="net_g")
        train_loader, val_loader = loaders(ctx, train, self.input_mode(m, task))
        run = new_run(ctx, {"variant": m["variant"], "loss_terms": t,
                            "deviations": deviations_of(m, prior_fmt != PRIOR_FORMAT),
                            "perceptual_source": getattr(perceptual, "source", None),
                            "prior": {"name": m["prior"], "file": str(ctx.input("prior")),
                                      "format": prior_fmt, "architecture": arch},
                            "arch": m["arch"], "loss": loss, "d": d, "train": train,
                            "input": self.input_mode(m, task),
                            "inputs": {k: str(v) for k, v in ctx.inputs.items()},
                            **data_options(ctx)})
        return run_stage(stage, run=run, train=train, train_loader=train_loader,
                         val_loader=val_loader, device=dev, progress=ctx.progress,
                         extra_summary={"loss_terms": t})

    def benchmark_stage(self, cfg, method, task, stage, device):
        """The simple variant's step (no external files) at the configured size, batch 1."""
        from ugpnet.methods import bench_precision, random_batch
        from ugpnet.training import Critic, make_optimizer

        from .stage import GFPGANStage

        m = cfg["methods"][method]
        net = build_net(cfg, method).to(device).train()
        D = build_discriminator(prior_architecture(cfg, m["prior"])).to(device)
        d = m["d"]
        critic = Critic(D, torch.optim.Adam(D.parameters(), lr=d["lr"]), weight=m["loss"]["gan"],
                        r1_gamma=d["r1_gamma"], r1_every=d["r1_every"])
        s = GFPGANStage(net, make_optimizer(net.trainable_parameters(), m["train"]), [critic],
                        weights={**m["loss"], "perceptual": 0, "style": 0}, adv_weight=1.0,
                        ema_beta=0.999, frozen=[net.stylegan_decoder],
                        precision=bench_precision(cfg, device), device=device)
        return (s, random_batch(cfg, self, m, task, 1, device),
                "simple variant without the perceptual loss (no external files)")

    # ------------------------------------------------------------------ inference
    def load(self, cfg, method, task, checkpoint, device, extra=None):
        """A finished run's ``model.pt``, or the official ``GFPGANv1.pth`` (``params_ema``)."""
        from .keymap import load_official

        if extra:
            raise ConfigError(f"--weights {sorted(extra)}: GFP-GAN loads one file")
        net = build_net(cfg, method)
        path = Path(checkpoint)
        if path.is_file() and path.suffix == ".pth":
            load_official(net, path)
        else:
            load_state_dict_strict(net, final_weights(path), str(path))
        return net.to(device).eval()

    def predict(self, model, x):
        from .stage import predict01

        with torch.no_grad():
            return {"x_hat": predict01(model, x)}

    def parameter_breakdown(self, model):
        return parameter_breakdown(model)
