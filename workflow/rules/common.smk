import os
import sys

from ugpnet.config import resolve, write_resolved
from ugpnet.plan import Plan


configfile: "params.yaml"


CFG = resolve(config, config.get("profile"))
PROFILE = CFG["profile"]
# Where every artefact lives and what each job reads: ugpnet.plan (shared with the CLI). The
# workflow never names a method kind or a stage; it asks the plan.
PLAN = Plan.of(CFG)
DATA = PLAN.data
RUNS = PLAN.runs
RES = PLAN.results
LOGS = PLAN.logs
ENV = "../envs/ugpnet.yaml"
# The CLI reads exactly the configuration Snakemake resolved (extra --configfile/--config included).
RESOLVED = write_resolved(CFG, f"{RUNS}/params.resolved.yaml")
UGPNET = f'"{sys.executable}" -m ugpnet --params {RESOLVED} --profile {PROFILE}'


wildcard_constraints:
    task="denoise|deblur|sr",
    split="val|test",
    bank="train|test",
    method="[A-Za-z0-9_]+",
    stage="[A-Za-z0-9_]+",
    output="|".join(PLAN.all_outputs()),


def deblur_bank(wildcards, bank):
    return [PLAN.kernel_bank(bank)] if wildcards.task == "deblur" else []


def dirname(path):
    return os.path.dirname(str(path))
