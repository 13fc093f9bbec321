"""params.yaml: the single source of truth for every number of a run.

Layout of the file::

    profile: smoke            # the default profile
    plugins: []               # modules imported before anything is built (user backbones, ...)
    defaults: {...}           # every key, with its paper-independent default
    profiles:
      smoke: {...}            # deep-merged over defaults
      paper: {...}
    overrides: {}             # deep-merged last (handy in an extra snakemake --configfile)

``resolve(raw, profile)`` merges ``defaults`` ← ``profiles[profile]`` ← ``overrides`` ← ``--set``
items, validates the result against ``ugpnet/schemas/params.schema.yaml`` (unknown or misspelt keys
are errors, as in nanoGPT's configurator) and returns a plain dict. Models never see this dict:
commands slice it and pass plain arguments (rosinality style).
"""
from __future__ import annotations

import copy
import importlib
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .errors import ConfigError

SCHEMA_PATH = Path(__file__).with_name("schemas") / "params.schema.yaml"
REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def deep_merge(base: Mapping, update: Mapping, path: str = "") -> dict:
    """Return ``base`` updated by ``update`` recursively (dicts merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in (update or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value, f"{path}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_set_items(items: Iterable[str]) -> dict:
    """``["a.b=3", "c=[1,2]"]`` → nested dict; values are parsed as YAML."""
    result: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE (dotted key), got '{item}'")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else None
        if isinstance(value, str):  # YAML 1.1 reads "2e-4" as a string; users mean a number
            try:
                value = float(value)
            except ValueError:
                pass
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set '{item}': '{part}' is set twice with different types")
        node[parts[-1]] = value
    return result


def _schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _schema_errors(schema: Mapping, instance, prefix: tuple = ()) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"  - {'.'.join(str(p) for p in prefix + tuple(e.absolute_path)) or '(top level)'}: "
            f"{e.message}" for e in errors]


def kind_schema(kind) -> dict:
    """A method kind's schema (a dict, or a YAML file path), able to use the main ``$defs``."""
    schema = kind.schema
    if isinstance(schema, (str, os.PathLike)):
        with open(schema, encoding="utf-8") as f:
            schema = yaml.safe_load(f)
    return {"$defs": _schema()["$defs"], **dict(schema)}


def validate(cfg: Mapping, source: str = "params.yaml") -> None:
    """Check ``cfg`` against the schema, each method entry against its kind's schema, and that
    Table 1 names defined methods."""
    lines = _schema_errors(_schema(), cfg)
    if not lines:
        from .methods import get_kind

        for name, entry in cfg["methods"].items():
            lines += _schema_errors(kind_schema(get_kind(entry["kind"])), entry,
                                    ("methods", name))
        for name in cfg["table1"]["methods"]:
            if name not in cfg["methods"]:
                lines.append(f"  - table1.methods: '{name}' is not defined under methods "
                             f"(defined: {', '.join(sorted(cfg['methods']))})")
    if lines:
        raise ConfigError(f"invalid configuration from {source}:\n" + "\n".join(lines[:10]) +
                          "\nFix the key or value (misspelt keys are rejected on purpose).")


def resolve(raw: Mapping, profile: str | None = None, sets: Iterable[str] = (),
            source: str = "params.yaml", experiment: str | None = None) -> dict:
    """Resolve the raw params.yaml content for ``profile`` (see module docstring)."""
    if not isinstance(raw, Mapping) or "defaults" not in raw or "profiles" not in raw:
        raise ConfigError(f"{source} must have top-level keys 'defaults' and 'profiles'")
    allowed_top = {"profile", "experiment", "plugins", "defaults", "profiles", "overrides"}
    extra = set(raw) - allowed_top
    if extra:
        raise ConfigError(f"{source}: unknown top-level keys {sorted(extra)}; allowed: "
                          f"{sorted(allowed_top)}")
    profile = profile or raw.get("profile") or "smoke"
    profiles = raw["profiles"] or {}
    if profile not in profiles:
        raise ConfigError(f"unknown profile '{profile}' in {source}; defined: {sorted(profiles)}")
    cfg = deep_merge(raw["defaults"], profiles[profile] or {})
    cfg = deep_merge(cfg, raw.get("overrides") or {})
    cfg = deep_merge(cfg, parse_set_items(sets))
    cfg["profile"] = profile
    cfg["experiment"] = str(experiment or raw.get("experiment") or "default")
    cfg["plugins"] = list(raw.get("plugins") or []) + list(cfg.get("plugins") or [])
    import_plugins(cfg["plugins"])  # first: plugins register the kinds validation asks for
    validate(cfg, source)
    return cfg


def import_plugins(modules: Iterable[str]) -> None:
    """Import user modules named in ``plugins`` so their registry entries exist."""
    for name in modules:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"plugins: expected module names (strings), got {name!r}")
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"plugin module '{name}' (params.yaml 'plugins') cannot be imported: "
                              f"{e}. Make sure it is on PYTHONPATH.") from None


def find_params(path: str | os.PathLike | None = None) -> Path:
    candidates = [path, os.environ.get("UGPNET_PARAMS"), "params.yaml", REPO_PARAMS]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    if path:
        raise ConfigError(f"params file '{path}' does not exist.")
    raise ConfigError("no params.yaml found: run from the repository root, pass --params FILE, "
                      "or set UGPNET_PARAMS.")


def load_params_file(path: str | os.PathLike) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None


def load_config(args: Any = None, *, params: str | None = None, profile: str | None = None,
                sets: Iterable[str] = (), experiment: str | None = None) -> dict:
    """Resolved config from CLI ``args`` (``args.params``, ``args.profile``, ``args.set``)."""
    extra = list(sets)
    if args is not None:
        params = getattr(args, "params", None) or params
        profile = getattr(args, "profile", None) or profile
        experiment = getattr(args, "experiment", None) or experiment
        sets = list(getattr(args, "set", None) or []) + extra
        cached = getattr(args, "_resolved_config", None)
        if cached is not None and not extra:
            return cached
    path = find_params(params)
    cfg = resolve(load_params_file(path), profile, sets, source=str(path), experiment=experiment)
    if args is not None and not extra:
        try:
            args._resolved_config = cfg
        except AttributeError:
            pass
    return cfg


def write_resolved(cfg: Mapping, folder: str | os.PathLike) -> str:
    """Write a resolved config as a one-profile params file the CLI can read, named by its
    content (``<folder>/<hash>.yaml``) and written only if absent: reading a new configuration
    (even a dry run) never changes a file that running jobs read."""
    from .io import atomic_write_text
    from .provenance import digest_of

    cfg = dict(cfg)
    profile = cfg.pop("profile")
    experiment = cfg.pop("experiment", "default")
    plugins = cfg.pop("plugins", [])
    text = yaml.safe_dump({"profile": profile, "experiment": experiment, "plugins": plugins,
                           "defaults": cfg, "profiles": {profile: {}}}, sort_keys=False)
    path = Path(folder) / f"{digest_of(text)}.yaml"
    if not path.exists():
        atomic_write_text(path, text)
    return str(path)
