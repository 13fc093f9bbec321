"""GLEAN: our ``baselines/glean`` against mmagic's ``GLEANStyleGANv2``, same random weights.

    .venv/bin/pip install --target /tmp/offpkgs-glean mmengine mmcv-lite   # once (pure Python)
    .venv/bin/python bench/official_glean.py --official /tmp/official/mmagic \
        [--pkgs /tmp/offpkgs-glean] [--size 512] [--repeats 3] [--threads 2]

``--official``: a checkout of open-mmlab/mmagic (scratch, never committed; 0a560bb here).
The script re-runs itself with ``--pkgs`` on ``PYTHONPATH`` (mmengine and mmcv-lite stay out of
the project's environment). The official files are imported by bench/_mmagic_shim.py: mmagic's
package ``__init__`` chain is bypassed, and mmcv's compiled ops are never loaded, so mmcv's own
CPU reference paths run (``_upfirdn2d_ref``, ``bias_leakyrelu_ref``). Nothing official is edited.

Builds ``GLEANStyleGANv2(in_size=size/8, out_size=size)`` (defaults: rrdb 64 x 23, style 512,
8 MLPs, channel multiplier 2) and ``StyleGAN2Discriminator(in_size=size, channel_multiplier=1)``
(the discriminator of the project's FFHQ-512 prior), randomises every tensor (biases, noise
strengths and noise buffers too; plain convs at N(0, 1/fan_in) so 23 RRDBs stay finite), saves them as an mmagic checkpoint ``{meta, state_dict}`` with
``generator.`` / ``discriminator.`` prefixes, loads that file into ours through
``baselines.glean.keymap`` (strict), and compares the outputs on one random LR image (batch 1)
and D on two images, plus the median forward time of each (same process and threads).
Writes ``bench/official-glean.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int) -> float:
    import torch

    with torch.no_grad():
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compare(a, b) -> dict:
    d = (a.double() - b.double()).abs()
    return {"max_abs_diff": float(d.max()), "ref_max_abs": float(b.abs().max()),
            "max_rel_diff": float(d.max() / b.abs().max()), "mean_abs_diff": float(d.mean())}


def run(args) -> dict:
    import torch

    sys.path[:0] = [str(REPO), str(REPO / "bench")]
    from _mmagic_shim import import_official

    from baselines.glean.arch import GLEANStyleGANv2
    from baselines.glean.keymap import load_official
    from ugpnet.models.synthesis import Discriminator

    torch.set_num_threads(args.threads)
    glean_mod, disc_mod, _ = import_official(args.official)
    size, s = args.size, args.size // 8
    torch.manual_seed(0)
    off = glean_mod.GLEANStyleGANv2(in_size=s, out_size=size).eval()
    off_d = disc_mod.StyleGAN2Discriminator(in_size=size, channel_multiplier=1).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for net in (off, off_d):
            for name, t in list(net.named_parameters()) + list(net.named_buffers()):
                if name.endswith("kernel"):
                    continue
                scale = 1.0  # equalized-lr weights (weight_orig) and noise buffers: N(0, 1)
                if name.endswith("bias") or name.endswith("noise_injector.weight"):
                    scale = 0.1
                elif net is off and not name.startswith("generator.") and t.ndim > 1:
                    scale = (t[0].numel()) ** -0.5  # plain convs/linear: keep activations O(1)
                t.copy_(torch.randn(t.shape, generator=g) * scale)
    state = {**{f"generator.{k}": v for k, v in off.state_dict().items()},
             **{f"discriminator.{k}": v for k, v in off_d.state_dict().items()}}
    ours = GLEANStyleGANv2(dict(size=size, style_dim=512, n_mlp=8, channel_multiplier=2,
                                channel_max=512, lr_mlp=0.01), in_size=s).eval()
    ours_d = Discriminator(size, channel_multiplier=1).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "glean_random.pth"
        torch.save({"meta": {"note": "random weights"}, "state_dict": state}, path)
        ignored = load_official(ours, path, ours_d)
    lq = torch.rand(1, 3, s, s, generator=g) * 2 - 1
    imgs = torch.rand(2, 3, size, size, generator=g) * 2 - 1
    with torch.no_grad():
        y_off, y_ours = off(lq), ours(lq)
        d_off, d_ours = off_d(imgs), ours_d(imgs)
    t_off = timed(lambda: off(lq), args.repeats)
    t_ours = timed(lambda: ours(lq), args.repeats)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {
        "what": "mmagic GLEANStyleGANv2 vs baselines/glean GLEANStyleGANv2, same random weights "
                "through baselines/glean/keymap.py (an mmagic {meta, state_dict} file)",
        "official": {"repo": "open-mmlab/mmagic", "commit": args.commit,
                     "files": ["mmagic/models/editors/glean/glean_styleganv2.py",
                               "mmagic/models/editors/stylegan2/stylegan2_generator.py",
                               "mmagic/models/editors/stylegan2/stylegan2_modules.py",
                               "mmagic/models/editors/stylegan2/stylegan2_discriminator.py"],
                     "ops": "mmcv-lite 2.2.0 CPU reference paths (no compiled ext)"},
        "in_size": s, "out_size": size, "batch": 1,
        "params": {"official": n(off), "ours": n(ours),
                   "official_trainable": n(off) - n(off.generator),
                   "ours_trainable": sum(p.numel() for p in ours.trainable_parameters()),
                   "discriminator_official": n(off_d), "discriminator_ours": n(ours_d)},
        "ignored_keys": len(ignored),
        "output": compare(y_ours, y_off),
        "discriminator_logits": compare(d_ours, d_off),
        "forward_s": {"official": round(t_off, 3), "ours": round(t_ours, 3),
                      "threads": args.threads, "repeats": args.repeats, "stat": "median"},
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official", required=True, type=Path, help="mmagic checkout (scratch)")
    p.add_argument("--pkgs", type=Path, default=Path("/tmp/offpkgs-glean"),
                   help="folder with mmengine and mmcv-lite (pip install --target)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "official-glean.json")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.inner:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(args.pkgs)] + [x for x in os.environ.get("PYTHONPATH", "").split(os.pathsep) if x]))
        return subprocess.call([sys.executable, __file__, *(argv or sys.argv[1:]), "--inner"],
                               env=env)
    try:
        args.commit = subprocess.run(["git", "-C", str(args.official), "rev-parse", "HEAD"],
                                     capture_output=True, text=True).stdout.strip() or None
    except OSError:
        args.commit = None
    result = run(args)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
