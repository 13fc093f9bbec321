"""ugpnet plots: the data of the plots DVC renders (``dvc plots show``, dvc.yaml ``plots``).

- ``<out>/losses/<method>_<task>_<stage>.csv``: ``iter, loss`` (the training loss of the stage's
  ``log.jsonl``; for an adversarial stage the generator's) of every stage that the cells of
  Table 1 and Table 3 trained, each file once (a variant's shared stages are its parent's);
- ``<out>/perception_distortion.csv``: ``table, method, task, psnr, lpips`` of every cell with a
  metric file (the perception-distortion plane: PSNR against LPIPS, test split).

Stages without a ``loss`` column (a prior's ``g_loss``/``d_loss``) and cells not yet scored are
left out and named.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "write the training-loss curves and the perception-distortion data that DVC plots"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder to write (losses/, perception_distortion.csv)")


def run(args) -> int:
    import pandas as pd

    from ..config import load_config
    from ..io import atomic_path
    from ..plan import Plan
    from ..tables import record_mean

    plan = Plan.of(load_config(args))
    cells = [("table1", m, t) for m, t in plan.table_cells()]
    if plan.cfg.get("table3"):
        cells += [("table3", m, t) for m, t in plan.table3_cells()]
    out = Path(args.out)
    losses = out / "losses"
    losses.mkdir(parents=True, exist_ok=True)
    written, skipped = set(), []
    for _, method, task in cells:
        for st in plan.stages(method, task):
            owner = plan.stage_owner(method, task, st.name)
            folder = Path(plan.stage_dir(method, task, st.name))
            name = f"{owner}_{plan.task_folder(owner, task, st.name)}_{st.name}.csv"
            if name in written:
                continue
            rows = _loss_rows(folder / "log.jsonl")
            if not rows:
                skipped.append(str(folder))
                continue
            with atomic_path(losses / name, suffix=".csv") as tmp:
                pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.6g")
            written.add(name)
    for stale in losses.glob("*.csv"):  # a stage no table reads any more
        if stale.name not in written:
            stale.unlink()
    points, missing = [], []
    for table, method, task in cells:
        path = Path(plan.metrics_file(method, task))
        if not path.is_file():
            missing.append(f"{method}/{task}")
            continue
        mean = record_mean(path, "test", plan.outputs(method)[0])
        if mean.get("psnr") is None or mean.get("lpips") is None:
            continue
        points.append({"table": table, "method": method, "task": task,
                       "psnr": float(mean["psnr"]), "lpips": float(mean["lpips"])})
    with atomic_path(out / "perception_distortion.csv", suffix=".csv") as tmp:
        pd.DataFrame(points, columns=["table", "method", "task", "psnr", "lpips"]).to_csv(
            tmp, index=False, float_format="%.6g")
    print(f"{out}: {len(written)} loss curves, {len(points)} perception-distortion points")
    if skipped:
        print(f"no training loss logged (not trained yet, or no 'loss' column): "
              f"{', '.join(skipped)}")
    if missing:
        print(f"not scored yet: {', '.join(missing)}")
    return 0


def _loss_rows(log: Path) -> list[dict]:
    if not log.is_file():
        return []
    rows = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:  # a line cut by a kill
            continue
        if "loss" in rec and "iter" in rec:
            rows.append({"iter": int(rec["iter"]), "loss": float(rec["loss"])})
    return rows
