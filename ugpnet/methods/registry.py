"""Method kinds by name, and how a params.yaml method entry finds its kind.

A kind registers itself with ``@register_kind("name")``. When a method names a kind that is not
registered yet, it is discovered, in this order:

1. an installed package's entry point in the group ``ugpnet.methods`` (``name = "pkg.module"``);
2. the bundled baseline package ``baselines.<name>`` (``baselines/<name>/__init__.py``);
3. a module listed under ``plugins:`` in params.yaml (imported before validation).

So adding a method is one package that registers its kind and one params.yaml entry; no shared
file changes.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Mapping

from ..errors import ConfigError
from ..registry import Registry
from .contract import MethodKind

METHOD_KINDS = Registry("method kind")
ENTRY_POINT_GROUP = "ugpnet.methods"
_INSTANCES: dict[str, MethodKind] = {}


def register_kind(name: str):
    """Class decorator: register a :class:`MethodKind` subclass under ``name``."""

    def deco(cls):
        if not (isinstance(cls, type) and issubclass(cls, MethodKind)):
            raise TypeError(f"register_kind('{name}'): {cls!r} is not a MethodKind subclass")
        cls.name = name
        cls.check_declaration()
        METHOD_KINDS.register(name)(cls)
        return cls

    return deco


def _discover(name: str) -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            ep.load()
            return
    try:
        importlib.import_module(f"baselines.{name}")
    except ModuleNotFoundError as e:
        if e.name not in ("baselines", f"baselines.{name}"):
            raise  # the baseline exists but one of its imports is broken: say so


def get_kind(name: str) -> MethodKind:
    """The (stateless) kind instance registered as ``name``, discovering it if needed."""
    if name not in METHOD_KINDS:
        _discover(name)
    if name not in METHOD_KINDS:
        known = ", ".join(METHOD_KINDS.names()) or "(none)"
        raise ConfigError(
            f"unknown method kind '{name}'; registered: {known}. A kind comes from a package that "
            f"registers it (ugpnet.methods.register_kind): baselines/{name}/, an entry point in "
            f"the '{ENTRY_POINT_GROUP}' group, or a module listed under 'plugins:' in params.yaml.")
    if name not in _INSTANCES:
        _INSTANCES[name] = METHOD_KINDS.get(name)()
    return _INSTANCES[name]


def method_cfg(cfg: Mapping, method: str) -> Mapping:
    methods = cfg["methods"]
    if method not in methods:
        raise ConfigError(f"unknown method '{method}'; params.yaml defines: {sorted(methods)}")
    return methods[method]


def kind_of(cfg: Mapping, method: str) -> MethodKind:
    return get_kind(method_cfg(cfg, method)["kind"])


def check_task(cfg: Mapping, method: str, task: str) -> None:
    m = method_cfg(cfg, method)
    if task not in m["tasks"]:
        raise ConfigError(f"method '{method}' is not configured for task '{task}' "
                          f"(methods.{method}.tasks = {m['tasks']})")
