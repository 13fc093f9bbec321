rule prepare:
    output:
        manifest=f"{DATA}/gt/manifest.json",
    params:
        cli=UGPNET,
        data=CFG["data"],
        out=lambda w, output: dirname(output.manifest),
    conda:
        ENV
    log:
        f"{LOGS}/prepare.log",
    shell:
        "{params.cli} prepare --out {params.out} > {log} 2>&1"


rule kernels:
    output:
        bank=f"{DATA}/kernels/{{bank}}.npy",
    params:
        cli=UGPNET,
        deblur=CFG["degradations"]["deblur"],
        resolution=CFG["data"]["resolution"],
        # separate banks: training never sees a test kernel
        seed=lambda w: CFG["degradations"]["deblur"]["bank_seed"] + (0 if w.bank == "train" else 1),
    conda:
        ENV
    log:
        f"{LOGS}/kernels_{{bank}}.log",
    shell:
        "{params.cli} kernels --out {output.bank} --n {params.deblur[n_kernels]}"
        " --resolution {params.resolution} --seed {params.seed} > {log} 2>&1"


rule degrade:
    input:
        gt=rules.prepare.output.manifest,
        kernels=lambda w: deblur_bank(w, "test"),
    output:
        manifest=f"{DATA}/lq/{{task}}/{{split}}/manifest.json",
    params:
        cli=UGPNET,
        deg=lambda w: {"seed": CFG["degradations"]["seed"], w.task: CFG["degradations"][w.task]},
        gt=lambda w, input: os.path.join(dirname(input.gt), w.split),
        out=lambda w, output: dirname(output.manifest),
        kernels=lambda w, input: f"--kernels {input.kernels[0]}" if input.kernels else "",
        # val and test get different seeds from the same base seed
        seed=lambda w: CFG["degradations"]["seed"] + (0 if w.split == "test" else 1),
    conda:
        ENV
    log:
        f"{LOGS}/degrade_{{task}}_{{split}}.log",
    shell:
        "{params.cli} degrade --task {wildcards.task} --seed {params.seed} --in {params.gt}"
        " --out {params.out} {params.kernels} > {log} 2>&1"
