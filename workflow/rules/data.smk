rule prepare:
    output:
        manifest=f"{DATA}/gt/manifest.json",
    params:
        data=CFG["data"],
        out=f"{DATA}/gt",
    log:
        f"{LOGS}/prepare.log",
    shell:
        "{UGPNET} prepare --out {params.out} > {log} 2>&1"


rule kernels:
    output:
        bank=f"{DATA}/kernels/{{bank}}.npy",
    params:
        deblur=CFG["degradations"]["deblur"],
        resolution=CFG["data"]["resolution"],
        # separate banks: training never sees a test kernel
        seed=lambda w: CFG["degradations"]["deblur"]["bank_seed"] + (0 if w.bank == "train" else 1),
    log:
        f"{LOGS}/kernels_{{bank}}.log",
    shell:
        "{UGPNET} kernels --out {output.bank} --n {params.deblur[n_kernels]}"
        " --resolution {params.resolution} --seed {params.seed} > {log} 2>&1"


rule degrade:
    input:
        gt=rules.prepare.output.manifest,
        kernels=lambda w: deblur_bank(w, "test"),
    output:
        manifest=f"{DATA}/lq/{{task}}/{{split}}/manifest.json",
    params:
        deg=lambda w: {"seed": CFG["degradations"]["seed"], w.task: CFG["degradations"][w.task]},
        gt=lambda w: str(layout.gt_dir(DATA, w.split)),
        out=lambda w: str(layout.lq_dir(DATA, w.task, w.split)),
        kernels=lambda w, input: f"--kernels {input.kernels[0]}" if input.kernels else "",
        # val and test get different seeds from the same base seed
        seed=lambda w: CFG["degradations"]["seed"] + (0 if w.split == "test" else 1),
    log:
        f"{LOGS}/degrade_{{task}}_{{split}}.log",
    shell:
        "{UGPNET} degrade --task {wildcards.task} --seed {params.seed} --in {params.gt}"
        " --out {params.out} {params.kernels} > {log} 2>&1"
