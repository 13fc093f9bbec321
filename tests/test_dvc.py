"""DVC as its users expect it, end to end on the tiny profile in a scratch git repository:
`dvc repro` builds Table 3 (one stage per row) and then reports up to date; `dvc metrics show`
reads numbers only; `dvc push` to the default local remote, a fresh clone, `make pull`
(dvc pull + the file times set in the workflow's order), and Snakemake schedules no training;
`dvc exp run -S '++overrides.<key>=<value>'` retrains exactly the stage that key defines and
`dvc exp show` lists it.

Slow-ish (about 3 minutes on 2 cores): one module-scoped repository serves every test, in order.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workspace import REPO

# the virtualenv running the tests (make test: .venv/), linked into the scratch repositories,
# whose dvc.yaml calls .venv/bin/snakemake
VENV = Path(sys.prefix) if sys.prefix != sys.base_prefix else None
# the tiny profile, Table 1 on deblurring with input, NAFNet and UGPNet, Table 3 with two rows:
# full UGPNet and a variant that retrains only its fusion
TINY = """
overrides:
  table1: {methods: [input, nafnet, ugpnet], tasks: [deblur]}
"""
ROWS = """    rows:
      ugpnet-no-contextual: {group: NAFNet, row: "fusion without L_cf"}
      ugpnet: {group: NAFNet, row: "(c) UGPNet"}
"""
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}


def _run(cmd, cwd, timeout=900, check=True):
    env = dict(os.environ, **GIT_ENV, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS") or "1")
    env.pop("UGPNET_PARAMS", None)
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                       shell=isinstance(cmd, str))
    if check:
        assert r.returncode == 0, f"{cmd} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


def _tiny_params(text: str) -> str:
    text = text.replace("profile: smoke\n", "profile: tiny\n", 1)
    assert text.endswith("overrides: {}\n"), "params.yaml must end with its overrides section"
    text = text[:-len("overrides: {}\n")] + TINY.lstrip("\n")
    start = text.index("    rows:\n", text.index("\n  table3:"))
    end = text.index("\n  # ", start) + 1
    return text[:start] + ROWS + text[end:]


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory):
    if VENV is None:
        pytest.skip("runs in the project's virtualenv only (make test): dvc.yaml calls "
                    ".venv/bin/snakemake")
    root = tmp_path_factory.mktemp("dvc")
    src = root / "src"
    files = _run(["git", "ls-files", "-co", "--exclude-standard"], REPO).stdout.split()
    for f in files:
        if f.split("/")[0] in ("tests", "bench", "docs") or not (REPO / f).is_file():
            continue
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, src / f)
    (src / "params.yaml").write_text(_tiny_params((REPO / "params.yaml").read_text()))
    (src / ".venv").symlink_to(VENV)
    # a repository-local identity: DVC commits experiments with it (CI may have none)
    # (.venv/ in .gitignore matches a folder, not this link: excluded here)
    _run("git init -q && git config user.name t && git config user.email t@example.org"
         " && echo .venv >> .git/info/exclude && git add -A && git commit -qm 'scratch copy'",
         src)
    repro = _run([str(VENV / "bin" / "dvc"), "repro"], src)
    return {"root": root, "src": src, "repro": repro.stdout + repro.stderr}


def dvc(args, cwd, **kw):
    return _run([str(VENV / "bin" / "dvc"), *args], cwd, **kw)


def test_repro_builds_table3_and_then_reports_up_to_date(dvc_repo):
    src = dvc_repo["src"]
    table = (src / "results/tiny/default/table3.csv").read_text().splitlines()
    assert table[0].split(",")[:5] == ["group", "row", "method", "options", "trains"]
    rows = {line.split(",")[2]: line.split(",") for line in table[1:]}
    assert set(rows) == {"ugpnet", "ugpnet-no-contextual"}
    assert rows["ugpnet-no-contextual"][4] == "fusion"  # restoration, synthesis: ugpnet's
    assert "restoration" in rows["ugpnet"][4]
    md = (src / "results/tiny/default/table3.md").read_text()
    assert "| fusion without L_cf" in md and "train_job_s" in md
    # one DVC stage per row, each calling Snakemake for its row only
    assert "Running stage 'ablation@ugpnet-no-contextual'" in dvc_repo["repro"]
    status = dvc(["status"], src).stdout
    assert "Data and pipelines are up to date" in status, status


def test_metrics_show_reads_numbers_only(dvc_repo):
    out = json.loads(dvc(["metrics", "show", "--json"], dvc_repo["src"]).stdout)
    values = []

    def walk(o):
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
        else:
            values.append(o)

    for file in out.values():
        walk(file.get("data", {}))
    assert values and all(isinstance(v, (int, float)) for v in values), values[:10]
    t3 = json.loads((dvc_repo["src"] / "results/tiny/default/table3_metrics.json").read_text())
    assert set(t3["deblur"]) == {"ugpnet", "ugpnet-no-contextual"}
    assert set(t3["deblur"]["ugpnet"]) == {"psnr", "ssim", "lpips", "fid"}


def test_plots_have_loss_curves_and_the_perception_distortion_data(dvc_repo):
    plots = dvc_repo["src"] / "results/tiny/default/plots"
    curves = sorted(p.name for p in (plots / "losses").glob("*.csv"))
    # each trained stage once: the variant's shared stages are ugpnet's
    assert "ugpnet-no-contextual_deblur_fusion.csv" in curves
    assert "ugpnet_deblur_synthesis.csv" in curves
    assert not any(c.startswith("ugpnet-no-contextual_deblur_synthesis") for c in curves)
    head = (plots / "losses" / "ugpnet_deblur_fusion.csv").read_text().splitlines()
    assert head[0] == "iter,loss" and len(head) > 1
    pd_rows = (plots / "perception_distortion.csv").read_text().splitlines()
    assert pd_rows[0] == "table,method,task,psnr,lpips" and len(pd_rows) == 1 + 3 + 2
    r = dvc(["plots", "show", "--json"], dvc_repo["src"])
    assert "perception_distortion.csv" in r.stdout and "losses" in r.stdout


def test_push_fresh_clone_pull_and_snakemake_schedules_no_training(dvc_repo):
    src, root = dvc_repo["src"], dvc_repo["root"]
    _run("git add -A && git commit -qm 'dvc.lock, metrics'", src)
    assert not _run(["git", "status", "--porcelain"], src).stdout.strip()
    dvc(["push"], src)
    # the default remote: a folder beside the clone
    assert any((root / "ugpnet-bench-dvc-remote").rglob("*")), list(root.iterdir())
    clone = root / "clone"
    _run(["git", "clone", "-q", str(src), str(clone)], root)
    (clone / ".venv").symlink_to(VENV)
    assert not (clone / "runs").exists() and not (clone / "data").exists()
    # `make pull`; -o: the virtualenv is shared with the source, never reinstalled here
    _run(["make", "-o", ".venv/.ugpnet-installed", "pull"], clone)
    models = list((clone / "runs/tiny/default").rglob("model.pt"))
    assert len(models) >= 5  # nafnet, ugpnet x3, the variant's fusion (+ the prior)
    dry = _run([str(VENV / "bin" / "snakemake"), "-n", "--cores", "1", "results/table1.csv",
                "table3"], clone).stdout
    jobs = set(re.findall(r"^rule (\w+):", dry, re.M)) | set(
        re.findall(r"^localrule (\w+):", dry, re.M))
    assert not jobs & {"train", "pretrain_prior", "prepare", "kernels", "degrade"}, dry[-3000:]
    assert "restore" in jobs  # restored images and scores are not tracked: remade, cheaply


def test_exp_run_S_reruns_only_what_the_key_defines(dvc_repo):
    src = dvc_repo["src"]
    runs = src / "runs/tiny/default"
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("model.pt")}
    key = "overrides.methods.ugpnet-no-contextual.stages.fusion.train.lr"
    r = dvc(["exp", "run", "-S", f"++{key}=0.002"], src)
    log = r.stdout + r.stderr
    trained = re.findall(r"output: (runs/\S+/model\.pt)", log)
    assert trained == ["runs/tiny/default/ugpnet-no-contextual/deblur/fusion/model.pt"], log[-4000:]
    after = {p: p.stat().st_mtime_ns for p in runs.rglob("model.pt")}
    changed = sorted(str(p.relative_to(runs)) for p in before if after[p] != before[p])
    assert changed == ["ugpnet-no-contextual/deblur/fusion/model.pt"]
    # the committed dvc.lock is the baseline: params diff names exactly the key
    diff = dvc(["params", "diff", "--json"], src).stdout
    assert list(json.loads(diff)["params.yaml"]) == [key], diff
    shown = dvc(["exp", "show", "--csv"], src).stdout
    rows = list(csv.DictReader(io.StringIO(shown)))
    assert key in rows[0], list(rows[0])[:40]
    # the experiment (named), applied to the workspace; the committed baseline has no such key
    assert [r[key] for r in rows if r["Experiment"]] == ["0.002"], shown[:2000]
    assert sorted(r[key] for r in rows if not r["Experiment"]) == ["", "0.002"]  # HEAD, workspace
