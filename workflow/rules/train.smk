rule train_regression:
    input:
        unpack(train_inputs),
    output:
        model=f"{RUNS}/{{method}}/{{task}}/train/model.pt",
    params:
        cli=UGPNET,
        cfg=lambda w: method_slice(w.method, w.task),
        data=lambda w, input: dirname(dirname(input.gt)),
        runs=lambda w, output: dirname(dirname(dirname(dirname(output.model)))),
    threads: CFG["threads"]["train"]
    conda:
        ENV
    log:
        f"{LOGS}/train_{{method}}_{{task}}.log",
    shell:
        "{params.cli} train --method {wildcards.method} --task {wildcards.task} --stage train"
        " --data {params.data} --runs {params.runs} --threads {threads} --no-progress > {log} 2>&1"


rule pretrain_prior:
    input:
        gt=rules.prepare.output.manifest,
    output:
        model=f"{RUNS}/prior/model.pt",
    params:
        cli=UGPNET,
        stylegan2=CFG["stylegan2"],
        data=lambda w, input: dirname(dirname(input.gt)),
        out=lambda w, output: dirname(output.model),
    threads: CFG["threads"]["train"]
    conda:
        ENV
    log:
        f"{LOGS}/pretrain_prior.log",
    shell:
        "{params.cli} pretrain-prior --data {params.data} --out {params.out}"
        " --threads {threads} --no-progress > {log} 2>&1"


rule ugpnet_restoration:
    input:
        unpack(ugpnet_stage_inputs("restoration")),
    output:
        model=f"{RUNS}/{{method}}/{{task}}/restoration/model.pt",
    params:
        cli=UGPNET,
        cfg=lambda w: method_slice(w.method, w.task),
        data=lambda w, input: dirname(dirname(input.gt)),
        runs=lambda w, output: dirname(dirname(dirname(dirname(output.model)))),
    threads: CFG["threads"]["train"]
    conda:
        ENV
    log:
        f"{LOGS}/train_{{method}}_{{task}}_restoration.log",
    shell:
        "{params.cli} train --method {wildcards.method} --task {wildcards.task}"
        " --stage restoration --data {params.data} --runs {params.runs}"
        " --threads {threads} --no-progress > {log} 2>&1"


rule ugpnet_synthesis:
    input:
        unpack(ugpnet_stage_inputs("synthesis")),
    output:
        model=f"{RUNS}/{{method}}/{{task}}/synthesis/model.pt",
    params:
        cli=UGPNET,
        cfg=lambda w: method_slice(w.method, w.task),
        stylegan2=CFG["stylegan2"],
        data=lambda w, input: dirname(dirname(input.gt)),
        runs=lambda w, output: dirname(dirname(dirname(dirname(output.model)))),
    threads: CFG["threads"]["train"]
    conda:
        ENV
    log:
        f"{LOGS}/train_{{method}}_{{task}}_synthesis.log",
    shell:
        "{params.cli} train --method {wildcards.method} --task {wildcards.task}"
        " --stage synthesis --data {params.data} --runs {params.runs} --prior {input.prior}"
        " --threads {threads} --no-progress > {log} 2>&1"


rule ugpnet_fusion:
    input:
        unpack(ugpnet_stage_inputs("fusion")),
    output:
        model=f"{RUNS}/{{method}}/{{task}}/fusion/model.pt",
    params:
        cli=UGPNET,
        cfg=lambda w: method_slice(w.method, w.task),
        stylegan2=CFG["stylegan2"],
        data=lambda w, input: dirname(dirname(input.gt)),
        runs=lambda w, output: dirname(dirname(dirname(dirname(output.model)))),
    threads: CFG["threads"]["train"]
    conda:
        ENV
    log:
        f"{LOGS}/train_{{method}}_{{task}}_fusion.log",
    shell:
        "{params.cli} train --method {wildcards.method} --task {wildcards.task}"
        " --stage fusion --data {params.data} --runs {params.runs}"
        " --threads {threads} --no-progress > {log} 2>&1"
