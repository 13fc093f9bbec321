rule pretrain_prior:
    # one rule for every named prior the DAG pretrains (priors.<name>.checkpoint null: the
    # offline profiles); <id> = the digest of the prior's settings (ugpnet.plan: prior_id), so
    # priors of the same settings share one job and one file
    input:
        gt=rules.prepare.output.manifest,
    output:
        model=f"{RUNS}/priors/{{prior_id}}/model.pt",
    params:
        prior=lambda w: PLAN.prior_by_id(w.prior_id),
        settings=lambda w: PLAN.prior_settings(PLAN.prior_by_id(w.prior_id)),
    threads: CFG["threads"]["train"]
    conda:
        ENV
    log:
        f"{LOGS}/pretrain_prior_{{prior_id}}.log",
    benchmark:
        f"{BENCH}/pretrain_prior/{{prior_id}}.tsv",
    shell:
        logged("\"$UGPNET_PYTHON\" -m ugpnet pretrain-prior --prior {params.prior}"
               " --threads {threads} --no-progress")


rule train:
    # one rule for every stage of every method: the method's kind declares the stages, what
    # each reads (inputs below) and the configuration slice that defines it (params.stage); a
    # model.pt of another identity than the configuration's reruns (train_inputs, common.smk).
    # A stage trained once for every task (Stage.shared) has the task folder "shared"
    wildcard_constraints:
        task="denoise|deblur|sr|shared",
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
