def train_inputs(wildcards):
    return {
        "gt": rules.prepare.output.manifest,
        "val": f"{DATA}/lq/{wildcards.task}/val/manifest.json",
        "kernels": deblur_bank(wildcards, "train"),
    }


def method_slice(method, task):
    """The config a method's training reads (declared as params: reruns exactly on change)."""
    m = CFG["methods"][method]
    b = m["backbone"][task] if isinstance(m["backbone"], dict) else m["backbone"]
    return {"method": m, "backbone": CFG["backbones"].get(b, {}).get(task),
            "degradations": CFG["degradations"], "data": CFG["data"]}


rule train_regression:
    input:
        unpack(train_inputs),
    output:
        model=f"{RUNS}/{{method}}/{{task}}/train/model.pt",
    params:
        cfg=lambda w: method_slice(w.method, w.task),
    threads: CFG["threads"]["train"]
    log:
        f"{LOGS}/train_{{method}}_{{task}}.log",
    shell:
        "{UGPNET} train --method {wildcards.method} --task {wildcards.task} --stage train"
        " --data {DATA} --runs {RUNS} --threads {threads} --no-progress > {log} 2>&1"


def prior_checkpoint():
    """The StyleGAN2 prior: the user's file (paper) or the one pretrained here (smoke)."""
    return CFG["stylegan2"]["checkpoint"] or f"{RUNS}/prior/model.pt"


rule pretrain_prior:
    input:
        gt=rules.prepare.output.manifest,
    output:
        model=f"{RUNS}/prior/model.pt",
    params:
        stylegan2=CFG["stylegan2"],
    threads: CFG["threads"]["train"]
    log:
        f"{LOGS}/pretrain_prior.log",
    shell:
        "{UGPNET} pretrain-prior --data {DATA} --out {RUNS}/prior --threads {threads}"
        " --no-progress > {log} 2>&1"


def ugpnet_stage_inputs(stage):
    previous = {"restoration": None, "synthesis": "restoration", "fusion": "synthesis"}[stage]

    def inputs(wildcards):
        d = train_inputs(wildcards)
        if previous:
            d["previous"] = f"{RUNS}/{wildcards.method}/{wildcards.task}/{previous}/model.pt"
        if stage == "synthesis":
            d["prior"] = prior_checkpoint()
        pretrained = (CFG["methods"][wildcards.method].get("pretrained") or {}).get(wildcards.task)
        if stage == "restoration" and pretrained:
            d["pretrained"] = pretrained
        return d

    return inputs


for _stage in ("restoration", "synthesis", "fusion"):

    rule:
        name:
            f"ugpnet_{_stage}"
        input:
            unpack(ugpnet_stage_inputs(_stage)),
        output:
            model=f"{RUNS}/{{method}}/{{task}}/{_stage}/model.pt",
        params:
            cfg=lambda w: method_slice(w.method, w.task),
            stylegan2=CFG["stylegan2"],
            stage=_stage,
            prior=lambda w, input: f"--prior {input.prior}" if hasattr(input, "prior") else "",
        threads: CFG["threads"]["train"]
        log:
            f"{LOGS}/train_{{method}}_{{task}}_{_stage}.log",
        shell:
            "{UGPNET} train --method {wildcards.method} --task {wildcards.task}"
            " --stage {params.stage} --data {DATA} --runs {RUNS} {params.prior}"
            " --threads {threads} --no-progress > {log} 2>&1"
