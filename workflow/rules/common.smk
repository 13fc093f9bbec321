import os
import sys

from ugpnet.config import resolve, write_resolved
from ugpnet.plan import Plan


configfile: "params.yaml"


CFG = resolve(config, config.get("profile"), experiment=config.get("experiment"))
PROFILE = CFG["profile"]
EXPERIMENT = CFG["experiment"]
# Where every artefact lives and what each job reads: ugpnet.plan (shared with the CLI). The
# workflow never names a method kind or a stage; it asks the plan.
PLAN = Plan.of(CFG)
PLAN.check()  # a configuration that cannot run (e.g. no StyleGAN2 prior) fails here, not later
DATA = PLAN.data
RUNS = PLAN.runs
RES = PLAN.results
LOGS = PLAN.logs
BENCH = f"{PLAN.logs}/benchmarks"  # one Snakemake benchmark file (seconds, memory) per job
ENV = "../envs/ugpnet.yaml"
# The CLI reads exactly the configuration Snakemake resolved, from a file named by its content
# (never rewritten: a dry run with another configuration cannot change what running jobs read).
# The interpreter and that file reach the jobs through the environment, not as rule params, so
# a moved clone or another python path reruns nothing; only the configuration slices under
# `params:`, the inputs and the rules' code do.
os.environ["UGPNET_PARAMS"] = write_resolved(CFG, f"{RUNS}/configs")
os.environ["UGPNET_PYTHON"] = sys.executable


envvars:
    "UGPNET_PARAMS",
    "UGPNET_PYTHON",


wildcard_constraints:
    task="denoise|deblur|sr",
    split="val|test",
    bank="train|val|test",
    did="[0-9a-f]{8}",
    method="[A-Za-z0-9_]+",
    stage="[A-Za-z0-9_]+",
    output="|".join(PLAN.all_outputs()),


def dirname(path):
    return os.path.dirname(str(path))
