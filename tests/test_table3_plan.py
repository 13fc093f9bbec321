"""Table 3 (ablations): each variant trains only the stages it changes; every other stage is its
parent's (same identity, same file, never trained twice) -- on the plan, the DAG and the CLI."""
import re
from pathlib import Path

import pytest

from ugpnet.config import load_params_file, resolve
from ugpnet.errors import ConfigError
from ugpnet.plan import Plan
from workspace import copy_workflow, snakemake

STAGES = ("restoration", "synthesis", "fusion")
# what each Table 3 row changes, hence trains itself (the rest: its parent's)
TRAINS = {
    "ugpnet-no-semg": STAGES,                      # R changes: every stage after it too
    "ugpnet-image-fusion": ("fusion",),
    "ugpnet": STAGES,
    "ugpnet-hinet-no-semg": STAGES,
    "ugpnet-hinet-image-fusion": ("fusion",),
    "ugpnet-hinet": STAGES,
    "ugpnet-map2style-per-latent": ("synthesis", "fusion"),  # E changes: not R
    "ugpnet-no-contextual": ("fusion",),
    "ugpnet-fusion-init": ("fusion",),
}
PARENT = {"ugpnet-hinet-no-semg": "ugpnet-hinet", "ugpnet-hinet-image-fusion": "ugpnet-hinet"}


@pytest.fixture(scope="module")
def raw(repo_root):
    return load_params_file(repo_root / "params.yaml")


@pytest.mark.parametrize("profile", ["smoke", "tiny"])
def test_rows_reuse_the_full_ugpnet_stages_they_do_not_change(raw, profile):
    plan = Plan.of(resolve(raw, profile))
    cells = plan.table3_cells()
    assert [m for m, _ in cells] == list(TRAINS) and {t for _, t in cells} == {"deblur"}
    for method, task in cells:
        assert tuple(plan.owned_stages(method, task)) == TRAINS[method], method
        parent = PARENT.get(method, "ugpnet" if method.startswith("ugpnet-") and
                            not method.startswith("ugpnet-hinet") else method)
        for st in STAGES:
            model = plan.stage_model(method, task, st)
            owner = method if st in TRAINS[method] else parent
            assert model == plan.stage_model(owner, task, st), (method, st)
            assert f"/{owner}/deblur/{st}/model.pt" in model.replace("\\", "/")
    # the variant's own fusion reads the parent's restoration and synthesis files
    inputs = plan.stage_inputs("ugpnet-no-contextual", "deblur", "fusion")
    assert inputs["restoration"] == plan.stage_model("ugpnet", "deblur", "restoration")
    assert inputs["synthesis"] == plan.stage_model("ugpnet", "deblur", "synthesis")


def test_a_change_to_a_shared_stage_makes_it_the_variant_own(raw):
    cfg = resolve({**raw, "overrides": {"methods": {"ugpnet-no-contextual": {"stages": {
        "synthesis": {"train": {"total_iters": 7}}}}}}}, "tiny")
    plan = Plan.of(cfg)
    assert plan.owned_stages("ugpnet-no-contextual", "deblur") == ["synthesis", "fusion"]
    # and the parent's change reaches a variant that shares the stage: still one file
    cfg = resolve({**raw, "overrides": {"methods": {"ugpnet": {"stages": {
        "restoration": {"train": {"total_iters": 7}}}}}}}, "tiny")
    plan = Plan.of(cfg)
    assert plan.owned_stages("ugpnet-no-contextual", "deblur") == ["fusion"]
    assert plan.stage_config("ugpnet-no-contextual", "deblur", "restoration") == \
        plan.stage_config("ugpnet", "deblur", "restoration")


def test_a_variant_stage_trains_as_its_owner(raw, tmp_path):
    """`ugpnet train --method <variant> --stage synthesis` trains (or finds finished) the
    parent's stage: the context the trainer gets is the parent's (label, folder, identity)."""
    cfg = resolve(raw, "tiny")
    p = Plan.of(cfg)
    plan = Plan(cfg, str(tmp_path / p.data), str(tmp_path / p.runs), str(tmp_path / p.results),
                p.logs)
    for f in plan.stage_inputs("ugpnet", "deblur", "synthesis").values():
        Path(f).parent.mkdir(parents=True, exist_ok=True)
        Path(f).write_bytes(b"stand-in")  # the context checks the inputs exist and hashes them
    ours = plan.context("ugpnet-image-fusion", "deblur", "synthesis")
    theirs = plan.context("ugpnet", "deblur", "synthesis")
    assert ours.method == "ugpnet" and ours.label == theirs.label
    assert ours.out == theirs.out and ours.identity == theirs.identity
    # its own stage (fusion) stays its own
    assert plan.label("ugpnet-image-fusion", "deblur", "fusion")["method"] == "ugpnet-image-fusion"


@pytest.mark.parametrize("variant_of,message", [
    ("no-such-method", "'no-such-method' is not defined"),
    ("nafnet", "is of kind 'regression', not 'ugpnet'"),
    ("ugpnet-image-fusion", "a cycle"),
])
def test_bad_variant_of_is_refused(raw, variant_of, message):
    over = {"methods": {"ugpnet": {"variant_of": variant_of}}}
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve({**raw, "overrides": over}, "tiny")


def test_table3_needs_its_rows_defined_and_on_its_task(raw):
    with pytest.raises(ConfigError, match="table3.rows: 'nope' is not defined"):
        resolve({**raw, "overrides": {"table3": {"rows": {"nope": {"group": "g", "row": "r"}}}}},
                "tiny")
    with pytest.raises(ConfigError, match="does not run table3.task 'sr'"):
        resolve({**raw, "overrides": {"table3": {"task": "sr"}}}, "tiny")


def test_the_dag_trains_each_shared_stage_once(repo_root, tmp_path):
    """snakemake -n table3 (tiny): one train job per stage that some row owns, none for a
    variant's shared stage."""
    work = copy_workflow(tmp_path / "w", repo_root)
    r = snakemake(["-n", "--cores", "1", "--config", "profile=tiny", "-p", "table3"], cwd=work,
                  timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    trained = set(re.findall(r"ugpnet train --method (\S+) --task (\S+) --stage (\S+)",
                             r.stdout + r.stderr))
    want = {(m, "deblur", st) for m, stages in TRAINS.items() for st in stages}
    assert {t for t in trained if t[0] in TRAINS} == want
