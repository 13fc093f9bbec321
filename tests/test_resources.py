"""Every rule's threads and resources come from params.yaml `resources:` (README "Scale out").

One dry run of the tiny profile builds a DAG with every rule of the workflow (Table 1, the
figures with Table 2, Table 3, Figure 4, the data target; evaluate_per: task for the per-task
evaluate rules; a method with train gpus > 1 for train_ddp) under an override file that gives
each group and two methods values of their own; each job Snakemake plans must show exactly the
values params.yaml gives its rule's group, merged with its method's own. The profiles
(workflow/profiles/local, workflow/profiles/slurm) parse with this Snakemake.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from workspace import copy_workflow, failure, make_tiny_data, plan_for, snakemake

CORES = 4
# each rule's group (params.yaml resources); a rule missing here fails the test: say its group
GROUP = {
    "prepare": "data", "kernels": "data", "degrade": "data", "ood_prepare": "data",
    "ood_degrade": "data",
    "train": "train", "train_ddp": "train", "pretrain_prior": "train",
    "restore": "eval", "ood_restore": "eval", "evaluate": "eval", "evaluate_denoise": "eval",
    "evaluate_deblur": "eval", "evaluate_sr": "eval",
    "table2_bench": "bench",
    "table1": "table", "table2": "table", "table3": "table", "val_outputs": "table",
    "test_outputs": "table", "draw_figures": "table", "active_table1": "table", "all": "table",
    "data": "table", "figure4": "table", "figures": "table",
}
OVERRIDES = """\
overrides:
  evaluate_per: task
  resources:
    data: {threads: 1, gpus: 0, mem_mb: 1101, runtime: 11}
    train: {threads: 2, gpus: 1, mem_mb: 1202, runtime: 12}
    eval: {threads: 3, gpus: 0, mem_mb: 1303, runtime: 13}
    bench: {threads: 0, gpus: 1, mem_mb: 1404, runtime: 14}
    table: {threads: 1, gpus: 0, mem_mb: 1505, runtime: 15}
    methods:
      nafnet: {train: {gpus: 2, threads: 8, mem_mb: 2202}}
      ugpnet: {eval: {runtime: 23, gpus: 1}}
"""
TARGETS = ["all", "results/table1.csv", "figures", "table3", "figure4", "data"]
JOB = re.compile(r"^(?:local)?rule (\w+):\n(.*?)(?=^\[|^Job stats:|\Z)", re.M | re.S)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("resources"))
    (work / "res.yaml").write_text(OVERRIDES)
    args = ["--config", "profile=tiny", "--configfile", "params.yaml", "res.yaml"]
    r = snakemake(["-n", "-p", "--cores", str(CORES), *TARGETS, *args], work, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rules = snakemake(["--list-rules", *args], work, timeout=300)
    assert rules.returncode == 0, rules.stderr[-3000:]
    jobs = []
    for name, body in JOB.findall(r.stdout + r.stderr):
        fields = dict(re.findall(r"^    (\w+): (.*)$", body, re.M))
        shell = re.search(r"^Shell command: (.*)$", body, re.M)
        jobs.append({"rule": name,
                     "wildcards": dict(kv.split("=", 1) for kv in
                                       fields.get("wildcards", "").split(", ") if kv),
                     "threads": int(fields.get("threads", 1)),
                     "resources": dict(kv.split("=", 1) for kv in
                                       fields["resources"].split(", ")),
                     "shell": shell.group(1) if shell else None})
    return work, jobs, set(rules.stdout.split()), plan_for(work, configfiles=["res.yaml"])


def expected(plan, job) -> dict:
    """What params.yaml (the override file) gives the job: its group's values, merged with its
    methods' own (an evaluate job of a whole task: the largest over its methods)."""
    res = plan.cfg["resources"]
    group = GROUP[job["rule"]]
    if "method" in job["wildcards"]:
        methods = [job["wildcards"]["method"]]
    elif job["rule"].startswith("evaluate_"):
        task = job["rule"].removeprefix("evaluate_")
        methods = [m for m, t in plan.table_cells() if t == task]
    else:
        methods = []
    specs = [{**res[group], **res["methods"].get(m, {}).get(group, {})} for m in methods]
    spec = {k: max(s[k] for s in specs) for k in res[group]} if specs else dict(res[group])
    if job["rule"] == "pretrain_prior":
        spec["gpus"] = min(spec["gpus"], 1)  # no DDP: one GPU at most
    return {"threads": min(spec["threads"] or CORES, CORES), "gpu": spec["gpus"],
            "mem_mb": spec["mem_mb"], "runtime": spec["runtime"]}


def test_every_rule_is_in_the_dry_run_and_has_a_group(dry_run):
    _, jobs, rules, _ = dry_run
    assert {j["rule"] for j in jobs} == rules  # the DAG has every rule of the workflow
    assert rules <= set(GROUP), sorted(rules - set(GROUP))


def test_every_job_has_the_threads_and_resources_of_its_group(dry_run):
    _, jobs, _, plan = dry_run
    assert plan.cfg["resources"]["train"]["mem_mb"] == 1202  # the override file is in effect
    for job in jobs:
        want = expected(plan, job)
        res = job["resources"]
        got = {"threads": job["threads"], "gpu": int(res["gpu"]), "mem_mb": int(res["mem_mb"]),
               "runtime": int(res["runtime"])}
        assert got == want, (job["rule"], job["wildcards"], got, want)
        # what Snakemake's SLURM executor asks sbatch for: --cpus-per-task = the job's threads
        assert int(res["cpus_per_task"]) == job["threads"], job


def test_per_method_values_reach_their_jobs(dry_run):
    _, jobs, _, _ = dry_run
    by_rule: dict = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(job)
    # NAFNet trains on 2 GPUs (its own), every other method on the group's 1
    assert {j["wildcards"]["method"] for j in by_rule["train_ddp"]} == {"nafnet"}
    assert all(j["wildcards"]["method"] != "nafnet" for j in by_rule["train"])
    assert {int(j["resources"]["mem_mb"]) for j in by_rule["train_ddp"]} == {2202}
    assert {int(j["resources"]["gpu"]) for j in by_rule["train"]} == {1}
    # UGPNet's restore jobs have its runtime; the other methods' the group's
    runtimes = {j["wildcards"]["method"]: int(j["resources"]["runtime"])
                for j in by_rule["restore"]}
    assert runtimes["ugpnet"] == 23 and runtimes["nafnet"] == 13
    # threads 0 (bench): every core given with --cores
    assert [j["threads"] for j in by_rule["table2_bench"]] == [CORES]


def test_train_runs_ddp_with_torchrun_only_when_it_has_several_gpus(dry_run):
    _, jobs, _, _ = dry_run
    for job in jobs:
        if job["rule"] == "train_ddp":
            assert ('"$UGPNET_PYTHON" -m torch.distributed.run --standalone --nproc-per-node 2'
                    ' -m ugpnet train --method nafnet') in job["shell"], job["shell"]
            # each of the 2 processes: threads / gpus CPU threads (8 capped by --cores 4: 2)
            assert "--threads $(( 4 > 2 ? 4 / 2 : 1 ))" in job["shell"], job["shell"]
            assert job["shell"].startswith("(PS4=") and ".log.attempts" in job["shell"]  # logged
        elif job["rule"] == "train":
            assert '"$UGPNET_PYTHON" -m ugpnet train --method' in job["shell"], job["shell"]
            assert "torch.distributed" not in job["shell"]


@pytest.mark.long
def test_a_train_job_with_two_gpus_runs_ddp_under_torchrun(tmp_path):
    # the tiny profile is device: cpu, so the 2 processes join with gloo: the rule's command
    # (torchrun, the per-process threads) runs for real, the data made in-process beforehand
    work = copy_workflow(tmp_path)
    (work / "ddp.yaml").write_text("overrides:\n  resources:\n    methods:\n"
                                   "      nafnet: {train: {gpus: 2, threads: 2}}\n")
    plan = plan_for(work, configfiles=["ddp.yaml"])
    make_tiny_data(plan, tasks=("denoise",))
    stage = Path(plan.stage_dir("nafnet", "denoise", "train"))
    r = snakemake(["--cores", "2", str((stage / "model.pt").relative_to(work)),
                   "--config", "profile=tiny", "--configfile", "params.yaml", "ddp.yaml"],
                  work, timeout=600)
    assert r.returncode == 0, failure(r, work)
    assert "rule train_ddp:" in r.stdout + r.stderr and "rule prepare:" not in r.stderr
    log = (Path(plan.logs) / "train_nafnet_denoise_train.log").read_text()
    assert "-m torch.distributed.run --standalone --nproc-per-node 2 -m ugpnet train" in log
    assert "--threads 1 --no-progress" in log  # 2 threads over 2 processes
    # the run records how many processes trained it (ugpnet/training/loop.py)
    options = json.loads((stage / "options.json").read_text())
    assert options["operational"]["training_processes"] == 2, options["operational"]
    assert (stage / "model.pt").is_file()


def test_a_misspelt_method_in_resources_is_an_error(tmp_path):
    work = copy_workflow(tmp_path)
    (work / "bad.yaml").write_text("overrides:\n  resources:\n    methods:\n"
                                   "      nafnte: {train: {gpus: 2}}\n")
    r = snakemake(["-n", "--cores", "1", "--config", "profile=tiny",
                   "--configfile", "params.yaml", "bad.yaml"], work, timeout=300)
    assert r.returncode != 0
    assert "resources.methods names methods that are not configured: nafnte" in r.stderr


@pytest.mark.parametrize("profile", ["local", "slurm"])
def test_the_profiles_parse(tmp_path, profile):
    work = copy_workflow(tmp_path)
    extra = (["--default-resources", "slurm_partition=gpu", "slurm_account=proj"]
             if profile == "slurm" else [])
    r = snakemake(["-n", "--profile", f"workflow/profiles/{profile}", "results/table1.csv",
                   "--config", "profile=tiny", *extra], work, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout + r.stderr
    if profile == "slurm":
        assert "slurm_partition=gpu" in out and "slurm_account=proj" in out
    else:
        assert "slurm_partition" not in out


def test_every_rule_declares_threads_and_resources_from_params(repo_root):
    # one concept in one place: params.yaml `resources:` (no CFG["threads"] left in the rules);
    # every rule of the sources, those no DAG above has too, declares both
    sources = [repo_root / "Snakefile", *sorted((repo_root / "workflow" / "rules").glob("*.smk"))]
    for path in sources:
        text = path.read_text()
        assert 'CFG["threads"]' not in text, path
        for m in re.finditer(r"^\s*threads:\s*(.*)$", text, re.M):
            assert m.group(1).startswith("job_threads("), (path, m.group(0))
        rules = len(re.findall(r"^\s*rule\b", text, re.M))
        assert len(re.findall(r"^\s*threads: job_threads\(", text, re.M)) == rules, path
        declared = re.findall(r"^\s*resources:\n\s*\*\*job_resources\(", text, re.M)
        assert len(declared) == rules, path
