from pathlib import Path

import pytest

from ugpnet.config import deep_merge, load_params_file, parse_set_items, resolve, write_resolved
from ugpnet.errors import ConfigError


@pytest.fixture(scope="module")
def raw(repo_root):
    return load_params_file(repo_root / "params.yaml")


@pytest.mark.parametrize("profile", ["smoke", "paper", "tiny"])
def test_every_profile_resolves_and_plans(raw, profile, tmp_path, monkeypatch):
    from ugpnet.plan import Plan

    sets = []
    if profile == "paper":
        # the paper profile needs the user's files: the StyleGAN2 priors (refused without them:
        # test_runs.py), GFP-GAN's ArcFace and landmark boxes, GPEN's ArcFace, and torchvision's
        # VGG19 in the torch hub folder (refused without them: tests/test_baseline_*.py)
        hub = tmp_path / "hub"
        (hub / "checkpoints").mkdir(parents=True)
        (hub / "checkpoints" / "vgg19-dcbb9e9d.pth").write_bytes(b"stand-in")
        monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # torch hub dir: $TORCH_HOME/hub
        files = {k: tmp_path / f"{k}.pth" for k in ("sg2", "sg2_cm1", "arc18", "marks", "irse")}
        for f in files.values():
            f.write_bytes(b"stand-in")
        sets = [f"priors.stylegan2.checkpoint={files['sg2']}",
                f"priors.stylegan2_cm1.checkpoint={files['sg2_cm1']}",
                f"methods.gfpgan.arcface={files['arc18']}",
                f"methods.gfpgan.landmarks={files['marks']}",
                f"methods.gpen.arcface={files['irse']}"]
    cfg = resolve(raw, profile, sets)
    assert cfg["profile"] == profile
    assert cfg["data"]["resolution"] == cfg["priors"][cfg["methods"]["ugpnet"]["prior"]]["size"]
    plan = Plan.of(cfg)
    cells = list(plan.table_cells())
    assert {m for m, _ in cells} == set(plan.table1_methods())
    for method, task in cells + plan.figure4_cells():  # every stage of every cell resolves what it reads
        for stage in plan.stages(method, task):
            inputs = plan.stage_inputs(method, task, stage.name)
            # a shared stage (VQFR's codebook) reads the clean ground truth alone
            per_task = not plan.is_shared(method, stage.name)
            assert inputs["gt"].startswith(plan.data)
            assert ("kernels" in inputs) == (task == "deblur" and per_task)
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


# ------------------------------------------------------------- sources, YAML numbers, bad input
def _override(tmp_path, text, name="my.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_numbers_with_an_exponent_are_numbers():
    from ugpnet.config import load_yaml

    got = load_yaml("a: 2e-4\nb: 1e5\nc: -3E-2\nd: +1.5e3\ne: 1\nf: 1.5\ng: e5\nh: '2e-4'\n")
    assert got == {"a": 2e-4, "b": 1e5, "c": -3e-2, "d": 1.5e3, "e": 1, "f": 1.5, "g": "e5",
                   "h": "2e-4"}
    assert isinstance(got["b"], float) and isinstance(got["e"], int)


def test_an_override_file_reads_2e_minus_4_as_a_number(repo_root, tmp_path):
    from ugpnet.config import resolve_files

    f = _override(tmp_path, "overrides:\n  methods:\n    nafnet:\n      train:\n        lr: 2e-4\n")
    cfg = resolve_files([repo_root / "params.yaml", f], "tiny")
    assert cfg["methods"]["nafnet"]["train"]["lr"] == 2e-4


def test_errors_name_their_source_and_key_path(repo_root, tmp_path):
    from ugpnet.config import resolve_files

    params = repo_root / "params.yaml"
    typo = _override(tmp_path, "overrides:\n  methods:\n    nafnet:\n      train:\n        lrr: 1\n")
    with pytest.raises(ConfigError) as e:
        resolve_files([params, typo], "tiny")
    assert f"methods.nafnet.train.lrr: Additional properties" in str(e.value)
    assert f"[in {typo}]" in str(e.value) and "[in params.yaml" not in str(e.value)
    # the same key from a --set item names the item
    with pytest.raises(ConfigError, match=r"methods\.nafnet\.train\.lr: .*\[in --set "
                                          r"methods\.nafnet\.train\.lr=-1\]"):
        resolve_files([params, _override(tmp_path, "{}", "empty.yaml")], "tiny",
                      ["methods.nafnet.train.lr=-1"])
    # a bad value in params.yaml itself names params.yaml, even with an override file given
    raw = load_params_file(params)
    raw["overrides"] = {"data": {"resolution": "big"}}
    bad_params = tmp_path / "params.yaml"
    bad_params.write_text(__import__("yaml").safe_dump(raw))
    with pytest.raises(ConfigError, match=rf"data\.resolution: .*\[in {bad_params}\]"):
        resolve_files([bad_params, _override(tmp_path, "profile: tiny\n", "o.yaml")])
    # a later file wins and is blamed
    a = _override(tmp_path, "overrides:\n  data:\n    resolution: 7.5\n", "a.yaml")
    b = _override(tmp_path, "overrides:\n  data:\n    resolution: x\n", "b.yaml")
    with pytest.raises(ConfigError, match=rf"data\.resolution: .*\[in {b}\]"):
        resolve_files([params, a, b], "tiny")
    # an unknown top-level key names its file
    with pytest.raises(ConfigError, match=rf"{_override(tmp_path, 'overides: 1', 'u.yaml')}: "
                                          r"unknown top-level keys \['overides'\]"):
        resolve_files([params, tmp_path / "u.yaml"], "tiny")


def test_a_broken_override_file_names_the_file_and_line(repo_root, tmp_path):
    from ugpnet.config import resolve_files

    f = _override(tmp_path, "overrides:\n  methods: [1, 2\n")
    with pytest.raises(ConfigError, match=rf"{f} is not valid YAML \(line 3, column 1"):
        resolve_files([repo_root / "params.yaml", f], "tiny")
    with pytest.raises(ConfigError, match=r"config file '.*nope\.yaml' does not exist"):
        resolve_files([repo_root / "params.yaml", tmp_path / "nope.yaml"], "tiny")


def test_an_unclosed_bracket_in_set_is_a_message():
    with pytest.raises(ConfigError, match=r"--set 'k=\[1,2': the value is not valid YAML"):
        parse_set_items(["k=[1,2"])
    with pytest.raises(ConfigError, match=r"--set 'a\.\.b=1': empty key part"):
        parse_set_items(["a..b=1"])


def _cli(*args, cwd):
    import subprocess
    import sys

    from workspace import REPO, env_with

    return subprocess.run([sys.executable, "-m", "ugpnet.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env_with(REPO), timeout=300)


def test_cli_config_errors_exit_2_without_a_traceback(repo_root, tmp_path, capsys):
    from ugpnet.cli import main

    params = str(repo_root / "params.yaml")
    bad = _override(tmp_path, "overrides:\n  methods: [1, 2\n", "bad.yaml")
    typo = _override(tmp_path, "overrides:\n  data:\n    resolutoin: 64\n", "typo.yaml")
    good = _override(tmp_path, "overrides:\n  methods:\n    nafnet:\n      train:\n"
                               "        lr: 2e-4\n", "good.yaml")
    # one real process: exit status 2 and no traceback
    r = _cli("check", "--params", params, "--profile", "tiny", "--set", "k=[1,2", cwd=tmp_path)
    assert r.returncode == 2 and "--set 'k=[1,2'" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    for args, expect in [(["--configfile", str(bad)], f"{bad} is not valid YAML (line 3"),
                         (["--configfile", str(typo)], f"data.resolutoin: Additional properties "
                                                       f"are not allowed ('resolutoin' was "
                                                       f"unexpected) [in {typo}]")]:
        assert main(["check", "--params", params, "--profile", "tiny", *args]) == 2
        assert expect in capsys.readouterr().err
    assert main(["check", "--params", params, "--profile", "tiny", "--configfile", str(good),
                 "--print-config"]) == 0
    out = capsys.readouterr().out
    assert __import__("json").loads(out)["methods"]["nafnet"]["train"]["lr"] == 2e-4


@pytest.mark.long
def test_snakemake_reads_override_files_like_the_cli(tmp_path):
    """Snakemake's own YAML 1.1 reading would make `lr: 2e-4` a string; the workflow re-reads the
    files with ugpnet's loader. A broken override file: Snakemake itself stops with
    'Config file is not valid JSON or YAML' (no file name; `ugpnet check` names it)."""
    from workspace import copy_workflow, env_with, snakemake

    work = copy_workflow(tmp_path / "wf")
    _override(work, "overrides:\n  methods:\n    nafnet:\n      train:\n        lr: 2e-4\n", "ok.yaml")
    _override(work, "overrides:\n  data:\n    resolutoin: 64\n", "typo.yaml")
    _override(work, "overrides:\n  methods: [1, 2\n", "bad.yaml")
    env = env_with(Path(__file__).resolve().parents[1])
    r = snakemake(["-n", "-q", "--cores", "1", "--configfile", "ok.yaml", "--config",
                   "profile=tiny"], work, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    resolved = list((work / "runs" / "tiny" / "default" / "configs").glob("*.yaml"))
    assert len(resolved) == 1
    cfg = load_params_file(resolved[0])
    assert cfg["defaults"]["methods"]["nafnet"]["train"]["lr"] == 2e-4
    r = snakemake(["-n", "--cores", "1", "--configfile", "typo.yaml"], work, env=env, timeout=300)
    assert r.returncode == 2
    assert f"data.resolutoin: Additional properties" in r.stderr and "[in typo.yaml]" in r.stderr
    assert "Traceback" not in r.stderr and 'File "' not in r.stderr, r.stderr
    r = snakemake(["-n", "--cores", "1", "--configfile", "bad.yaml"], work, env=env, timeout=300)
    assert r.returncode != 0 and "not valid JSON or YAML" in r.stdout + r.stderr  # Snakemake's
