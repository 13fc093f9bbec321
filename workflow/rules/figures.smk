# The figures (docs/FIGURES.md): snakemake --cores all figures -> <results>/figures/{*.png,
# *.pdf, index.json}. What each figure reads and writes: ugpnet.commands.figures.FigurePlan (the
# command asks the same plan). `figures:` in params.yaml is drawing only: changing it reruns the
# figures rule (and Fig. 7's preparation when its image changes), nothing else.
rule ood_prepare:
    # Fig. 7's ground truth: the out-of-distribution photograph (figures.figure7.image), its
    # central square at data.resolution
    output:
        manifest=FIGS.ood_gt_manifest(),
    params:
        ood=FIGS.ood_config(),
        out=lambda w, output: dirname(output.manifest),
    threads: job_threads("data")
    resources:
        **job_resources("data"),
    conda:
        ENV
    log:
        f"{LOGS}/ood_prepare.log",
    benchmark:
        f"{BENCH}/ood_prepare/ood_prepare.tsv",
    shell:
        logged("\"$UGPNET_PYTHON\" -m ugpnet figures --prepare-ood --out {params.out}")


rule ood_degrade:
    # degraded as the task's test split: its seed and (deblur) its kernel bank
    input:
        gt=rules.ood_prepare.output.manifest,
        kernels=lambda w: [b for b in [PLAN.degrade_bank(w.task, "test")] if b],
    output:
        manifest=f"{RES}/ood/lq/{{task}}/manifest.json",
    params:
        deg=lambda w: PLAN.degradation_config(w.task),
        gt=lambda w, input: dirname(input.gt),
        out=lambda w, output: dirname(output.manifest),
        kernels=lambda w, input: f"--kernels {input.kernels[0]}" if input.kernels else "",
        seed=PLAN.degrade_seed("test"),
    threads: job_threads("data")
    resources:
        **job_resources("data"),
    conda:
        ENV
    log:
        f"{LOGS}/ood_degrade_{{task}}.log",
    benchmark:
        f"{BENCH}/ood_degrade/{{task}}.tsv",
    shell:
        logged("\"$UGPNET_PYTHON\" -m ugpnet degrade"
               " --task {wildcards.task} --seed {params.seed} --in {params.gt}"
               " --out {params.out} {params.kernels} --no-progress")


rule ood_restore:
    # Table 1's trained model of the method, every output (UGPNet: x_reg, x_syn, x_hat)
    input:
        model=lambda w: [m for m in [PLAN.final_model(w.method, w.task)] if m],
        lq=f"{RES}/ood/lq/{{task}}/manifest.json",
    output:
        manifest=f"{RES}/ood/restored/{{method}}/{{task}}/manifest.json",
    params:
        lq=lambda w, input: dirname(input.lq),
        out=lambda w, output: dirname(output.manifest),
        checkpoint=lambda w, input: f"--checkpoint {input.model}" if input.model else "",
    threads: job_threads("eval")
    resources:
        **job_resources("eval"),
    conda:
        ENV
    log:
        f"{LOGS}/ood_restore_{{method}}_{{task}}.log",
    benchmark:
        f"{BENCH}/ood_restore/{{method}}_{{task}}.tsv",
    shell:
        logged("\"$UGPNET_PYTHON\" -m ugpnet restore"
               " --method {wildcards.method} --task {wildcards.task}"
               " {params.checkpoint} --in {params.lq} --out {params.out} --intermediate"
               " --threads {threads} --no-progress")


rule draw_figures:
    # Fig. 4-7, the perception-distortion plot and the per-image PSNR distributions, with
    # index.json (the images shown, their sha256, the crop boxes); figures.which selects them
    input:
        FIGS.all_inputs(),
    output:
        fig_outputs(),
    params:
        figures=CFG.get("figures"),
        figure4=CFG.get("figure4"),
        out=lambda w, output: dirname(output[0]),
    threads: job_threads("table")
    resources:
        **job_resources("table"),
    conda:
        ENV
    log:
        f"{LOGS}/figures.log",
    benchmark:
        f"{BENCH}/figures/figures.tsv",
    shell:
        logged("\"$UGPNET_PYTHON\" -m ugpnet figures --out {params.out}")


rule figures:
    # the evidence beyond Table 1: every figure (rule draw_figures) and Table 2 (workflow/rules/
    # table2.smk): snakemake --cores all figures, or dvc repro figures
    input:
        rules.draw_figures.output,
        rules.table2.output.csv if CFG.get("table2") else [],
    threads: job_threads("table")
    resources:
        **job_resources("table"),
