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
    threads: job_threads("train", methods=())
    resources:
        **job_resources("train", methods=(), max_gpus=1),
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
    # A method whose train gpus > 1 (params.yaml resources) is trained by train_ddp (below)
    wildcard_constraints:
        task="denoise|deblur|sr|shared",
        method=(f"(?!(?:{'|'.join(re.escape(m) for m in DDP_METHODS)})(?![A-Za-z0-9_-]))"
                "[A-Za-z0-9_-]+" if DDP_METHODS else "[A-Za-z0-9_-]+"),
    input:
        unpack(train_inputs),
    output:
        model=f"{RUNS}/{{method}}/{{task}}/{{stage}}/model.pt",
    params:
        stage=lambda w: PLAN.stage_config(w.method, w.task, w.stage),
    threads: job_threads("train")
    resources:
        **job_resources("train"),
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


if DDP_METHODS:

    rule train_ddp:
        # the train rule for the methods whose train gpus > 1: one job, one node, DDP over its
        # GPUs (torchrun, one process per GPU, each with threads / gpus CPU threads). A rule of
        # its own so that the train rule's command (Snakemake reruns a job whose command
        # changed) stays the same for every run that trains on one device.
        wildcard_constraints:
            task="denoise|deblur|sr|shared",
            method="|".join(re.escape(m) for m in DDP_METHODS),
        input:
            unpack(train_inputs),
        output:
            model=f"{RUNS}/{{method}}/{{task}}/{{stage}}/model.pt",
        params:
            stage=lambda w: PLAN.stage_config(w.method, w.task, w.stage),
        threads: job_threads("train")
        resources:
            **job_resources("train"),
        conda:
            ENV
        log:
            f"{LOGS}/train_{{method}}_{{task}}_{{stage}}.log",
        benchmark:
            f"{BENCH}/train/{{method}}_{{task}}_{{stage}}.tsv",
        shell:
            logged("\"$UGPNET_PYTHON\" -m torch.distributed.run --standalone"
                   " --nproc-per-node {resources.gpu} -m ugpnet train"
                   " --method {wildcards.method} --task {wildcards.task}"
                   " --stage {wildcards.stage}"
                   " --threads $(( {threads} > {resources.gpu} ? {threads} / {resources.gpu} : 1 ))"
                   " --no-progress")
