"""Issue 18, one entry, one place: a section's ``every_train`` scales every method's train blocks.

The smoke and tiny profiles say their loop lengths once (``every_train``), so a baseline added
with only a ``methods.<name>`` entry runs at the profile's scale, not at paper length; a method
entry in the profile, or an override file's own method values, still win (ugpnet/config.py).
"""
import copy
import shutil

import pytest
import yaml

from ugpnet.config import (RULE, load_params_file, resolve, resolve_files, train_blocks,
                           write_resolved)
from ugpnet.errors import ConfigError

PAPER_TRAIN = {"total_iters": 20000, "batch_size": 8, "lr": 1.0e-4, "betas": [0.9, 0.9],
               "weight_decay": 0.0, "lr_schedule": "cosine", "lr_steps": [], "lr_gamma": 0.1,
               "crop_size": None, "hflip": True, "val_every": 1000, "ckpt_every": 1000,
               "log_every": 50, "val_max_images": 100, "num_workers": 4}


def nafnet_b(**extra) -> dict:
    """A second NAFNet baseline, its entry alone (paper-length train, as in defaults)."""
    return {"kind": "regression", "backbone": "nafnet", "tasks": ["denoise"],
            "loss": {"psnr": 1.0}, "train": dict(PAPER_TRAIN), **extra}


@pytest.fixture(scope="module")
def raw(repo_root):
    return load_params_file(repo_root / "params.yaml")


@pytest.fixture
def params(repo_root, tmp_path):
    """params.yaml alone (no dvc.yaml beside it: warnings do not depend on uncommitted edits)."""
    return shutil.copy(repo_root / "params.yaml", tmp_path / "params.yaml")


def _write(folder, name, data):
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_profiles_say_their_loop_once(raw):
    for profile in ("smoke", "tiny"):
        rule = raw["profiles"][profile][RULE]
        assert {"total_iters", "batch_size", "val_every", "ckpt_every"} <= set(rule)
        cfg = resolve(raw, profile, warnings=[])
        assert RULE not in cfg  # consumed while resolving
        # nafnet has no train entry of its own in smoke: the rule is all it gets
        if profile == "smoke":
            assert "nafnet" not in raw["profiles"]["smoke"]["methods"]
            assert {k: cfg["methods"]["nafnet"]["train"][k] for k in rule} == rule


def test_train_blocks_come_from_the_kind_schemas(raw):
    cfg = resolve(raw, "paper", warnings=[])
    found = sorted(train_blocks(cfg))
    assert set(found) >= {
        ("methods", "nafnet", "train"), ("methods", "rrdbnet", "train"),
        *[("methods", "ugpnet", "stages", s, "train")
          for s in ("restoration", "synthesis", "fusion")]}

    # independently: every mapping named "train" holding total_iters anywhere under methods,
    # or holding one such mapping per task (a kind whose recipe differs by task: Uformer-B)
    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "train" and isinstance(v, dict) and "total_iters" in v:
                    yield path + (k,)
                elif k == "train" and isinstance(v, dict) and v and \
                        set(v) <= {"denoise", "deblur", "sr"}:
                    yield from (path + (k, t) for t, b in v.items() if "total_iters" in b)
                else:
                    yield from walk(v, path + (k,))

    assert found == sorted(walk(cfg["methods"], ("methods",)))


def test_a_method_added_in_an_override_files_defaults_runs_at_the_profiles_scale(params, tmp_path):
    mine = _write(tmp_path, "b.yaml", {"defaults": {"methods": {"nafnet_b": nafnet_b()}}})
    smoke = resolve_files([params, mine], "smoke", warnings=[])
    rule = load_params_file(params)["profiles"]["smoke"][RULE]
    train = smoke["methods"]["nafnet_b"]["train"]
    assert train == {**PAPER_TRAIN, **rule}
    assert train["total_iters"] == 300 and train["total_iters"] != PAPER_TRAIN["total_iters"]
    # the same entry as nafnet's default, so the same scaled block as nafnet's under smoke
    assert train == smoke["methods"]["nafnet"]["train"]
    tiny = resolve_files([params, mine], "tiny", warnings=[])["methods"]["nafnet_b"]["train"]
    assert (tiny["total_iters"], tiny["batch_size"], tiny["val_every"], tiny["log_every"]) == \
        (4, 2, 2, 1)
    paper = resolve_files([params, mine], "paper", warnings=[])
    assert paper["methods"]["nafnet_b"]["train"] == PAPER_TRAIN  # paper has no rule


def test_a_method_entry_in_the_profile_wins_over_the_rule(raw, params, tmp_path):
    cfg = resolve(raw, "smoke", warnings=[])
    rule = raw["profiles"]["smoke"][RULE]
    assert cfg["methods"]["rrdbnet"]["train"]["total_iters"] == 600 != rule["total_iters"]
    assert cfg["methods"]["ugpnet"]["stages"]["synthesis"]["train"]["total_iters"] == 20
    # the rule reached the keys the entries leave out
    own = raw["profiles"]["smoke"]["methods"]
    for block in train_blocks(cfg):
        train, entry = cfg, {"methods": own}
        for key in block:
            train, entry = train[key], (entry or {}).get(key)
        for key in ("batch_size", "num_workers", "lr"):  # unless the profile's entry says
            if key not in (entry or {}):
                assert train[key] == rule[key], (block, key)
    # an override file's profile entry for a new method beats the profile's rule too
    mine = _write(tmp_path, "b.yaml", {
        "defaults": {"methods": {"nafnet_b": nafnet_b()}},
        "profiles": {"smoke": {"methods": {"nafnet_b": {"train": {"total_iters": 50}}}}}})
    cfg = resolve_files([params, mine], "smoke", warnings=[])
    assert cfg["methods"]["nafnet_b"]["train"]["total_iters"] == 50
    assert cfg["methods"]["nafnet_b"]["train"]["val_every"] == rule["val_every"]


def test_an_override_files_own_method_values_win(params, tmp_path):
    mine = _write(tmp_path, "b.yaml", {
        "defaults": {"methods": {"nafnet_b": nafnet_b()}},
        "overrides": {"methods": {"nafnet_b": {"train": {"total_iters": 7, "val_every": 7}},
                                  "nafnet": {"train": {"batch_size": 3}}}}})
    cfg = resolve_files([params, mine], "smoke", warnings=[])
    assert cfg["methods"]["nafnet_b"]["train"]["total_iters"] == 7
    assert cfg["methods"]["nafnet_b"]["train"]["val_every"] == 7
    assert cfg["methods"]["nafnet_b"]["train"]["ckpt_every"] == 100  # the rule's
    assert cfg["methods"]["nafnet"]["train"]["batch_size"] == 3
    # a method first defined in overrides is the user's final word: no profile rule reaches it
    mine = _write(tmp_path, "c.yaml", {"overrides": {"methods": {"nafnet_b": nafnet_b()}}})
    cfg = resolve_files([params, mine], "smoke", warnings=[])
    assert cfg["methods"]["nafnet_b"]["train"] == PAPER_TRAIN


def test_a_rule_in_overrides_or_set_replaces_every_method_but_its_own_sections_entries(raw):
    cfg = resolve(raw, "smoke", [f"{RULE}.total_iters=5",
                                 "methods.ugpnet.stages.fusion.train.total_iters=9"], warnings=[])
    for block in train_blocks(cfg):
        train = cfg
        for key in block:
            train = train[key]
        # rrdbnet's profile entry is replaced too; the --set names ugpnet's fusion alone (the
        # Figure 4 entries ugpnet-<backbone> are their own), and the Table 3 variants of ugpnet
        # (variant_of) inherit it with the rest of ugpnet's entry
        ugpnet = block[1] == "ugpnet" or cfg["methods"][block[1]].get("variant_of") == "ugpnet"
        expected = 9 if ugpnet and block[2:] == ("stages", "fusion", "train") else 5
        assert train["total_iters"] == expected, block
    # within one section the method entry wins whatever the order of the --set items
    cfg = resolve(raw, "smoke", ["methods.nafnet.train.lr=0.5", f"{RULE}.lr=0.25"], warnings=[])
    assert cfg["methods"]["nafnet"]["train"]["lr"] == 0.5
    assert cfg["methods"]["rrdbnet"]["train"]["lr"] == 0.25
    ours = copy.deepcopy(raw)
    ours["overrides"] = {RULE: {"num_workers": 2}}
    cfg = resolve(ours, "tiny", warnings=[])
    assert {cfg["methods"]["nafnet"]["train"]["num_workers"],
            cfg["methods"]["ugpnet"]["stages"]["fusion"]["train"]["num_workers"]} == {2}


def test_a_rule_in_defaults_fills_what_the_method_leaves_out(raw):
    ours = copy.deepcopy(raw)
    ours["defaults"][RULE] = {"val_max_images": 7, "log_every": 3}
    cfg = resolve(ours, "paper", warnings=[])
    assert cfg["methods"]["nafnet"]["train"]["val_max_images"] == 100  # the entry's own value
    assert cfg["methods"]["nafnet"]["train"]["log_every"] == 50
    del ours["defaults"]["methods"]["nafnet"]["train"]["val_max_images"]
    cfg = resolve(ours, "paper", warnings=[])
    assert cfg["methods"]["nafnet"]["train"]["val_max_images"] == 7


def test_a_rule_is_validated_as_a_layer(raw):
    bad = copy.deepcopy(raw)
    bad["profiles"]["paper"][RULE] = {"total_iters": "lots"}  # not even the active profile
    with pytest.raises(ConfigError, match=rf"profiles\.paper\.{RULE}\.total_iters: 'lots' is not "
                                          rf"of type 'integer' \[in params\.yaml\]"):
        resolve(bad, "tiny")
    bad["profiles"]["paper"][RULE] = {"lrr": 1}
    with pytest.raises(ConfigError, match=rf"profiles\.paper\.{RULE}\.lrr: Additional properties"):
        resolve(bad, "tiny")
    with pytest.raises(ConfigError, match=rf"{RULE}\.val_every: 0 is less than the minimum"):
        resolve(raw, "tiny", [f"{RULE}.val_every=0"])


def test_a_user_value_the_rule_replaces_is_a_warning_and_the_rule_is_named(params, tmp_path):
    mine = _write(tmp_path, "b.yaml", {"defaults": {"methods": {"nafnet_b": nafnet_b()}}})
    found = []
    resolve_files([params, mine], "smoke", warnings=found)
    assert (f"defaults.methods.nafnet_b.train.total_iters = 20000 ({mine}) is overridden by "
            f"profiles.smoke.{RULE}.total_iters = 300 ({params}); the later value is used") in found
    # total_iters, batch_size, lr, val_every, ckpt_every, log_every, num_workers
    assert len(found) == len(set(found)) == 7
    # a user's rule replaced by a later rule: one warning, not one per train block
    mine = _write(tmp_path, "c.yaml", {"overrides": {RULE: {"num_workers": 2}}})
    found = []
    resolve_files([params, mine], "smoke", [f"{RULE}.num_workers=3"], warnings=found)
    assert found == [f"overrides.{RULE}.num_workers = 2 ({mine}) is overridden by "
                     f"--set {RULE}.num_workers=3; the later value is used"]
    # a user's rule replaced for one method by a later entry of that method
    found = []
    resolve_files([params, mine], "smoke", ["methods.nafnet.train.num_workers=1"], warnings=found)
    assert found == [f"overrides.{RULE}.num_workers = 2 ({mine}) is overridden by "
                     f"--set methods.nafnet.train.num_workers=1; the later value is used"]


# a kind of another shape: its train blocks under `phases.<any name>.train`, and a `data.train`
# mapping that is not a train block (the schema says which is which, not the key's name)
PROBE_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["kind", "tasks", "phases"],
    "properties": {
        "kind": True, "tasks": True,
        "data": {"type": "object", "properties": {"train": {"type": "object"}}},
        "phases": {"type": "object", "additionalProperties": {
            "type": "object", "additionalProperties": False,
            "properties": {"train": {"$ref": "#/$defs/train"}}}}}}


def test_any_kinds_train_blocks_are_found_from_its_schema(params, tmp_path, monkeypatch):
    import types

    import ugpnet.methods as methods

    real = methods.get_kind
    monkeypatch.setattr(methods, "get_kind", lambda name: types.SimpleNamespace(
        schema=PROBE_SCHEMA) if name == "probe" else real(name))
    train = {"total_iters": 1000, "batch_size": 8, "lr": 1.0e-3, "val_every": 500,
             "ckpt_every": 500}
    mine = _write(tmp_path, "probe.yaml", {"defaults": {"methods": {"probe": {
        "kind": "probe", "tasks": ["deblur"], "data": {"train": {"total_iters": 1}},
        "phases": {"warm": {"train": dict(train)}, "main": {"train": dict(train)}}}}}})
    cfg = resolve_files([params, mine], "tiny", warnings=[])
    assert {b for b in train_blocks(cfg) if b[1] == "probe"} == {
        ("methods", "probe", "phases", "warm", "train"),
        ("methods", "probe", "phases", "main", "train")}
    for phase in ("warm", "main"):
        got = cfg["methods"]["probe"]["phases"][phase]["train"]
        assert (got["total_iters"], got["batch_size"], got["log_every"]) == (4, 2, 1), phase
    assert cfg["methods"]["probe"]["data"] == {"train": {"total_iters": 1}}  # not a train block


def test_a_resolved_file_resolves_to_itself(raw, tmp_path):
    """write_resolved's one-profile file holds no rule: reading it back changes nothing."""
    for profile in ("smoke", "tiny"):
        cfg = resolve(raw, profile, [f"{RULE}.log_every=7"], warnings=[])
        again = load_params_file(write_resolved(cfg, tmp_path))
        assert resolve(again, profile, warnings=[]) == cfg
