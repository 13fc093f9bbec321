"""The built-in method kinds: ``regression`` (one stage) and ``ugpnet`` (three stages)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from ..data import layout
from ..errors import CheckpointError
from ..io import sha256_file
from ..methods import METHOD_KINDS, build_backbone, check_task, method_cfg
from . import data as tdata
from .common import Run, load_checkpoint


def _data_options(cfg: Mapping, data: Path, task: str) -> dict:
    manifest = layout.gt_manifest(data)
    return {"data_dir": str(data), "gt_manifest_sha256": sha256_file(manifest) if manifest.exists()
            else None, "degradations": cfg["degradations"], "task": task,
            "resolution": cfg["data"]["resolution"]}


def _loaders(cfg: Mapping, m: Mapping, task: str, data: Path, train: Mapping):
    mode = tdata.input_mode(m, task)
    scale = cfg["degradations"]["sr"]["scale"]
    train_ds = tdata.train_dataset(layout.gt_dir(data, "train"), task, cfg["degradations"],
                                   layout.kernel_bank(data, "train"), mode, cfg["data"]["seed"],
                                   train.get("crop_size"))
    val_ds = tdata.paired_dataset(layout.lq_dir(data, task, "val"), layout.gt_dir(data, "val"),
                                  task, mode, scale)
    return (tdata.loader(train_ds, train["batch_size"], True, train.get("num_workers", 0),
                         cfg["data"]["seed"]),
            tdata.loader(val_ds, 1, False, 0))


def final_weights(path: Path) -> dict:
    """Weights of a finished run (``<run>/model.pt`` or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt" if (path / "model.pt").exists() else path / "train" / "model.pt"
    ckpt = load_checkpoint(path)
    if "weights" not in ckpt:
        raise CheckpointError(f"'{path}' is not a finished ugpnet-bench run (no 'weights').")
    return ckpt["weights"]


@METHOD_KINDS.register("regression")
class RegressionKind:
    """A regression network trained with its own loss (NAFNet: PSNR loss, RRDBNet: L1)."""

    STAGES = ("train",)

    @staticmethod
    def build(cfg: Mapping, method: str, task: str) -> torch.nn.Module:
        from ..models.keymaps import load_pretrained_backbone

        m = method_cfg(cfg, method)
        net = build_backbone(cfg, m["backbone"], task)
        pretrained = (m.get("pretrained") or {}).get(task)
        if pretrained:
            load_pretrained_backbone(pretrained, net)
        return net

    @classmethod
    def train(cfg_cls, cfg: Mapping, method: str, task: str, stage: str, data: Path, out: Path,
              device, progress: bool = True, **_) -> dict:
        from .loop import run_stage
        from .regression import SupervisedStage

        check_task(cfg, method, task)
        m = method_cfg(cfg, method)
        net = cfg_cls.build(cfg, method, task).to(device)
        train = m["train"]
        train_loader, val_loader = _loaders(cfg, m, task, data, train)
        options = {"method": method, "kind": "regression", "stage": stage,
                   "backbone": m["backbone"],
                   "backbone_kwargs": cfg["backbones"][m["backbone"]][task],
                   "pretrained": (m.get("pretrained") or {}).get(task), "loss": m["loss"],
                   "train": train, "input": tdata.input_mode(m, task),
                   **_data_options(cfg, data, task)}
        run = Run(out, options, select_metric="psnr")
        stage_ = SupervisedStage(net, net, net.parameters(), m["loss"], train, device)
        return run_stage(stage_, run=run, train=train, train_loader=train_loader,
                         val_loader=val_loader, device=device, progress=progress)

    @staticmethod
    def load(cfg: Mapping, method: str, task: str, checkpoint: Path, device) -> torch.nn.Module:
        m = method_cfg(cfg, method)
        net = build_backbone(cfg, m["backbone"], task)
        from ..models.keymaps import load_state_dict_strict

        load_state_dict_strict(net, final_weights(checkpoint), str(checkpoint))
        return net.to(device).eval()
