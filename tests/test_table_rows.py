"""Table 1's rows per task (the paper's Table 1 (a), (b), (c) differ) and the Figure 4 runs."""
import re

import pytest

from ugpnet.config import load_params_file, resolve
from ugpnet.errors import ConfigError
from ugpnet.plan import Plan, table1_methods, table1_rows
from workspace import copy_workflow, snakemake

# the paper's Table 1: (a) denoising and (b) deblurring, (c) 8x SR (shared/specs/baselines.md §0)
PAPER_ROWS = {
    "denoise": ["input", "nafnet", "uformer", "gfpgan", "gpen", "vqfr", "ugpnet"],
    "deblur": ["input", "nafnet", "uformer", "gfpgan", "gpen", "vqfr", "ugpnet"],
    "sr": ["input", "rrdbnet", "esrgan", "gfpgan", "gpen", "vqfr", "glean", "gcfsr", "ugpnet"],
}


@pytest.fixture(scope="module")
def raw(repo_root):
    return load_params_file(repo_root / "params.yaml")


def _with_rows(raw, rows, tasks=("denoise", "deblur", "sr")):
    return resolve({**raw, "overrides": {"table1": {"methods": rows, "tasks": list(tasks)}}},
                   "tiny")


def test_rows_per_task_give_exactly_those_cells(raw):
    cfg = _with_rows(raw, {"denoise": ["input", "nafnet"], "deblur": ["ugpnet"],
                           "sr": ["rrdbnet", "input"]})
    plan = Plan.of(cfg)
    assert sorted(plan.table_cells()) == sorted([("input", "denoise"), ("nafnet", "denoise"),
                                                 ("ugpnet", "deblur"), ("rrdbnet", "sr"),
                                                 ("input", "sr")])
    # row order: each task's list keeps its order (sr puts rrdbnet before input)
    assert plan.table1_methods() == ["rrdbnet", "input", "nafnet", "ugpnet"]
    assert table1_rows(cfg)["sr"] == ["rrdbnet", "input"]


def test_row_order_keeps_every_tasks_order(raw):
    cfg = resolve(raw, "smoke")
    # the paper's family order: regression, then generative, UGPNet last
    assert table1_methods(cfg) == ["input", "nafnet", "uformer", "rrdbnet", "esrgan", "gfpgan",
                                   "gpen", "vqfr", "glean", "gcfsr", "ugpnet"]
    cfg = _with_rows(raw, {"denoise": ["input", "nafnet", "ugpnet"],
                           "deblur": ["input", "nafnet", "ugpnet"],
                           "sr": ["rrdbnet", "input", "ugpnet"]})
    assert table1_methods(cfg) == ["rrdbnet", "input", "nafnet", "ugpnet"]


def test_one_list_means_every_task_the_method_runs(raw):
    cfg = _with_rows(raw, ["input", "nafnet", "rrdbnet"])
    rows = table1_rows(cfg)
    # nafnet runs sr too (Figure 4), so one list puts it in the sr rows as well
    assert rows["denoise"] == ["input", "nafnet"] and rows["sr"] == ["input", "nafnet", "rrdbnet"]
    assert table1_methods(cfg) == ["input", "nafnet", "rrdbnet"]


def test_rows_per_task_must_cover_every_listed_task(raw):
    with pytest.raises(ConfigError, match=r"not for 'sr'.*table1\.methods\.sr"):
        _with_rows(raw, {"denoise": ["input"], "deblur": ["input"]})


def test_rows_name_defined_methods(raw):
    with pytest.raises(ConfigError, match=r"table1\.methods: 'nosuch' is not defined"):
        _with_rows(raw, {"denoise": ["nosuch"], "deblur": ["input"], "sr": ["input"]})


def test_rows_per_task_reject_an_unknown_task(raw):
    with pytest.raises(ConfigError, match="table1"):
        _with_rows(raw, {"denoise": ["input"], "inpaint": ["input"]}, tasks=("denoise",))


def test_the_default_table_has_the_papers_rows(raw):
    cfg = resolve(raw, "smoke")
    assert table1_rows(cfg) == PAPER_ROWS


# ----------------------------------------------------------------------------- Figure 4
BACKBONES = ("unet", "hinet", "nafnet", "rrdbnet")


def test_figure4_cells_are_each_backbone_alone_and_inside_ugpnet(raw):
    cfg = resolve(raw, "smoke")
    plan = Plan.of(cfg)
    cells = plan.figure4_cells()
    expect = {(m, t) for b in BACKBONES for m in (b, f"ugpnet-{b}") for t in ("deblur", "sr")}
    assert set(cells) == expect and len(cells) == 16
    for b in BACKBONES:  # each UGPNet variant runs on its backbone, started from its model
        m = cfg["methods"][f"ugpnet-{b}"]
        assert m["kind"] == "ugpnet" and m["backbone"] == {"deblur": b, "sr": b}
        assert m["init_from"] == {"deblur": b, "sr": b}
        for t in ("deblur", "sr"):
            assert plan.stage_inputs(f"ugpnet-{b}", t, "restoration")["init_from"] == \
                plan.final_model(b, t)
    # everything else is UGPNet's recipe (the YAML merge of the ugpnet entry)
    base = cfg["methods"]["ugpnet"]
    for b in BACKBONES:
        m = cfg["methods"][f"ugpnet-{b}"]
        assert m["stages"] == base["stages"] and m["fusion"] == base["fusion"]
        assert m["prior"] == base["prior"]


def test_figure4_names_defined_methods(raw):
    with pytest.raises(ConfigError, match=r"figure4\.pairs: 'ugpnet-x' is not defined"):
        resolve({**raw, "overrides": {"figure4": {"pairs": {"unet": "ugpnet-x"}}}}, "tiny")


def test_no_figure4_section_says_so(raw):
    cfg = resolve(raw, "tiny")
    cfg = {k: v for k, v in cfg.items() if k != "figure4"}
    with pytest.raises(ConfigError, match="no figure4 section"):
        Plan.of(cfg).figure4_cells()


def test_snakemake_dry_run_of_figure4_lists_the_eight_backbone_runs(tmp_path):
    work = copy_workflow(tmp_path / "f4")
    r = snakemake(["-n", "--cores", "1", "figure4", "--config", "profile=tiny"], work,
                  timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout + r.stderr
    evaluated = set(re.findall(r"wildcards: method=([\w-]+), task=(\w+)\n", out))
    ugp = {(m, t) for m, t in evaluated if m.startswith("ugpnet-")}
    assert ugp == {(f"ugpnet-{b}", t) for b in BACKBONES for t in ("deblur", "sr")}
    assert {(m, t) for m, t in evaluated if not m.startswith("ugpnet")} == \
        {(b, t) for b in BACKBONES for t in ("deblur", "sr")}
    assert "table1" not in re.findall(r"^rule (\w+):", out, re.M)


# ----------------------------------------------------------------------------- evaluate_per
def _dry_run_jobs(work, per, target="results/table1.csv"):
    (work / f"{per}.yaml").write_text(f"overrides: {{evaluate_per: {per}}}\n")
    r = snakemake(["-n", "--cores", "1", target, "--configfile", "params.yaml", f"{per}.yaml",
                   "--config", "profile=tiny"], work, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout + r.stderr


def test_evaluate_per_task_is_one_job_per_task_and_cells_outside_keep_theirs(tmp_path):
    work = copy_workflow(tmp_path / "ev")
    out = _dry_run_jobs(work, "task")
    rules = re.findall(r"^rule (\w+):", out, re.M)
    assert sorted(r for r in rules if r.startswith("evaluate")) == \
        ["evaluate_deblur", "evaluate_denoise", "evaluate_sr"]
    per_cell = _dry_run_jobs(work, "cell")
    plan = Plan.of(resolve(load_params_file(work / "params.yaml"), "tiny"))
    assert re.findall(r"^rule (\w+):", per_cell, re.M).count("evaluate") == \
        len(list(plan.table_cells()))
    # the figure4 target's cells outside Table 1 are scored by the per-cell rule
    out = _dry_run_jobs(work, "task", "figure4")
    jobs = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    wildcards: method=([\w-]+), task=(\w+)\n",
                      out, re.M)
    assert ("evaluate", "ugpnet-unet", "sr") in jobs


def test_evaluate_several_methods_refuses_one_out_file(capsys):
    from ugpnet.cli import main

    rc = main(["--profile", "tiny", "evaluate", "--method", "input,nafnet", "--task", "denoise",
               "--out", "m.json"])
    assert rc == 2
    assert "--out names one file" in capsys.readouterr().err
