# Table 2 (table2: in params.yaml): parameters and inference time of the paper's networks,
# beside the paper's. `ugpnet bench` times the networks of table2.profile (the paper's
# architectures, random weights) read from params.yaml itself, whatever profile runs the
# workflow; the job takes every core given to Snakemake, so nothing else runs while it times.
# snakemake --cores all table2 (the figures target builds it too)
if CFG.get("table2"):
    _T2 = CFG["table2"]

    rule table2_bench:
        output:
            bench=f"{RES}/table2_bench.json",
        params:
            table=_T2,
            methods=",".join(_T2["methods"]),
        # threads 0 (resources.bench, the offline profiles): `workflow.cores`, read when the job
        # is made, so commands that define no --cores (snakemake --report) still parse the workflow
        threads: job_threads("bench")
        resources:
            **job_resources("bench"),
        conda:
            ENV
        log:
            f"{LOGS}/table2_bench.log",
        benchmark:
            f"{BENCH}/table2_bench/table2_bench.tsv",
        shell:
            logged("\"$UGPNET_PYTHON\" -m ugpnet --params params.yaml --profile "
                   f"{_T2['profile']} bench --methods {{params.methods}} --tasks {_T2['task']}"
                   f" --size {_T2['size']} --runs {_T2['runs']}"
                   f" --threads {_T2.get('threads') or '{threads}'} --out {{output.bench}}")

    rule table2:
        input:
            bench=rules.table2_bench.output.bench,
        output:
            csv=report(f"{RES}/table2.csv", caption="../report/table2.rst", category="Tables",
                       subcategory="Table 2", labels={"result": "Table 2, CSV"}),
            md=f"{RES}/table2.md",
            html=report(f"{RES}/table2.html", caption="../report/table2.rst", category="Tables",
                        subcategory="Table 2", labels={"result": "Table 2"}),
            meta=report(f"{RES}/table2.json", caption="../report/provenance.rst",
                        category="Provenance", subcategory="Table 2",
                        labels={"result": "Table 2 provenance"}),
        params:
            table=_T2,
        threads: job_threads("table")
        resources:
            **job_resources("table"),
        conda:
            ENV
        log:
            f"{LOGS}/table2.log",
        benchmark:
            f"{BENCH}/table2/table2.tsv",
        shell:
            logged("\"$UGPNET_PYTHON\" -m ugpnet table --which table2 --bench {input.bench}"
                   " --out {output.csv}")
