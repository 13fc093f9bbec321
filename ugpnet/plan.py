"""The plan of a run: where every artefact lives and which files each job reads.

One place for both the CLI and the Snakemake workflow, so they always agree; the workflow asks
the plan (and the plan asks the method kinds), it never names a kind or a stage itself.

Layout (``paths`` in params.yaml; ``<id>`` = a short hash of the configuration that defines the
folder's content, so two experiments share data exactly when they would make the same data, and
never overwrite each other's)::

    <data>/gt-<id>/{train,val,test}/*.png, manifest.json           ugpnet prepare
    <data>/kernels/{train,val,test}-<id>.npy                        ugpnet kernels (3 seeds)
    <data>/lq/<task>-<id>/{val,test}/*.png, manifest.json          ugpnet degrade
    <runs>/prior/model.pt                                           ugpnet pretrain-prior
    <runs>/<method>/<task>/<stage>/model.pt                         ugpnet train (one per stage)
    <results>/restored/<method>/<task>/<split>/[<output>/]*.png     ugpnet restore
    <results>/metrics/<method>/<task>.json                          ugpnet evaluate (every output;
                                                                    test, and val where needed)
    <results>/{val,test}_outputs.csv                                ugpnet table --which outputs
    <results>/table1.{csv,json,png}                                 ugpnet table
    results/table1.{csv,json,png}                                   the active experiment's copy

with ``<data> = data/<profile>``, ``<runs> = runs/<profile>/<experiment>``, ``<results> =
results/<profile>/<experiment>`` and logs in ``logs/<profile>/<experiment>``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from .checkpoints import verify_sha256
from .errors import CheckpointError, ConfigError, DataError
from .io import sha256_file
from .methods import (Data, MethodModel, Previous, Prior, StageContext, UserFile, check_task,
                      get_kind)
from .methods.contract import SHARED, MethodKind, Stage
from .methods.identity import RecordingView, RestrictedView, to_plain
from .models.options import beyond_paper, strip_official
from .provenance import digest_of, input_digest
from .training.common import PRECISIONS, resolve_precision
from .training.run import (DEFAULT_VALIDATION, OPERATIONAL_KEYS, identity_changes,
                           operational_of, strip_operational)

KERNEL_BANKS = ("train", "val", "test")
KERNEL_SEED_OFFSET = {"train": 0, "test": 1, "val": 2}  # separate banks: no kernel is shared
DEGRADE_SEED_OFFSET = {"test": 0, "val": 1}
EVAL_SPLITS = ("test", "val")  # what `ugpnet evaluate` scores; Table 1 is the test split
TASKS = ("denoise", "deblur", "sr")


def _fmt(template: str, cfg: Mapping) -> str:
    return template.format(profile=cfg["profile"], experiment=cfg.get("experiment", "default"))


def table1_rows(cfg: Mapping) -> dict[str, list[str]]:
    """Table 1's methods per task (``table1.methods``: one list for every task, or a mapping
    ``{task: [methods]}``), for the tasks of ``table1.tasks``; a method appears in a task only
    where it runs that task (``methods.<m>.tasks``)."""
    t = cfg["table1"]
    rows = t["methods"]
    out = {}
    for task in t["tasks"]:
        names = rows.get(task, []) if isinstance(rows, Mapping) else rows
        out[task] = [m for m in names if task in cfg["methods"].get(m, {}).get("tasks", ())]
    return out


def table1_methods(cfg: Mapping) -> list[str]:
    """Every method Table 1 names, in row order: the tasks' lists merged so that each keeps its
    own order (a method new to a later list goes right before the next method of that list
    already placed: denoise [a, b, e] + sr [a, c, d, e] give a, b, c, d, e)."""
    rows = cfg["table1"]["methods"]
    if not isinstance(rows, Mapping):
        return list(dict.fromkeys(rows))
    order: list[str] = []
    tasks = [t for t in cfg["table1"]["tasks"] if t in rows] + [t for t in rows
                                                                if t not in cfg["table1"]["tasks"]]
    for task in tasks:
        names = list(dict.fromkeys(rows[task]))
        for i, m in enumerate(names):
            if m in order:
                continue
            after = [n for n in names[i + 1:] if n in order]
            order.insert(order.index(after[0]) if after else len(order), m)
    return order


@dataclass
class Plan:
    cfg: Mapping
    data: str
    runs: str
    results: str
    logs: str
    _owners: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, cfg: Mapping, data: str | None = None, runs: str | None = None,
           results: str | None = None) -> "Plan":
        p = cfg["paths"]
        return cls(cfg, str(data or _fmt(p["data"], cfg)), str(runs or _fmt(p["runs"], cfg)),
                   str(results or _fmt(p["results"], cfg)), _fmt(p["logs"], cfg))

    @property
    def experiment(self) -> str:
        return self.cfg.get("experiment", "default")

    # ------------------------------------------------------------------ methods and stages
    def kind(self, method: str) -> MethodKind:
        return get_kind(self.mcfg(method)["kind"])

    def mcfg(self, method: str) -> Mapping:
        if method not in self.cfg["methods"]:
            raise ConfigError(f"unknown method '{method}'; params.yaml defines: "
                              f"{sorted(self.cfg['methods'])}")
        return self.cfg["methods"][method]

    def stages(self, method: str, task: str) -> list[Stage]:
        """The stages of ``method`` for ``task`` in order (``task`` = ``shared``: its shared
        stages)."""
        if task == SHARED:
            return self.shared_stages(method)
        check_task(self.cfg, method, task)
        return list(self.kind(method).stages(self.mcfg(method), task))

    def stage(self, method: str, task: str, stage: str) -> Stage:
        if task == SHARED:
            for st in self.shared_stages(method):
                if st.name == stage:
                    return st
            raise ConfigError(f"method '{method}' has no shared stage '{stage}' (shared stages: "
                              f"{[s.name for s in self.shared_stages(method)] or 'none'})")
        check_task(self.cfg, method, task)
        return self.kind(method).stage(self.mcfg(method), task, stage)

    def _kind_task(self, method: str, task: str, stage: str) -> str:
        """``shared`` for a shared stage (whatever task it is asked for), else ``task``."""
        return SHARED if task == SHARED or self.is_shared(method, stage) else task

    def stage_slice(self, method: str, task: str, stage: str) -> tuple[dict, frozenset]:
        """The kind's ``stage_config`` as plain data, and the path of every configuration key
        it read (:mod:`ugpnet.methods.identity`): what ``train_stage`` may read."""
        task = self._kind_task(method, task, stage)
        self.stage(method, task, stage)
        paths: set = set()
        raw = self.kind(method).stage_config(RecordingView(self.cfg, paths), method,
                                             None if task == SHARED else task, stage)
        return to_plain(raw), frozenset(paths)

    def stage_config(self, method: str, task: str, stage: str) -> dict:
        """The configuration slice that defines a stage's result, without operational keys
        (what the workflow reruns on, and what enters the stage's identity)."""
        return self._identity_config(self.stage_slice(method, task, stage)[0])

    def _identity_config(self, raw: Mapping) -> dict:
        """:meth:`stage_config` of the kind's slice ``raw`` (see :meth:`stage_slice`)."""
        # options beyond the paper at their official value are left out: runs made before an
        # option existed keep their identity
        out = strip_official(strip_operational(raw))
        if self.cfg.get("train_precision", "fp32") != "fp32":  # fp32 runs keep their identity
            out["train_precision"] = self.cfg["train_precision"]
        validation = to_plain(self.cfg["validation"])
        if validation != DEFAULT_VALIDATION:  # the defaults keep existing identities
            out["validation"] = validation  # checkpoint selection: part of the result
        return out

    def options_beyond_paper(self, method: str, task: str | None = None) -> list[str]:
        """How the tables name the options beyond the paper (:mod:`ugpnet.models.options`) that
        any stage of ``method`` runs with in Table 1's tasks, each label followed by its tasks
        in parentheses when not all of the method's tasks use it; empty for the official
        networks. With ``task``: the options of that task alone, without the parentheses."""
        per_label: dict[str, list[str]] = {}
        tasks = [t for m, t in self.table_cells() if m == method and task in (None, t)]
        for t in tasks:
            for label in self.options_beyond_paper_of(method, t):
                per_label.setdefault(label, []).append(t)
        return [label if len(ts) == len(tasks) else f"{label} ({', '.join(ts)})"
                for label, ts in per_label.items()]

    def options_beyond_paper_of(self, method: str, task: str) -> list[str]:
        """The labels of :meth:`options_beyond_paper` for one (method, task), Table 1's or not
        (e.g. a Table 3 row)."""
        out: list[str] = []
        for st in self.stages(method, task):
            raw, _ = self.stage_slice(method, task, st.name)
            out += [label for label in beyond_paper(raw) if label not in out]
        out += [label for label in self.kind(method).deviations(self.cfg, method, task)
                if label not in out]
        return out

    def outputs(self, method: str) -> tuple[str, ...]:
        return tuple(self.kind(method).outputs)

    def family(self, method: str) -> str:
        return self.kind(method).family

    def table_cells(self) -> Iterator[tuple[str, str]]:
        """(method, task) of Table 1: configured methods × tasks each method runs."""
        rows = table1_rows(self.cfg)
        for method in self.table1_methods():
            for task in self.cfg["table1"]["tasks"]:
                if method in rows[task]:
                    yield method, task

    def figure4_cells(self) -> list[tuple[str, str]]:
        """(method, task) of the paper's Figure 4 (``figure4:``): each regression method alone
        and inside UGPNet, for each task both run."""
        f = self.cfg.get("figure4")
        if not f:
            raise ConfigError("this configuration has no figure4 section (figure4: {tasks: [...], "
                              "pairs: {<regression method>: <its UGPNet method>}}), so there is "
                              "no Figure 4 to build")
        cells = []
        for task in f["tasks"]:
            for alone, inside in f["pairs"].items():
                if task in self.mcfg(alone)["tasks"] and task in self.mcfg(inside)["tasks"]:
                    cells += [(alone, task), (inside, task)]
        return cells

    def figure4_inputs(self) -> list[str]:
        """What the figure4 target needs: every cell's test outputs and metrics."""
        return [f for m, t in self.figure4_cells()
                for f in (self.restored_manifest(m, t, "test"), self.metrics_file(m, t))]

    def table3_cells(self) -> list[tuple[str, str]]:
        """(method, task) of Table 3 (``table3:``): every row's method on the table's task."""
        t3 = self.cfg.get("table3")
        if not t3:
            raise ConfigError("this configuration has no table3 section (table3: {task: deblur, "
                              "rows: {<method>: {group: ..., row: ...}}}), so there is no Table 3 "
                              "to build")
        return [(m, t3["task"]) for m in t3["rows"]]

    def table3_inputs(self) -> list[str]:
        """What the table3 target reads: every row's metric file."""
        return [self.metrics_file(m, t) for m, t in self.table3_cells()]

    def table3_csv(self) -> str:
        return str(Path(self.results) / "table3.csv")

    def table1_methods(self) -> list[str]:
        """Table 1's rows in order (``table1.methods``, a list or per task)."""
        return table1_methods(self.cfg)

    def multi_output_methods(self) -> list[str]:
        return [m for m in self.table1_methods() if len(self.outputs(m)) > 1]

    # ------------------------------------------------------------------ data (content-addressed)
    def data_config(self) -> dict:
        """What defines the prepared ground truth."""
        d = self.cfg["data"]
        out = {k: d[k] for k in ("source", "resolution", "seed")}
        out[d["source"]] = d[d["source"]]
        return out

    def gt_id(self) -> str:
        return digest_of(self.data_config())[:8]

    def gt_root(self) -> str:
        return str(Path(self.data) / f"gt-{self.gt_id()}")

    def gt_manifest(self) -> str:
        return str(Path(self.gt_root()) / "manifest.json")

    def gt_dir(self, split: str) -> str:
        return str(Path(self.gt_root()) / split)

    def kernel_config(self) -> dict:
        return {"deblur": self.cfg["degradations"]["deblur"],
                "resolution": self.cfg["data"]["resolution"]}

    def kernel_id(self) -> str:
        return digest_of(self.kernel_config())[:8]

    def kernel_bank(self, which: str) -> str:
        if which not in KERNEL_BANKS:
            raise ConfigError(f"kernel bank '{which}': one of {KERNEL_BANKS}")
        return str(Path(self.data) / "kernels" / f"{which}-{self.kernel_id()}.npy")

    def kernel_seed(self, which: str) -> int:
        return self.cfg["degradations"]["deblur"]["bank_seed"] + KERNEL_SEED_OFFSET[which]

    def degradation_config(self, task: str) -> dict:
        """What defines a task's degraded val/test sets."""
        deg = self.cfg["degradations"]
        out = {"gt": self.gt_id(), "task": task, "seed": deg["seed"], task: deg[task]}
        if task == "deblur":
            out["kernels"] = self.kernel_id()
        return out

    def degradation_id(self, task: str) -> str:
        return digest_of(self.degradation_config(task))[:8]

    def check_degradation_id(self, task: str, did: str) -> str:
        if did != self.degradation_id(task):
            raise ConfigError(f"degraded set lq/{task}-{did} does not belong to this "
                              f"configuration (expected lq/{task}-{self.degradation_id(task)})")
        return did

    def degrade_seed(self, split: str) -> int:
        return self.cfg["degradations"]["seed"] + DEGRADE_SEED_OFFSET[split]

    def degrade_bank(self, task: str, split: str) -> str | None:
        """The kernel bank a degraded split is blurred with (val and test: separate banks)."""
        return self.kernel_bank(split) if task == "deblur" else None

    def lq_dir(self, task: str, split: str) -> str:
        return str(Path(self.data) / "lq" / f"{task}-{self.degradation_id(task)}" / split)

    def lq_manifest(self, task: str, split: str) -> str:
        return str(Path(self.lq_dir(task, split)) / "manifest.json")

    def data_inputs(self) -> list[str]:
        """Every prepared file of this configuration's tables and figures: the ground truth,
        the kernel banks (when one of them deblurs) and the degraded val/test splits of each
        task (Table 1's, Table 3's, Figure 4's when the figures draw it)."""
        tasks = list(self.cfg["table1"]["tasks"])
        if self.cfg.get("table3") and self.cfg["table3"]["task"] not in tasks:
            tasks.append(self.cfg["table3"]["task"])
        which = (self.cfg.get("figures") or {}).get("which", ["figure4"])
        if self.cfg.get("figure4") and "figure4" in which:
            tasks += [t for t in self.cfg["figure4"]["tasks"] if t not in tasks]
        files = [self.gt_manifest()]
        if "deblur" in tasks:
            files += [self.kernel_bank(b) for b in KERNEL_BANKS]
        return files + [self.lq_manifest(t, s) for t in tasks for s in EVAL_SPLITS]

    # ------------------------------------------------------------------ runs
    def stage_dir(self, method: str, task: str, stage: str) -> str:
        """``<runs>/<owner>/<task>/<stage>``; a shared stage's task folder is ``shared``. The
        owner is the method itself, or for a variant's stage that equals its parent's, the
        parent's owner (:meth:`stage_owner`)."""
        owner = self.stage_owner(method, task, stage)
        return str(Path(self.runs) / owner / self.task_folder(owner, task, stage) / stage)

    def stage_owner(self, method: str, task: str, stage: str) -> str:
        """The method whose run folder holds ``stage`` of ``method`` for ``task``.

        A method entry with ``variant_of: <parent>`` (an ablation) trains only the stages it
        changes: a stage whose identity (the configuration slice :meth:`stage_config` and the
        files it reads, themselves resolved this way) equals the parent's stage for the same
        task IS the parent's stage: same file, same job, trained once. Otherwise, and for every
        method without ``variant_of``, the method owns it."""
        key = (method, task, stage)
        if key not in self._owners:
            self._owners[key] = self._find_owner(method, task, stage)
        return self._owners[key]

    def _find_owner(self, method: str, task: str, stage: str) -> str:
        parent = self.mcfg(method).get("variant_of")
        if parent is None:
            return method
        m, p = self.mcfg(method), self.mcfg(parent)
        kt = self._kind_task(method, task, stage)
        if p["kind"] != m["kind"] or (kt != SHARED and kt not in p["tasks"]):
            return method
        try:
            theirs = self.stage(parent, kt, stage)
        except ConfigError:
            return method
        if theirs != self.stage(method, kt, stage) or \
                self.is_shared(parent, stage) != self.is_shared(method, stage):
            return method
        if self.stage_config(method, kt, stage) != self.stage_config(parent, kt, stage):
            return method
        if self.stage_inputs(method, kt, stage) != self.stage_inputs(parent, kt, stage):
            return method
        return self.stage_owner(parent, kt, stage)

    def owned_stages(self, method: str, task: str) -> list[str]:
        """The stages of ``method`` for ``task`` that it trains itself (not its parent's)."""
        return [st.name for st in self.stages(method, task)
                if self.stage_owner(method, task, st.name) == method]

    def stage_model(self, method: str, task: str, stage: str) -> str:
        return str(Path(self.stage_dir(method, task, stage)) / "model.pt")

    def final_model(self, method: str, task: str) -> str | None:
        """The method's model file (its last stage's), None for a method that trains nothing."""
        check_task(self.cfg, method, task)
        final = self.kind(method).final_stage(self.mcfg(method), task)
        return None if final is None else self.stage_model(method, task, final.name)

    # ------------------------------------------------------------------ named priors
    def prior_cfg(self, name: str) -> Mapping:
        """The entry ``priors.<name>`` (ConfigError naming the known ones when absent)."""
        priors = self.cfg["priors"]
        if name not in priors:
            raise ConfigError(f"no prior named '{name}': params.yaml defines priors "
                              f"{sorted(priors)}; add priors.{name}: {{...}} (architecture, "
                              f"checkpoint or a pretrain recipe) or read one of those")
        return priors[name]

    def prior_settings(self, name: str) -> dict:
        """What defines a prior the DAG pretrains: its entry without ``checkpoint`` and without
        operational keys (the pretraining's identity; equal settings share one file)."""
        p = self.prior_cfg(name)
        return strip_operational({k: p[k] for k in p if k != "checkpoint"})

    def prior_id(self, name: str) -> str:
        return digest_of(self.prior_settings(name))[:8]

    def pretrained_prior(self, name: str) -> str:
        """Where the DAG pretrains prior ``name``: ``<runs>/priors/<id>/model.pt``, ``<id>`` the
        digest of its settings, so every prior of the same settings shares the file."""
        return str(Path(self.runs) / "priors" / self.prior_id(name) / "model.pt")

    def prior_by_id(self, prior_id: str) -> str:
        """The (first, by name) prior whose pretraining folder is ``priors/<prior_id>``."""
        for name in sorted(self.cfg["priors"]):
            if self.prior_id(name) == prior_id:
                return name
        raise ConfigError(f"priors/{prior_id} belongs to no prior of this configuration "
                          f"(priors: {sorted(self.cfg['priors'])})")

    def priors_read(self) -> list[str]:
        """The priors that the stages of Table 1's cells read."""
        out: list[str] = []
        for method, task in self.table_cells():
            for stage in self.stages(method, task):
                for need in stage.reads:
                    if isinstance(need, Prior) and need.prior not in out:
                        out.append(need.prior)
        return out

    def prior(self, name: str) -> str | dict:
        """Prior ``name``: the user's checkpoint (one file, or ``{g, d}`` files) or the one the
        DAG pretrains. Refused when neither exists (no 0-iteration prior is ever used)."""
        sg = self.prior_cfg(name)
        key = f"priors.{name}"
        want = sg.get("checkpoint_sha256")
        if isinstance(sg["checkpoint"], Mapping):
            files = {"g": str(sg["checkpoint"]["g"]), "d": str(sg["checkpoint"]["d"])}
            for part, path in files.items():
                verify_sha256(path, want.get(part) if isinstance(want, Mapping) else None,
                              f"the {part} checkpoint of prior '{name}'",
                              f"{key}.checkpoint_sha256.{part}")
            return files
        if sg["checkpoint"]:
            if isinstance(want, Mapping):
                raise ConfigError(f"{key}.checkpoint_sha256 has g/d entries but {key}.checkpoint "
                                  f"is one file: give one sha256 string")
            verify_sha256(sg["checkpoint"], want, f"the checkpoint of prior '{name}'",
                          f"{key}.checkpoint_sha256")
            return str(sg["checkpoint"])
        if int(sg["pretrain"]["total_iters"]) < 1:
            raise ConfigError(
                f"a method needs the prior '{name}', but {key}.checkpoint is null and "
                f"{key}.pretrain.total_iters is 0 (profile '{self.cfg['profile']}'). Set "
                f"{key}.checkpoint to your pretrained FFHQ StyleGAN2 at {sg['size']} px "
                f"(rosinality .pt, BasicSR net_g.pth or NVIDIA .pkl), e.g. with an override "
                f"file: overrides: {{priors: {{{name}: {{checkpoint: "
                f"/weights/stylegan2-ffhq-{sg['size']}x{sg['size']}.pkl}}}}}}")
        return self.pretrained_prior(name)

    # ------------------------------------------------------------------ shared stages
    def shared_stages(self, method: str) -> list[Stage]:
        """The method's stages trained once for all its tasks (:attr:`Stage.shared`), each
        declared the same for every task (ConfigError otherwise)."""
        kind, m = self.kind(method), self.mcfg(method)
        found: dict[str, Stage] = {}
        for task in m["tasks"]:
            for st in kind.stages(m, task):
                if not st.shared:
                    continue
                if st.name in found and found[st.name] != st:
                    raise ConfigError(f"method '{method}' (kind {m['kind']}) declares its shared "
                                      f"stage '{st.name}' differently for task '{task}': a "
                                      f"stage trained once must be the same for every task")
                found[st.name] = st
        return list(found.values())

    def is_shared(self, method: str, stage: str) -> bool:
        return any(s.name == stage for s in self.shared_stages(method))

    def task_folder(self, method: str, task: str, stage: str) -> str:
        """The task part of a stage's run folder: the task, or ``shared``."""
        return SHARED if task == SHARED or self.is_shared(method, stage) else task

    def stage_inputs(self, method: str, task: str, stage: str) -> dict[str, str]:
        """Named files a stage reads (what its rule depends on and what it is given)."""
        task = self._kind_task(method, task, stage)
        spec = self.stage(method, task, stage)
        m = self.mcfg(method)
        inputs: dict[str, str] = {}
        for need in spec.reads:
            if isinstance(need, Data):
                inputs["gt"] = self.gt_manifest()
                if task == SHARED:  # the clean ground truth alone (lq = gt)
                    continue
                inputs["val"] = self.lq_manifest(task, "val")
                if task == "deblur":
                    inputs["kernels"] = self.kernel_bank("train")
            elif isinstance(need, Previous):
                if task == SHARED and not self.is_shared(method, need.stage):
                    raise ConfigError(f"shared stage '{stage}' of '{method}' reads stage "
                                      f"'{need.stage}', which is trained per task: a stage "
                                      f"trained once for every task reads only shared stages")
                if not self.is_shared(method, need.stage):
                    self.stage(method, task, need.stage)
                inputs[need.name] = self.stage_model(method, task, need.stage)
            elif isinstance(need, Prior):
                prior = self.prior(need.prior)
                if isinstance(prior, Mapping):  # the official pair net_g.pth / net_d.pth
                    inputs[need.name] = prior["g"]
                    inputs[f"{need.name}_d"] = prior["d"]
                else:
                    inputs[need.name] = prior
            elif isinstance(need, (UserFile, MethodModel)):
                per_task = not (isinstance(need, UserFile) and not need.per_task)
                key = f"methods.{method}.{need.key}" + (f".{task}" if per_task else "")
                value = (m.get(need.key) or {}).get(task) if per_task else m.get(need.key)
                if value is None:
                    if not need.optional:
                        raise ConfigError(f"{key} must be set: stage '{stage}' of '{method}' "
                                          f"reads it" + (f" ({need.hint})" if need.hint else ""))
                    continue
                if isinstance(need, UserFile):
                    if not Path(value).is_file():
                        raise ConfigError(f"{key} = '{value}': no such file. "
                                          + (f"{need.hint}. " if need.hint else "")
                                          + f"Fix the path, or set {key}: null.")
                    inputs[need.name] = str(value)
                else:
                    if value == method:
                        raise ConfigError(f"methods.{method}.{need.key}.{task} names the method "
                                          f"itself")
                    model = self.final_model(value, task)
                    if model is None:
                        raise ConfigError(f"methods.{method}.{need.key}.{task} = '{value}' trains "
                                          f"no model to start from")
                    inputs[need.name] = model
            else:  # pragma: no cover - a new Need type without a resolver
                raise TypeError(f"stage '{stage}' of '{method}' reads an unknown input {need!r}")
        self.kind(method).check_stage(self.cfg, method, None if task == SHARED else task, stage,
                                      inputs)
        return inputs

    def check(self) -> None:
        """Resolve every stage of every Table 1 cell now, so a configuration that cannot run
        (a missing prior, a method without its input) fails before any job starts."""
        for method, task in self.table_cells():
            for stage in self.stages(method, task):
                self.stage_inputs(method, task, stage.name)

    def label(self, method: str, task: str, stage: str) -> dict:
        return {"method": method, "task": self._kind_task(method, task, stage), "stage": stage,
                "kind": self.mcfg(method)["kind"], "profile": self.cfg["profile"],
                "experiment": self.experiment}

    def context(self, method: str, task: str, stage: str, device="cpu", progress: bool = True,
                overrides: Mapping[str, str] | None = None, restart: bool = False) -> StageContext:
        """What ``kind.train_stage`` gets: the stage, its resolved inputs (``overrides`` replace
        some; every one must exist), its identity (configuration slice + input content digests),
        label and run folder."""
        task = self._kind_task(method, task, stage)
        owner = self.stage_owner(method, task, stage)
        if owner != method:  # a variant's stage that is its parent's: the parent's run
            return self.context(owner, task, stage, device=device, progress=progress,
                                overrides=overrides, restart=restart)
        inputs = self.stage_inputs(method, task, stage)
        unknown = sorted(set(overrides or {}) - set(inputs))
        if unknown:
            raise ConfigError(f"inputs {unknown} are not read by stage '{stage}' of '{method}' "
                              f"(it reads {sorted(inputs)})")
        inputs.update(overrides or {})
        missing = {k: v for k, v in inputs.items() if not Path(v).exists()}
        if missing:
            lines = "\n".join(f"  - {k}: {v}" for k, v in missing.items())
            raise DataError(f"stage '{stage}' of {method}/{task} reads files that do not exist:\n"
                            f"{lines}\nRun the steps that make them first (the Snakemake "
                            f"workflow does: snakemake --cores all results/table1.csv).")
        raw, read = self.stage_slice(method, task, stage)
        identity = {"kind": self.mcfg(method)["kind"], "stage": stage,
                    "config": self._identity_config(raw),
                    "inputs": {k: input_digest(v) for k, v in sorted(inputs.items())}}
        precision = resolve_precision(self.cfg.get("train_precision", "fp32"), device)
        if "train_precision" in identity["config"]:
            identity["precision"] = precision  # what 'auto' became on this device
        # train_stage sees only what its identity covers (+ operational keys): anything else
        # fails loudly instead of silently not rerunning
        view = RestrictedView(self.cfg, read, free=OPERATIONAL_KEYS,
                              who=f"stage '{stage}' of method '{method}' (kind "
                                  f"'{self.mcfg(method)['kind']}')")
        return StageContext(cfg=view, method=method, task=None if task == SHARED else task,
                            stage=self.stage(method, task, stage),
                            inputs={k: Path(v) for k, v in inputs.items()},
                            data_dir=Path(self.data), out=Path(self.stage_dir(method, task, stage)),
                            device=device, progress=progress, restart=restart, identity=identity,
                            label=self.label(method, task, stage),
                            operational=operational_of(raw), precision=precision,
                            validation=to_plain(self.cfg["validation"]),
                            # curves, grids, TensorBoard: how a run shows itself, not what it
                            # makes (in no stage_config, so in no identity)
                            logging=to_plain(self.cfg.get("logging") or {}))

    # ------------------------------------------------------------------ stale models
    def missing_inputs(self, method: str, task: str, stage: str) -> dict[str, str]:
        """The files a stage reads that do not exist (named as the stage reads them)."""
        return {k: v for k, v in self.stage_inputs(method, task, stage).items()
                if not Path(v).exists()}

    def expected_identity(self, method: str, task: str, stage: str) -> tuple[dict, set[str]]:
        """The identity this configuration gives a stage (:meth:`context`; its inputs must
        exist, else DataError) and every hash a model.pt of it may carry: with
        ``train_precision: auto`` the bf16 and the fp32 one, as the machine that trained it
        resolved ``auto``."""
        identity = self.context(method, task, stage, progress=False).identity
        variants = [identity]
        if self.cfg.get("train_precision") == "auto" and "precision" in identity:
            variants += [{**identity, "precision": p} for p in PRECISIONS if p != "auto"]
        return identity, {digest_of(v) for v in variants}

    def identity_mismatch(self, method: str, task: str, stage: str,
                          model: str | Path) -> str | None:
        """None when ``model`` carries an identity this configuration gives the stage, or
        carries none (not a ugpnet-bench model.pt); else what differs, from the options.json
        beside it (the identity it was trained with). DataError when the stage's inputs are
        missing: the expected identity hashes their content."""
        record = _model_record(Path(model))
        if record is None:
            return None
        identity, hashes = self.expected_identity(method, task, stage)
        if record["identity_hash"] in hashes:
            return None
        fallback = f"identity {record['identity_hash']} instead of {digest_of(identity)}"
        old = _trained_identity(Path(model), record["identity_hash"])
        if old is None:
            return f"{fallback} (no options.json of it beside the model lists the differences)"
        if self.cfg.get("train_precision") == "auto" and "precision" in old:  # either is ours
            identity = {**identity, "precision": old["precision"]}
        return "; ".join(identity_changes(old, identity)) or fallback

    def stale_model(self, method: str, task: str, stage: str) -> str | None:
        """What differs when the stage's finished model.pt was trained with another identity
        than this configuration gives it (e.g. ``ugpnet train --set ...`` into this run
        folder), so that the workflow reruns the stage; None when it is this configuration's,
        not there, or its inputs are missing (their jobs run first, and the stage after them)."""
        model = self.stage_model(method, task, stage)
        if not Path(model).is_file() or self.missing_inputs(method, task, stage):
            return None
        return self.identity_mismatch(method, task, stage, model)

    def check_model_identity(self, method: str, task: str, checkpoint: str | Path | None) -> None:
        """Refuse a ugpnet-bench model.pt labelled for ``method``/``task`` in this profile that
        was trained with another identity than this configuration gives the method's final
        stage: CheckpointError naming the file, the differences and the fix. Not checked:
        files without an identity (official releases, user weights), models labelled for
        another method, task, profile or stage (the restore refuses those itself), and, with
        a warning, a model whose stage inputs are missing here (the identity hashes them)."""
        record = _model_record(Path(checkpoint)) if checkpoint else None
        label = record["label"] if record else {}
        if (label.get("method"), label.get("task"), label.get("profile")) != \
                (method, task, self.cfg["profile"]):
            return
        check_task(self.cfg, method, task)
        final = self.kind(method).final_stage(self.mcfg(method), task)
        if final is None or label.get("stage", final.name) != final.name:
            return  # an earlier stage's model: the restore names the one to use
        missing = self.missing_inputs(method, task, final.name)
        if missing:
            files = ", ".join(f"{k}: {v}" for k, v in missing.items())
            print(f"ugpnet: warning: '{checkpoint}' is not checked against this configuration: "
                  f"its identity hashes the files stage '{final.name}' of {method}/{task} reads, "
                  f"and these do not exist here ({files}).", file=sys.stderr)
            return
        changes = self.identity_mismatch(method, task, final.name, checkpoint)
        if changes:
            raise CheckpointError(
                f"'{checkpoint}' was trained with another identity than this configuration "
                f"gives stage '{final.name}' of {method}/{task}: {changes}. It is not this "
                f"configuration's model. Retrain the stage under this configuration: the "
                f"workflow does (snakemake --cores all results/table1.csv reruns a stage whose "
                f"model.pt has another identity; to force it: snakemake --cores all "
                f"results/table1.csv --forcerun {self.final_model(method, task)}), or ugpnet "
                f"train --method {method} --task {task} --restart; or run under the "
                f"configuration it was trained with (its options.json).")

    def check_restored_models(self, method: str, task: str) -> None:
        """The checkpoint each restored folder of ``method``/``task`` names in its manifest is
        unchanged since the restore (its sha256) and this configuration's
        (:meth:`check_model_identity`); CheckpointError otherwise. Manifests that are missing
        or name no checkpoint are left to the caller."""
        now: dict[str, str | None] = {}
        for split in self.evaluation_splits(method, task):
            manifest = Path(self.restored_manifest(method, task, split))
            try:
                record = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            checkpoint, want = record.get("checkpoint"), record.get("checkpoint_sha256")
            if not (checkpoint and want):
                continue
            if checkpoint not in now:
                now[checkpoint] = sha256_file(checkpoint) if Path(checkpoint).is_file() else None
            if now[checkpoint] != want:
                how = ("no longer exists" if now[checkpoint] is None else
                       f"has changed since (sha256 {want[:12]}... then, {now[checkpoint][:12]}... "
                       f"now)")
                raise CheckpointError(
                    f"{manifest.parent} was restored with '{checkpoint}', which {how}: restore "
                    f"it again with the current model (the workflow does: snakemake --cores all "
                    f"results/table1.csv), then evaluate.")
            self.check_model_identity(method, task, checkpoint)

    # ------------------------------------------------------------------ results
    def restored_dir(self, method: str, task: str, split: str, output: str | None = None) -> str:
        base = Path(self.results) / "restored" / method / task / split
        if output is None or output == self.outputs(method)[0]:
            return str(base)
        if output not in self.outputs(method):
            raise ConfigError(f"method '{method}' has outputs {self.outputs(method)}, not "
                              f"'{output}'")
        return str(base / output)

    def restored_manifest(self, method: str, task: str, split: str) -> str:
        return str(Path(self.restored_dir(method, task, split)) / "manifest.json")

    def metrics_file(self, method: str, task: str) -> str:
        """The evaluations of one (method, task): every folder of :meth:`evaluation_splits`,
        one ``ugpnet-evaluations/1`` file (:mod:`ugpnet.metrics.evaluate`)."""
        return str(Path(self.results) / "metrics" / method / f"{task}.json")

    def evaluation_splits(self, method: str, task: str) -> dict[str, list[str]]:
        """``{split: [outputs]}`` that ``ugpnet evaluate --method --task`` scores: every output
        on the test split, and on the val split for the cells of the outputs tables."""
        check_task(self.cfg, method, task)
        outputs = list(self.outputs(method))
        splits = {"test": outputs}
        if (method, task) in self.output_cells():
            splits["val"] = outputs
        return splits

    def fid_ref(self, split: str) -> str:
        """The FID reference of a split: ``metrics.fid_ref`` describes the test split; the val
        split is always compared with its paired ground truth."""
        self._check_split(split)
        return str(self.cfg["metrics"]["fid_ref"]) if split == "test" else "gt"

    def table1_inputs(self) -> list[str]:
        files = [self.metrics_file(m, t) for m, t in self.table_cells()]
        if self.multi_output_methods():
            files += [self.outputs_csv(split) for split in EVAL_SPLITS]
        return files

    def table1_csv(self) -> str:
        return str(Path(self.results) / "table1.csv")

    def outputs_csv(self, split: str) -> str:
        """Every output of the multi-output methods on a split (``ugpnet table --which
        outputs``)."""
        self._check_split(split)
        return str(Path(self.results) / f"{split}_outputs.csv")

    def output_cells(self) -> list[tuple[str, str]]:
        """(method, task) of the outputs tables: multi-output methods, and the reference rows
        (the degraded input) of the same tasks, so that the tables show what each output is to
        be compared with."""
        multi = self.multi_output_methods()
        cells = list(self.table_cells())
        tasks = {t for m, t in cells if m in multi}
        return [(m, t) for m, t in cells
                if m in multi or (self.family(m) == "reference" and t in tasks)]

    def output_records(self) -> list[tuple[str, str, str, str]]:
        """(method, task, output, metric file) of every row of the outputs tables."""
        return [(m, t, o, self.metrics_file(m, t))
                for m, t in self.output_cells() for o in self.outputs(m)]

    @staticmethod
    def _check_split(split: str) -> None:
        if split not in EVAL_SPLITS:
            raise ConfigError(f"split '{split}': one of {EVAL_SPLITS}")


def _model_record(model: Path) -> dict | None:
    """``label`` and ``identity_hash`` of a ugpnet-bench model.pt (read with mmap: not the
    weights); None for any other file, or one that cannot be read (its loader says why)."""
    if not (model.is_file() and model.suffix == ".pt"):
        return None
    import torch

    try:
        obj = torch.load(model, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable file is reported by whoever loads it
        return None
    if not (isinstance(obj, dict) and isinstance(obj.get("label"), dict)
            and obj.get("identity_hash")):
        return None
    return {"label": obj["label"], "identity_hash": obj["identity_hash"]}


def _trained_identity(model: Path, identity_hash: str) -> dict | None:
    """The identity a model.pt was trained with: the options.json beside it, if it records
    that hash (a later run in the folder may have replaced it)."""
    try:
        options = json.loads((model.parent / "options.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(options, dict) or options.get("identity_hash") != identity_hash:
        return None
    identity = options.get("identity")
    return identity if isinstance(identity, dict) else None
