"""The SLURM profile on a real one-node SLURM cluster (tests/slurm/start_cluster.sh: Debian's
slurm-wlm and munge, slurmctld + slurmd on this host, CPU only).

A slice of the tiny profile's DAG (tests/slurm/tiny_denoise.yaml: Table 1's denoising rows of the
input and NAFNet; every kind of job: data, train, restore, evaluate, tables; the prepared ground
truth is the local run's) runs through ``--profile workflow/profiles/slurm`` with the partition
set on the command line, as a user would. Checked: every job Snakemake ran outside its localrules went through sbatch (sacct's
job-completion records: one per job, all COMPLETED, each with the time limit params.yaml gives
its rule, a per-method override included), and the table's cells equal the local end-to-end
run's (tests/conftest.py: tiny_end_to_end, the run tests/test_dag.py checks; not run twice).

Skipped, with the reason, without root, where apt-get cannot install the packages, or where the
daemons do not come up; the daemons are stopped at the end. The cluster's settings that are not
the profile's: no slurmdbd here, so the executor follows jobs with squeue
(--slurm-status-command squeue) and there is no account (--slurm-no-account); status checks from
3 s after a submission (the profile: 20 s) and the SLURM logs of successful jobs are kept (they
name each job's rule).
"""
from __future__ import annotations

import collections
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from ugpnet.metrics.evaluate import read_bundle_record
from workspace import ALL_METHODS, REPO, copy_workflow, failure, plan_for, snakemake

# root is checked when the module is collected, before the session's local run is made for it
pytestmark = [pytest.mark.long,
              pytest.mark.skipif(os.geteuid() != 0, reason="not root: the test installs packages "
                                 "and starts SLURM's daemons (tests/slurm/start_cluster.sh)")]

SCRIPTS = REPO / "tests" / "slurm"
SLICE = "tiny_denoise.yaml"
PARTITION = "debug"
LOCAL_RULES = {"all", "data", "figure4", "figures", "active_table1"}  # Snakefile: localrules
SKIP_REASONS = {2: "not root: the test installs packages and starts SLURM's daemons",
                3: "apt-get could not install slurm-wlm and munge",
                4: "the SLURM daemons (munged, slurmctld, slurmd) did not come up",
                5: "/etc/slurm/slurm.conf belongs to another SLURM setup"}


def _say(message: str) -> None:
    print(f"test_slurm: {message}", flush=True)


@pytest.fixture(scope="module")
def cluster():
    """A one-node SLURM cluster for this module (one at a time on a machine: a file lock)."""
    lock = open(os.path.join(tempfile.gettempdir(), "ugpnet-slurm-test.lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    state = Path(tempfile.mkdtemp(prefix="ugpnet-slurm-"))
    t0 = time.monotonic()
    r = subprocess.run(["bash", str(SCRIPTS / "start_cluster.sh"), str(state)],
                       capture_output=True, text=True, timeout=900)
    try:
        if r.returncode != 0:
            reason = SKIP_REASONS.get(r.returncode, f"start_cluster.sh exited {r.returncode}")
            _say(f"skipped: {reason}\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
            last = (r.stderr.strip().splitlines() or [""])[-1]
            pytest.skip(f"{reason} ({last})")
        _say(f"cluster up in {time.monotonic() - t0:.1f} s (packages installed if absent)")
        yield state
    finally:
        subprocess.run(["bash", str(SCRIPTS / "stop_cluster.sh"), str(state)],
                       capture_output=True, text=True, timeout=120)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def slurm_run(tiny_end_to_end, cluster, tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("slurm"))
    shutil.copy(SCRIPTS / SLICE, work / SLICE)
    # the prepared ground truth, the same for both runs, from the local run: one status-check
    # round trip less (the degrade jobs stand for the data kind)
    gt = Path(plan_for(tiny_end_to_end, configfiles=[ALL_METHODS]).gt_manifest()).parent
    shutil.copytree(gt, work / gt.relative_to(tiny_end_to_end))
    t0 = time.monotonic()
    r = snakemake(["--profile", "workflow/profiles/slurm", "results/table1.csv",
                   "--config", "profile=tiny", "--configfile", "params.yaml", SLICE,
                   "--default-resources", f"slurm_partition={PARTITION}",
                   "--slurm-status-command", "squeue", "--slurm-no-account",
                   "--slurm-init-seconds-before-status-checks", "3",
                   "--seconds-between-status-checks", "1",
                   "--slurm-keep-successful-logs"], work, timeout=1200)
    seconds = time.monotonic() - t0
    _say(f"the DAG through SLURM took {seconds:.1f} s")
    if r.returncode != 0:
        daemons = "\n".join(f"== {p}\n{p.read_text()[-2000:]}" for p in
                            sorted((cluster / "log").glob("*.log")))
        jobs = "\n".join(f"== {p}\n{p.read_text()[-2000:]}" for p in
                         sorted((work / "logs" / "slurm").rglob("*.log")))
        pytest.fail(f"{failure(r, work)}\n{jobs}\n{daemons}")
    return work, r.stdout + r.stderr


def sacct_jobs() -> list[dict]:
    """Every job of the job-completion log, as sacct reports it (sacct -c)."""
    fields = ["JobID", "JobName", "State", "ExitCode", "Timelimit", "NCPUS"]
    r = subprocess.run(["sacct", "-c", "-P", "-n", "--format", ",".join(fields)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [dict(zip(fields, line.split("|"))) for line in r.stdout.splitlines() if line]


def minutes(limit: str) -> int:
    """sacct's time limit (``10``, ``00:10:00`` or ``1-00:00:00``) in minutes."""
    days, _, hms = limit.rpartition("-")
    parts = [int(p) for p in hms.split(":")]
    if len(parts) == 1:
        return parts[0] + 1440 * int(days or 0)
    h, m, s = ([0] * (3 - len(parts)) + parts)
    return 1440 * int(days or 0) + 60 * h + m + (s > 0)


def test_every_job_went_through_sbatch_with_its_resources(slurm_run):
    work, log = slurm_run
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    ran = collections.Counter(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", log))
    on_cluster = collections.Counter({k: n for k, n in ran.items() if k not in LOCAL_RULES})
    assert ran["active_table1"] == 1 and ran["train"] == 1 and ran["degrade"] == 2, ran
    assert "prepare" not in ran  # the local run's ground truth (slurm_run)
    # the job-completion records of this run (every sbatch job of the executor is named by the
    # run's id; the plugin keeps each job's output at logs/slurm/rule_<rule>/.../<jobid>.log)
    jobs = {j["JobID"]: j for j in sacct_jobs() if j["JobName"] == run_id}
    rule_of = {p.stem: p.relative_to(work / "logs" / "slurm").parts[0].removeprefix("rule_")
               for p in (work / "logs" / "slurm").rglob("*.log")}
    assert set(jobs) == set(rule_of), (jobs, rule_of)
    assert collections.Counter(rule_of.values()) == on_cluster
    assert all(j["State"] == "COMPLETED" and j["ExitCode"] == "0:0" for j in jobs.values()), jobs
    # sbatch asked for what params.yaml says: the tiny profile's runtime (10 minutes), NAFNet's
    # train job its own (resources.methods.nafnet.train in the slice's overrides: 7), 1 CPU
    plan = plan_for(work, configfiles=[SLICE])
    assert plan.cfg["resources"]["methods"]["nafnet"]["train"]["runtime"] == 7
    for job_id, rule in rule_of.items():
        expected = 7 if rule == "train" else 10
        assert minutes(jobs[job_id]["Timelimit"]) == expected, (rule, jobs[job_id])
        assert jobs[job_id]["NCPUS"] == "1", (rule, jobs[job_id])


def test_table1_equals_the_local_runs(slurm_run, tiny_end_to_end):
    work, _ = slurm_run
    ours = pd.read_csv(work / "results" / "table1.csv", index_col="method", dtype=str)
    local = pd.read_csv(tiny_end_to_end / "results" / "table1.csv", index_col="method",
                        dtype=str)
    assert list(ours.index) == ["input", "nafnet"]
    assert [c for c in ours.columns if c.startswith("denoise_")] == [
        "denoise_psnr", "denoise_ssim", "denoise_lpips", "denoise_fid"]
    # the same text in every cell the two tables share (the slice's rows and columns)
    pd.testing.assert_frame_equal(ours, local.loc[ours.index, ours.columns])
    # and the same means to the last bit, in the files the tables were made from
    mine = plan_for(work, configfiles=[SLICE])
    theirs = plan_for(tiny_end_to_end, configfiles=[ALL_METHODS])
    for method in ours.index:
        output = mine.outputs(method)[0]
        a = read_bundle_record(mine.metrics_file(method, "denoise"), "test", output)["mean"]
        b = read_bundle_record(theirs.metrics_file(method, "denoise"), "test", output)["mean"]
        assert a == b, (method, a, b)
