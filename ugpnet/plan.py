"""The plan of a run: where every artefact lives and which files each job reads.

One place for both the CLI and the Snakemake workflow, so they always agree; the workflow asks
the plan (and the plan asks the method kinds), it never names a kind or a stage itself.

Layout (``paths`` in params.yaml)::

    <data>/gt/{train,val,test}/*.png, gt/manifest.json          ugpnet prepare
    <data>/kernels/{train,test}.npy                              ugpnet kernels
    <data>/lq/<task>/{val,test}/*.png, .../manifest.json        ugpnet degrade
    <runs>/prior/model.pt                                        ugpnet pretrain-prior
    <runs>/<method>/<task>/<stage>/model.pt                      ugpnet train (one per stage)
    <results>/restored/<method>/<task>/<split>/[<output>/]*.png  ugpnet restore
    <results>/metrics/<method>/<task>.json                       ugpnet evaluate (test split)
    <results>/metrics_val/<method>/<task>/<output>.json          every output on the val split
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from .data import layout
from .errors import ConfigError
from .methods import (Data, MethodModel, Previous, Prior, StageContext, UserFile, check_task,
                      get_kind)
from .methods.contract import MethodKind, Stage


@dataclass
class Plan:
    cfg: Mapping
    data: str
    runs: str
    results: str
    logs: str

    @classmethod
    def of(cls, cfg: Mapping, data: str | None = None, runs: str | None = None,
           results: str | None = None) -> "Plan":
        p = cfg["paths"]
        fmt = lambda t: t.format(profile=cfg["profile"])  # noqa: E731
        return cls(cfg, str(data or fmt(p["data"])), str(runs or fmt(p["runs"])),
                   str(results or fmt(p["results"])), f"logs/{cfg['profile']}")

    # ------------------------------------------------------------------ methods and stages
    def kind(self, method: str) -> MethodKind:
        return get_kind(self.mcfg(method)["kind"])

    def mcfg(self, method: str) -> Mapping:
        if method not in self.cfg["methods"]:
            raise ConfigError(f"unknown method '{method}'; params.yaml defines: "
                              f"{sorted(self.cfg['methods'])}")
        return self.cfg["methods"][method]

    def stages(self, method: str, task: str) -> list[Stage]:
        check_task(self.cfg, method, task)
        return list(self.kind(method).stages(self.mcfg(method), task))

    def stage(self, method: str, task: str, stage: str) -> Stage:
        check_task(self.cfg, method, task)
        return self.kind(method).stage(self.mcfg(method), task, stage)

    def stage_config(self, method: str, task: str, stage: str) -> dict:
        self.stage(method, task, stage)
        return self.kind(method).stage_config(self.cfg, method, task, stage)

    def outputs(self, method: str) -> tuple[str, ...]:
        return tuple(self.kind(method).outputs)

    def family(self, method: str) -> str:
        return self.kind(method).family

    def table_cells(self) -> Iterator[tuple[str, str]]:
        """(method, task) of Table 1: configured methods × tasks each method runs."""
        t = self.cfg["table1"]
        for method in t["methods"]:
            for task in t["tasks"]:
                if task in self.mcfg(method)["tasks"]:
                    yield method, task

    def multi_output_methods(self) -> list[str]:
        return [m for m in self.cfg["table1"]["methods"] if len(self.outputs(m)) > 1]

    def all_outputs(self) -> list[str]:
        names: list[str] = []
        for m in self.cfg["table1"]["methods"]:
            names += [o for o in self.outputs(m) if o not in names]
        return names

    # ------------------------------------------------------------------ data
    def gt_manifest(self) -> str:
        return str(layout.gt_manifest(self.data))

    def gt_dir(self, split: str) -> str:
        return str(layout.gt_dir(self.data, split))

    def kernel_bank(self, which: str) -> str:
        return str(layout.kernel_bank(self.data, which))

    def lq_manifest(self, task: str, split: str) -> str:
        return str(layout.lq_dir(self.data, task, split) / "manifest.json")

    def lq_dir(self, task: str, split: str) -> str:
        return str(layout.lq_dir(self.data, task, split))

    # ------------------------------------------------------------------ runs
    def stage_dir(self, method: str, task: str, stage: str) -> str:
        return str(Path(self.runs) / method / task / stage)

    def stage_model(self, method: str, task: str, stage: str) -> str:
        return str(Path(self.stage_dir(method, task, stage)) / "model.pt")

    def final_model(self, method: str, task: str) -> str:
        check_task(self.cfg, method, task)
        final = self.kind(method).final_stage(self.mcfg(method), task)
        return self.stage_model(method, task, final.name)

    def pretrained_prior(self) -> str:
        return str(Path(self.runs) / "prior" / "model.pt")

    def prior(self) -> str:
        """The StyleGAN2 prior: the user's checkpoint or the one the DAG pretrains."""
        return self.cfg["stylegan2"]["checkpoint"] or self.pretrained_prior()

    def stage_inputs(self, method: str, task: str, stage: str) -> dict[str, str]:
        """Named files a stage reads (what its rule depends on and what it is given)."""
        spec = self.stage(method, task, stage)
        m = self.mcfg(method)
        inputs: dict[str, str] = {}
        for need in spec.reads:
            if isinstance(need, Data):
                inputs["gt"] = self.gt_manifest()
                inputs["val"] = self.lq_manifest(task, "val")
                if task == "deblur":
                    inputs["kernels"] = self.kernel_bank("train")
            elif isinstance(need, Previous):
                self.stage(method, task, need.stage)
                inputs[need.name] = self.stage_model(method, task, need.stage)
            elif isinstance(need, Prior):
                inputs[need.name] = self.prior()
            elif isinstance(need, (UserFile, MethodModel)):
                value = (m.get(need.key) or {}).get(task)
                if value is None:
                    if not need.optional:
                        raise ConfigError(f"methods.{method}.{need.key}.{task} must be set: stage "
                                          f"'{stage}' of '{method}' reads it")
                    continue
                if isinstance(need, UserFile):
                    inputs[need.name] = str(value)
                else:
                    if value == method:
                        raise ConfigError(f"methods.{method}.{need.key}.{task} names the method "
                                          f"itself")
                    inputs[need.name] = self.final_model(value, task)
            else:  # pragma: no cover - a new Need type without a resolver
                raise TypeError(f"stage '{stage}' of '{method}' reads an unknown input {need!r}")
        return inputs

    def context(self, method: str, task: str, stage: str, device="cpu", progress: bool = True,
                overrides: Mapping[str, str] | None = None) -> StageContext:
        """What ``kind.train_stage`` gets: the stage, its resolved inputs (``overrides`` replace
        some), the data and run folders. Every input must exist."""
        from .errors import DataError

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
        return StageContext(cfg=self.cfg, method=method, task=task,
                            stage=self.stage(method, task, stage),
                            inputs={k: Path(v) for k, v in inputs.items()},
                            data_dir=Path(self.data), out=Path(self.stage_dir(method, task, stage)),
                            device=device, progress=progress)

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
        return str(Path(self.results) / "metrics" / method / f"{task}.json")

    def val_metrics_file(self, method: str, task: str, output: str) -> str:
        return str(Path(self.results) / "metrics_val" / method / task / f"{output}.json")

    def table1_inputs(self) -> list[str]:
        files = [self.metrics_file(m, t) for m, t in self.table_cells()]
        if self.multi_output_methods():
            files.append(self.val_outputs_csv())
        return files

    def val_outputs_csv(self) -> str:
        return str(Path(self.results) / "val_outputs.csv")

    def val_output_records(self) -> list[tuple[str, str, str, str]]:
        """(method, task, output, metric file) for every output of multi-output methods."""
        return [(m, t, o, self.val_metrics_file(m, t, o))
                for m, t in self.table_cells() if m in self.multi_output_methods()
                for o in self.outputs(m)]
