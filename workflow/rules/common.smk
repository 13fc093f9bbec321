import os
import re
import sys

from ugpnet.config import resolve_files, write_resolved
from ugpnet.errors import UGPNetError
from ugpnet.plan import Plan
from ugpnet.training.distributed import indivisible_batches


configfile: "params.yaml"


# Snakemake's own reading of the files (`config`) is YAML 1.1, where `lr: 2e-4` is a string and
# the source of a key is lost; the configuration is therefore re-read here with ugpnet's loader
# from the same files (params.yaml, then each --configfile in order, then --config items), so
# it agrees with the CLI and every error names its file and key path.
# A user error (UGPNetError) is printed as one message and exits 2, as in the CLI.
_SETTINGS = getattr(workflow, "config_settings", None)
try:
    CFG = resolve_files(
        ["params.yaml", *(os.path.relpath(f) for f in getattr(_SETTINGS, "configfiles", None) or [])],
        extra=dict(getattr(_SETTINGS, "config", None) or {}),
        extra_source="snakemake --config",
    )
    PLAN = Plan.of(CFG)
    PLAN.check()  # a configuration that cannot run (e.g. no StyleGAN2 prior) fails here, not later
except UGPNetError as e:
    print(f"ugpnet (workflow): error: {e}", file=sys.stderr)
    sys.exit(2)
PROFILE = CFG["profile"]
EXPERIMENT = CFG["experiment"]
# Where every artefact lives and what each job reads: ugpnet.plan (shared with the CLI). The
# workflow never names a method kind or a stage; it asks the plan.
DATA = PLAN.data
RUNS = PLAN.runs
RES = PLAN.results
LOGS = PLAN.logs
BENCH = f"{PLAN.logs}/benchmarks"  # one Snakemake benchmark file (seconds, memory) per job
# The conda env of every rule (--use-conda). It installs this clone as ${UGPNET_ROOT}, which pip
# expands from the environment: Snakemake hands conda a copy of the env file in --conda-prefix,
# so a path relative to the file would resolve from there. The Snakefile's folder, absolute:
os.environ["UGPNET_ROOT"] = workflow.basedir
ENV = "../envs/ugpnet.yaml"
# The CLI reads exactly the configuration Snakemake resolved, from a file named by its content
# (never rewritten: a dry run with another configuration cannot change what running jobs read).
# The interpreter and that file reach the jobs through the environment, not as rule params, so
# a moved clone or another python path reruns nothing; only the configuration slices under
# `params:`, the inputs and the rules' code do.
os.environ["UGPNET_PARAMS"] = write_resolved(CFG, f"{RUNS}/configs")
# The jobs' Python: Snakemake's own, or with --use-conda (--sdm conda) the env's, first on the
# PATH of a job that runs in it
from snakemake.settings.types import DeploymentMethod

os.environ["UGPNET_PYTHON"] = ("python" if DeploymentMethod.CONDA in
                               workflow.deployment_settings.deployment_method else sys.executable)


envvars:
    "UGPNET_PARAMS",
    "UGPNET_PYTHON",
    "UGPNET_ROOT",


wildcard_constraints:
    task="denoise|deblur|sr",
    prior_id="[0-9a-f]{8}",
    split="val|test",
    bank="train|val|test",
    did="[0-9a-f]{8}",
    method="[A-Za-z0-9_-]+",
    stage="[A-Za-z0-9_]+",


# Threads and resources of every rule, from params.yaml `resources:` (README "Scale out"): each
# rule names its group (data, train, eval, bench, table); a method's own values
# (resources.methods.<m>.<group>) are merged over the group's. They are what Snakemake schedules
# locally (--cores, --resources gpu=N) and what its SLURM executor asks for (cpus_per_task,
# mem_mb, runtime, gpu; partition and account: workflow/profiles/slurm). Never in a rule's params:
# changing one reruns nothing.
RESOURCES = CFG["resources"]


def resource_spec(group, methods=()):
    """The resolved values of ``group`` for a job of ``methods`` (several: the largest of each)."""
    specs = [{**RESOURCES[group], **(((RESOURCES["methods"].get(m) or {}).get(group)) or {})}
             for m in methods] or [dict(RESOURCES[group])]
    return {k: max(s[k] for s in specs) for k in specs[0]}


def _job_methods(wildcards, methods):
    if methods is not None:
        return list(methods)
    return [wildcards.method] if "method" in wildcards.keys() else []


def job_threads(group, methods=None):
    """The threads of the rules of ``group`` (0 in params.yaml: the cores given with --cores)."""

    def threads(wildcards):
        return resource_spec(group, _job_methods(wildcards, methods))["threads"] or workflow.cores

    return threads


def job_resources(group, methods=None, max_gpus=None):
    """The resources of the rules of ``group``: mem_mb, runtime (minutes), gpu, cpus_per_task
    (the names Snakemake's SLURM executor honours). ``methods``: the job's methods (where there
    is no {method} wildcard); ``max_gpus``: a cap (a job that cannot use more)."""

    def spec(wildcards):
        return resource_spec(group, _job_methods(wildcards, methods))

    def gpu(wildcards):
        n = spec(wildcards)["gpus"]
        return n if max_gpus is None else min(n, max_gpus)

    return dict(mem_mb=lambda wildcards: spec(wildcards)["mem_mb"],
                runtime=lambda wildcards: spec(wildcards)["runtime"],
                gpu=gpu,
                cpus_per_task=lambda wildcards, threads: threads)


_UNKNOWN = sorted(set(RESOURCES["methods"]) - set(CFG["methods"]))
if _UNKNOWN:
    print(f"ugpnet (workflow): error: resources.methods names methods that are not configured: "
          f"{', '.join(_UNKNOWN)} (methods: {', '.join(CFG['methods'])})", file=sys.stderr)
    sys.exit(2)
# The methods whose train jobs run DDP (train gpus > 1): their stages are trained by the rule
# train_ddp (torchrun), every other method's by the rule train (workflow/rules/train.smk)
DDP_METHODS = sorted(m for m in CFG["methods"] if resource_spec("train", [m])["gpus"] > 1)
_INDIVISIBLE = indivisible_batches(CFG["methods"],
                                   {m: resource_spec("train", [m])["gpus"] for m in DDP_METHODS})
if _INDIVISIBLE:  # each rank takes batch_size / gpus of every global batch
    print("ugpnet (workflow): error: " + "; ".join(_INDIVISIBLE) + ". Make batch_size a multiple "
          "of the GPUs (it is the global batch) or change the GPUs.", file=sys.stderr)
    sys.exit(2)


def dirname(path):
    return os.path.dirname(str(path))


def logged(command):
    """``command`` with its output in the job's log under a header line (``== <UTC time>
    attempt: <command as run>``, the shell's trace of it), and appended to ``<log>.attempts``:
    Snakemake deletes a job's log before each attempt (a retry, a rerun), so that file is what
    keeps the log of every earlier attempt, a failed one too."""
    return (f"(PS4='== $(date -u +%Y-%m-%dT%H:%M:%SZ) attempt: '; set -x; {command})"
            " 2>&1 | tee -a {log}.attempts > {log}")


# A finished model.pt whose identity is not the one this configuration gives its stage (trained
# outside the DAG into the workflow's run folder, e.g. `ugpnet --set ... train`) has metadata
# and timestamps Snakemake takes as current; the plan finds it (ugpnet.plan: stale_model) and
# its job is forced, as `--forcerun <model.pt>` would: it retrains, and its dependents rerun.
# Checked for every train job of the DAG whenever Snakemake builds one (dry runs too); no file
# is written. docs/RUNS.md, "When work reruns".
_STALE_SAID = set()


def train_inputs(w):
    """What a stage reads (its kind declares it); forces the stage's job when its model.pt is
    stale (above)."""
    inputs = PLAN.stage_inputs(w.method, w.task, w.stage)
    why = PLAN.stale_model(w.method, w.task, w.stage)
    if why is not None:
        force_rerun(f"{RUNS}/{w.method}/{w.task}/{w.stage}/model.pt", why)
    return inputs


def force_rerun(model, why):
    from snakemake.exceptions import WorkflowError

    forced = getattr(workflow.dag, "forcefiles", None)  # what `-R FILE` fills (Snakemake 9)
    if not isinstance(forced, set):
        raise WorkflowError(
            f"{model} was trained with another identity than this configuration gives its "
            f"stage ({why}), and this Snakemake offers the workflow no way to rerun it: force "
            f"it yourself: snakemake --cores all results/table1.csv --forcerun {model}")
    forced.add(model)
    if model not in _STALE_SAID:
        _STALE_SAID.add(model)
        print(f"ugpnet (workflow): {model} was trained with another identity than this "
              f"configuration gives its stage ({why}); it is trained again (the old state "
              f"moves to superseded-<hash>/ in its run folder) and what depends on it reruns.",
              file=sys.stderr)


# The figures (workflow/rules/figures.smk): what each reads and writes, from the plan
from ugpnet.commands.figures import FigurePlan

FIGS = FigurePlan(PLAN)
FIG_CAPTIONS = {  # figure file (without suffix) -> its caption in workflow/report/
    "figure5": "figure5.rst",
    "figure6": "figure6.rst",
    "figure7": "figure7_ood.rst",
    "figure4_metrics": "figure4_metrics.rst",
    "perception_distortion": "perception_distortion.rst",
    "psnr_distributions": "figure_psnr_distributions.rst",
}


def fig_outputs():
    """The figures' files; each PNG is in the Snakemake report (snakemake --report)."""
    out = []
    for f in FIGS.outputs():
        stem = os.path.splitext(os.path.basename(f))[0]
        if f.endswith(".png"):
            caption = FIG_CAPTIONS.get(stem, "figure4.rst" if stem.startswith("figure4_") else None)
            out.append(report(f, caption=f"../report/{caption}", category="Figures",
                              subcategory=stem))
        else:
            out.append(f)
    return out
