# ugpnet-bench workflow: prepare data -> degrade -> train -> restore -> evaluate -> tables.
#   snakemake --cores all results/table1.csv                       (profile from params.yaml: smoke)
#   snakemake --cores all results/table1.csv --config profile=paper experiment=my_ablation
# Every number comes from params.yaml (resolved and validated by ugpnet.config); each rule declares
# the config slice it reads under `params:`, so changing it reruns exactly the affected jobs.
# What defines a run and when it reruns: docs/RUNS.md.
# snakemake --report results/report.html (make report): the tables, figures and provenance
# marked report() in the rules, with the captions of workflow/report/ (README: Report)
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/table2.smk"
include: "workflow/rules/figures.smk"


# rules that only name targets (no command) and the copy of Table 1 run where Snakemake runs,
# never as cluster jobs
localrules:
    all,
    data,
    figure4,
    figures,
    active_table1,


rule all:
    input:
        "results/table1.csv",
    default_target: True
    threads: job_threads("table")
    resources:
        **job_resources("table"),
