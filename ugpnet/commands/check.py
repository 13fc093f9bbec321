"""ugpnet check: read and validate the configuration and the plan, run nothing.

The same reading as the workflow (params.yaml, then each ``--configfile`` in order, then ``--set``),
so ``ugpnet check --configfile my.yaml`` names the file and line of a broken override file that
``snakemake --configfile my.yaml`` only reports as "not valid JSON or YAML". The summary lists the
override warnings (a key you set that a later layer replaces; see ugpnet.config), which are also
printed on stderr."""
from __future__ import annotations

import argparse
import json

HELP = ("validate params.yaml + --configfile override files + --set items and the plan; print "
        "the profile, experiment, folders, the priors the methods read (their files) and "
        "override warnings as JSON")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--print-config", action="store_true",
                   help="print the whole resolved configuration instead of a summary")


def run(args) -> int:
    from ..config import find_params, load_config
    from ..plan import Plan

    warnings: list = []
    cfg = load_config(args, warnings=warnings)
    plan = Plan.of(cfg)
    plan.check()
    if args.print_config:
        print(json.dumps(cfg, indent=2, default=str))
        return 0
    print(json.dumps({"ok": True, "files": [str(find_params(args.params)), *args.configfile],
                      "profile": cfg["profile"], "experiment": cfg["experiment"],
                      "data": plan.data, "runs": plan.runs, "results": plan.results,
                      "table1": plan.table1_methods(),
                      # each Table 3 row: the stages it trains itself (the rest: its parent's)
                      "table3": ({m: plan.owned_stages(m, t) for m, t in plan.table3_cells()}
                                 if cfg.get("table3") else None),
                      "priors": {name: plan.prior(name) for name in plan.priors_read()},
                      "warnings": warnings},
                     indent=2))
    return 0
