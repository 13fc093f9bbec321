rule pretrain_prior:
    # only needed when stylegan2.checkpoint is null (the offline profiles)
    input:
        gt=rules.prepare.output.manifest,
    output:
        model=PLAN.pretrained_prior(),
    params:
        stylegan2={k: v for k, v in CFG["stylegan2"].items() if k != "checkpoint"},
        out=lambda w, output: dirname(output.model),
    threads: CFG["threads"]["train"]
    conda:
        ENV
    log:
        f"{LOGS}/pretrain_prior.log",
    benchmark:
        f"{BENCH}/pretrain_prior/pretrain_prior.tsv",
    shell:
        logged("\"$UGPNET_PYTHON\" -m ugpnet pretrain-prior"
               " --out {params.out} --threads {threads} --no-progress")


rule train:
    # one rule for every stage of every method: the method's kind declares the stages, what
    # each reads (inputs below) and the configuration slice that defines it (params.stage); a
    # model.pt of another identity than the configuration's reruns (train_inputs, common.smk)
    input:
        unpack(train_inputs),
    output:
        model=f"{RUNS}/{{method}}/{{task}}/{{stage}}/model.pt",
    params:
        stage=lambda w: PLAN.stage_config(w.method, w.task, w.stage),
    threads: CFG["threads"]["train"]
    conda:
        ENV
    log:
        f"{LOGS}/train_{{method}}_{{task}}_{{stage}}.log",
    benchmark:
        f"{BENCH}/train/{{method}}_{{task}}_{{stage}}.tsv",
    shell:
        logged("\"$UGPNET_PYTHON\" -m ugpnet train"
               " --method {wildcards.method} --task {wildcards.task}"
               " --stage {wildcards.stage} --threads {threads} --no-progress")
