"""Helpers for tests that run the real workflow or CLI on tiny data (not a test module)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ugpnet.config import deep_merge, load_params_file, resolve
from ugpnet.plan import KERNEL_BANKS, Plan

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# the end-to-end run has every method of the default table, the baselines included (the tiny
# profile alone lists UGPNet and its backbones, for the engine's other DAG tests); made once per
# session by the tiny_end_to_end fixture (tests/conftest.py)
ALL_METHODS = "tiny_all_methods.yaml"


def copy_workflow(dst: Path, repo: Path = REPO) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "params.yaml"):
        shutil.copy(repo / name, dst / name)
    shutil.copytree(repo / "workflow", dst / "workflow", dirs_exist_ok=True)
    return dst


def env_with(*paths) -> dict:
    """The environment with ``paths`` prepended to PYTHONPATH (keeps the checkout under test)."""
    extra = [str(p) for p in paths] + [os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in extra if p))


def snakemake(args, cwd, env=None, timeout=1500, python=None):
    cmd = ([str(python), "-m", "snakemake"] if python else SNAKEMAKE) + list(args)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


def failure(r, work: Path) -> str:
    logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in (work / "logs").rglob("*.log"))
    return f"snakemake failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}\n{logs}"


def plan_for(work: Path, profile: str = "tiny", configfiles=(), experiment: str | None = None,
             plugins: bool = True):
    """The plan Snakemake resolves in ``work`` (params.yaml + ``--configfile`` overrides).
    ``plugins=False`` resolves without importing the overrides' plugins (paths do not depend
    on them, and importing one registers it in the test process)."""
    raw = load_params_file(work / "params.yaml")
    for f in configfiles:
        raw = deep_merge(raw, load_params_file(work / f))
    if not plugins:
        raw["plugins"] = []
    cfg = resolve(raw, profile, experiment=experiment)
    p = Plan.of(cfg)
    return Plan(cfg, str(work / p.data), str(work / p.runs), str(work / p.results),
                str(work / p.logs))


def make_tiny_data(plan: Plan, counts=None, tasks=("denoise", "deblur", "sr")) -> None:
    """The prepared data of ``plan`` (bundled photos), made in-process at the plan's paths."""
    from ugpnet.data.prepare import prepare_bundled
    from ugpnet.degradations import degrade_folder, write_kernel_bank

    cfg = plan.cfg
    d, deg = cfg["data"], cfg["degradations"]
    prepare_bundled(plan.gt_root(), resolution=d["resolution"],
                    counts=counts or d["bundled"], seed=d["seed"], progress=False)
    from ugpnet.degradations.motion import kernel_size_for

    size = kernel_size_for(d["resolution"], deg["deblur"]["kernel_size"],
                           deg["deblur"]["base_resolution"])
    for bank in KERNEL_BANKS:
        write_kernel_bank(plan.kernel_bank(bank), n=deg["deblur"]["n_kernels"], size=size,
                          seed=plan.kernel_seed(bank), resolution=d["resolution"])
    for task in tasks:
        for split in ("val", "test"):
            degrade_folder(task, plan.degrade_seed(split), plan.gt_dir(split),
                           plan.lq_dir(task, split), sigma=deg["denoise"]["sigma"],
                           k=deg["denoise"]["k"], kernel_bank=plan.degrade_bank(task, split),
                           scale=deg["sr"]["scale"], progress=False)
