"""GPEN BFR-512: our network against the official code, same random weights, at 512 px.

    .venv/bin/python bench/official_gpen.py --official /tmp/official/GPEN [--repeats 3]

``--official``: a checkout of yangxy/GPEN (scratch, never committed; e.g. ``git archive`` of the
repository into /tmp/official/GPEN). Its ``face_model/op`` JIT-compiles CUDA kernels at import
time when CUDA is available; we import it with ``torch.cuda.is_available`` reporting False, so
its own native CPU paths (``upfirdn2d_native``, the plain fused leaky ReLU) are used and nothing
is compiled. Nothing else of the official code is changed.

Builds ``FullGenerator(512, 512, 8, channel_multiplier=2, narrow=1)`` and ``Discriminator(512)``
(official, random init, fixed seed), saves their state dicts as the release files are laid out
(flat; ``GPEN-BFR-512.pth`` / ``GPEN-BFR-512-D.pth``), loads them into ours through
``baselines.gpen.keymap`` (strict), and compares outputs on the same random input (batch 1 for
G, batch 2 for D) and the forward time at 512 px (median of ``--repeats``, after a warm-up, same
process and threads). Optionally the ArcFace IR-SE50 (random weights via its key map) too.
Writes ``bench/official-gpen.json``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from baselines.gpen.arch import GPEN, GPENDiscriminator, gpen_channels  # noqa: E402
from baselines.gpen.irse import IRSE50  # noqa: E402
from baselines.gpen.keymap import (load_gpen_discriminator, load_gpen_generator,  # noqa: E402
                                   load_irse50)


def import_official(root: Path):
    """(gpen_model, model_irse) modules of the official checkout, compiled ops never loaded."""
    for sub in ("face_model", "training/loss"):
        sys.path.insert(0, str(root / sub))
    real = torch.cuda.is_available
    torch.cuda.is_available = lambda: False  # the op package compiles its CUDA ext only when True
    try:
        op = importlib.import_module("op")
        gpen_model = importlib.import_module("gpen_model")
        model_irse = importlib.import_module("model_irse")
    finally:
        torch.cuda.is_available = real
    return gpen_model, model_irse, op


def timed(fn, repeats: int) -> float:
    with torch.no_grad():
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compare(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a.double() - b.double()).abs()
    return {"max_abs_diff": float(d.max()), "ref_max_abs": float(b.abs().max()),
            "max_rel_diff": float(d.max() / b.abs().max()),
            "mean_abs_diff": float(d.mean())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official", required=True, type=Path, help="yangxy/GPEN checkout (scratch)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "official-gpen.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    gpen_model, model_irse, _ = import_official(args.official)
    torch.manual_seed(0)
    size = args.size
    off_g = gpen_model.FullGenerator(size, 512, 8, channel_multiplier=2, narrow=1,
                                     device="cpu").eval()
    off_d = gpen_model.Discriminator(size, channel_multiplier=2, narrow=1, device="cpu").eval()
    # random non-zero values everywhere (the official init has zero biases / noise weights,
    # which would hide a wrong mapping of those tensors)
    with torch.no_grad():
        for net in (off_g, off_d):
            for name, prm in net.named_parameters():
                if name.endswith("noise.weight") or name.endswith("bias"):
                    prm.normal_(0, 0.1)
                    if "modulation" in name:
                        prm.add_(1.0)
    ours_g = GPEN(size=size)
    ours_d = GPENDiscriminator(size=size, channels=gpen_channels(size))
    ignored_g = load_gpen_generator("GPEN-BFR-512.pth (in memory)", ours_g, state=off_g.state_dict())
    ignored_d = load_gpen_discriminator("GPEN-BFR-512-D.pth (in memory)", ours_d,
                                        state=off_d.state_dict())
    ours_g.eval()
    ours_d.eval()
    # the official modules take device='cpu' for their native ops: compare on the CPU path
    x = torch.rand(1, 3, size, size) * 2 - 1
    with torch.no_grad():
        ref, _ = off_g(x)
        out = ours_g(x)
        imgs = torch.rand(2, 3, size, size) * 2 - 1
        ref_d, out_d = off_d(imgs), ours_d(imgs)
    result = {
        "what": "GPEN BFR-512 FullGenerator / Discriminator: ours (baselines/gpen) vs official "
                "yangxy/GPEN face_model/gpen_model.py, same random weights via the key map",
        "size": size, "device": str(dev), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "params": {"generator_ours": sum(p.numel() for p in ours_g.parameters()),
                   "generator_official": sum(p.numel() for p in off_g.parameters()),
                   "discriminator_ours": sum(p.numel() for p in ours_d.parameters()),
                   "discriminator_official": sum(p.numel() for p in off_d.parameters())},
        "ignored_official_buffers": {"generator": len(ignored_g), "discriminator": len(ignored_d)},
        "generator": compare(out, ref),
        "discriminator": compare(out_d, ref_d),
    }
    # ArcFace IR-SE50 (identity loss) with random weights and random BN statistics
    off_id = model_irse.Backbone(112, 50, drop_ratio=0.6, mode="ir_se").eval()
    with torch.no_grad():
        for m in off_id.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
    ours_id = IRSE50()
    load_irse50("model_ir_se50.pth (in memory)", ours_id, state=off_id.state_dict())
    ours_id.eval()
    face = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        result["arcface_irse50"] = compare(ours_id(face), off_id(face))
    # forward time at full size, batch 1, same process
    xd = x.to(dev)
    off_g.to(dev)
    ours_g.to(dev)
    t_off = timed(lambda: off_g(xd), args.repeats)
    t_ours = timed(lambda: ours_g(xd), args.repeats)
    result["forward_seconds"] = {"official": t_off, "ours": t_ours, "repeats": args.repeats,
                                 "statistic": "median after one warm-up, batch 1, no_grad"}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
