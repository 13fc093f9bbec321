rule prepare:
    output:
        manifest=PLAN.gt_manifest(),
    params:
        data=PLAN.data_config(),
        out=lambda w, output: dirname(output.manifest),
    threads: job_threads("data")
    resources:
        **job_resources("data"),
    conda:
        ENV
    log:
        f"{LOGS}/prepare.log",
    benchmark:
        f"{BENCH}/prepare/prepare.tsv",
    shell:
        logged("\"$UGPNET_PYTHON\" -m ugpnet prepare --out {params.out}")


rule kernels:
    # three banks from three seeds: training, validation and test never share a kernel
    output:
        bank=f"{DATA}/kernels/{{bank}}-{PLAN.kernel_id()}.npy",
    params:
        kernels=PLAN.kernel_config(),
        seed=lambda w: PLAN.kernel_seed(w.bank),
    threads: job_threads("data")
    resources:
        **job_resources("data"),
    conda:
        ENV
    log:
        f"{LOGS}/kernels_{{bank}}.log",
    benchmark:
        f"{BENCH}/kernels/{{bank}}.tsv",
    shell:
        logged("\"$UGPNET_PYTHON\" -m ugpnet kernels"
               " --out {output.bank} --n {params.kernels[deblur][n_kernels]}"
               " --resolution {params.kernels[resolution]} --seed {params.seed}")


rule degrade:
    input:
        gt=rules.prepare.output.manifest,
        kernels=lambda w: [b for b in [PLAN.degrade_bank(w.task, w.split)] if b],
    output:
        manifest=f"{DATA}/lq/{{task}}-{{did}}/{{split}}/manifest.json",
    params:
        deg=lambda w: PLAN.degradation_config(w.task),
        did=lambda w: PLAN.check_degradation_id(w.task, w.did),
        gt=lambda w, input: os.path.join(dirname(input.gt), w.split),
        out=lambda w, output: dirname(output.manifest),
        kernels=lambda w, input: f"--kernels {input.kernels[0]}" if input.kernels else "",
        seed=lambda w: PLAN.degrade_seed(w.split),
    threads: job_threads("data")
    resources:
        **job_resources("data"),
    conda:
        ENV
    log:
        f"{LOGS}/degrade_{{task}}-{{did}}_{{split}}.log",
    benchmark:
        f"{BENCH}/degrade/{{task}}-{{did}}_{{split}}.tsv",
    shell:
        logged("\"$UGPNET_PYTHON\" -m ugpnet degrade"
               " --task {wildcards.task} --seed {params.seed} --in {params.gt}"
               " --out {params.out} {params.kernels}")


rule data:
    # every prepared dataset of this configuration: the ground truth, the kernel banks and the
    # degraded val/test splits of Table 1's tasks and Table 3's (`dvc repro` tracks data/<profile>)
    input:
        PLAN.data_inputs(),
    threads: job_threads("table")
    resources:
        **job_resources("table"),
