"""Faults and bad input at run time: a diverging loss, kill -9 of each command, a full disk, a
read-only output folder. For each: one clear message (exit 2) or a plain kill, no output that looks
finished, and a rerun that completes without losing what was already computed.
(kill -9 of ``train`` at a random iteration and during a checkpoint write: tests/test_runs.py.)
The table of faults and the tests that show them: docs/RELIABILITY.md."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ugpnet.config import load_config
from ugpnet.plan import Plan
from workspace import REPO, env_with, make_tiny_data

FAST = {"methods.nafnet.train.total_iters": 20, "methods.nafnet.train.ckpt_every": 5,
        "methods.nafnet.train.val_every": 5, "methods.nafnet.train.log_every": 1,
        "methods.nafnet.train.batch_size": 2}
TRAIN = ["train", "--method", "nafnet", "--task", "denoise", "--stage", "train", "--threads", "1",
         "--no-progress"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    make_tiny_data(Plan.of(load_config(profile="tiny"), data=str(d)), tasks=("denoise",))
    return d


def _cli(args, sets=None, profile="tiny"):
    cmd = [sys.executable, "-m", "ugpnet", "--profile", profile]
    for k, v in (sets or {}).items():
        cmd += ["--set", f"{k}={v}"]
    return cmd + list(args)


def _run(cmd, env=None, timeout=600, cwd=None):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=env or env_with(REPO), cwd=cwd)


def _train_sets(data, runs, extra=None):
    return {**FAST, "paths.data": str(data), "paths.runs": str(runs), **(extra or {})}


def _hook(tmp_path, code):
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(code)
    return env_with(hook, REPO)


# ------------------------------------------------------------------ a diverging training loss
NAN_AFTER = """
import os
from ugpnet.training import regression
_step = regression.SupervisedStage.step
def step(self, batch, it):
    out = _step(self, batch, it)
    if it + 1 >= int(os.environ["NAN_AT"]):
        out["loss"] = float("nan")
    return out
regression.SupervisedStage.step = step
"""


@pytest.mark.long
def test_a_nan_loss_stops_with_the_iteration_and_keeps_the_last_good_checkpoint(data, tmp_path):
    runs = tmp_path / "runs"
    run = runs / "nafnet" / "denoise" / "train"
    env = dict(_hook(tmp_path, NAN_AFTER), NAN_AT="13")
    r = _run(_cli(TRAIN, _train_sets(data, runs)), env=env)
    assert r.returncode == 2, r.stderr
    assert "diverged at iteration 13: loss is not finite (loss=nan" in r.stderr, r.stderr
    assert f"{run / 'last.pt'} (iteration 10) is kept" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (run / "model.pt").exists() and not (run / "summary.json").exists()
    assert torch.load(run / "last.pt", weights_only=True)["iter"] == 10
    logged = [json.loads(line)["iter"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert max(logged) == 12  # the bad iteration is neither logged nor saved
    # the fault gone (e.g. a fixed loss), the rerun resumes from the kept checkpoint
    r = _run(_cli(TRAIN, _train_sets(data, runs)))
    assert r.returncode == 0, r.stderr
    assert "resuming from iteration 10" in r.stdout
    assert (run / "model.pt").exists()


def test_an_infinite_loss_before_any_checkpoint_says_nothing_was_kept(tmp_path):
    from ugpnet.errors import TrainingDiverged
    from ugpnet.training.loop import check_finite
    from ugpnet.training.run import Run

    run = Run(tmp_path, {})
    check_finite({"loss": 0.5, "lr": 1e-3, "tag": "x"}, 0, run)  # finite: nothing happens
    with pytest.raises(TrainingDiverged, match=r"iteration 4: l1, adv are not finite "
                                               r"\(loss=1, l1=inf, adv=nan, lr=0\.001\).*no "
                                               r"checkpoint had been written yet"):
        check_finite({"loss": 1.0, "l1": torch.tensor(float("inf")), "adv": float("nan"),
                      "lr": 1e-3}, 3, run)


# ------------------------------------------------------------------ kill -9 of each command
# Every output is written to a temporary file and renamed (ugpnet.io.atomic_path); the hook kills
# the process just before its k-th rename: the data of that file is written, its name is not.
KILL_BEFORE_RENAME = """
import atexit, os, signal
_n = [0]
_replace = os.replace
def replace(src, dst, *a, **k):
    _n[0] += 1
    if _n[0] == int(os.environ.get("KILL_AT_RENAME", "0")):
        os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst, *a, **k)
os.replace = replace
if os.environ.get("COUNT_RENAMES"):
    atexit.register(lambda: open(os.environ["COUNT_RENAMES"], "w").write(str(_n[0])))
"""


def _visible(folder: Path) -> dict:
    """Every non-hidden file under ``folder`` (temporary files start with a dot) -> its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def _kill_and_rerun(tmp_path, cmd, out: Path, finished, compare, seed=None, renames=None):
    """Reference run (counting renames), then kill -9 before a random rename (``seed``) or the
    last one (``seed=None``, the completion marker): nothing finished-looking is left, and a rerun
    gives the reference result. ``renames``: the known count, no reference run (faster; then
    ``compare`` only checks the rerun's output)."""
    import random

    env = _hook(tmp_path, KILL_BEFORE_RENAME)
    reference = None
    if renames is None:
        count = tmp_path / "renames"
        ref = _run(cmd(out), env=dict(env, COUNT_RENAMES=str(count)))
        assert ref.returncode == 0, ref.stderr
        renames = int(count.read_text())
        reference = compare(out)
    n = renames
    killed = tmp_path / "killed"
    for k in [n if seed is None else random.Random(seed).randint(1, n)]:
        target = killed / f"k{k}"
        r = _run(cmd(target), env=dict(env, KILL_AT_RENAME=str(k)))
        assert r.returncode == -signal.SIGKILL, (k, r.stderr)
        assert not any(p.exists() for p in finished(target)), f"kill before rename {k}/{n}: " \
            f"an output looks finished"
        r = _run(cmd(target))
        assert r.returncode == 0, r.stderr
        got = compare(target)
        assert reference is None or got == reference, f"rerun after a kill before rename {k}/{n}"


def _plan(data):
    return Plan.of(load_config(profile="tiny", sets=[f"paths.data={data}"]))


@pytest.mark.long
def test_kill_9_of_prepare_then_rerun(tmp_path):
    def cmd(root):
        return _cli(["prepare", "--no-progress"], {"paths.data": root})

    def manifest(root):
        return Path(_plan(root).gt_root()) / "manifest.json"

    def compare(root):
        return json.loads(manifest(root).read_text())["splits"], \
            {k: len(v) for k, v in _visible(Path(_plan(root).gt_root())).items()}

    _kill_and_rerun(tmp_path, cmd, tmp_path / "ref", lambda r: [manifest(r)], compare, seed=1)


@pytest.mark.long
def test_kill_9_of_degrade_then_rerun(data, tmp_path):
    gt = _plan(data).gt_dir("test")

    def cmd(out):
        return _cli(["degrade", "--task", "denoise", "--in", gt, "--out", str(out),
                     "--no-progress"])

    _kill_and_rerun(tmp_path, cmd, tmp_path / "ref", lambda o: [o / "manifest.json"], _visible,
                    seed=2)


@pytest.mark.long
def test_kill_9_of_evaluate_then_rerun(data, tmp_path):
    plan = _plan(data)

    def cmd(out):
        return _cli(["evaluate", "--pred", plan.lq_dir("denoise", "test"), "--gt",
                     plan.gt_dir("test"), "--metrics", "psnr,ssim", "--no-progress",
                     "--out", str(out / "denoise.json")])

    def compare(out):
        mean = json.loads((out / "denoise.json").read_text())["mean"]
        assert set(mean) >= {"psnr", "ssim"}

    # one file, one rename: the kill comes just before it
    _kill_and_rerun(tmp_path, cmd, tmp_path / "ref", lambda o: [o / "denoise.json"], compare,
                    renames=1)


@pytest.mark.long
def test_kill_9_of_table_then_rerun(tmp_path):
    from ugpnet.metrics.evaluate import evaluation_bundle

    plan = Plan.of(load_config(profile="tiny"))
    metrics = tmp_path / "metrics"
    for i, (method, task) in enumerate(plan.table_cells()):
        f = metrics / method / f"{task}.json"
        f.parent.mkdir(parents=True, exist_ok=True)
        record = {"mean": {"psnr": 20.0 + i, "ssim": 0.5, "lpips": 0.3, "fid": 50.0 - i}}
        f.write_text(json.dumps(evaluation_bundle(method, task,
                                                  {"test": {plan.outputs(method)[0]: record}})))

    def cmd(out):
        return _cli(["table", "--metrics-dir", str(metrics), "--out", str(out / "table1.csv")])

    def finished(out):  # the CSV is the output that says "done"; it must never come alone
        return [out / "table1.csv"]

    def compare(out):
        assert set(_visible(out)) == {"table1.csv", "table1.json", "table1.png",
                                      "table1_metrics.json", "table1_stats.csv", "table1.md",
                                      "table1.html"}
        assert len((out / "table1.csv").read_text().splitlines()) == 1 + len(plan.table1_methods())

    # six files (PNG, JSON, the numeric metrics JSON, the statistics CSV, the Markdown, CSV):
    # the kill comes before the last rename
    _kill_and_rerun(tmp_path, cmd, tmp_path / "ref", finished, compare, renames=7)


# ------------------------------------------------------------------ full disk, read-only folder
@pytest.fixture
def mount_tmpfs():
    """``mount(path, size, ro=False)``: a small tmpfs at ``path`` (needs root), unmounted after."""
    mounted = []

    def mount(path: Path, size: str, ro: bool = False):
        if os.geteuid() != 0:
            pytest.skip("needs root to mount a small tmpfs (full disk / read-only folder)")
        path.mkdir(parents=True, exist_ok=True)
        opts = f"size={size}" + (",ro" if ro else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _remount(path: Path, opts: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{opts}", str(path)], check=True)


def _fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte; return the ballast file."""
    ballast = folder / "ballast"
    with open(ballast, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass
    return ballast


@pytest.mark.long
def test_a_full_disk_stops_training_with_a_message_and_keeps_the_last_checkpoint(
        data, tmp_path, mount_tmpfs):
    runs = mount_tmpfs(tmp_path / "disk", "64m")
    run = runs / "nafnet" / "denoise" / "train"
    sets = _train_sets(data, runs)
    p = subprocess.Popen(_cli(TRAIN, sets), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env_with(REPO))
    while not (run / "last.pt").exists():
        assert p.poll() is None, p.communicate()
        time.sleep(0.01)
    ballast = _fill(runs)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 2, err
    assert "No space left on device" in err and "Free space on that disk" in err, err
    assert "Traceback" not in err, err
    assert not (run / "model.pt").exists() and not (run / "summary.json").exists()
    kept = torch.load(run / "last.pt", weights_only=True)["iter"]
    assert kept >= 5
    ballast.unlink()  # space freed: the rerun resumes from the kept checkpoint
    r = _run(_cli(TRAIN, sets))
    assert r.returncode == 0, r.stderr
    assert f"resuming from iteration {kept}" in r.stdout
    assert (run / "model.pt").exists()


@pytest.mark.long
def test_a_full_disk_or_a_read_only_folder_stops_degrade_with_a_message(data, tmp_path,
                                                                        mount_tmpfs):
    gt = _plan(data).gt_dir("test")
    disk = mount_tmpfs(tmp_path / "disk", "16m")
    out = disk / "lq"
    ballast = _fill(disk)

    def degrade():
        return _run(_cli(["degrade", "--task", "denoise", "--in", gt, "--out", str(out),
                          "--no-progress"]))

    r = degrade()
    assert r.returncode == 2, r.stderr
    assert f"cannot write {out}" in r.stderr and "No space left on device" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (out / "manifest.json").exists()
    ballast.unlink()
    assert degrade().returncode == 0 and (out / "manifest.json").exists()
    reference = _visible(out)

    ro = mount_tmpfs(tmp_path / "ro", "16m", ro=True)
    out = ro / "lq"
    r = degrade()
    assert r.returncode == 2, r.stderr
    assert f"cannot access {out}" in r.stderr and "Read-only file system" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    _remount(ro, "rw")
    assert degrade().returncode == 0
    assert _visible(out) == reference


# ------------------------------------------------------------------ user checkpoints
def test_a_user_stylegan2_checkpoint_is_verified_by_its_configured_sha256(tmp_path):
    import hashlib

    from ugpnet.errors import CheckpointError, ConfigError

    ckpt = tmp_path / "stylegan2.pt"
    ckpt.write_bytes(b"not really a generator")
    good = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    base = [f"priors.stylegan2.checkpoint={ckpt}"]
    sha = "priors.stylegan2.checkpoint_sha256"
    plan = Plan.of(load_config(profile="tiny", sets=base + [f"{sha}={good}"]))
    assert plan.prior("stylegan2") == str(ckpt)
    plan = Plan.of(load_config(profile="tiny", sets=base + [f"{sha}={'a' * 64}"]))
    with pytest.raises(CheckpointError, match=rf"{ckpt}: the checkpoint of prior 'stylegan2' has "
                                              rf"sha256 {good}, but {sha} says"):
        plan.check()
    with pytest.raises(ConfigError, match=r"stylegan2\.checkpoint_sha256: .*\[in --set"):
        load_config(profile="tiny", sets=base + ["priors.stylegan2.checkpoint_sha256=abc"])


def test_a_zero_byte_model_is_named_as_empty(tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"")
    (tmp_path / "lq").mkdir()
    r = _run(_cli(["restore", "--method", "nafnet", "--task", "denoise", "--checkpoint",
                   str(model), "--in", str(tmp_path / "lq"), "--out", str(tmp_path / "out")]))
    assert r.returncode == 2
    assert f"{model}: cannot read" in r.stderr and "empty file (0 bytes)" in r.stderr, r.stderr
    assert "truncated or never written" in r.stderr and "Traceback" not in r.stderr
