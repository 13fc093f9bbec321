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

One entry, one place: each of those sections may hold ``every_train:`` (:data:`RULE`), a partial
train block shared by every method. Merging a section goes:

1. the section's own keys (all but ``every_train``) are deep-merged over the configuration so far;
2. its ``every_train`` is deep-merged into EVERY train block of EVERY method then present -- each
   mapping that the method's kind schema validates as ``$defs/train``
   (``methods.<m>.train``, ``methods.<m>.stages.<s>.train``, a plugin kind's own places; found
   from the schema by :func:`train_blocks`, never by method name);
3. the section's own method entries are merged again: they win over their section's rule.

So a profile's ``every_train`` scales every method (one defined in ``defaults`` of params.yaml
or of an override file included) and its ``methods.<m>`` entries say only where a method
differs; in ``defaults`` the rule fills the keys a method's train block leaves out; in
``overrides`` or ``--set every_train.KEY=VALUE`` it replaces that key of every method set so far
(a method first defined in a later section does not get it). The resolved configuration has no
``every_train`` key. All ``--set`` items are one section, so ``--set methods.m.train.lr=..``
wins over ``--set every_train.lr=..`` whatever their order.

Each layer -- ``defaults``, every profile (not only the active one), ``overrides`` of every file,
each ``--set`` item -- is also validated on its own against the same schema without ``required``
(:func:`partial_schema`), so a bad value is an error even where a later layer replaces it. A key
the user set (params.yaml ``overrides``, an override file, ``snakemake --config``, ``--set``, or a
key dvc.yaml tracks that differs from the committed params.yaml, as ``dvc exp run -S`` makes) that
a later layer replaces by another value is a warning on stderr (:func:`override_warnings`); a
profile replacing ``defaults`` is the design and says nothing. A layer's ``every_train`` counts
as the values it set in the train blocks it reached, named by the rule's own key
(``profiles.smoke.every_train.total_iters = 300 (params.yaml)``).

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
import functools
import importlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

import yaml

from .errors import ConfigError

SCHEMA_PATH = Path(__file__).with_name("schemas") / "params.schema.yaml"
REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


class YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """``yaml.SafeLoader`` (its libyaml build where PyYAML has one: params.yaml is read by every
    job, ~10x faster) that also reads the YAML 1.2 float forms without a dot (``2e-4``)."""


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
    return _schema_file(SCHEMA_PATH)


def _schema_file(path: str | os.PathLike) -> dict:
    """A schema file, parsed once per process and version of the file (a copy: callers own it)."""
    path = Path(path)
    st = path.stat()
    return copy.deepcopy(_parsed_schema(str(path.resolve()), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=64)
def _parsed_schema(path: str, mtime_ns: int, size: int) -> dict:
    with open(path, encoding="utf-8") as f:
        return load_yaml(f)


class Layer(NamedTuple):
    """One partial configuration document, as merged: a section of a file or one ``--set`` item.

    ``user``: set by the user for this run (params.yaml's ``overrides``, every section of an
    override file or of ``snakemake --config``, a ``--set`` item), not the repository's design
    (params.yaml's ``defaults`` and ``profiles``). ``edited``: key paths of this section that
    dvc.yaml tracks and that differ from the committed file (what ``dvc exp run -S`` changes)."""

    source: str                 # the file, "snakemake --config" or "--set KEY=VALUE"
    section: tuple              # ("defaults",), ("profiles", name), ("overrides",); () for --set
    part: Any                   # the partial document (None: the section is absent or empty)
    user: bool = True
    edited: frozenset = frozenset()
    # what the layer sets in the resolved configuration: ``part`` with its ``every_train``
    # written out into the train blocks it reached (:func:`expand_rule`); None: ``part``
    effect: Any = None
    rule_at: tuple = ()         # the train-block paths its ``every_train`` reached

    @property
    def sets(self) -> Any:
        """The partial document as merged: :attr:`effect`, else :attr:`part`."""
        return self.part if self.effect is None else self.effect

    def origin(self, path: tuple) -> tuple:
        """The key path in the layer's own text that sets ``path`` of :attr:`sets`: ``path``
        itself, or ``every_train.KEY`` for a value its rule wrote into a train block."""
        path = tuple(path)
        if _defined_at(self.part, path) is None:
            for block in self.rule_at:
                if path[:len(block)] == block and len(path) > len(block):
                    return (RULE,) + path[len(block):]
        return path

    def key(self, path: tuple) -> str:
        return ".".join(str(p) for p in self.section + self.origin(path))

    def setting(self, path: tuple, value: Any, note: str = "") -> str:
        """``key = value (source[; note])``; a ``--set`` item is its own text."""
        if not self.section and self.source.startswith("--set "):
            return self.source
        return f"{self.key(path)} = {json.dumps(value, default=str)} ({self.source}{note})"

    def set_by_user(self, path: tuple) -> bool:
        return self.user or self.origin(path) in self.edited


TOP_ONLY = ("profile", "experiment", "plugins")  # top-level keys of a file, not merged sections
RULE = "every_train"  # a section's partial train block merged into every method's (module doc)


def file_layers(source: str, raw: Mapping, first: bool,
                edited: Mapping[tuple, frozenset] | None = None) -> list[Layer]:
    """Every section of one file, in file order: ``defaults``, each profile (all of them, not only
    the active one), ``overrides``. ``first``: params.yaml itself, whose ``defaults`` and
    ``profiles`` are the design; in a later file every section is the user's."""
    edited = edited or {}
    profiles = raw.get("profiles")
    sections = [("defaults",)]
    sections += [("profiles", name) for name in profiles] if isinstance(profiles, Mapping) else []
    sections.append(("overrides",))
    parts = [_get(raw, s) for s in sections]
    return [Layer(source, s, None if part is _MISSING else part,
                  user=not first or s == ("overrides",), edited=edited.get(s, frozenset()))
            for s, part in zip(sections, parts)]


def set_layers(sets: Iterable[str]) -> list[Layer]:
    return [Layer(f"--set {item}", (), parse_set_items([item])) for item in sets or []]


def applied_layers(files: list[list[Layer]], profile: str, sets: list[Layer]) -> list[Layer]:
    """The layers that make a resolved configuration, in merge order: every file's ``defaults``,
    then every file's ``profiles.<profile>``, then every file's ``overrides``, then the ``--set``
    items (files are merged first, then the sections: see :func:`resolve`)."""
    order = [("defaults",), ("profiles", profile), ("overrides",)]
    return [layer for section in order for layers in files for layer in layers
            if layer.section == section] + sets


_MISSING = object()


def _get(tree: Any, path: tuple) -> Any:
    for key in path:
        if not isinstance(tree, Mapping) or key not in tree:
            return _MISSING
        tree = tree[key]
    return tree


def _defined_at(tree: Any, path: tuple) -> tuple | None:
    """The part of ``path`` that ``tree`` sets when merged: ``path`` itself, a prefix of it that
    ``tree`` replaces by a non-mapping value, or None."""
    for i, key in enumerate(path):
        if not isinstance(tree, Mapping):  # a value replaced at a prefix of the path
            return tuple(path[:i]) if i else None  # (an absent layer sets nothing)
        if key not in tree:
            return None
        tree = tree[key]
    return tuple(path)


def _leaves(tree: Any, path: tuple = ()) -> Iterable[tuple[tuple, Any]]:
    """``(path, value)`` of every value a partial document sets (an empty mapping sets nothing)."""
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from _leaves(value, path + (key,))
    elif path:
        yield path, tree


class Sources:
    """Where each key of a resolved configuration came from, to name it in error messages.

    ``names``: the files (and ``--set``) in merge order; ``layers``: the applied :class:`Layer`s
    in merge order. A key path is blamed on the last layer that sets it (or, for a missing
    required key, the first layer that defines the mapping)."""

    def __init__(self, names: Iterable[str], layers: Iterable[Layer]):
        self.names = list(names)
        self.layers = list(layers)

    def of(self, path: tuple, first: bool = False) -> str:
        hits = [layer.source for layer in self.layers if _defined_at(layer.sets, path) is not None]
        if not hits:
            return self.describe()
        return hits[0] if first else hits[-1]

    def describe(self) -> str:
        return " + ".join(self.names) or "params.yaml"


def _schema_errors(schema: Mapping, instance, prefix: tuple = (),
                   sources: Sources | str | None = None) -> list[str]:
    """One line per schema error: the key path (after ``prefix``), the complaint and its source
    (a :class:`Sources` blames the layer that set the key; a string is the source itself)."""
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
        if isinstance(sources, Sources):
            src = f" [in {sources.of(path, first=e.validator == 'required')}]"
        else:
            src = f" [in {sources}]" if sources else ""
        lines.append(f"  - {where}: {e.message}{src}")
    return lines


# keys of a methods.<m> entry that the host reads, whatever the kind (besides kind and tasks):
# variant_of: the method is a variant of another (an ablation); its stages whose identity equals
# that method's are that method's (ugpnet.plan: Plan.stage_owner), never trained twice
HOST_KEYS = {"variant_of": {"type": "string"}}


def kind_schema(kind) -> dict:
    """A method kind's schema (a dict, or a YAML file path), able to use the main ``$defs``."""
    schema = kind.schema
    if isinstance(schema, (str, os.PathLike)):
        schema = _schema_file(schema)
    schema = {"$defs": _schema()["$defs"], **dict(schema)}
    if isinstance(schema.get("properties"), Mapping):  # host keys every kind's entry may carry
        schema["properties"] = {**schema["properties"], **HOST_KEYS}
    return schema


def validate(cfg: Mapping, source: str | Sources = "params.yaml") -> None:
    """Check ``cfg`` against the schema, each method entry against its kind's schema, and that
    Table 1 names defined methods. Each error line names the key path and its source."""
    sources = source if isinstance(source, Sources) else Sources([source], [])
    lines = _schema_errors(_schema(), cfg, sources=sources)
    if not lines:
        from .methods import get_kind

        for name, entry in cfg["methods"].items():
            lines += _schema_errors(kind_schema(get_kind(entry["kind"])), entry,
                                    ("methods", name), sources)
        from .plan import table1_methods

        for name in table1_methods(cfg):
            if name not in cfg["methods"]:
                lines.append(f"  - table1.methods: '{name}' is not defined under methods "
                             f"(defined: {', '.join(sorted(cfg['methods']))}) "
                             f"[in {sources.of(('table1', 'methods'))}]")
        for name, entry in cfg["methods"].items():
            parent = entry.get("variant_of")
            if parent in cfg["methods"] and cfg["methods"][parent]["kind"] != entry["kind"]:
                lines.append(f"  - methods.{name}.variant_of: '{parent}' is of kind "
                             f"'{cfg['methods'][parent]['kind']}', not '{entry['kind']}': a "
                             f"variant shares stages only with a method of its own kind "
                             f"[in {sources.of(('methods', name, 'variant_of'))}]")
        for name in cfg["table1"].get("compare", []):
            if name not in cfg["methods"]:
                lines.append(f"  - table1.compare: '{name}' is not defined under methods "
                             f"[in {sources.of(('table1', 'compare'))}]")
        t3 = cfg.get("table3") or {}
        for name in t3.get("rows", {}):
            if name not in cfg["methods"]:
                lines.append(f"  - table3.rows: '{name}' is not defined under methods "
                             f"[in {sources.of(('table3', 'rows'))}]")
            elif t3["task"] not in cfg["methods"][name]["tasks"]:
                lines.append(f"  - table3.rows: '{name}' does not run table3.task "
                             f"'{t3['task']}' (its tasks: {cfg['methods'][name]['tasks']}) "
                             f"[in {sources.of(('table3', 'rows'))}]")
        for alone, inside in (cfg.get("figure4") or {}).get("pairs", {}).items():
            for name in (alone, inside):
                if name not in cfg["methods"]:
                    lines.append(f"  - figure4.pairs: '{name}' is not defined under methods "
                                 f"[in {sources.of(('figure4', 'pairs'))}]")
        rows = cfg["table1"]["methods"]
        if isinstance(rows, Mapping):
            for task in cfg["table1"]["tasks"]:
                if task not in rows:
                    lines.append(f"  - table1.methods: the rows are given per task but not for "
                                 f"'{task}', which table1.tasks lists: add table1.methods.{task} "
                                 f"(or drop it from table1.tasks) "
                                 f"[in {sources.of(('table1', 'methods'))}]")
    _raise_invalid(lines, sources.describe())


def _raise_invalid(lines: list[str], files: str) -> None:
    if lines:
        raise ConfigError(f"invalid configuration ({files}):\n" +
                          "\n".join(lines[:10]) + "\nFix that key or value in the file (or --set "
                          "item) named in [brackets]; misspelt keys are rejected on purpose.")


# ------------------------------------------------------------------------ each layer on its own
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")
_SCHEMA_VALUES = ("enum", "const", "default", "examples")


def partial_schema(schema: Any) -> Any:
    """The schema of one layer, a partial document merged over the others: no ``required`` and
    no ``minProperties`` (a layer sets only some keys of a mapping); unknown keys, types, enums
    and minimums apply as in the resolved configuration."""
    if isinstance(schema, list):
        return [partial_schema(s) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("required", "minProperties"):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {name: partial_schema(sub) for name, sub in value.items()}
        else:
            out[key] = value if key in _SCHEMA_VALUES else partial_schema(value)
    return out


def _layer_kind_errors(layer: Layer, kinds: Mapping[str, Any], schemas: dict) -> list[str]:
    """Each method entry of ``layer`` against its kind's partial schema; the kind is the entry's
    own, else the one the merged configuration gives the method (a profile's entry has none).
    An unknown kind is reported by the resolved configuration's check, not here."""
    from .methods import get_kind

    methods = layer.part.get("methods") if isinstance(layer.part, Mapping) else None
    lines: list[str] = []
    for name, entry in (methods.items() if isinstance(methods, Mapping) else ()):
        kind = entry.get("kind", kinds.get(name)) if isinstance(entry, Mapping) else None
        if not isinstance(kind, str):
            continue
        if kind not in schemas:
            try:
                schemas[kind] = partial_schema(kind_schema(get_kind(kind)))
            except ConfigError:
                schemas[kind] = None
        if schemas[kind] is not None:
            lines += _schema_errors(schemas[kind], entry, layer.section + ("methods", name),
                                    layer.source)
    return lines


def validate_layers(layers: Iterable[Layer], files: str) -> None:
    """Check every layer on its own (unknown keys, types, values; see :func:`partial_schema`),
    so a wrong value is an error even where a later layer replaces it. Each line names the key
    path with its section (``profiles.smoke.data.resolution``) and the file or ``--set`` item."""
    schema = partial_schema(_schema())
    layers = list(layers)
    for layer in layers:  # the one key that moved: say where to, not only that it is unknown
        if isinstance(layer.part, Mapping) and "stylegan2" in layer.part:
            where = ".".join((*layer.section, "stylegan2"))
            raise ConfigError(f"{where} [in {layer.source}]: the StyleGAN2 prior is now a named "
                              f"prior: write priors: {{stylegan2: {{...}}}} (same keys; e.g. "
                              f"--set priors.stylegan2.checkpoint=FILE), and methods read it by "
                              f"name (methods.ugpnet.prior)")
    _raise_invalid([line for layer in layers if layer.part is not None
                    for line in _schema_errors(schema, layer.part, layer.section, layer.source)],
                   files)


def validate_layer_methods(layers: Iterable[Layer], cfg: Mapping, files: str) -> None:
    """Each layer's method entries against their kind's partial schema (after
    :func:`validate_layers`, with the plugins imported); the kinds come from ``cfg``."""
    kinds = {name: entry.get("kind") for name, entry in (cfg.get("methods") or {}).items()
             if isinstance(entry, Mapping)}
    schemas: dict = {}
    _raise_invalid([line for layer in layers for line in _layer_kind_errors(layer, kinds, schemas)],
                   files)


# ------------------------------------------------------------ a layer overridden by a later one
def override_warnings(layers: list[Layer], cfg: Mapping) -> list[str]:
    """A warning for each key the user set (:attr:`Layer.user`, or a DVC-tracked key edited since
    the last commit) that a later layer replaces by another value: the value that was set has no
    effect. Profiles replacing ``defaults`` is the design (the paper protocol in ``defaults``,
    profiles scaling it down) and says nothing unless the default was edited and DVC tracks it."""
    out: list[str] = []
    for i, layer in enumerate(layers):
        for path, value in _leaves(layer.sets):
            if path[0] in TOP_ONLY or not layer.set_by_user(path):
                continue
            if _get(cfg, path) == value:
                continue
            later = [(lt, at) for lt in layers[i + 1:]
                     if (at := _defined_at(lt.sets, path)) is not None]
            if not later:
                continue
            by, at = later[-1]
            why = "" if layer.user else ("; tracked by dvc.yaml and changed since the last commit, "
                                         "so a DVC experiment records a value that is not used")
            line = (f"{layer.setting(path, value, why)} is overridden by "
                    f"{by.setting(at, _get(by.sets, at))}; the later value is used")
            if line not in out:  # a rule replaced in several train blocks: said once
                out.append(line)
    return out


def print_warnings(warnings: Iterable[str]) -> None:
    for w in warnings:
        print(f"ugpnet: warning: {w}", file=sys.stderr)


# ---------------------------------------------------------- DVC: keys `dvc exp run -S` changes
def dvc_tracked(params: Path, raw: Mapping | None = None) -> list[tuple]:
    """The key paths of ``params`` that the stages of the dvc.yaml beside it track (``()``: the
    whole file). A string entry names a key of the default params file, ``params.yaml``; a
    ``foreach`` stage's are under ``do``; ``${profile}`` and ``${experiment}`` are filled in from
    ``raw`` (the params file's content), as DVC's templating does."""
    dvc = params.parent / "dvc.yaml"
    try:
        stages = (load_params_file(dvc).get("stages") or {}) if dvc.is_file() else {}
    except ConfigError:
        return []
    raw = raw if isinstance(raw, Mapping) else {}
    fill = {f"${{{k}}}": str(raw.get(k, "")) for k in ("profile", "experiment")}
    tracked = []
    for stage in stages.values() if isinstance(stages, Mapping) else ():
        if isinstance(stage, Mapping) and isinstance(stage.get("do"), Mapping):
            stage = stage["do"]
        for entry in (stage.get("params") or []) if isinstance(stage, Mapping) else ():
            if isinstance(entry, str):
                for k, v in fill.items():
                    entry = entry.replace(k, v)
            if isinstance(entry, str) and params.name == "params.yaml":
                tracked.append(tuple(entry.split(".")))
            elif isinstance(entry, Mapping):
                for file, keys in entry.items():
                    if (dvc.parent / str(file)).resolve() == params.resolve():
                        tracked += [tuple(str(k).split(".")) for k in keys or [""]]
    return [() if t == ("",) else t for t in tracked]


def committed_version(path: Path) -> Any:
    """``path`` as committed at git HEAD (None: not in a git repository, not committed)."""
    import subprocess

    try:
        r = subprocess.run(["git", "show", f"HEAD:./{path.name}"], cwd=path.parent,
                           capture_output=True, text=True, timeout=30)
        return load_yaml(r.stdout) if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, yaml.YAMLError):
        return None


def dvc_edited(params: Path, raw: Mapping) -> dict[tuple, frozenset]:
    """Per section of params.yaml, the key paths dvc.yaml tracks whose value differs from the
    committed file: what ``dvc exp run -S KEY=VALUE`` (or a hand edit) changed for this run."""
    tracked = dvc_tracked(params, raw)
    committed = committed_version(params) if tracked else None
    if not isinstance(committed, Mapping):
        return {}
    out: dict[tuple, set] = {}
    for layer in file_layers(str(params), raw, first=True):
        for path, value in _leaves(layer.part):
            full = layer.section + path
            if any(full[:len(t)] == t for t in tracked) and _get(committed, full) != value:
                out.setdefault(layer.section, set()).add(path)
    return {section: frozenset(paths) for section, paths in out.items()}


# ------------------------------------------------- every_train: one entry, one place (module doc)
_TRAIN_REF = "#/$defs/train"


def _train_paths(schema: Any, instance: Any, defs: Mapping, path: tuple = (),
                 seen: frozenset = frozenset()) -> list[tuple]:
    """Paths under ``instance`` whose value is a mapping that ``schema`` validates as
    ``$defs/train`` (through ``properties``, ``patternProperties``, ``additionalProperties``,
    ``allOf`` and local ``$ref``s; alternatives -- ``oneOf``/``anyOf`` -- are not followed)."""
    if not isinstance(schema, Mapping) or not isinstance(instance, Mapping):
        return []
    ref = schema.get("$ref")
    if ref == _TRAIN_REF:
        return [path]
    out: list[tuple] = []
    if isinstance(ref, str) and ref.startswith("#/$defs/") and ref not in seen:
        out += _train_paths(defs.get(ref[len("#/$defs/"):]), instance, defs, path, seen | {ref})
    for sub in schema.get("allOf") or ():
        out += _train_paths(sub, instance, defs, path, seen)
    props = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else {}
    patterns = (schema.get("patternProperties")
                if isinstance(schema.get("patternProperties"), Mapping) else {})
    extra = schema.get("additionalProperties")
    for key, value in instance.items():
        subs = [props[key]] if key in props else []
        subs += [sub for pattern, sub in patterns.items() if re.search(pattern, str(key))]
        if not subs and isinstance(extra, Mapping):
            subs = [extra]
        for sub in subs:
            out += _train_paths(sub, value, defs, path + (key,), seen)
    return list(dict.fromkeys(out))


def train_blocks(cfg: Mapping, kinds: Mapping[str, Any] | None = None) -> list[tuple]:
    """The key paths of every train block of every method of ``cfg`` (a whole or a partly merged
    configuration): ``("methods", m, ..., "train")`` wherever the method's kind schema says
    ``$ref: "#/$defs/train"``. ``kinds``: method name -> kind, else each entry's own ``kind``;
    a method of an unknown kind has none (the resolved configuration's check reports it)."""
    from .methods import get_kind

    methods = cfg.get("methods") if isinstance(cfg, Mapping) else None
    out: list[tuple] = []
    schemas: dict = {}
    for name, entry in (methods.items() if isinstance(methods, Mapping) else ()):
        if not isinstance(entry, Mapping):
            continue
        kind = (kinds or {}).get(name) or entry.get("kind")
        if not isinstance(kind, str):
            continue
        if kind not in schemas:
            try:
                schemas[kind] = kind_schema(get_kind(kind))
            except ConfigError:
                schemas[kind] = None
        schema = schemas[kind]
        if schema is not None:
            out += [("methods", name) + p
                    for p in _train_paths(schema, entry, schema.get("$defs") or {})]
    return out


def _split_rule(part: Any) -> tuple[Any, dict]:
    """(the section's ``every_train``, the section without it)."""
    if not isinstance(part, Mapping):
        return None, {}
    return part.get(RULE), {k: v for k, v in part.items() if k != RULE}


def _put(tree: dict, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def merge_sections(sections: Iterable[Any], kinds: Mapping[str, Any] | None = None
                   ) -> tuple[dict, list[list[tuple]]]:
    """Deep-merge the sections in order, each with its ``every_train`` (module doc): its own keys,
    then its rule into every train block present, then its own method entries again. Returns the
    configuration and, per section, the train-block paths its rule reached."""
    cfg: dict = {}
    reached: list[list[tuple]] = []
    for part in sections:
        rule, rest = _split_rule(part)
        cfg = deep_merge(cfg, rest)
        paths: list[tuple] = []
        if isinstance(rule, Mapping) and rule:
            paths = train_blocks(cfg, kinds)
            for path in paths:
                _put(cfg, path, deep_merge(_get(cfg, path), rule))
            cfg = deep_merge(cfg, rest)  # the section's own entries win over its rule
        reached.append(paths)
    return cfg, reached


def expand_rule(layer: Layer, reached: list[tuple], section_rest: Any) -> Layer:
    """``layer`` with :attr:`Layer.effect`: its own keys plus its ``every_train`` written into
    each train block in ``reached`` where its section's own entries (``section_rest``, every
    file's section merged, rule left out) do not set that key: what the layer set, as the
    override warnings and error sources see it."""
    rule, rest = _split_rule(layer.part)
    if not isinstance(rule, Mapping) or not rule:
        return layer if rule is None else layer._replace(effect=rest)
    written: dict = {}
    for block in reached:
        for path, value in _leaves(rule):
            if _defined_at(section_rest, block + path) is None:
                _put(written, block + path, copy.deepcopy(value))
    return layer._replace(effect=deep_merge(written, rest), rule_at=tuple(reached))


ALLOWED_TOP = frozenset({"profile", "experiment", "plugins", "defaults", "profiles", "overrides"})


def _variant_order(methods: Any) -> list[tuple[str, str]]:
    """(variant, parent) of every method entry with ``variant_of``, each parent before its
    variants; entries whose chain is broken (unknown parent, cycle) are left out (the
    resolved configuration's check reports them)."""
    methods = methods if isinstance(methods, Mapping) else {}
    order: list[tuple[str, str]] = []
    done: set[str] = set()

    def visit(name: str, seen: tuple) -> bool:
        entry = methods.get(name)
        parent = entry.get("variant_of") if isinstance(entry, Mapping) else None
        if parent is None or name in done:
            return True
        if parent in seen or parent not in methods or not visit(parent, seen + (name,)):
            return False
        order.append((name, parent))
        done.add(name)
        return True

    for name in methods:
        visit(name, ())
    return order


def _broken_variants(methods: Mapping) -> list[tuple[str, str]]:
    """(method, why) of every ``variant_of`` chain that names an unknown method or loops."""
    out = []
    for name, entry in methods.items():
        seen = [name]
        parent = entry.get("variant_of") if isinstance(entry, Mapping) else None
        while parent is not None:
            if parent not in methods:
                out.append((seen[-1], f"'{parent}' is not defined under methods (defined: "
                                      f"{', '.join(sorted(methods))})"))
                break
            if parent in seen:
                out.append((name, f"a cycle ({' -> '.join(seen + [parent])})"))
                break
            seen.append(parent)
            entry = methods[parent]
            parent = entry.get("variant_of") if isinstance(entry, Mapping) else None
    return sorted(set(out))


def inherit_variants(methods: Mapping) -> dict:
    """Each method entry with ``variant_of: <parent>`` (an ablation) becomes the parent's
    resolved entry with the variant's own keys deep-merged over it: a variant holds only what it
    changes, in every layer (defaults, profile, overrides, --set), and follows every change of
    its parent. Parents first, so a variant of a variant sees its parent's inheritance."""
    out = dict(methods)
    for name, parent in _variant_order(methods):
        out[name] = deep_merge(out[parent], out[name])
    return out


def resolve(raw: Mapping, profile: str | None = None, sets: Iterable[str] = (),
            source: str = "params.yaml", experiment: str | None = None,
            layers: Iterable[tuple[str, Mapping]] | None = None,
            edited: Mapping[tuple, frozenset] | None = None,
            warnings: list | None = None) -> dict:
    """Resolve the raw params.yaml content for ``profile`` (see module docstring).

    ``layers``: the ``(name, raw)`` files ``raw`` was merged from (:func:`resolve_files`); by
    default ``raw`` is one file called ``source``. Each section of each file (every profile, not
    only the active one) and each ``--set`` item is validated on its own, then the result.
    ``edited``: the first file's DVC-tracked keys changed since the last commit
    (:func:`dvc_edited`). Keys the user set that a later layer overrides
    (:func:`override_warnings`) are appended to ``warnings``, or printed on stderr if it is None."""
    layers = list(layers) if layers is not None else [(source, raw)]
    files = " + ".join(name for name, _ in layers) or source
    _check_top_level(layers)
    if not isinstance(raw, Mapping) or "defaults" not in raw or "profiles" not in raw:
        raise ConfigError(f"{files} must have top-level keys 'defaults' and 'profiles'")
    profile = profile or raw.get("profile") or "smoke"
    profiles = raw["profiles"] or {}
    if profile not in profiles:
        raise ConfigError(f"unknown profile '{profile}' in {files}; defined: {sorted(profiles)}")
    sets = list(sets or [])
    per_file = [file_layers(name, part, first=i == 0, edited=edited if i == 0 else None)
                for i, (name, part) in enumerate(layers)]
    items = set_layers(sets)
    every = [layer for file in per_file for layer in file] + items
    validate_layers(every, files)
    applied = applied_layers(per_file, profile, items)
    sections = [raw["defaults"], profiles[profile] or {}, raw.get("overrides") or {},
                parse_set_items(sets)]
    names = [name for name, _ in layers] + (["--set"] if sets else [])
    top = [Layer(name, (), {k: part[k] for k in TOP_ONLY if k in part}) for name, part in layers]
    # first the plugins (they register the kinds whose schemas place every_train), then the rules
    plain, _ = merge_sections([_split_rule(part)[1] for part in sections])
    plugins = list(raw.get("plugins") or []) + list(plain.get("plugins") or [])
    import_plugins(plugins, Sources(names, applied + top))
    kinds = {name: entry.get("kind") for name, entry in (plain.get("methods") or {}).items()
             if isinstance(entry, Mapping)}
    kinds.update({name: kinds.get(parent) for name, parent in _variant_order(plain.get("methods"))
                  if not kinds.get(name)})
    cfg, reached = merge_sections(sections, kinds)
    broken = _broken_variants(cfg.get("methods") or {})
    if broken:
        _raise_invalid([f"  - methods.{name}.variant_of: {why}" for name, why in broken], files)
    cfg["methods"] = inherit_variants(cfg.get("methods") or {})
    index = {("defaults",): 0, ("profiles", profile): 1, ("overrides",): 2, (): 3}
    applied = [expand_rule(layer, reached[index[layer.section]],
                           _split_rule(sections[index[layer.section]])[1]) for layer in applied]
    cfg["profile"] = profile
    cfg["experiment"] = str(experiment or raw.get("experiment") or "default")
    cfg["plugins"] = plugins
    sources = Sources(names, applied + top)
    validate_layer_methods(every, cfg, files)
    validate(cfg, sources)
    found = override_warnings(applied, cfg)
    if warnings is None:
        print_warnings(found)
    else:
        warnings.extend(found)
    return cfg


def _check_top_level(layers: Iterable[tuple[str, Any]]) -> None:
    for name, part in layers:
        if not isinstance(part, Mapping):
            raise ConfigError(f"{name} must be a YAML mapping (key: value lines), got "
                              f"{type(part).__name__}")
        extra = set(part) - ALLOWED_TOP
        if extra:
            raise ConfigError(f"{name}: unknown top-level keys {sorted(extra)}; allowed: "
                              f"{sorted(ALLOWED_TOP)}")
        if not isinstance(part.get("profiles") or {}, Mapping):
            raise ConfigError(f"{name}: 'profiles' must be a mapping of profile names to partial "
                              f"configurations, got {type(part['profiles']).__name__}")


def resolve_files(files: Iterable[str | os.PathLike], profile: str | None = None,
                  sets: Iterable[str] = (), experiment: str | None = None,
                  extra: Mapping | None = None, extra_source: str = "--config",
                  warnings: list | None = None) -> dict:
    """Resolve params.yaml (the first of ``files``) with override files deep-merged over it in
    order, then ``extra`` (e.g. Snakemake's ``--config`` items), then ``--set`` ``sets``.
    ``warnings``: see :func:`resolve` (also the DVC case, from the dvc.yaml beside params.yaml)."""
    files = list(files)
    layers = [(str(f), load_params_file(f)) for f in files]
    if extra:
        layers.append((extra_source, dict(extra)))
    _check_top_level(layers)
    raw: dict = {}
    for _, part in layers:
        raw = deep_merge(raw, part)
    edited = dvc_edited(Path(files[0]), layers[0][1]) if files else None
    return resolve(raw, profile or raw.get("profile"), sets,
                   experiment=experiment or raw.get("experiment"), layers=layers, edited=edited,
                   warnings=warnings)


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
                configfiles: Iterable[str] = (), warnings: list | None = None) -> dict:
    """Resolved config from CLI ``args`` (``args.params``, ``args.configfile``, ``args.profile``,
    ``args.set``). Override warnings are printed on stderr once per ``args`` (a second call with
    extra ``sets`` prints only new ones) and appended to ``warnings`` if given."""
    extra = list(sets)
    configfiles = list(configfiles)
    printed: list = []
    if args is not None:
        configfiles = list(getattr(args, "configfile", None) or []) + configfiles
        params = getattr(args, "params", None) or params
        profile = getattr(args, "profile", None) or profile
        experiment = getattr(args, "experiment", None) or experiment
        sets = list(getattr(args, "set", None) or []) + extra
        printed = list(getattr(args, "_config_warnings", None) or [])
        cached = getattr(args, "_resolved_config", None)
        if cached is not None and not extra:
            if warnings is not None:
                warnings.extend(printed)
            return cached
    path = find_params(params)
    found: list = []
    cfg = resolve_files([path, *configfiles], profile, sets, experiment=experiment, warnings=found)
    print_warnings(w for w in found if w not in printed)
    if warnings is not None:
        warnings.extend(found)
    if args is not None:
        _remember(args, "_config_warnings", printed + [w for w in found if w not in printed])
        if not extra:
            _remember(args, "_resolved_config", cfg)
    return cfg


def _remember(args: Any, name: str, value: Any) -> None:
    try:
        setattr(args, name, value)
    except AttributeError:
        pass


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
