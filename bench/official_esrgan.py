"""ESRGAN: our generator, discriminator and losses against BasicSR's, same random weights.

    .venv/bin/python bench/official_esrgan.py --official /tmp/official/BasicSR [--size 512]
        [--repeats 3] [--threads 2] [--out bench/official-esrgan.json]

``--official``: a checkout of XPixelGroup/BasicSR (8d56e3a; a scratch folder, never committed).
Only its arch and loss files are loaded (``archs/arch_util.py``, ``archs/rrdbnet_arch.py``,
``archs/discriminator_arch.py``, ``archs/vgg_arch.py``, ``losses/gan_loss.py``,
``losses/basic_loss.py``): the package ``__init__`` files (every arch, cv2, the data pipeline) are
bypassed, ``basicsr.utils`` is reduced to its registry and a logger, and the deformable-conv ops
that ``arch_util`` imports (unused here) are stubs. torchvision's VGG19 gets random weights (no
download): the same tensors go into our perceptual loss.

Compared, at ``--size`` (output px; batch 1):

- BasicSR ``RRDBNet`` x4 (``num_feat 64, num_block 23``) -> our RRDBNet scale 4, and the x8 of
  UGPNet's ``RRDBNetX8`` (BasicSR's RRDBNet plus ``conv_up3``, one more nearest-x2 + conv +
  LeakyReLU; written here from UGPNet archs/RRDBNet.py as a subclass of the official class) -> our
  x8, through :func:`baselines.esrgan.keymap.load_esrgan_generator` (``params`` layout, and the
  original flat ESRGAN names for x4); output differences and forward times (median of
  ``--repeats`` after a warm-up, no_grad, this process and thread count);
- ``VGGStyleDiscriminator(3, 64, 128 | 256)`` -> ours, train mode (BatchNorm batch statistics, as
  it trains) on a batch of 4;
- one G loss and one D loss of ``ESRGANModel.optimize_parameters`` (esrgan_model.py:12-78),
  re-implemented here line for line with BasicSR's own ``GANLoss('vanilla', loss_weight=5e-3)``,
  ``L1Loss(1e-2)`` and ``PerceptualLoss({'conv5_4': 1}, vgg19)``, against
  :class:`baselines.esrgan.train.ESRGANStage`'s ``g_step`` / ``d_step`` on the same tensors and
  networks: the loss values and the gradients they leave on G and D.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import logging
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from baselines.esrgan.arch import VGGStyleDiscriminator  # noqa: E402
from baselines.esrgan.keymap import load_esrgan_generator, load_vgg_discriminator  # noqa: E402
from baselines.esrgan.train import PerceptualLoss, make_esrgan_stage  # noqa: E402
from ugpnet.models.backbones.rrdbnet import RRDBNet  # noqa: E402


def _package(name: str, path: Path | None = None) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__path__ = [str(path)] if path else []
    sys.modules[name] = mod
    return mod


def _load(name: str, file: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def official_basicsr(root: Path) -> dict:
    """The official modules (see the module docstring for what is bypassed)."""
    b = root / "basicsr"
    _package("basicsr", b)
    _package("basicsr.archs", b / "archs")
    _package("basicsr.losses", b / "losses")
    utils = _package("basicsr.utils", b / "utils")
    _load("basicsr.utils.registry", b / "utils" / "registry.py")
    utils.get_root_logger = lambda *a, **k: logging.getLogger("basicsr")
    dcn = types.ModuleType("basicsr.ops.dcn")  # imported by arch_util, unused by these archs
    dcn.ModulatedDeformConvPack, dcn.modulated_deform_conv = nn.Module, None
    _package("basicsr.ops")
    sys.modules["basicsr.ops.dcn"] = dcn
    mods = {"arch_util": _load("basicsr.archs.arch_util", b / "archs" / "arch_util.py")}
    for name in ("rrdbnet_arch", "discriminator_arch", "vgg_arch"):
        mods[name] = _load(f"basicsr.archs.{name}", b / "archs" / f"{name}.py")
    import torchvision

    # no download: torchvision's VGG19 with random weights (copied into ours below)
    mods["vgg_arch"].vgg = types.SimpleNamespace(
        vgg19=lambda pretrained=False: torchvision.models.vgg19(weights=None))
    mods["vgg_arch"].VGG_PRETRAIN_PATH = "/nonexistent"
    mods["loss_util"] = _load("basicsr.losses.loss_util", b / "losses" / "loss_util.py")
    for name in ("gan_loss", "basic_loss"):
        mods[name] = _load(f"basicsr.losses.{name}", b / "losses" / f"{name}.py")
    return mods


def official_x8(rrdbnet_arch):
    """UGPNet's RRDBNetX8 (archs/RRDBNet.py): BasicSR's RRDBNet with a third nearest-x2 + conv."""
    class RRDBNetX8(rrdbnet_arch.RRDBNet):
        def __init__(self, *a, **k):
            super().__init__(*a, scale=4, **k)
            self.conv_up3 = nn.Conv2d(self.conv_up2.out_channels, self.conv_up2.out_channels,
                                      3, 1, 1)

        def forward(self, x):
            feat = self.conv_first(x)
            feat = feat + self.conv_body(self.body(feat))
            for up in (self.conv_up1, self.conv_up2, self.conv_up3):
                feat = self.lrelu(up(F.interpolate(feat, scale_factor=2, mode="nearest")))
            return self.conv_last(self.lrelu(self.conv_hr(feat)))

    return RRDBNetX8


def diff(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a.double() - b.double()).abs()
    return {"max_abs": float(d.max()), "ref_max_abs": float(b.double().abs().max()),
            "max_rel": float(d.max() / b.double().abs().max().clamp_min(1e-30)),
            "mean_abs": float(d.mean())}


def timed(fn, repeats: int) -> dict:
    with torch.no_grad():
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 3), "all_s": [round(t, 3) for t in times]}


def randomise(net: nn.Module) -> None:
    """Every bias non-zero and BatchNorm affine/statistics random (the official init zeroes
    biases and scales the convs by 0.1, which would hide a swapped tensor less well)."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.05)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.normal_(1, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)


def old_esrgan_names(sd: dict) -> dict:
    """BasicSR x4 names -> the original ESRGAN flat names (RRDB_ESRGAN_x4.pth)."""
    out = {}
    for k, v in sd.items():
        k2 = k.replace("body.", "RRDB_trunk.", 1) if k.startswith("body.") else k
        for j in (1, 2, 3):
            k2 = k2.replace(f".rdb{j}.", f".RDB{j}.")
        k2 = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2",
              "conv_hr": "HRconv"}.get(k2.split(".")[0], k2.split(".")[0]) + k2[len(k2.split(".")[0]):]
        out[k2] = v
    return out


def generators(mods, size: int, repeats: int) -> dict:
    out = {}
    for scale in (4, 8):
        torch.manual_seed(scale)
        cls = official_x8(mods["rrdbnet_arch"]) if scale == 8 else mods["rrdbnet_arch"].RRDBNet
        kw = {} if scale == 8 else {"scale": 4}
        off = cls(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, **kw)
        randomise(off)
        off.eval()
        ours = RRDBNet(3, 3, 64, 23, 32, scale=scale).eval()
        load_esrgan_generator(f"x{scale} params (in memory)", ours,
                              state={"params": off.state_dict()})
        x = torch.rand(1, 3, size // scale, size // scale)
        with torch.no_grad():
            ref, mine = off(x), ours(x)
        res = {"params_official": sum(p.numel() for p in off.parameters()),
               "params_ours": sum(p.numel() for p in ours.parameters()),
               "input": list(x.shape), "output": diff(mine, ref)}
        if scale == 4:
            flat = RRDBNet(3, 3, 64, 23, 32, scale=4).eval()
            load_esrgan_generator("RRDB_ESRGAN_x4.pth layout (in memory)", flat,
                                  state=old_esrgan_names(off.state_dict()))
            with torch.no_grad():
                res["output_via_old_esrgan_names"] = diff(flat(x), ref)
        res["forward_official"] = timed(lambda: off(x), repeats)
        res["forward_ours"] = timed(lambda: ours(x), repeats)
        out[f"rrdbnet_x{scale}"] = res
    return out


def discriminators(mods) -> dict:
    out = {}
    for s in (128, 256):
        torch.manual_seed(s)
        off = mods["discriminator_arch"].VGGStyleDiscriminator(3, 64, input_size=s)
        randomise(off)
        ours = VGGStyleDiscriminator(3, 64, s)
        load_vgg_discriminator(f"net_d {s} (in memory)", ours, state={"params": off.state_dict()})
        x = torch.rand(4, 3, s, s)
        off.train(), ours.train()
        ref, mine = off(x), ours(x)
        out[f"vgg_style_d_{s}"] = {
            "params_official": sum(p.numel() for p in off.parameters()),
            "params_ours": sum(p.numel() for p in ours.parameters()),
            "logits_train_mode": diff(mine.detach(), ref.detach()),
            "running_mean_after": diff(ours.bn4_1.running_mean, off.bn4_1.running_mean)}
    return out


def losses(mods, size_gt: int = 128) -> dict:
    """One G and one D loss on the same tensors: BasicSR's formulas vs our stage."""
    torch.manual_seed(1)
    scale = 4
    bl, gl = mods["basic_loss"], mods["gan_loss"]
    g_off = mods["rrdbnet_arch"].RRDBNet(3, 3, scale=4, num_feat=16, num_block=2, num_grow_ch=8)
    randomise(g_off)
    d_off = mods["discriminator_arch"].VGGStyleDiscriminator(3, 16, input_size=size_gt)
    randomise(d_off)
    cri_pix = bl.L1Loss(loss_weight=1e-2, reduction="mean")
    cri_perceptual = bl.PerceptualLoss({"conv5_4": 1}, vgg_type="vgg19", use_input_norm=True,
                                       range_norm=False, perceptual_weight=1.0, style_weight=0,
                                       criterion="l1")
    cri_gan = gl.GANLoss("vanilla", real_label_val=1.0, fake_label_val=0.0, loss_weight=5e-3)
    names = mods["vgg_arch"].NAMES["vgg19"]  # BasicSR names the torchvision layers in order
    vgg_state = {}
    for k, v in cri_perceptual.vgg.state_dict().items():
        if k.startswith("vgg_net."):
            layer, param = k[len("vgg_net."):].split(".")
            vgg_state[f"{names.index(layer)}.{param}"] = v
    # ours, same weights
    g = RRDBNet(3, 3, 16, 2, 8, scale=4)
    load_esrgan_generator("g (in memory)", g, state={"params": g_off.state_dict()})
    d = VGGStyleDiscriminator(3, 16, size_gt)
    load_vgg_discriminator("d (in memory)", d, state={"params": d_off.state_dict()})
    perceptual = PerceptualLoss({"conv5_4": 1.0}, "vgg19", state=vgg_state)
    m = {"train": {"lr": 1e-4, "betas": [0.9, 0.99], "total_iters": 10, "lr_schedule": "constant"},
         "loss": {"l1": 1e-2, "perceptual": 1.0, "gan": 5e-3}, "d": {"lr": 1e-4, "betas": [0.9, 0.99]},
         "ema_decay": 0.999}
    st = make_esrgan_stage(m, g, d, "cpu", "fp32", perceptual)
    lq = torch.rand(4, 3, size_gt // scale, size_gt // scale)
    gt = torch.rand(4, 3, size_gt, size_gt)
    g_off.train(), d_off.train(), g.train(), d.train()

    # --- BasicSR ESRGANModel.optimize_parameters, G part (esrgan_model.py:14-48)
    for p in d_off.parameters():
        p.requires_grad = False
    output = g_off(lq)
    l_g_pix = cri_pix(output, gt)
    l_g_percep, _ = cri_perceptual(output, gt)
    real_d_pred = d_off(gt).detach()
    fake_g_pred = d_off(output)
    l_g_real = cri_gan(real_d_pred - torch.mean(fake_g_pred), False, is_disc=False)
    l_g_fake = cri_gan(fake_g_pred - torch.mean(real_d_pred), True, is_disc=False)
    l_g_gan = (l_g_real + l_g_fake) / 2
    l_g_total = l_g_pix + l_g_percep + l_g_gan
    l_g_total.backward()
    g_grad_off = {k: p.grad.clone() for k, p in g_off.named_parameters()}
    # --- D part (esrgan_model.py:50-72)
    for p in d_off.parameters():
        p.requires_grad = True
    fake_d_pred = d_off(output).detach()
    real_d_pred = d_off(gt)
    l_d_real = cri_gan(real_d_pred - torch.mean(fake_d_pred), True, is_disc=True) * 0.5
    l_d_real.backward()
    fake_d_pred = d_off(output.detach())
    l_d_fake = cri_gan(fake_d_pred - torch.mean(real_d_pred.detach()), False, is_disc=True) * 0.5
    l_d_fake.backward()
    d_grad_off = {k: p.grad.clone() for k, p in d_off.named_parameters()}

    # --- ours: the stage's G step and D step on the same (un-stepped) weights
    for opt in (st.opt_g, st.critics[0].opt):
        opt.param_groups[0]["lr"] = 0.0  # keep the weights: compare the gradients
    fake, real = st.images({"lq": lq, "gt": gt}, 0)
    g_parts = st.g_step(fake, real)
    g_grad = {k: p.grad.clone() for k, p in g.named_parameters()}
    d_parts = st.d_step(real, fake, 0)
    d_grad = {k: p.grad.clone() for k, p in d.named_parameters()}

    def grads(a, b):
        worst = max(((k, diff(a[k], b[k])) for k in b), key=lambda kv: kv[1]["max_rel"])
        return {"tensors": len(b), "worst": worst[0], **worst[1]}

    total_adv = 5e-3 * g_parts["adversarial"]
    return {
        "setting": f"batch 4, GT {size_gt} px, x4, G RRDBNet(16, 2, 8), D VGGStyle(16, {size_gt}), "
                   f"VGG19 random weights, train mode",
        "g_loss_total": {"official": float(l_g_total.detach()), "ours": g_parts["loss"]},
        "g_l1_weighted": {"official": float(l_g_pix.detach()), "ours": g_parts["l1"]},
        "g_perceptual": {"official": float(l_g_percep.detach()), "ours": g_parts["perceptual"]},
        "g_gan_weighted": {"official": float(l_g_gan.detach()), "ours": total_adv},
        "d_loss": {"official": float((l_d_real + l_d_fake).detach()), "ours": d_parts["d_loss"]},
        "g_gradients": grads(g_grad, g_grad_off),
        "d_gradients": grads(d_grad, d_grad_off),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official", required=True, type=Path, help="XPixelGroup/BasicSR checkout")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-generators", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "official-esrgan.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    mods = official_basicsr(args.official)
    result = {"what": "ESRGAN (baselines/esrgan) vs XPixelGroup/BasicSR 8d56e3a: RRDBNet x4 / "
                      "x8 (UGPNet RRDBNetX8), VGGStyleDiscriminator, ESRGANModel G and D losses; "
                      "same random weights through our key maps",
              "size": args.size, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "cpu": platform.processor() or platform.machine()}
    result["losses"] = losses(mods)
    result["discriminators"] = discriminators(mods)
    if not args.skip_generators:
        result["generators"] = generators(mods, args.size, args.repeats)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
