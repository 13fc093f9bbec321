rule restore:
    input:
        model=lambda w: PLAN.final_model(w.method, w.task),
        lq=f"{DATA}/lq/{{task}}/{{split}}/manifest.json",
    output:
        manifest=f"{RES}/restored/{{method}}/{{task}}/{{split}}/manifest.json",
    params:
        cli=UGPNET,
        lq=lambda w, input: dirname(input.lq),
        out=lambda w, output: dirname(output.manifest),
    threads: CFG["threads"]["eval"]
    conda:
        ENV
    log:
        f"{LOGS}/restore_{{method}}_{{task}}_{{split}}.log",
    shell:
        "{params.cli} restore --method {wildcards.method} --task {wildcards.task}"
        " --checkpoint {input.model} --in {params.lq} --out {params.out} --intermediate"
        " --threads {threads} --no-progress > {log} 2>&1"


rule evaluate:
    input:
        restored=f"{RES}/restored/{{method}}/{{task}}/test/manifest.json",
        gt=rules.prepare.output.manifest,
    output:
        metrics=f"{RES}/metrics/{{method}}/{{task}}.json",
    params:
        cli=UGPNET,
        metrics=CFG["metrics"],
        names=",".join(CFG["metrics"]["names"]),
        pred=lambda w, input: dirname(input.restored),
        gt=PLAN.gt_dir("test"),
    threads: CFG["threads"]["eval"]
    conda:
        ENV
    log:
        f"{LOGS}/evaluate_{{method}}_{{task}}.log",
    shell:
        "{params.cli} evaluate --pred {params.pred} --gt {params.gt} --metrics {params.names}"
        " --lpips-net {params.metrics[lpips_net]} --fid-ref {params.metrics[fid_ref]}"
        " --out {output.metrics} > {log} 2>&1"


rule evaluate_val_output:
    # every output of a method that has several (e.g. intermediate images), on the val split
    input:
        restored=f"{RES}/restored/{{method}}/{{task}}/val/manifest.json",
        gt=rules.prepare.output.manifest,
    output:
        metrics=f"{RES}/metrics_val/{{method}}/{{task}}/{{output}}.json",
    params:
        cli=UGPNET,
        metrics=CFG["metrics"],
        names=",".join(CFG["metrics"]["names"]),
        pred=lambda w: PLAN.restored_dir(w.method, w.task, "val", w.output),
        gt=PLAN.gt_dir("val"),
    threads: CFG["threads"]["eval"]
    conda:
        ENV
    log:
        f"{LOGS}/evaluate_val_{{method}}_{{task}}_{{output}}.log",
    shell:
        "{params.cli} evaluate --pred {params.pred} --gt {params.gt} --metrics {params.names}"
        " --lpips-net {params.metrics[lpips_net]} --out {output.metrics} > {log} 2>&1"


rule val_outputs:
    input:
        [f for _, _, _, f in PLAN.val_output_records()],
    output:
        csv=PLAN.val_outputs_csv(),
    params:
        cli=UGPNET,
        methods=PLAN.multi_output_methods(),
    conda:
        ENV
    log:
        f"{LOGS}/val_outputs.log",
    shell:
        "{params.cli} table --which outputs --out {output.csv} > {log} 2>&1"


rule table1:
    input:
        PLAN.table1_inputs(),
    output:
        csv="results/table1.csv",
        meta="results/table1.json",
        plot="results/table1.png",
    params:
        cli=UGPNET,
        table=CFG["table1"],
        profile=PROFILE,
    conda:
        ENV
    log:
        f"{LOGS}/table1.log",
    shell:
        "{params.cli} table --which table1 --out {output.csv} > {log} 2>&1"
