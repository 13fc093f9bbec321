rule restore:
    input:
        model=lambda w: [m for m in [PLAN.final_model(w.method, w.task)] if m],
        lq=lambda w: PLAN.lq_manifest(w.task, w.split),
    output:
        manifest=f"{RES}/restored/{{method}}/{{task}}/{{split}}/manifest.json",
    params:
        lq=lambda w, input: dirname(input.lq),
        out=lambda w, output: dirname(output.manifest),
        # a method that trains nothing (the input reference row) has no checkpoint
        checkpoint=lambda w, input: f"--checkpoint {input.model}" if input.model else "",
    threads: CFG["threads"]["eval"]
    conda:
        ENV
    log:
        f"{LOGS}/restore_{{method}}_{{task}}_{{split}}.log",
    benchmark:
        f"{BENCH}/restore/{{method}}_{{task}}_{{split}}.tsv",
    shell:
        "\"$UGPNET_PYTHON\" -m ugpnet restore --method {wildcards.method} --task {wildcards.task}"
        " {params.checkpoint} --in {params.lq} --out {params.out} --intermediate"
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
        pred=lambda w, input: dirname(input.restored),
        gt=PLAN.gt_dir("test"),
    threads: CFG["threads"]["eval"]
    conda:
        ENV
    log:
        f"{LOGS}/evaluate_{{method}}_{{task}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{method}}_{{task}}.tsv",
    shell:
        "\"$UGPNET_PYTHON\" -m ugpnet evaluate"
        " --pred {params.pred} --gt {params.gt} --metrics {params.names}"
        " --lpips-net {params.metrics[lpips_net]} --fid-ref {params.metrics[fid_ref]}"
        " --gt-manifest {input.gt} --out {output.metrics} > {log} 2>&1"


rule evaluate_val_output:
    # every output of a method that has several (e.g. intermediate images), on the val split
    input:
        restored=f"{RES}/restored/{{method}}/{{task}}/val/manifest.json",
        gt=rules.prepare.output.manifest,
    output:
        metrics=f"{RES}/metrics_val/{{method}}/{{task}}/{{output}}.json",
    params:
        metrics=CFG["metrics"],
        names=",".join(CFG["metrics"]["names"]),
        pred=lambda w: PLAN.restored_dir(w.method, w.task, "val", w.output),
        gt=PLAN.gt_dir("val"),
    threads: CFG["threads"]["eval"]
    conda:
        ENV
    log:
        f"{LOGS}/evaluate_val_{{method}}_{{task}}_{{output}}.log",
    benchmark:
        f"{BENCH}/evaluate_val_output/{{method}}_{{task}}_{{output}}.tsv",
    shell:
        "\"$UGPNET_PYTHON\" -m ugpnet evaluate"
        " --pred {params.pred} --gt {params.gt} --metrics {params.names}"
        " --lpips-net {params.metrics[lpips_net]} --gt-manifest {input.gt}"
        " --out {output.metrics} > {log} 2>&1"


rule val_outputs:
    input:
        [f for _, _, _, f in PLAN.val_output_records()],
    output:
        csv=PLAN.val_outputs_csv(),
    params:
        methods=PLAN.multi_output_methods(),
    conda:
        ENV
    log:
        f"{LOGS}/val_outputs.log",
    benchmark:
        f"{BENCH}/val_outputs/val_outputs.tsv",
    shell:
        "\"$UGPNET_PYTHON\" -m ugpnet table --which outputs --out {output.csv} > {log} 2>&1"


rule table1:
    input:
        PLAN.table1_inputs(),
    output:
        csv=PLAN.table1_csv(),
        meta=PLAN.table1_csv().replace(".csv", ".json"),
        plot=PLAN.table1_csv().replace(".csv", ".png"),
    params:
        table=CFG["table1"],
        metrics=CFG["metrics"]["names"],
    conda:
        ENV
    log:
        f"{LOGS}/table1.log",
    benchmark:
        f"{BENCH}/table1/table1.tsv",
    shell:
        "\"$UGPNET_PYTHON\" -m ugpnet table --which table1 --out {output.csv} > {log} 2>&1"


rule active_table1:
    # results/table1.* is the active profile/experiment's table (its JSON says which); switching
    # profile or experiment recopies it (params), so it never shows another run's numbers
    input:
        csv=rules.table1.output.csv,
        meta=rules.table1.output.meta,
        plot=rules.table1.output.plot,
    output:
        csv="results/table1.csv",
        meta="results/table1.json",
        plot="results/table1.png",
    params:
        profile=PROFILE,
        experiment=EXPERIMENT,
    conda:
        ENV
    log:
        f"{LOGS}/active_table1.log",
    benchmark:
        f"{BENCH}/active_table1/active_table1.tsv",
    shell:
        "(cp {input.csv} {output.csv} && cp {input.meta} {output.meta}"
        " && cp {input.plot} {output.plot}) > {log} 2>&1"
