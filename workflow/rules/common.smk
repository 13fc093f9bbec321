import sys
from pathlib import Path

from ugpnet.config import resolve, write_resolved
from ugpnet.data import layout


configfile: "params.yaml"


CFG = resolve(config, config.get("profile"))
PROFILE = CFG["profile"]
DATA = CFG["paths"]["data"].format(profile=PROFILE)
RUNS = CFG["paths"]["runs"].format(profile=PROFILE)
RES = CFG["paths"]["results"].format(profile=PROFILE)
LOGS = f"logs/{PROFILE}"
# The CLI reads exactly the configuration Snakemake resolved (extra --configfile/--config included).
RESOLVED = write_resolved(CFG, f"{RUNS}/params.resolved.yaml")
UGPNET = f'"{sys.executable}" -m ugpnet --params {RESOLVED} --profile {PROFILE}'
TASKS = ["denoise", "deblur", "sr"]


wildcard_constraints:
    task="denoise|deblur|sr",
    split="val|test",
    bank="train|test",
    method="[A-Za-z0-9_]+",


def method_kind(method):
    return CFG["methods"][method]["kind"]


def deblur_bank(wildcards, bank="train"):
    return [str(layout.kernel_bank(DATA, bank))] if wildcards.task == "deblur" else []
