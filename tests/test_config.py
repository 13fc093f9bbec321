import pytest

from ugpnet.config import deep_merge, load_params_file, parse_set_items, resolve, write_resolved
from ugpnet.errors import ConfigError


@pytest.fixture(scope="module")
def raw(repo_root):
    return load_params_file(repo_root / "params.yaml")


@pytest.mark.parametrize("profile", ["smoke", "paper", "tiny"])
def test_every_profile_resolves_and_plans(raw, profile):
    from ugpnet.plan import Plan

    # the paper profile needs the user's StyleGAN2 (refused without one: test_runs.py)
    sets = ["stylegan2.checkpoint=/weights/stylegan2-ffhq-512x512.pkl"] if profile == "paper" else []
    cfg = resolve(raw, profile, sets)
    assert cfg["profile"] == profile
    assert cfg["data"]["resolution"] == cfg["stylegan2"]["size"]
    plan = Plan.of(cfg)
    cells = list(plan.table_cells())
    assert {m for m, _ in cells} == set(cfg["table1"]["methods"])
    for method, task in cells:  # every stage of every cell resolves what it reads
        for stage in plan.stages(method, task):
            inputs = plan.stage_inputs(method, task, stage.name)
            assert inputs["gt"].startswith(plan.data) and ("kernels" in inputs) == (task == "deblur")
        final = plan.final_model(method, task)
        if plan.stages(method, task):  # a trained method ends in a model under runs/
            assert final.startswith(plan.runs)
        else:  # the 'input' reference row trains nothing and has no model
            assert final is None and cfg["methods"][method]["kind"] == "input"


def test_paper_profile_holds_the_paper_protocol(raw):
    cfg = resolve(raw, "paper")
    assert cfg["data"]["resolution"] == 512
    assert cfg["degradations"]["denoise"] == {"sigma": 0.3, "k": 30}
    assert cfg["degradations"]["deblur"]["n_kernels"] == 1000
    assert cfg["degradations"]["deblur"]["kernel_size"] == 71
    assert cfg["degradations"]["sr"]["scale"] == 8
    assert cfg["data"]["folder"]["test_count"] == 3000
    assert cfg["backbones"]["nafnet"]["deblur"]["enc_blk_nums"] == [1, 1, 1, 28]
    assert cfg["backbones"]["rrdbnet"]["sr"]["num_block"] == 23


def test_misspelt_key_is_rejected(raw):
    with pytest.raises(ConfigError, match="resolutoin"):
        resolve(raw, "smoke", ["data.resolutoin=64"])
    with pytest.raises(ConfigError, match="lr"):
        resolve(raw, "smoke", ["methods.nafnet.train.lr=-1"])


def test_unknown_profile_and_top_level_key(raw):
    with pytest.raises(ConfigError, match="unknown profile"):
        resolve(raw, "nope")
    with pytest.raises(ConfigError, match="top-level"):
        resolve({**raw, "profiel": "x"}, "smoke")


def test_set_items_parse_yaml_values():
    assert parse_set_items(["a.b=3", "a.c=[1, 2]", "d=true"]) == {"a": {"b": 3, "c": [1, 2]},
                                                                 "d": True}
    assert parse_set_items(["lr=2e-4", "name=nafnet"]) == {"lr": 2e-4, "name": "nafnet"}
    with pytest.raises(ConfigError):
        parse_set_items(["novalue"])


def test_deep_merge_does_not_mutate():
    a = {"x": {"y": 1, "z": 2}}
    b = deep_merge(a, {"x": {"y": 5}})
    assert b == {"x": {"y": 5, "z": 2}} and a == {"x": {"y": 1, "z": 2}}


def test_resolved_file_round_trips(raw, tmp_path):
    cfg = resolve(raw, "smoke", ["methods.nafnet.train.lr=0.5"])
    path = write_resolved(cfg, tmp_path / "r.yaml")
    again = resolve(load_params_file(path), "smoke")
    assert again == cfg


def test_plugins_must_import(raw):
    with pytest.raises(ConfigError, match="plugin"):
        resolve({**raw, "plugins": ["no_such_module_xyz"]}, "smoke")


def test_train_val_test_use_three_kernel_banks_and_data_folders_follow_content(raw):
    from ugpnet.plan import Plan

    plan = Plan.of(resolve(raw, "smoke"))
    banks = {s: plan.degrade_bank("deblur", s) for s in ("val", "test")}
    train = plan.stage_inputs("nafnet", "deblur", "train")["kernels"]
    assert len({train, banks["val"], banks["test"]}) == 3
    assert len({plan.kernel_seed(b) for b in ("train", "val", "test")}) == 3
    assert plan.degrade_seed("val") != plan.degrade_seed("test")
    assert plan.degrade_bank("denoise", "val") is None
    other = Plan.of(resolve(raw, "smoke", ["degradations.denoise.sigma=0.2"]))
    assert other.lq_dir("denoise", "test") != plan.lq_dir("denoise", "test")  # never overwritten
    assert other.lq_dir("deblur", "test") == plan.lq_dir("deblur", "test")    # still shared
    assert other.gt_root() == plan.gt_root()
    exp = Plan.of(resolve(raw, "smoke", experiment="abl"))
    assert exp.runs == "runs/smoke/abl" and exp.results == "results/smoke/abl"
    assert exp.data == plan.data
