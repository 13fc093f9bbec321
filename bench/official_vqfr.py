"""VQFR v1: our networks against the official code, same random weights, at 512².

    .venv/bin/python bench/official_vqfr.py --official /tmp/official/VQFR [--out bench/official-vqfr.json]

``--official``: a checkout of TencentARC/VQFR (scratch folder, never committed; e.g. ``git
archive`` of the mirror). Its networks are imported from their files with only what cannot run
here replaced: ``timm.models.layers.trunc_normal_`` (torch's own), ``sklearn.cluster`` (k-means,
unused at inference), the package ``__init__``s that import the training code, and the compiled
ops (the repo's own CPU fallbacks: ``upfirdn2d_native`` and ``torchvision.ops.deform_conv2d``,
which the official ``DCNv2Pack`` itself calls for torchvision >= 0.9). ``einops`` is needed:
``--deps DIR`` adds a folder holding it (``pip install --target DIR einops``) to ``sys.path``.

Checks (outputs of both with the official weights copied into ours by ``keymap.official_to_ours``,
strict): ``VQFRv1`` (both branches; the evaluated one is ``main_dec``), ``VQGANv1`` (stage 1),
``SWADiscriminator`` and ``NLayerDiscriminator``. Times one forward of each VQFR at 512² (median of
``--repeats``, same process, same threads). The official quantiser in eval mode also counts code
usage with a Python loop over the 1024 codes, which we do not; that is part of its time.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from baselines.vqfr.arch import (VQFR, VQGAN, PatchDiscriminator,  # noqa: E402
                                 SWAGANDiscriminator)
from baselines.vqfr.keymap import official_to_ours  # noqa: E402
from ugpnet.checkpoints import load_state_dict_strict  # noqa: E402

ALIGN = {f"Level_{2 ** s}": {"cond_channels": 32, "cond_downscale_rate": 2 ** s,
                             "deformable_groups": 4} for s in range(5, -1, -1)}
QUANT = {"Level_32": {"type": "L2VectorQuantizerKmeans", "in_dim": 512, "num_code": 1024,
                      "code_dim": 256, "reservoir_size": 16384, "reestimate_iters": 2000,
                      "reestimate_maxiters": -1, "warmup_iters": -1}}
# network_sr of options/train/VQFR/train_vqfr_v1_B16_200K.yml
NETWORK_SR = dict(base_channels=128, proj_patch_size=32, resolution_scale_rates=[1, 2, 2, 2, 2, 2],
                  channel_multipliers=[1, 1, 2, 2, 2, 4], encoder_num_blocks=2,
                  decoder_num_blocks=3, quant_level=["Level_32"],
                  inpfeat_extraction_opt={"in_dim": 3, "out_dim": 32}, align_opt=ALIGN,
                  align_from_patch=32, quantizer_opt=QUANT, fix_keys=["embedding"])


def _module(name, path=None, package=False, **attrs):
    m = types.ModuleType(name)
    if package:
        m.__path__ = [str(path)]
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def import_official(root: Path):
    """The official arch modules, imported file by file (see the module doc for the stubs)."""
    import logging

    import torchvision  # noqa: F401 - before the stubs: its torch._dynamo import inspects
    # every module spec, and a stub has none

    src = root / "vqfr"
    _module("timm", package=True, path=root)
    _module("timm.models", package=True, path=root)
    _module("timm.models.layers", trunc_normal_=torch.nn.init.trunc_normal_)
    _module("sklearn", package=True, path=root)
    _module("sklearn.cluster", k_means=None)
    _module("vqfr", package=True, path=src)
    _module("vqfr.utils", package=True, path=src / "utils",
            get_root_logger=lambda *a, **k: logging.getLogger("vqfr"),
            all_gather=lambda x: [x])
    _load("vqfr.utils.registry", src / "utils" / "registry.py")
    _module("vqfr.ops", package=True, path=src / "ops")
    _load("vqfr.ops.upfirdn2d", src / "ops" / "upfirdn2d" / "__init__.py")
    _load("vqfr.ops.dcn", src / "ops" / "dcn" / "__init__.py")
    _module("vqfr.archs", package=True, path=src / "archs")
    mods = {}
    for n in ("quantizer_arch", "stylegan_arch", "swagan_arch", "patch_disc_arch", "vqganv1_arch",
              "vqfrv1_arch"):
        mods[n] = _load(f"vqfr.archs.{n}", src / "archs" / f"{n}.py")
    return mods


def randomise(net: torch.nn.Module, seed: int) -> None:
    """Non-trivial random weights: every bias and norm parameter perturbed (the authors' init
    zeroes them), the deformable offsets large enough to sample several pixels away."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, p in net.named_parameters():
            if p.ndim == 1 or "norm" in k:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
            if "conv_offset.weight" in k:
                p.mul_(10.0)


def compare(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a.double() - b.double()).abs()
    return {"max_abs": float(d.max()), "max_rel": float(d.max() / b.double().abs().max()),
            "mean_abs": float(d.mean()), "ref_max_abs": float(b.abs().max())}


def timed(fns: dict, repeats: int) -> dict:
    """Median wall time of each function, the repeats interleaved (a CPU shared with other
    work slows both alike)."""
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: {"median_s": statistics.median(v), "all_s": [round(t, 3) for t in v]}
            for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", type=Path, required=True)
    ap.add_argument("--deps", type=Path, default=Path("/tmp/official/_deps"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "official-vqfr.json")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args(argv)
    if args.deps.is_dir():
        sys.path.insert(0, str(args.deps))
    torch.set_num_threads(args.threads)
    off = import_official(args.official)
    result = {"official": str(args.official), "size": args.size, "threads": args.threads,
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "checks": {}}

    # --- VQFR v1
    torch.manual_seed(0)
    theirs = off["vqfrv1_arch"].VQFRv1(**NETWORK_SR).eval()
    randomise(theirs, 1)
    ours = VQFR().eval()
    load_state_dict_strict(ours, official_to_ours(theirs.state_dict()), "official VQFRv1 weights")
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        r_off = theirs(x, return_keys=("dec",))
        r_our = ours(x)
        z_off = theirs(x, return_keys=("feat_dict",))["feat_dict"]["Level_32"]["z_conv"]
    result["params_m"] = {"ours": sum(p.numel() for p in ours.parameters()) / 1e6,
                          "official": sum(p.numel() for p in theirs.parameters()) / 1e6}
    result["checks"]["vqfr_main_dec"] = compare(r_our["main_dec"], r_off["main_dec"])
    result["checks"]["vqfr_dec"] = compare(r_our["dec"], r_off["dec"])
    result["checks"]["vqfr_z_conv"] = compare(r_our["z_conv"], z_off)
    idx_same = float((ours.quantizer.vq.nearest(r_our["z_conv"].permute(0, 2, 3, 1).reshape(
        -1, 256)) == ours.quantizer.vq.nearest(z_off.permute(0, 2, 3, 1).reshape(-1, 256))
    ).float().mean())
    result["checks"]["vqfr_same_codes"] = idx_same
    with torch.no_grad():
        result["time_vqfr_forward"] = timed({"official": lambda: theirs(x, return_keys=("dec",)),
                                             "ours": lambda: ours(x)}, args.repeats)
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result["checks"], indent=1), flush=True)

    # --- VQGAN v1 (stage 1)
    vq_opt = {k: v for k, v in NETWORK_SR.items()
              if k not in ("inpfeat_extraction_opt", "align_opt", "align_from_patch", "fix_keys")}
    vq_opt["quantizer_opt"] = {"Level_32": dict(QUANT["Level_32"], reestimate_maxiters=30000,
                                                warmup_iters=10000)}
    theirs_g = off["vqganv1_arch"].VQGANv1(**vq_opt).eval()
    randomise(theirs_g, 3)
    ours_g = VQGAN().eval()
    load_state_dict_strict(ours_g, official_to_ours(theirs_g.state_dict()), "official VQGANv1")
    with torch.no_grad():
        (res, loss_off) = theirs_g(x)
        dec, loss_our, _ = ours_g(x)
    result["checks"]["vqgan_dec"] = compare(dec, res["dec"])
    del theirs, ours, theirs_g, ours_g

    # --- discriminators (train mode: the authors' SN updates u, v on every call)
    swa = off["swagan_arch"].SWADiscriminator(out_size=args.size, channel_multiplier=2)
    ours_d = SWAGANDiscriminator(args.size, 2)
    load_state_dict_strict(ours_d, swa.state_dict(), "official SWADiscriminator")
    xb = torch.rand(4, 3, args.size, args.size, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        result["checks"]["swagan_d"] = compare(ours_d(xb), swa(xb))
    patch = off["patch_disc_arch"].NLayerDiscriminator(input_nc=3, ndf=64, n_layers=3)
    ours_p = PatchDiscriminator(64, 3)
    load_state_dict_strict(ours_p, patch.state_dict(), "official NLayerDiscriminator")
    with torch.no_grad():
        result["checks"]["patch_d"] = compare(ours_p(xb), patch(xb))
    result["params_m"]["swagan_d"] = sum(p.numel() for p in swa.parameters()) / 1e6
    result["params_m"]["patch_d"] = sum(p.numel() for p in patch.parameters()) / 1e6
    print(json.dumps(result, indent=1))
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
