"""Where each artefact of a profile lives (one place; the Snakefile uses the same functions).

``data/<profile>/``::

    gt/{train,val,test}/*.png   gt/manifest.json        # ugpnet prepare
    kernels/{train,test}.npy    kernels/{train,test}.json  # ugpnet kernels (separate banks)
    lq/<task>/{val,test}/*.png  .../manifest.json        # ugpnet degrade (fixed seed)

``runs/<profile>/<method>/<task>/[<stage>/]`` hold training runs (see ugpnet.training.common);
``results/<profile>/`` restored images, metric JSONs and tables.
"""
from __future__ import annotations

from pathlib import Path

SPLITS = ("train", "val", "test")
KERNEL_BANKS = ("train", "test")


def gt_dir(data: str | Path, split: str) -> Path:
    return Path(data) / "gt" / split


def gt_manifest(data: str | Path) -> Path:
    return Path(data) / "gt" / "manifest.json"


def kernel_bank(data: str | Path, which: str) -> Path:
    return Path(data) / "kernels" / f"{which}.npy"


def lq_dir(data: str | Path, task: str, split: str) -> Path:
    return Path(data) / "lq" / task / split
