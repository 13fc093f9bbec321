"""Provenance that never lies (issue 24): a rerun of a finished stage retrains it instead of
re-exporting the old weights under a new commit; every model names the code versions that
trained it (``trained_by``); job logs keep every attempt and show each validation; the full-disk
message names options the command has. The rules: docs/RUNS.md; the table: docs/RELIABILITY.md.

A code change is simulated by the code version the run records: in-process by patching
``ugpnet.training.run.code_version``, in the workflow by a ``sitecustomize`` that patches
``ugpnet.provenance.code_version`` (and, as the "fix", changes the initialisation)."""
import errno
import json
import re
import shlex
from pathlib import Path

import pytest
import torch

from ugpnet.config import load_config
from ugpnet.methods import kind_of
from ugpnet.plan import Plan
from ugpnet.training import run as run_module
from ugpnet.training.common import seed_everything
from workspace import REPO, copy_workflow, env_with, failure, make_tiny_data, plan_for, snakemake

FAST = {"methods.nafnet.train.total_iters": 24, "methods.nafnet.train.ckpt_every": 5,
        "methods.nafnet.train.val_every": 8, "methods.nafnet.train.log_every": 4,
        "methods.nafnet.train.batch_size": 2}
OLD, NEW = "a" * 40, "b" * 40


def _code(commit: str) -> dict:
    return {"package": "0.1.0", "git_commit": commit, "git_dirty": False}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    make_tiny_data(Plan.of(load_config(profile="tiny"), data=str(d)), tasks=("denoise",))
    return d


def _train(data, runs, monkeypatch, commit, extra=None, seed_offset=0, progress=False):
    """Train nafnet/denoise as the CLI does, with ``commit`` as the code version."""
    monkeypatch.setattr(run_module, "code_version", lambda: _code(commit))
    items = {**FAST, **(extra or {})}
    cfg = load_config(profile="tiny", sets=[f"{k}={v}" for k, v in items.items()])
    seed_everything(cfg["data"]["seed"] + seed_offset)
    ctx = Plan.of(cfg, data=str(data), runs=str(runs)).context(
        "nafnet", "denoise", "train", progress=progress)
    kind_of(cfg, "nafnet").train_stage(ctx)
    return ctx.out


def _model(path):
    return torch.load(path, weights_only=True)


def _segments(summary) -> list[tuple]:
    return [(s["code"]["git_commit"], s["from_iter"], s["to_iter"]) for s in summary["trained_by"]]


# ----------------------------------------------------------------------------- a finished stage
def test_a_rerun_of_a_finished_stage_retrains_it_from_scratch(data, tmp_path, monkeypatch,
                                                              capsys):
    out = _train(data, tmp_path, monkeypatch, OLD)
    old = _model(out / "model.pt")
    assert old["summary"]["code"]["git_commit"] == OLD
    (out / "model.pt").unlink()  # what Snakemake does before a forced rerun of the job
    capsys.readouterr()
    # the code fix: another commit, and code that trains differently (another initialisation)
    _train(data, tmp_path, monkeypatch, NEW, seed_offset=1)
    said = capsys.readouterr().out
    new = _model(out / "model.pt")
    # retrained, not re-exported: the weights are those of the new code
    differ = [k for k in new["weights"] if not torch.equal(new["weights"][k], old["weights"][k])]
    assert differ, f"the rerun re-exported the old weights as {new['summary']['code']}"
    assert "the stage had finished (summary.json) and is trained again" in said, said
    assert "resuming" not in said
    moved = list(out.glob("superseded-*"))
    assert len(moved) == 1 and {"last.pt", "best.pt", "summary.json"} <= {
        p.name for p in moved[0].iterdir()}
    assert json.loads((moved[0] / "summary.json").read_text())["code"]["git_commit"] == OLD
    assert new["summary"]["code"]["git_commit"] == NEW
    assert _segments(new["summary"]) == [(NEW, 0, new["summary"]["selected_iter"])]
    assert json.loads((out / "summary.json").read_text())["trained_by"] == \
        new["summary"]["trained_by"]


# ----------------------------------------------------------------------------- trained_by
def test_a_resume_across_a_code_change_lists_both_versions(data, tmp_path, monkeypatch, capsys,
                                                           interrupt_step):
    with interrupt_step(13):  # killed after 12 steps
        _train(data, tmp_path, monkeypatch, OLD, {"methods.nafnet.train.val_every": 12})
    out = tmp_path / "nafnet" / "denoise" / "train"
    assert _segments(_model(out / "last.pt")) == [(OLD, 0, 10)]
    capsys.readouterr()
    _train(data, tmp_path, monkeypatch, NEW, {"methods.nafnet.train.val_every": 12})
    said = capsys.readouterr().out
    assert "resuming from iteration 10" in said and "iterations 1-10 were trained by" in said
    summary = _model(out / "model.pt")["summary"]
    selected = summary["selected_iter"]
    assert selected in (12, 24)  # validations at 12 and 24, both after the resume at 10
    assert _segments(summary) == [(OLD, 0, 10), (NEW, 10, selected)]
    assert summary["code"]["git_commit"] == NEW
    assert _segments(_model(out / "last.pt")) == [(OLD, 0, 10), (NEW, 10, 24)]


def test_code_is_the_segment_that_trained_the_selected_weights(tmp_path, monkeypatch):
    """Selected at iteration 2 by the old code; a resume with new code trains on without
    improving: the model's weights are the old code's, and so is its ``code``."""
    monkeypatch.setattr(run_module, "code_version", lambda: _code(OLD))
    first = run_module.Run(tmp_path, {"x": 1})
    first.start()
    first.validated(2, {"psnr": 30.0}, {"w": torch.zeros(1)})
    first.save_last(2, {})
    first.close()
    monkeypatch.setattr(run_module, "code_version", lambda: _code(NEW))
    second = run_module.Run(tmp_path, {"x": 1})
    assert second.start()["iter"] == 2
    second.validated(4, {"psnr": 20.0}, {"w": torch.ones(1)})
    second.save_last(4, {})
    summary = second.finish()
    second.close()
    assert summary["selected_iter"] == 2
    assert summary["code"]["git_commit"] == OLD and _segments(summary) == [(OLD, 0, 2)]
    assert _segments(_model(tmp_path / "last.pt")) == [(OLD, 0, 2), (NEW, 2, 4)]


def test_weights_exported_as_initialised_name_the_code_that_built_them(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "code_version", lambda: _code(NEW))
    run = run_module.Run(tmp_path, {"x": 1}, select_metric="final")
    run.start()
    run.validated(0, {"psnr": 30.0}, {"w": torch.zeros(1)})
    summary = run.finish()
    run.close()
    assert summary["trained_by"] == [] and summary["code"]["git_commit"] == NEW


# ----------------------------------------------------------------------------- job logs
@pytest.mark.parametrize("progress", [False, True], ids=["no-progress", "bars"])
def test_validation_lines_are_printed_with_and_without_bars(data, tmp_path, monkeypatch, capsys,
                                                            progress):
    out = _train(data, tmp_path, monkeypatch, NEW, progress=progress)
    printed = capsys.readouterr().out
    lines = [ln for ln in printed.splitlines() if ln.startswith("[train] val iter ")]
    records = [json.loads(ln) for ln in (out / "val.jsonl").read_text().splitlines()]
    assert len(lines) == len(records) == 3, printed
    for line, rec in zip(lines, records):
        verdict = "selected" if rec["selected"] else r"not selected \(best: iter \d+, psnr=\S+\)"
        assert re.fullmatch(rf"\[train\] val iter {rec['iter']}/24 psnr=\S+ ssim=\S+ lpips=\S+ "
                            rf"{verdict}", line), line
        assert f"psnr={rec['psnr']:.4g}" in line


# ----------------------------------------------------------------------------- full disk
def _options(command: str) -> set[str]:
    from ugpnet.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return set(sub.choices[command]._option_string_actions)


def test_the_full_disk_message_names_only_options_the_command_has():
    from ugpnet.cli import COMMANDS, os_error_message

    for command in COMMANDS:
        for code in (errno.ENOSPC, errno.EROFS):
            message = os_error_message(OSError(code, "No space", "/x/last.pt"), command)
            named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", message))
            assert named <= _options(command), (command, named, message)
    message = os_error_message(OSError(errno.ENOSPC, "No space", "/x/last.pt"), "train")
    assert "--runs DIR" in message and "--out" not in message
    message = os_error_message(OSError(errno.ENOSPC, "No space", "/x/m.json"), "evaluate")
    assert "--out FILE" in message


def test_train_on_a_full_disk_suggests_runs(monkeypatch, capsys):
    from ugpnet import cli
    from ugpnet.commands import train

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/nafnet/last.pt")

    monkeypatch.setattr(train, "run", full)
    assert cli.main(["train", "--method", "nafnet", "--task", "denoise"]) == 2
    err = capsys.readouterr().err
    assert "cannot write /runs/nafnet/last.pt: No space left on device" in err
    assert "(--runs DIR, or paths.runs)" in err and "--out" not in err, err


# ----------------------------------------------------------------------------- the recipe
HOOK = """
import os
if os.environ.get("UGPNET_TEST_COMMIT"):  # the code version every ugpnet process records
    from ugpnet import __version__, provenance
    def code_version():
        return {"package": __version__, "git_commit": os.environ["UGPNET_TEST_COMMIT"],
                "git_dirty": False}
    provenance.code_version = code_version
if os.environ.get("UGPNET_TEST_FIX"):  # the "fix" trains differently: another initialisation
    from ugpnet.training import common
    _seed = common.seed_everything
    common.seed_everything = lambda seed: _seed(seed + 1)
if os.environ.get("UGPNET_TEST_FAIL_ONCE"):  # the first attempt fails after its checkpoint at 2
    from ugpnet.training import regression
    _step = regression.SupervisedStage.step
    def step(self, batch, it):
        marker = os.environ["UGPNET_TEST_FAIL_ONCE"]
        if it == 3 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("injected failure at iteration 4")
        return _step(self, batch, it)
    regression.SupervisedStage.step = step
"""


def _recipe() -> list[str]:
    """docs/RUNS.md's code-fix command, word for word."""
    text = (REPO / "docs" / "RUNS.md").read_text()
    found = re.findall(r"`(snakemake [^`]*--forcerun train[^`]*)`", text)
    assert len(found) == 1, found
    return shlex.split(found[0])


@pytest.mark.long
def test_the_code_fix_recipe_retrains_and_records_the_new_commit(tmp_path):
    work = copy_workflow(tmp_path / "work")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    plan = plan_for(work)
    model = Path(plan.stage_model("nafnet", "denoise", "train"))
    target = str(model.relative_to(work))
    config = ["--configfile", "params.yaml", "--config", "profile=tiny"]
    # the first training: its first attempt fails after a checkpoint, Snakemake's retry resumes
    r = snakemake(["--cores", "2", target, "--retries", "1", *config], work,
                  env=dict(env_with(hook), UGPNET_TEST_COMMIT=OLD,
                           UGPNET_TEST_FAIL_ONCE=str(tmp_path / "failed-once")))
    assert r.returncode == 0, failure(r, work)
    old = _model(model)
    assert old["summary"]["code"]["git_commit"] == OLD

    recipe = _recipe()  # the recipe as written, with the narrower target it allows
    assert recipe[:4] == ["snakemake", "--cores", "all", "results/table1.csv"], recipe
    args = [*recipe[1:3], target, *recipe[4:], *config]
    r = snakemake(args, work, env=dict(env_with(hook), UGPNET_TEST_COMMIT=NEW, UGPNET_TEST_FIX="1"))
    assert r.returncode == 0, failure(r, work)
    assert "rule prepare" not in r.stdout + r.stderr  # only the forced stage ran

    new = _model(model)
    differ = [k for k in new["weights"] if not torch.equal(new["weights"][k], old["weights"][k])]
    assert differ, f"the rerun re-exported the old weights as {new['summary']['code']}"
    assert new["summary"]["code"]["git_commit"] == NEW
    assert _segments(new["summary"]) == [(NEW, 0, new["summary"]["selected_iter"])]
    # the old state was moved aside: Snakemake deleted its model.pt, best.pt holds its weights
    moved = list(model.parent.glob("superseded-*"))
    assert len(moved) == 1
    assert json.loads((moved[0] / "summary.json").read_text())["code"]["git_commit"] == OLD
    kept = _model(moved[0] / "best.pt")["weights"]
    assert all(torch.equal(kept[k], v) for k, v in old["weights"].items())

    # the job log is the last attempt's; <log>.attempts kept all three, each under its header
    log = Path(plan.logs) / "train_nafnet_denoise_train.log"
    total = plan.cfg["methods"]["nafnet"]["train"]["total_iters"]
    attempts = _attempts(log.with_name(log.name + ".attempts").read_text())
    assert len(attempts) == 3, attempts
    failed, retry, forced = attempts
    assert "RuntimeError: injected failure at iteration 4" in failed, failed
    assert "resuming from iteration 2" in retry and f"[train] val iter {total}/{total}" in retry
    assert "the stage had finished" in forced and "resuming" not in forced, forced
    assert f"[train] val iter {total}/{total} psnr=" in forced, forced
    assert _attempts(log.read_text()) == [forced]


def _attempts(log: str) -> list[str]:
    """The attempts in a job log, each from its header line on."""
    header = (r"== \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ attempt: \S+ -m ugpnet train --method nafnet "
              r"--task denoise --stage train --threads \d+ --no-progress\n")
    starts = [m.start() for m in re.finditer(header, log)]
    assert starts and starts[0] == 0, log
    return [log[a:b] for a, b in zip(starts, starts[1:] + [len(log)])]
