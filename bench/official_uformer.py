"""Uformer-B: our network, loss and schedule against the official code, same random weights, 512 px.

    .venv/bin/python bench/official_uformer.py --official /tmp/official/Uformer \\
        [--offpkgs /tmp/offpkgs-uformer] [--repeats 3] [--threads 2]

``--official``: a checkout of ZhendongWang6/Uformer (scratch, never committed). Its ``model.py``
imports timm and einops, which are not project dependencies: install them apart
(``.venv/bin/pip install --target /tmp/offpkgs-uformer timm einops``) and pass that folder as
``--offpkgs`` (appended to ``sys.path`` of this process only). Nothing of the official code is
changed (it has no compiled ops).

For each paper network -- ``get_arch('Uformer_B')`` built for the denoising crop
(``img_size=128``: the bottleneck's 8x8 windows are not shifted) and for the deblurring crop
(``img_size=256``: shifted) -- builds the official ``Uformer`` (random init, fixed seed, every
bias and LayerNorm randomised so that a wrong mapping shows), wraps it in ``nn.DataParallel`` and
saves ``{'epoch', 'state_dict', 'optimizer'}`` as the authors' training scripts do (``module.``
keys), loads that file into ours through ``baselines.uformer.keymap`` (strict), and compares both
in eval mode (drop path off) on the same random 512x512 image, batch 1: the output and the
residual the network adds (output - input). Forward time ours vs official at 512 in one process
(median of ``--repeats`` after a warm-up). Also: the official CharbonnierLoss against ours and the
official per-epoch learning rates (GradualWarmupScheduler + CosineAnnealingLR) against
:func:`baselines.uformer.train.warmup_cosine_factor`. Writes ``bench/official-uformer.json``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from baselines.uformer.arch import UFORMER_B, build_uformer  # noqa: E402
from baselines.uformer.keymap import load_uformer  # noqa: E402
from baselines.uformer.train import warmup_cosine_factor  # noqa: E402
from ugpnet.losses.pixel import CharbonnierLoss  # noqa: E402


def import_official(root: Path, offpkgs: Path | None):
    """(model, losses, warmup_scheduler) modules of the official checkout."""
    if offpkgs is not None:
        sys.path.append(str(offpkgs))
    sys.path.insert(0, str(root))
    return (importlib.import_module("model"), importlib.import_module("losses"),
            importlib.import_module("warmup_scheduler"))


def official_uformer_b(model_mod, img_size: int):
    """utils/model_utils.py:76-78 get_arch('Uformer_B') with --train_ps img_size, --dd_in 3."""
    return model_mod.Uformer(img_size=img_size, embed_dim=32, win_size=8,
                             token_projection="linear", token_mlp="leff",
                             depths=[1, 2, 8, 8, 2, 8, 8, 2, 1], modulator=True, dd_in=3)


def randomise(net: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, prm in net.named_parameters():
            if name.endswith("bias"):
                prm.normal_(0, 0.05)
            elif "norm" in name and name.endswith("weight"):
                prm.normal_(1, 0.1)


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
            "max_rel_diff": float(d.max() / b.abs().max()), "mean_abs_diff": float(d.mean())}


class CosineAnnealingLR18(torch.optim.lr_scheduler.CosineAnnealingLR):
    """CosineAnnealingLR as in torch 1.8 (the authors' requirements.txt: torch==1.8.0), whose
    ``get_lr`` returns ``base_lrs`` whenever ``last_epoch == 0``. Recent torch returns that only
    on the constructor's step, so GradualWarmupScheduler's first call after the warm-up (at the
    cosine's epoch 0) takes the recursive branch and raises the lr above base by
    (1 + 1) / (1 + cos(pi / T_max)) for one epoch, an artefact of the version."""

    def get_lr(self):
        if self.last_epoch == 0:
            return list(self.base_lrs)
        return super().get_lr()


def official_lrs(ws, nepoch: int, warmup: int, lr: float, eta_min: float,
                 cosine_cls=torch.optim.lr_scheduler.CosineAnnealingLR) -> list[float]:
    """The lr each epoch 1..nepoch trains with, exactly as train_denoise.py:92-97 steps it."""
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    cosine = cosine_cls(opt, nepoch - warmup, eta_min=eta_min)
    sched = ws.GradualWarmupScheduler(opt, multiplier=1, total_epoch=warmup,
                                      after_scheduler=cosine)
    sched.step()
    out = []
    for _ in range(nepoch):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official", required=True, type=Path, help="Uformer checkout (scratch)")
    p.add_argument("--offpkgs", type=Path, default=Path("/tmp/offpkgs-uformer"),
                   help="folder with timm and einops (pip install --target)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "official-uformer.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import warnings

    warnings.filterwarnings("ignore")
    model_mod, losses_mod, ws = import_official(args.official,
                                                args.offpkgs if args.offpkgs.exists() else None)
    size = args.size
    result = {"what": "Uformer-B: ours (baselines/uformer) vs official ZhendongWang6/Uformer "
                      "model.py, same random weights via the key map (a DataParallel "
                      "{epoch, state_dict, optimizer} file), eval mode",
              "size": size, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "cpu": platform.processor() or platform.machine(), "networks": {}}
    torch.manual_seed(0)
    x = torch.rand(1, 3, size, size)
    for task, img_size in (("denoise", 128), ("deblur", 256)):
        torch.manual_seed(1)
        off = official_uformer_b(model_mod, img_size)
        randomise(off)
        off.eval()
        ours = build_uformer(UFORMER_B, img_size)
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "Uformer_B.pth"
            opt = torch.optim.AdamW(off.parameters(), lr=2e-4)
            torch.save({"epoch": 1, "state_dict": torch.nn.DataParallel(off).state_dict(),
                        "optimizer": opt.state_dict()}, f)
            ignored = load_uformer(f, ours)
        ours.eval()
        with torch.no_grad():
            ref, out = off(x), ours(x)
        entry = {"img_size": img_size,
                 "params": {"ours": sum(q.numel() for q in ours.parameters()),
                            "official": sum(q.numel() for q in off.parameters())},
                 "ignored_official_buffers": len(ignored),
                 "output": compare(out, ref), "residual": compare(out - x, ref - x)}
        if task == "deblur":
            t_off = timed(lambda: off(x), args.repeats)
            t_ours = timed(lambda: ours(x), args.repeats)
            entry["forward_seconds"] = {"official": t_off, "ours": t_ours,
                                        "repeats": args.repeats,
                                        "statistic": "median after one warm-up, batch 1, no_grad"}
        result["networks"][task] = entry
        print(task, json.dumps(entry), flush=True)
        del off, ours
    # the loss
    a, b = torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64)
    result["charbonnier"] = {"official": float(losses_mod.CharbonnierLoss()(a, b)),
                             "ours": float(CharbonnierLoss(eps=1e-3)(a, b))}
    # the schedule, per epoch (ours with one iteration per epoch)
    nepoch, warmup, lr, eta_min = 20, 3, 2e-4, 1e-6
    off_lrs = official_lrs(ws, nepoch, warmup, lr, eta_min, CosineAnnealingLR18)
    off_now = official_lrs(ws, nepoch, warmup, lr, eta_min)
    ours_lrs = [lr * warmup_cosine_factor(e, total_iters=nepoch, warmup_iters=warmup,
                                          step_iters=1, lr=lr, eta_min=eta_min)
                for e in range(nepoch)]
    result["schedule"] = {
        "nepoch": nepoch, "warmup_epochs": warmup, "lr": lr, "eta_min": eta_min,
        "official_lr_per_epoch_torch18": off_lrs, "ours_lr_per_epoch": ours_lrs,
        "max_abs_diff_torch18": max(abs(u - v) for u, v in zip(off_lrs, ours_lrs)),
        "official_lr_per_epoch_this_torch": off_now,
        "note": "official = GradualWarmupScheduler + CosineAnnealingLR stepped per epoch; with "
                "torch 1.8's CosineAnnealingLR (the authors' version) it is ours; with this "
                "torch epoch 4 is lr * 2 / (1 + cos(pi / 17)) and the cosine lags one epoch"}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "schedule"}, indent=2))
    print("schedule max abs diff (torch 1.8 rule)", result["schedule"]["max_abs_diff_torch18"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
