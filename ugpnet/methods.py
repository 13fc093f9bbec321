"""Methods: how a params.yaml ``methods.<name>`` entry becomes models, stages and predictions.

A method has a ``kind`` (``regression`` or ``ugpnet``); kinds are registered in ``METHOD_KINDS``.
Each kind knows its training stages (in order), how to train one, and how to load the final model
for inference. Baselines of later issues register more kinds or reuse these.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from .errors import ConfigError
from .registry import Registry

METHOD_KINDS = Registry("method kind")


def method_cfg(cfg: Mapping, method: str) -> dict:
    methods = cfg["methods"]
    if method not in methods:
        raise ConfigError(f"unknown method '{method}'; params.yaml defines: {sorted(methods)}")
    return methods[method]


def check_task(cfg: Mapping, method: str, task: str) -> None:
    m = method_cfg(cfg, method)
    if task not in m["tasks"]:
        raise ConfigError(f"method '{method}' is not configured for task '{task}' "
                          f"(methods.{method}.tasks = {m['tasks']})")


def backbone_name(cfg: Mapping, method: str, task: str) -> str:
    b = method_cfg(cfg, method)["backbone"]
    if isinstance(b, Mapping):
        if task not in b:
            raise ConfigError(f"methods.{method}.backbone has no entry for task '{task}'")
        return b[task]
    return b


def build_backbone(cfg: Mapping, name: str, task: str) -> torch.nn.Module:
    from .models.backbones import BACKBONES

    cls = BACKBONES.get(name)
    per_task = cfg["backbones"].get(name)
    if per_task is None or task not in per_task:
        raise ConfigError(f"params.yaml has no constructor arguments for backbone '{name}' and "
                          f"task '{task}': add backbones.{name}.{task}: {{...}}")
    try:
        return cls(**per_task[task])
    except TypeError as e:
        raise ConfigError(f"backbones.{name}.{task} does not fit {cls.__name__}: {e}") from None


def kind_of(cfg: Mapping, method: str):
    return METHOD_KINDS.get(method_cfg(cfg, method)["kind"])


def stages(cfg: Mapping, method: str) -> list[str]:
    return list(kind_of(cfg, method).STAGES)


def load_for_inference(cfg: Mapping, method: str, task: str, checkpoint: str | Path,
                       device) -> torch.nn.Module:
    """The trained model of (method, task) from its run directory or ``model.pt``."""
    check_task(cfg, method, task)
    return kind_of(cfg, method).load(cfg, method, task, Path(checkpoint), device)


# explicit registration of the built-in kinds
from .training import kinds as _kinds  # noqa: E402,F401
from .training import ugpnet_stages as _ugpnet_stages  # noqa: E402,F401
