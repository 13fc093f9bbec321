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
    threads: job_threads("eval")
    resources:
        **job_resources("eval"),
    conda:
        ENV
    log:
        f"{LOGS}/restore_{{method}}_{{task}}_{{split}}.log",
    benchmark:
        f"{BENCH}/restore/{{method}}_{{task}}_{{split}}.tsv",
    shell:
        logged("\"$UGPNET_PYTHON\" -m ugpnet restore"
               " --method {wildcards.method} --task {wildcards.task}"
               " {params.checkpoint} --in {params.lq} --out {params.out} --intermediate"
               " --threads {threads} --no-progress")


rule evaluate:
    # one job per (method, task): every output folder the plan says (test split, and val where
    # the outputs tables need it) scored in one process into one file
    input:
        restored=lambda w: [PLAN.restored_manifest(w.method, w.task, split)
                            for split in PLAN.evaluation_splits(w.method, w.task)],
        gt=rules.prepare.output.manifest,
    output:
        metrics=f"{RES}/metrics/{{method}}/{{task}}.json",
    params:
        metrics=CFG["metrics"],
        splits=lambda w: PLAN.evaluation_splits(w.method, w.task),
    threads: job_threads("eval")
    resources:
        **job_resources("eval"),
    conda:
        ENV
    log:
        f"{LOGS}/evaluate_{{method}}_{{task}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{method}}_{{task}}.tsv",
    shell:
        logged("\"$UGPNET_PYTHON\" -m ugpnet evaluate"
               " --method {wildcards.method} --task {wildcards.task}"
               " --threads {threads} --no-progress --out {output.metrics}")


# evaluate_per: task (params.yaml): Table 1's cells of one task scored by one job, one process
# (`ugpnet evaluate --method a,b,... --task T`), each into its own metrics file; the per-cell
# rule above then serves only the cells outside Table 1 (e.g. the figure4 target's)
if CFG["evaluate_per"] == "task":
    for _task in CFG["table1"]["tasks"]:
        _methods = [m for m, t in PLAN.table_cells() if t == _task]
        if not _methods:
            continue

        rule:
            name:
                f"evaluate_{_task}"
            input:
                restored=[PLAN.restored_manifest(m, _task, split) for m in _methods
                          for split in PLAN.evaluation_splits(m, _task)],
                gt=rules.prepare.output.manifest,
            output:
                metrics=[PLAN.metrics_file(m, _task) for m in _methods],
            params:
                metrics=CFG["metrics"],
                splits={m: PLAN.evaluation_splits(m, _task) for m in _methods},
                methods=",".join(_methods),
                task=_task,
            threads: job_threads("eval", methods=_methods)
            resources:
                **job_resources("eval", methods=_methods),
            conda:
                ENV
            log:
                f"{LOGS}/evaluate_{_task}.log",
            benchmark:
                f"{BENCH}/evaluate/{_task}.tsv",
            shell:
                logged("\"$UGPNET_PYTHON\" -m ugpnet evaluate"
                       " --method {params.methods} --task {params.task}"
                       " --threads {threads} --no-progress")

        workflow.ruleorder(f"evaluate_{_task}", "evaluate")


# every output of the methods that have several, and the degraded input of their tasks, per
# split: val_outputs.csv and test_outputs.csv, one rule each
for _split in ("val", "test"):

    rule:
        name:
            f"{_split}_outputs"
        input:
            sorted({f for _, _, _, f in PLAN.output_records()}),
        output:
            csv=PLAN.outputs_csv(_split),
        params:
            methods=PLAN.multi_output_methods(),
            split=_split,
        threads: job_threads("table")
        resources:
            **job_resources("table"),
        conda:
            ENV
        log:
            f"{LOGS}/{_split}_outputs.log",
        benchmark:
            f"{BENCH}/{_split}_outputs/{_split}_outputs.tsv",
        shell:
            logged("\"$UGPNET_PYTHON\" -m ugpnet table --which outputs --split {params.split}"
                   " --out {output.csv}")


# table1.vs_paper (the paper profile): Table 1 beside the paper's published numbers
_VS_PAPER = ({"vs_paper_csv": PLAN.table1_csv().replace(".csv", "_vs_paper.csv"),
              "vs_paper_md": PLAN.table1_csv().replace(".csv", "_vs_paper.md"),
              "vs_paper_html": report(PLAN.table1_csv().replace(".csv", "_vs_paper.html"),
                                      caption="../report/table1.rst", category="Tables",
                                      subcategory="Table 1 against the paper",
                                      labels={"result": "Table 1 against the paper"})}
             if CFG["table1"].get("vs_paper") else {})


rule table1:
    input:
        PLAN.table1_inputs(),
    output:
        # report(): what `snakemake --report results/report.html` shows, with the captions of
        # workflow/report/ (the profile and experiment are said there: never a smoke table
        # mistaken for the paper's). One label each: the report turns a second label with two
        # values into a toggle that hides half the results.
        csv=report(PLAN.table1_csv(), caption="../report/table1.rst", category="Tables",
                   subcategory="Table 1", labels={"result": "Table 1: the means (CSV)"}),
        meta=report(PLAN.table1_csv().replace(".csv", ".json"), caption="../report/provenance.rst",
                    category="Provenance", subcategory="Table 1",
                    labels={"result": "Table 1: provenance (JSON)"}),
        plot=report(PLAN.table1_csv().replace(".csv", ".png"), caption="../report/table1.rst",
                    category="Tables", subcategory="Table 1",
                    labels={"result": "Table 1: bar chart (PNG)"}),
        metrics=PLAN.table1_csv().replace(".csv", "_metrics.json"),
        stats=report(PLAN.table1_csv().replace(".csv", "_stats.csv"),
                     caption="../report/table1.rst", category="Tables", subcategory="Table 1",
                     labels={"result": "Table 1: intervals and paired tests (CSV)"}),
        md=PLAN.table1_csv().replace(".csv", ".md"),
        html=report(PLAN.table1_csv().replace(".csv", ".html"), caption="../report/table1.rst",
                    category="Tables", subcategory="Table 1",
                    labels={"result": "Table 1: mean [95 % interval], paired tests"}),
        **_VS_PAPER,
    params:
        table=CFG["table1"],
        metrics=CFG["metrics"]["names"],
    threads: job_threads("table")
    resources:
        **job_resources("table"),
    conda:
        ENV
    log:
        f"{LOGS}/table1.log",
    benchmark:
        f"{BENCH}/table1/table1.tsv",
    shell:
        logged("\"$UGPNET_PYTHON\" -m ugpnet table --which table1 --out {output.csv}")


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
    threads: job_threads("table")
    resources:
        **job_resources("table"),
    conda:
        ENV
    log:
        f"{LOGS}/active_table1.log",
    benchmark:
        f"{BENCH}/active_table1/active_table1.tsv",
    shell:
        logged("cp {input.csv} {output.csv} && cp {input.meta} {output.meta}"
               " && cp {input.plot} {output.plot}")


rule figure4:
    # the runs of the paper's Figure 4 (figure4: in params.yaml): each backbone alone and inside
    # UGPNet, trained, restored and scored (snakemake --cores all figure4); the figure itself is
    # drawn by the evidence step
    input:
        PLAN.figure4_inputs() if CFG.get("figure4") else [],
    threads: job_threads("table")
    resources:
        **job_resources("table"),


rule table3:
    # Table 3, the ablations (table3: in params.yaml): each row trained (only the stages it
    # changes; the rest are its parent's), restored, scored (one evaluate job per row: dvc
    # repro builds the rows one stage each), then the table (snakemake --cores all table3)
    input:
        PLAN.table3_inputs() if CFG.get("table3") else [],
    output:
        csv=report(PLAN.table3_csv(), caption="../report/table3.rst", category="Tables",
                   subcategory="Table 3", labels={"result": "Table 3: the means (CSV)"}),
        md=PLAN.table3_csv().replace(".csv", ".md"),
        meta=report(PLAN.table3_csv().replace(".csv", ".json"), caption="../report/provenance.rst",
                    category="Provenance", subcategory="Table 3",
                    labels={"result": "Table 3: provenance (JSON)"}),
        metrics=PLAN.table3_csv().replace(".csv", "_metrics.json"),
        html=report(PLAN.table3_csv().replace(".csv", ".html"), caption="../report/table3.rst",
                    category="Tables", subcategory="Table 3",
                    labels={"result": "Table 3: the ablations"}),
    params:
        table=CFG.get("table3"),
        metrics=CFG["metrics"]["names"],
    threads: job_threads("table")
    resources:
        **job_resources("table"),
    conda:
        ENV
    log:
        f"{LOGS}/table3.log",
    benchmark:
        f"{BENCH}/table3/table3.tsv",
    shell:
        logged("\"$UGPNET_PYTHON\" -m ugpnet table --which table3 --out {output.csv}")
