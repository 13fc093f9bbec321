def final_model(wildcards):
    if method_kind(wildcards.method) == "ugpnet":
        return f"{RUNS}/{wildcards.method}/{wildcards.task}/fusion/model.pt"
    return f"{RUNS}/{wildcards.method}/{wildcards.task}/train/model.pt"


rule restore:
    input:
        model=final_model,
        lq=f"{DATA}/lq/{{task}}/{{split}}/manifest.json",
    output:
        manifest=f"{RES}/restored/{{method}}/{{task}}/{{split}}/manifest.json",
    params:
        run=lambda w: f"{RUNS}/{w.method}/{w.task}",
        lq=lambda w: str(layout.lq_dir(DATA, w.task, w.split)),
        out=lambda w: f"{RES}/restored/{w.method}/{w.task}/{w.split}",
        intermediate=lambda w: "--intermediate" if method_kind(w.method) == "ugpnet" else "",
    threads: CFG["threads"]["eval"]
    log:
        f"{LOGS}/restore_{{method}}_{{task}}_{{split}}.log",
    shell:
        "{UGPNET} restore --method {wildcards.method} --task {wildcards.task}"
        " --checkpoint {params.run} --in {params.lq} --out {params.out} {params.intermediate}"
        " --threads {threads} --no-progress > {log} 2>&1"


rule evaluate:
    input:
        restored=f"{RES}/restored/{{method}}/{{task}}/test/manifest.json",
        gt=rules.prepare.output.manifest,
    output:
        metrics=f"{RES}/metrics/{{method}}/{{task}}.json",
    params:
        metrics=CFG["metrics"],
        names=",".join(CFG["metrics"]["names"]),
        pred=lambda w: f"{RES}/restored/{w.method}/{w.task}/test",
        gt=str(layout.gt_dir(DATA, "test")),
    threads: CFG["threads"]["eval"]
    log:
        f"{LOGS}/evaluate_{{method}}_{{task}}.log",
    shell:
        "{UGPNET} evaluate --pred {params.pred} --gt {params.gt}"
        " --metrics {params.names} --lpips-net {params.metrics[lpips_net]}"
        " --fid-ref {params.metrics[fid_ref]} --out {output.metrics} > {log} 2>&1"


def table1_inputs(wildcards):
    t = CFG["table1"]
    return [
        f"{RES}/metrics/{m}/{task}.json"
        for m in t["methods"]
        for task in t["tasks"]
        if task in CFG["methods"][m]["tasks"]
    ]


rule table1:
    input:
        table1_inputs,
    output:
        csv="results/table1.csv",
        meta="results/table1.json",
        plot="results/table1.png",
    params:
        table=CFG["table1"],
        metrics=f"{RES}/metrics",
        profile=PROFILE,
    log:
        f"{LOGS}/table1.log",
    shell:
        "{UGPNET} table --which table1 --metrics-dir {params.metrics} --out {output.csv} > {log} 2>&1"
