rule restore:
    input:
        model=final_model,
        lq=f"{DATA}/lq/{{task}}/{{split}}/manifest.json",
    output:
        manifest=f"{RES}/restored/{{method}}/{{task}}/{{split}}/manifest.json",
    params:
        cli=UGPNET,
        run=lambda w, input: dirname(dirname(input.model)),
        lq=lambda w, input: dirname(input.lq),
        out=lambda w, output: dirname(output.manifest),
        intermediate=lambda w: "--intermediate" if method_kind(w.method) == "ugpnet" else "",
    threads: CFG["threads"]["eval"]
    conda:
        ENV
    log:
        f"{LOGS}/restore_{{method}}_{{task}}_{{split}}.log",
    shell:
        "{params.cli} restore --method {wildcards.method} --task {wildcards.task}"
        " --checkpoint {params.run} --in {params.lq} --out {params.out} {params.intermediate}"
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
        gt=lambda w, input: os.path.join(dirname(input.gt), "test"),
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
    input:
        restored=f"{RES}/restored/{{method}}/{{task}}/val/manifest.json",
        gt=rules.prepare.output.manifest,
    output:
        metrics=f"{RES}/metrics_val/{{method}}/{{task}}/{{output}}.json",
    params:
        cli=UGPNET,
        metrics=CFG["metrics"],
        names=",".join(CFG["metrics"]["names"]),
        pred=val_output_dir,
        gt=lambda w, input: os.path.join(dirname(input.gt), "val"),
    threads: CFG["threads"]["eval"]
    conda:
        ENV
    log:
        f"{LOGS}/evaluate_val_{{method}}_{{task}}_{{output}}.log",
    shell:
        "{params.cli} evaluate --pred {params.pred} --gt {params.gt} --metrics {params.names}"
        " --lpips-net {params.metrics[lpips_net]} --out {output.metrics} > {log} 2>&1"


rule ugpnet_val_summary:
    input:
        val_summary_inputs,
    output:
        csv=f"{RES}/ugpnet_val_summary.csv",
    params:
        cli=UGPNET,
        methods=ugpnet_methods(),
        metrics=lambda w, output: os.path.join(dirname(output.csv), "metrics_val"),
    conda:
        ENV
    log:
        f"{LOGS}/ugpnet_val_summary.log",
    shell:
        "{params.cli} table --which stages --metrics-dir {params.metrics} --out {output.csv}"
        " > {log} 2>&1"


rule table1:
    input:
        table1_inputs,
    output:
        csv="results/table1.csv",
        meta="results/table1.json",
        plot="results/table1.png",
    params:
        cli=UGPNET,
        table=CFG["table1"],
        profile=PROFILE,
        metrics=f"{RES}/metrics",
    conda:
        ENV
    log:
        f"{LOGS}/table1.log",
    shell:
        "{params.cli} table --which table1 --metrics-dir {params.metrics} --out {output.csv}"
        " > {log} 2>&1"
