"""GFP-GAN v1: our ``baselines/gfpgan`` against the official code, same random weights, 512 px.

    .venv/bin/python bench/official_gfpgan.py --official /tmp/official/GFPGAN \
        --basicsr /tmp/official/BasicSR [--out bench/official-gfpgan.json] [--runs 3]

The official ``GFPGANv1`` (TencentARC/GFPGAN gfpgan/archs/gfpganv1_arch.py) is built from the
fetched sources (a scratch folder, never committed) on BasicSR's ``stylegan2_arch.py`` and its own
CPU ``upfirdn2d_native``; only BasicSR's compiled fused leaky ReLU, which has no CPU path, is
replaced by ``sqrt(2) * leaky_relu(x + b, 0.2)``, and the package ``__init__`` files (which import
every arch, cv2, the data pipeline) are bypassed. Its state dict (random weights, every bias and
noise strength randomised too) is loaded into ours through ``baselines/gfpgan/keymap.py``
strictly; both run the stored noise (``randomize_noise=False`` / ``noise="const"``). Reported:
max abs and relative differences of the image, the U-Net toRGB pyramid, the gradient of one
trainable tensor, and the median forward time of each in this one process.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
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


def official_gfpgan(gfpgan_root: Path, basicsr_root: Path):
    """The official GFPGANv1 class (see the module docstring for what is replaced)."""
    b = basicsr_root / "basicsr"
    _package("basicsr", b)
    _package("basicsr.archs", b / "archs")
    _package("basicsr.ops", b / "ops")
    _package("basicsr.utils", b / "utils")
    _load("basicsr.utils.registry", b / "utils" / "registry.py")
    _package("basicsr.ops.upfirdn2d", b / "ops" / "upfirdn2d")
    up = _load("basicsr.ops.upfirdn2d.upfirdn2d", b / "ops" / "upfirdn2d" / "upfirdn2d.py")
    sys.modules["basicsr.ops.upfirdn2d"].upfirdn2d = up.upfirdn2d  # its CPU path: native

    fused = types.ModuleType("basicsr.ops.fused_act")

    def fused_leaky_relu(x, bias, negative_slope=0.2, scale=2 ** 0.5):
        return F.leaky_relu(x + bias.view(1, -1, *[1] * (x.ndim - 2)), negative_slope) * scale

    class FusedLeakyReLU(nn.Module):
        def __init__(self, channel, negative_slope=0.2, scale=2 ** 0.5):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(channel))
            self.negative_slope, self.scale = negative_slope, scale

        def forward(self, x):
            return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)

    fused.fused_leaky_relu, fused.FusedLeakyReLU = fused_leaky_relu, FusedLeakyReLU
    sys.modules["basicsr.ops.fused_act"] = fused
    _load("basicsr.archs.stylegan2_arch", b / "archs" / "stylegan2_arch.py")
    _package("gfpgan", gfpgan_root / "gfpgan")
    _package("gfpgan.archs", gfpgan_root / "gfpgan" / "archs")
    return _load("gfpgan.archs.gfpganv1_arch",
                 gfpgan_root / "gfpgan" / "archs" / "gfpganv1_arch.py").GFPGANv1


def diff(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a.double() - b.double()).abs()
    return {"max_abs": float(d.max()), "max_rel": float(d.max() / b.double().abs().max()),
            "mean_abs": float(d.mean())}


def timed(fn, runs: int) -> dict:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 3), "all_s": [round(t, 3) for t in times]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, required=True, help="TencentARC/GFPGAN sources")
    ap.add_argument("--basicsr", type=Path, default=None,
                    help="XPixelGroup/BasicSR sources (default: beside --official)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "official-gfpgan.json")
    args = ap.parse_args(argv)
    basicsr = args.basicsr or args.official.parent / "BasicSR"

    from baselines.gfpgan.arch import GFPGANv1
    from baselines.gfpgan.keymap import load_official_state

    Official = official_gfpgan(args.official, basicsr)
    torch.manual_seed(0)
    theirs = Official(out_size=args.size, num_style_feat=512, channel_multiplier=1,
                      resample_kernel=(1, 3, 3, 1), decoder_load_path=None, fix_decoder=True,
                      num_mlp=8, lr_mlp=0.01, input_is_latent=True, different_w=True, narrow=1,
                      sft_half=True)
    with torch.no_grad():  # randomise what is initialised constant (biases, noise strengths)
        for name, p in theirs.named_parameters():
            if p.ndim <= 1:
                p.add_(torch.randn_like(p) * 0.2)
    ours = GFPGANv1(dict(size=args.size, style_dim=512, n_mlp=8, channel_multiplier=1,
                         channel_max=512, basecode_size=16))
    ignored = load_official_state(ours, theirs.state_dict(), "official GFPGANv1 (random)")
    theirs.eval()
    ours.eval()
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())

    g = torch.Generator().manual_seed(1)
    x = (torch.rand(1, 3, args.size, args.size, generator=g) * 2 - 1)
    with torch.no_grad():
        img_t, rgbs_t = theirs(x, return_rgb=True, randomize_noise=False)
        img_o, rgbs_o = ours(x, noise="const")
    out = {"image": diff(img_o, img_t),
           "pyramid": {str(r.shape[-1]): diff(a, r) for a, r in zip(rgbs_o, rgbs_t)}}

    # one backward pass each: the gradient reaching a trainable tensor (U-Net side)
    xg = x.clone()
    lt = theirs(xg, return_rgb=False, randomize_noise=False)[0].square().mean()
    lt.backward()
    lo = ours(xg, noise="const", return_rgb=False)[0].square().mean()
    lo.backward()
    out["grad_final_linear_weight"] = diff(ours.final_linear.weight.grad,
                                           theirs.final_linear.weight.grad)
    out["grad_condition_scale_0"] = diff(ours.condition_scale[0][0].weight.grad,
                                         theirs.condition_scale[0][0].weight.grad)

    with torch.no_grad():
        t_ours = timed(lambda: ours(x, noise="const", return_rgb=False), args.runs)
        t_theirs = timed(lambda: theirs(x, return_rgb=False, randomize_noise=False), args.runs)
    record = {
        "method": "gfpgan (GFP-GAN v1, channel multiplier 1)",
        "official": {"repo": "TencentARC/GFPGAN", "path": str(args.official),
                     "basicsr": str(basicsr),
                     "replaced": "basicsr.ops.fused_act (no CPU path): sqrt(2)*leaky_relu(x+b, 0.2); "
                                 "upfirdn2d: BasicSR's own upfirdn2d_native (its CPU path)"},
        "size": args.size, "params": {"ours": n_ours, "official": n_theirs},
        "ignored_keys": ignored, "noise": "stored buffers (randomize_noise=False)",
        "diff": out,
        "forward_cpu_batch1": {"ours": t_ours, "official": t_theirs,
                               "threads": torch.get_num_threads(), "runs": args.runs},
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "python": platform.python_version()},
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    ok = out["image"]["max_rel"] < 1e-4 and math.isfinite(out["image"]["max_abs"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
