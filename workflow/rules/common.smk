import os
import sys

from ugpnet.config import resolve, write_resolved
from ugpnet.data import layout


configfile: "params.yaml"


CFG = resolve(config, config.get("profile"))
PROFILE = CFG["profile"]
DATA = CFG["paths"]["data"].format(profile=PROFILE)
RUNS = CFG["paths"]["runs"].format(profile=PROFILE)
RES = CFG["paths"]["results"].format(profile=PROFILE)
LOGS = f"logs/{PROFILE}"
ENV = "../envs/ugpnet.yaml"
# The CLI reads exactly the configuration Snakemake resolved (extra --configfile/--config included).
RESOLVED = write_resolved(CFG, f"{RUNS}/params.resolved.yaml")
UGPNET = f'"{sys.executable}" -m ugpnet --params {RESOLVED} --profile {PROFILE}'
STAGE_BEFORE = {"restoration": None, "synthesis": "restoration", "fusion": "synthesis"}


wildcard_constraints:
    task="denoise|deblur|sr",
    split="val|test",
    bank="train|test",
    method="[A-Za-z0-9_]+",
    output="x_reg|x_syn|x_hat",


def method_kind(method):
    return CFG["methods"][method]["kind"]


def ugpnet_methods():
    return [m for m in CFG["table1"]["methods"] if method_kind(m) == "ugpnet"]


def deblur_bank(wildcards, bank):
    return [str(layout.kernel_bank(DATA, bank))] if wildcards.task == "deblur" else []


def dirname(path):
    return os.path.dirname(str(path))


def train_inputs(wildcards):
    return {
        "gt": f"{DATA}/gt/manifest.json",
        "val": f"{DATA}/lq/{wildcards.task}/val/manifest.json",
        "kernels": deblur_bank(wildcards, "train"),
    }


def method_slice(method, task):
    """The config a method's training reads (declared as params: reruns exactly on change)."""
    m = CFG["methods"][method]
    b = m["backbone"][task] if isinstance(m["backbone"], dict) else m["backbone"]
    return {"method": m, "backbone": CFG["backbones"].get(b, {}).get(task),
            "degradations": CFG["degradations"], "data": CFG["data"]}


def prior_checkpoint():
    """The StyleGAN2 prior: the user's file (paper) or the one pretrained here (smoke)."""
    return CFG["stylegan2"]["checkpoint"] or f"{RUNS}/prior/model.pt"


def ugpnet_stage_inputs(stage):
    def inputs(wildcards):
        d = train_inputs(wildcards)
        before = STAGE_BEFORE[stage]
        if before:
            d["previous"] = f"{RUNS}/{wildcards.method}/{wildcards.task}/{before}/model.pt"
        if stage == "synthesis":
            d["prior"] = prior_checkpoint()
        pretrained = (CFG["methods"][wildcards.method].get("pretrained") or {}).get(wildcards.task)
        if stage == "restoration" and pretrained:
            d["pretrained"] = pretrained
        return d

    return inputs


def prior_flag(wildcards, input):
    return f"--prior {input.prior}" if hasattr(input, "prior") else ""


def final_model(wildcards):
    if method_kind(wildcards.method) == "ugpnet":
        return f"{RUNS}/{wildcards.method}/{wildcards.task}/fusion/model.pt"
    return f"{RUNS}/{wildcards.method}/{wildcards.task}/train/model.pt"


def val_output_dir(wildcards, input):
    base = dirname(input.restored)
    return base if wildcards.output == "x_hat" else os.path.join(base, wildcards.output)


def table1_inputs(wildcards):
    t = CFG["table1"]
    files = [
        f"{RES}/metrics/{m}/{task}.json"
        for m in t["methods"]
        for task in t["tasks"]
        if task in CFG["methods"][m]["tasks"]
    ]
    # UGPNet's per-module summary on the validation split travels with the table
    if ugpnet_methods():
        files.append(f"{RES}/ugpnet_val_summary.csv")
    return files


def val_summary_inputs(wildcards):
    return [
        f"{RES}/metrics_val/{m}/{task}/{o}.json"
        for m in ugpnet_methods()
        for task in CFG["methods"][m]["tasks"]
        for o in ("x_reg", "x_syn", "x_hat")
    ]
