"""Data and evaluation speed: ``degrade`` per task against its floor, and metric throughput.

Usage: .venv/bin/python bench/bench_data.py [--images 4] [--size 512] [--runs 3] [--threads 2]
       [--skip-metrics] [--fid-distance]

Degradation. A few synthetic ``size``² PNGs (smooth colour fields plus texture, like faces) are
degraded with ``degrade_folder(workers=1)`` per task. The *floor* of a task is what any
implementation must do for the same images, timed in the same run: decode the input PNG, the
task's core operation alone (denoise: ``rng.poisson`` + ``rng.normal``; deblur: one
``scipy.signal.fftconvolve`` of the padded image with a 71x71 kernel; sr: the resize-right call),
and encode the output array to PNG with the same settings. Printed: ms/image of the floor and of
``degrade``, and their ratio (goal: <= 1.5). Runs are interleaved and the minimum is kept, so load
from other processes affects both alike.

Metrics. Images/s of each metric (psnr, ssim, lpips alex, fid features) on ``size``² pairs on the
CPU, each timed alone, plus a whole ``evaluate_dirs`` with all four (GT FID statistics cached, the
second evaluation of a test set). ``--fid-distance`` also times the fixed cost of one FID value
(old: two 2048x2048 eigendecompositions per value; now: factors of the centred features, the
reference's cached per test set) at 100 and 3000 images.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_images(folder: Path, n: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        low = rng.integers(0, 256, (size // 32, size // 32, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(low).resize((size, size), Image.BICUBIC), dtype=np.int16)
        tex = rng.normal(0, 6, (size, size, 3))
        img = np.clip(base + tex, 0, 255).astype(np.uint8)
        p = folder / f"img{i:03d}.png"
        Image.fromarray(img).save(p, format="PNG", compress_level=6)
        out.append(p)
    return out


def _decode(p: Path) -> np.ndarray:
    with Image.open(p) as im:
        return np.asarray(im.convert("RGB"))


def _encode(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode="RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def floor_once(task: str, files: list[Path], kernel: np.ndarray, outs: dict) -> None:
    """Decode each input, run only the core operation, encode the real output array."""
    from scipy.signal import fftconvolve

    for p in files:
        img = _decode(p)
        if task == "denoise":
            rng = np.random.default_rng(1)
            x = img / 255.0
            rng.poisson(30.0 * x)
            rng.normal(0.0, 0.3, size=x.shape)
        elif task == "deblur":
            r = kernel.shape[0] // 2
            pad = np.pad(img / 255.0, ((r, r), (r, r), (0, 0)), mode="reflect")
            fftconvolve(pad, kernel[:, :, None].astype(np.float64), mode="valid", axes=(0, 1))
        else:
            from resize_right import interp_methods, resize

            resize(img.astype(np.float64), scale_factors=[1 / 8, 1 / 8, 1],
                   interp_method=interp_methods.cubic, antialiasing=True, pad_mode="symmetric")
        _encode(outs[p.stem])


def bench_degrade(tmp: Path, files: list[Path], runs: int) -> list[tuple]:
    from ugpnet.degradations import degrade_folder, generate_kernel_bank
    from ugpnet.io import read_image

    bank = generate_kernel_bank(4, 71, 0)[0]
    opts = {"denoise": dict(sigma=0.3, k=30.0), "deblur": dict(kernel_bank=bank),
            "sr": dict(scale=8)}
    rows = []
    for task in ("denoise", "deblur", "sr"):
        out = tmp / f"out_{task}"
        degrade_folder(task, 2023, files[0].parent, out, progress=False, **opts[task])  # warm-up
        outs = {p.stem: read_image(out / p.name) for p in files}
        t_floor, t_deg = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            floor_once(task, files, bank[0], outs)
            t_floor.append((time.perf_counter() - t0) / len(files))
            t0 = time.perf_counter()
            degrade_folder(task, 2023, files[0].parent, out, progress=False, **opts[task])
            t_deg.append((time.perf_counter() - t0) / len(files))
        rows.append((task, min(t_floor) * 1e3, min(t_deg) * 1e3, min(t_deg) / min(t_floor)))
    return rows


def bench_metrics(tmp: Path, files: list[Path], runs: int) -> list[tuple]:
    from ugpnet.io import read_image
    from ugpnet.metrics import evaluate as ev
    from ugpnet.metrics import fid as fidm

    gts = [read_image(p) for p in files]
    rng = np.random.default_rng(5)
    preds = [np.clip(g.astype(np.int16) + rng.integers(-8, 9, g.shape), 0, 255).astype(np.uint8)
             for g in gts]
    lp = ev._lpips_metric("alex", "cpu")
    model = fidm._shared_model("cpu")

    def fid_feats():
        col = fidm.ActivationCollector(model, "cpu", 50)
        for p in preds:
            col.add(p)
        col.activations()

    fns = {"psnr": lambda: [ev.psnr(g, p) for g, p in zip(gts, preds)],
           "ssim": lambda: [ev.ssim(g, p) for g, p in zip(gts, preds)],
           "lpips": lambda: [lp(g, p) for g, p in zip(gts, preds)],
           "fid (pred features)": fid_feats}
    rows = []
    for name, fn in fns.items():
        fn()
        best = min(_timed(fn) for _ in range(runs))
        rows.append((name, len(files) / best))
    gt_dir, pred_dir = files[0].parent, tmp / "pred"
    pred_dir.mkdir(exist_ok=True)
    for p, arr in zip(files, preds):
        Image.fromarray(arr).save(pred_dir / p.name)
    ev.evaluate_dirs(pred_dir, gt_dir, progress=False)  # first: computes and caches GT FID stats
    best = min(_timed(lambda: ev.evaluate_dirs(pred_dir, gt_dir, progress=False))
               for _ in range(runs))
    rows.append(("evaluate_dirs, all four (GT stats cached)", len(files) / best))
    return rows


def bench_fid_distance(tmp: Path) -> list[tuple]:
    """Fixed cost of one FID value (seconds) on 2048-d features: the old way (eigendecomposition
    of both 2048x2048 covariances every time) against factors from the centred features and the
    reference factor cached per test set (second method scored against the same test set)."""
    from ugpnet.metrics import fid as fidm

    rng = np.random.default_rng(0)
    rows = []
    for n in (100, 3000):
        pred = rng.normal(size=(n, fidm.FID_DIMS))
        ref = rng.normal(size=(n, fidm.FID_DIMS)) * 1.1 + 0.1
        (m1, s1), (m2, s2) = fidm.activation_statistics(pred), fidm.activation_statistics(ref)
        t_old = _timed(lambda: fidm.frechet_distance(m1, s1, m2, s2))
        fidm.reference_factor(s2)  # the first method computes and stores it
        t_new = _timed(lambda: fidm.frechet_distance(
            m1, s1, m2, s2, fidm.activation_factor(pred), fidm.reference_factor(s2)))
        rows.append((n, t_old, t_new))
    return rows


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-metrics", action="store_true")
    ap.add_argument("--fid-distance", action="store_true",
                    help="also time one FID value the old way and now (about a minute)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-data-"))
    os.environ.setdefault("UGPNET_CACHE", str(tmp / "cache"))
    try:
        files = synthetic_images(tmp / "gt", args.images, args.size)
        load0 = os.getloadavg()[0]
        print(f"machine: {platform.machine()} {os.cpu_count()} cores, python "
              f"{platform.python_version()}, numpy {np.__version__}; {args.images} images "
              f"{args.size}x{args.size}, min of {args.runs} runs")
        print(f"\n{'task':8s} {'floor ms/img':>13s} {'degrade ms/img':>15s} {'ratio':>6s}")
        for task, fl, dg, ratio in bench_degrade(tmp, files, args.runs):
            print(f"{task:8s} {fl:13.1f} {dg:15.1f} {ratio:6.2f}")
        if not args.skip_metrics:
            print(f"\n{'metric (CPU, ' + str(args.threads) + ' threads)':44s} {'images/s':>9s}")
            for name, ips in bench_metrics(tmp, files, args.runs):
                print(f"{name:44s} {ips:9.2f}")
        if args.fid_distance:
            print(f"\n{'FID value, N images per set':28s} {'old s':>7s} {'now s':>7s}")
            for n, t_old, t_new in bench_fid_distance(tmp):
                print(f"{'N = ' + str(n):28s} {t_old:7.2f} {t_new:7.2f}")
        print(f"\nload average 1 min: {load0:.2f} before, {os.getloadavg()[0]:.2f} after")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
