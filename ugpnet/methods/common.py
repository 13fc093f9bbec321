"""Helpers every method kind may use (public: baselines and plugins call these).

- :func:`loaders`: the training loader (degradations drawn on the fly) and the validation loader
  (the fixed degraded val split) of a stage, as the kind receives its input.
- :func:`data_options`: what a run records about its data (manifest hash, degradations).
- :func:`final_weights`: the selected weights of a finished stage (``model.pt``).
- :func:`new_run`: the run folder of a stage, selecting on val as the stage declares.
- :func:`bench_precision`, :func:`random_batch`: what a training benchmark runs with.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..checkpoints import read_checkpoint
from ..errors import CheckpointError
from ..training import data as tdata
from ..training.run import Run
from .contract import StageContext
from .identity import to_plain


def data_options(ctx: StageContext) -> dict:
    """What a run records about its data (for people; the identity holds the digests)."""
    return {"gt": str(ctx.input("gt")), "val": str(ctx.optional_input("val") or ""),
            "kernels": str(ctx.optional_input("kernels") or ""),
            "degradations": (dict(ctx.cfg["degradations"][ctx.task]) if ctx.task else
                             "none (a shared stage: clean ground truth)"),
            "task": ctx.task, "resolution": ctx.cfg["data"]["resolution"]}


def loaders(ctx: StageContext, train: Mapping, input_mode: str):
    """(train loader, val loader) of a stage that declared ``Data()``, for a method that takes
    ``input_mode``: training crops degraded on the fly from the GT train split (the training
    kernel bank for deblurring), and the fixed degraded val split. A shared stage
    (``ctx.task`` None) gets the clean ground truth as both ``lq`` and ``gt``.

    Reads ``degradations.<task>`` and ``data.seed``: the stage's ``stage_config`` must cover
    them (the default and the built-in kinds' do)."""
    cfg, task = ctx.cfg, ctx.task
    gt_root = ctx.input("gt").parent
    seed = cfg["data"]["seed"]
    hflip = train.get("hflip", True)
    cache = train.get("decoded_cache")  # operational: where decoded images are kept, if at all
    if task is None:
        train_ds = tdata.clean_dataset(gt_root / "train", seed, train.get("crop_size"), hflip,
                                       decoded_cache=cache)
        val_ds = tdata.clean_pairs(gt_root / "val")
    else:
        deg = cfg["degradations"][task]
        train_ds = tdata.train_dataset(gt_root / "train", task, deg,
                                       ctx.optional_input("kernels"), input_mode, seed,
                                       train.get("crop_size"), hflip=hflip,
                                       decoded_cache=cache)
        val_ds = tdata.paired_dataset(ctx.input("val").parent, gt_root / "val", task,
                                      input_mode, deg["scale"] if task == "sr" else 1)
    pin = str(ctx.device).startswith("cuda")  # page-locked batches: asynchronous copies
    return (tdata.loader(train_ds, train["batch_size"], True, train.get("num_workers", 0),
                         cfg["data"]["seed"], pin_memory=pin),
            tdata.loader(val_ds, 1, False, 0, pin_memory=pin))


def final_weights(path: str | Path) -> dict:
    """Weights of a finished stage: ``<stage dir>/model.pt`` or the ``model.pt`` itself."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.exists():
        raise CheckpointError(f"'{path}' does not exist: train the stage that makes it first "
                              f"(the Snakemake workflow, or `ugpnet train`).")
    ckpt = read_checkpoint(path, "finished ugpnet-bench stage (model.pt)")
    if not isinstance(ckpt, Mapping) or "weights" not in ckpt:
        raise CheckpointError(f"'{path}' is not a finished ugpnet-bench stage (no 'weights').")
    return ckpt["weights"]


def new_run(ctx: StageContext, options: Mapping) -> Run:
    """The stage's run folder: identity from ``ctx`` (configuration slice + input digests),
    selection on val by ``ctx.stage.select``; ``options`` are recorded for people to read."""
    return Run(ctx.out, to_plain({"method": ctx.method, "kind": ctx.label.get("kind"),
                                  "stage": ctx.stage.name, **options}),
               select_metric=ctx.stage.select, identity=ctx.identity, label=ctx.label,
               restart=ctx.restart, validation=ctx.validation or None,
               operational=ctx.operational, logging=ctx.logging)


def bench_precision(cfg: Mapping, device) -> str:
    """The resolved ``train_precision`` a training benchmark on ``device`` runs with."""
    from ..training.common import resolve_precision

    return resolve_precision(cfg.get("train_precision", "fp32"), device)


def random_batch(cfg: Mapping, kind, mcfg: Mapping, task: str, batch_size: int, device) -> dict:
    """A random training batch of the paper's size for ``kind`` (benchmarks): ``lq`` as the
    method receives it, ``gt`` at the output resolution."""
    import torch

    size = cfg["data"]["resolution"]
    side = size // cfg["degradations"]["sr"]["scale"] if kind.input_mode(mcfg, task) == "lr" \
        else size
    return {"lq": torch.rand(batch_size, 3, side, side, device=device),
            "gt": torch.rand(batch_size, 3, size, size, device=device)}
