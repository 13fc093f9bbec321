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

Override files (``snakemake --configfile my.yaml``, ``ugpnet --configfile my.yaml``) have the same
layout and are deep-merged over params.yaml in order (:func:`resolve_files`). Every error names its
source -- ``params.yaml``, the override file, or the ``--set KEY=VALUE`` item -- and the key path.

Every YAML file is read with one loader, :func:`load_yaml` (``SafeLoader`` plus the YAML 1.2 float
forms ``2e-4``, ``1e5``, ``-3E-2``, which YAML 1.1 reads as strings), so params.yaml, override
files, ``--set`` values and the workflow (which re-reads the files Snakemake was given, see
``workflow/rules/common.smk``) all agree.
"""
from __future__ import annotations

import copy
import importlib
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .errors import ConfigError

SCHEMA_PATH = Path(__file__).with_name("schemas") / "params.schema.yaml"
REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


class YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads the YAML 1.2 float forms without a dot (``2e-4``)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"))


def load_yaml(stream_or_text: Any) -> Any:
    """The one YAML reader of the project (see module docstring); raises ``yaml.YAMLError``."""
    return yaml.load(stream_or_text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader subclass


def _yaml_problem(e: yaml.YAMLError) -> str:
    """``line L, column C: problem`` of a YAML error (one line, no traceback)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


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
        try:
            value = load_yaml(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"--set '{item}': the value is not valid YAML ({_yaml_problem(e)}). "
                              f"Quote it for the shell and close every bracket, e.g. "
                              f"--set '{key}=[1, 2]'.") from None
        node = result
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set '{item}': empty key part in '{key}'; write KEY=VALUE with a "
                              f"dotted key such as methods.nafnet.train.lr=2e-4")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set '{item}': '{part}' is set twice with different types")
        node[parts[-1]] = value
    return result


def _schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return load_yaml(f)


class Sources:
    """Where each key of a resolved configuration came from, to name it in error messages.

    ``layers`` are ``(name, raw)`` pairs in merge order (params.yaml first, then override files);
    ``sets`` the ``--set`` items. A key path is blamed on the last layer that sets it (or, for a
    missing required key, the first layer that defines the mapping)."""

    def __init__(self, layers: Iterable[tuple[str, Mapping]], profile: str, sets: Iterable[str] = ()):
        self.names = []
        self.parts: list[tuple[str, Mapping]] = []
        for name, raw in layers:
            raw = raw if isinstance(raw, Mapping) else {}
            self.names.append(name)
            prof = (raw.get("profiles") or {}).get(profile) if isinstance(raw.get("profiles"), Mapping) else None
            part: dict = {}
            for piece in (raw.get("defaults"), prof, raw.get("overrides")):
                if isinstance(piece, Mapping):
                    part = deep_merge(part, piece)
            for key in ("profile", "experiment", "plugins"):
                if key in raw:
                    part[key] = raw[key]
            self.parts.append((name, part))
        for item in sets or []:
            self.parts.append((f"--set {item}", parse_set_items([item])))
        if sets:
            self.names.append("--set")

    @staticmethod
    def _defines(tree: Any, path: tuple) -> bool:
        for key in path:
            if not isinstance(tree, Mapping):
                return True  # a value replaced at a prefix of the path
            if key not in tree:
                return False
            tree = tree[key]
        return True

    def of(self, path: tuple, first: bool = False) -> str:
        hits = [name for name, part in self.parts if self._defines(part, path)]
        if not hits:
            return " + ".join(self.names) or "params.yaml"
        return hits[0] if first else hits[-1]

    def describe(self) -> str:
        return " + ".join(self.names) or "params.yaml"


def _schema_errors(schema: Mapping, instance, prefix: tuple = (),
                   sources: Sources | None = None) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    lines = []
    for e in errors:
        path = prefix + tuple(e.absolute_path)
        if e.validator == "additionalProperties" and isinstance(e.instance, Mapping):
            known = set((e.schema or {}).get("properties") or {})
            extra = sorted(str(k) for k in e.instance if k not in known)
            if len(extra) == 1:  # name the misspelt key itself, not its parent
                path = path + (extra[0],)
        where = ".".join(str(p) for p in path) or "(top level)"
        src = f" [in {sources.of(path, first=e.validator == 'required')}]" if sources else ""
        lines.append(f"  - {where}: {e.message}{src}")
    return lines


def kind_schema(kind) -> dict:
    """A method kind's schema (a dict, or a YAML file path), able to use the main ``$defs``."""
    schema = kind.schema
    if isinstance(schema, (str, os.PathLike)):
        with open(schema, encoding="utf-8") as f:
            schema = load_yaml(f)
    return {"$defs": _schema()["$defs"], **dict(schema)}


def validate(cfg: Mapping, source: str | Sources = "params.yaml") -> None:
    """Check ``cfg`` against the schema, each method entry against its kind's schema, and that
    Table 1 names defined methods. Each error line names the key path and its source."""
    sources = source if isinstance(source, Sources) else Sources([(source, {})], cfg.get("profile"))
    lines = _schema_errors(_schema(), cfg, sources=sources)
    if not lines:
        from .methods import get_kind

        for name, entry in cfg["methods"].items():
            lines += _schema_errors(kind_schema(get_kind(entry["kind"])), entry,
                                    ("methods", name), sources)
        for name in cfg["table1"]["methods"]:
            if name not in cfg["methods"]:
                lines.append(f"  - table1.methods: '{name}' is not defined under methods "
                             f"(defined: {', '.join(sorted(cfg['methods']))}) "
                             f"[in {sources.of(('table1', 'methods'))}]")
    if lines:
        raise ConfigError(f"invalid configuration ({sources.describe()}):\n" +
                          "\n".join(lines[:10]) + "\nFix that key or value in the file (or --set "
                          "item) named in [brackets]; misspelt keys are rejected on purpose.")


ALLOWED_TOP = frozenset({"profile", "experiment", "plugins", "defaults", "profiles", "overrides"})


def resolve(raw: Mapping, profile: str | None = None, sets: Iterable[str] = (),
            source: str = "params.yaml", experiment: str | None = None,
            layers: Iterable[tuple[str, Mapping]] | None = None) -> dict:
    """Resolve the raw params.yaml content for ``profile`` (see module docstring).

    ``layers``: the ``(name, raw)`` files ``raw`` was merged from (:func:`resolve_files`), used
    only to name the source of an error; by default ``raw`` is one file called ``source``."""
    layers = list(layers) if layers is not None else [(source, raw)]
    files = " + ".join(name for name, _ in layers) or source
    for name, part in layers:
        if not isinstance(part, Mapping):
            raise ConfigError(f"{name} must be a YAML mapping (key: value lines), got "
                              f"{type(part).__name__}")
        extra = set(part) - ALLOWED_TOP
        if extra:
            raise ConfigError(f"{name}: unknown top-level keys {sorted(extra)}; allowed: "
                              f"{sorted(ALLOWED_TOP)}")
    if not isinstance(raw, Mapping) or "defaults" not in raw or "profiles" not in raw:
        raise ConfigError(f"{files} must have top-level keys 'defaults' and 'profiles'")
    profile = profile or raw.get("profile") or "smoke"
    profiles = raw["profiles"] or {}
    if profile not in profiles:
        raise ConfigError(f"unknown profile '{profile}' in {files}; defined: {sorted(profiles)}")
    sets = list(sets or [])
    cfg = deep_merge(raw["defaults"], profiles[profile] or {})
    cfg = deep_merge(cfg, raw.get("overrides") or {})
    cfg = deep_merge(cfg, parse_set_items(sets))
    cfg["profile"] = profile
    cfg["experiment"] = str(experiment or raw.get("experiment") or "default")
    cfg["plugins"] = list(raw.get("plugins") or []) + list(cfg.get("plugins") or [])
    sources = Sources(layers, profile, sets)
    import_plugins(cfg["plugins"], sources)  # first: plugins register the kinds validation needs
    validate(cfg, sources)
    return cfg


def resolve_files(files: Iterable[str | os.PathLike], profile: str | None = None,
                  sets: Iterable[str] = (), experiment: str | None = None,
                  extra: Mapping | None = None, extra_source: str = "--config") -> dict:
    """Resolve params.yaml (the first of ``files``) with override files deep-merged over it in
    order, then ``extra`` (e.g. Snakemake's ``--config`` items), then ``--set`` ``sets``."""
    layers = [(str(f), load_params_file(f)) for f in files]
    if extra:
        layers.append((extra_source, dict(extra)))
    raw: dict = {}
    for name, part in layers:
        if not isinstance(part, Mapping):
            raise ConfigError(f"{name} must be a YAML mapping (key: value lines), got "
                              f"{type(part).__name__}")
        raw = deep_merge(raw, part)
    return resolve(raw, profile or raw.get("profile"), sets,
                   experiment=experiment or raw.get("experiment"), layers=layers)


def import_plugins(modules: Iterable[str], sources: Sources | None = None) -> None:
    """Import user modules named in ``plugins`` so their registry entries exist."""
    where = sources.of(("plugins",)) if sources else "params.yaml"
    for name in modules:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"plugins ({where}): expected module names (strings), got {name!r}")
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"plugin module '{name}' ({where} 'plugins') cannot be imported: "
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
    """A params or override file (:func:`load_yaml`); ConfigError naming the file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            return load_yaml(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist (looked for "
                          f"{Path(path).absolute()}).") from None
    except IsADirectoryError:
        raise ConfigError(f"config file '{path}' is a folder, not a YAML file.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{path}' is not a UTF-8 text file.") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML ({_yaml_problem(e)}). Fix that line (mixed "
                          f"tabs and spaces, an unclosed bracket or quote, a missing ': ').") from None


def load_config(args: Any = None, *, params: str | None = None, profile: str | None = None,
                sets: Iterable[str] = (), experiment: str | None = None,
                configfiles: Iterable[str] = ()) -> dict:
    """Resolved config from CLI ``args`` (``args.params``, ``args.configfile``, ``args.profile``,
    ``args.set``)."""
    extra = list(sets)
    configfiles = list(configfiles)
    if args is not None:
        configfiles = list(getattr(args, "configfile", None) or []) + configfiles
        params = getattr(args, "params", None) or params
        profile = getattr(args, "profile", None) or profile
        experiment = getattr(args, "experiment", None) or experiment
        sets = list(getattr(args, "set", None) or []) + extra
        cached = getattr(args, "_resolved_config", None)
        if cached is not None and not extra:
            return cached
    path = find_params(params)
    cfg = resolve_files([path, *configfiles], profile, sets, experiment=experiment)
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
