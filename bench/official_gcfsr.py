"""GCFSR: our ``baselines/gcfsr`` against the official code, same random weights, 512 px.

    .venv/bin/python bench/official_gcfsr.py --official /tmp/official/GCFSR \
        [--out bench/official-gcfsr.json] [--runs 3] [--size 512]

The official ``GCFSR``, ``GCFSR_blind`` and ``StyleGAN2Discriminator_no_std``
(hejingwenhejingwen/GCFSR @ ea9a28e, ``basicsr/archs/gcfsr_arch.py``) are built from the fetched
sources (a scratch folder, never committed) with BasicSR's own CPU ``upfirdn2d_native``; only the
compiled fused leaky ReLU (shipped as a py3.7/3.9 ``.so`` only, no CPU fallback) is replaced by
``sqrt(2) * leaky_relu(x + b, 0.2)``, and the package ``__init__`` files (which import every
arch, cv2 and the data pipeline) are bypassed. Their state dicts (random weights; biases, noise
strengths and the condition linears randomised too, so every term counts) are loaded into ours
through ``baselines/gcfsr/keymap.py`` strictly; both get the same noise tensors (the official
stored noise cannot run, see ``baselines/gcfsr/arch.py``) and ``in_size`` 8 / 32. Reported: max
abs and relative differences of GCFSR's image (batch 2, two different in_size), GCFSR_blind's
image, the discriminator's logits and the gradient reaching two trainable tensors; the median
forward time of each in this one process (batch 1, no_grad, threads as --threads).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
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


def official_gcfsr(root: Path) -> types.ModuleType:
    """The official ``basicsr.archs.gcfsr_arch`` module (see the module docstring)."""
    b = root / "basicsr"
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
    return _load("basicsr.archs.gcfsr_arch", b / "archs" / "gcfsr_arch.py")


def diff(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a.double() - b.double()).abs()
    ref = b.double().abs().max()
    return {"max_abs_diff": float(d.max()), "ref_max_abs": float(ref),
            "max_rel_diff": float(d.max() / ref), "mean_abs_diff": float(d.mean())}


def timed(fn, runs: int) -> dict:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 3), "all_s": [round(t, 3) for t in times]}


def randomise(module: nn.Module, seed: int) -> None:
    """Perturb what the official init leaves constant (biases, noise strengths, condition
    linears) so that every term of the forward pass shows in the comparison."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in module.named_parameters():
            if p.ndim <= 1 or p.shape[-1] == 1:
                p.add_(torch.randn(p.shape, generator=g) * 0.2)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def noise_list(net, batch: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sizes = [net.resolutions[0]] + [r for r in net.resolutions[1:] for _ in range(2)]
    return [torch.randn(batch, 1, r, r, generator=g) for r in sizes]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, required=True,
                    help="hejingwenhejingwen/GCFSR sources (commit ea9a28e)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "official-gcfsr.json")
    ap.add_argument("--note", default="", help="recorded as is (e.g. the machine's load)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from baselines.gcfsr.arch import GCFSR, GCFSRBlind, GCFSRDiscriminator
    from baselines.gcfsr.keymap import gcfsr_discriminator_key_map, load_gcfsr_state
    from ugpnet.models.synthesis.loading import apply_key_map

    off = official_gcfsr(args.official)
    size = args.size
    torch.manual_seed(0)
    theirs = off.GCFSR(size, num_style_feat=512, channel_multiplier=2, narrow=1)
    theirs_blind = off.GCFSR_blind(size, num_style_feat=512, channel_multiplier=2, narrow=1)
    theirs_d = off.StyleGAN2Discriminator_no_std(size, channel_multiplier=2,
                                                 resample_kernel=[1, 3, 3, 1])
    for i, m in enumerate((theirs, theirs_blind, theirs_d)):
        randomise(m, 10 + i)
    ours, ours_blind = GCFSR(size), GCFSRBlind(size)
    ours_d = GCFSRDiscriminator(size)
    ignored = {
        "gcfsr": load_gcfsr_state(ours, theirs.state_dict(), "official GCFSR (random)",
                                  "GCFSR", ""),
        "gcfsr_blind": load_gcfsr_state(ours_blind, theirs_blind.state_dict(),
                                        "official GCFSR_blind (random)", "GCFSR_blind", ""),
        "discriminator": apply_key_map(dict(theirs_d.state_dict()),
                                       gcfsr_discriminator_key_map(ours_d), ours_d,
                                       what="GCFSR D", source="official D (random)"),
    }
    for m in (theirs, theirs_blind, theirs_d, ours, ours_blind, ours_d):
        m.eval()

    out = {"what": "GCFSR / GCFSR_blind / StyleGAN2Discriminator_no_std: ours (baselines/gcfsr) "
                   "vs official hejingwenhejingwen/GCFSR@ea9a28e basicsr/archs/gcfsr_arch.py, "
                   "same random weights via the key map, same noise tensors",
           "size": size, "device": "cpu", "threads": args.threads, "torch": torch.__version__,
           "cpu": platform.machine(), "note": args.note,
           "params": {"gcfsr_ours": n_params(ours), "gcfsr_official": n_params(theirs),
                      "gcfsr_blind_ours": n_params(ours_blind),
                      "gcfsr_blind_official": n_params(theirs_blind),
                      "discriminator_ours": n_params(ours_d),
                      "discriminator_official": n_params(theirs_d)},
           "ignored_official_buffers": {k: len(v) for k, v in ignored.items()}}

    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, size, size, generator=g) * 2 - 1
    cond = torch.tensor([[8 / 32], [4 / 32]])  # two samples, two conditions
    noise = noise_list(ours, 2, 2)
    with torch.no_grad():
        img_t, _ = theirs(x, cond, noise=noise)
        img_o = ours(x, cond, noise=noise)
        out["gcfsr_image"] = diff(img_o, img_t)
        bl_t, _ = theirs_blind(x, noise=noise)
        bl_o = ours_blind(x, noise=noise)
        out["gcfsr_blind_image"] = diff(bl_o, bl_t)
        out["discriminator_logits"] = diff(ours_d(img_t), theirs_d(img_t))

    # one backward pass each (batch 1): gradients reaching a condition linear and final_linear
    x1, c1, n1 = x[:1], cond[:1], [t[:1] for t in noise]
    theirs(x1, c1, noise=n1)[0].square().mean().backward()
    ours(x1, c1, noise=n1).square().mean().backward()
    out["grad_final_linear_weight"] = diff(ours.final_linear.weight.grad,
                                           theirs.final_linear.weight.grad)
    out["grad_condition_scale1_0_weight"] = diff(ours.condition_scale1[0].weight.grad,
                                                 theirs.condition_scale1[0].weight.grad)

    n_t = noise_list(ours, 1, 3)
    with torch.no_grad():
        t_of = timed(lambda: theirs(x1, c1, noise=n_t), args.runs)
        t_us = timed(lambda: ours(x1, c1, noise=n_t), args.runs)
    out["forward_seconds"] = {"official": t_of, "ours": t_us, "repeats": args.runs,
                              "statistic": "median after one warm-up, batch 1, no_grad"}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
