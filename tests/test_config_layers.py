"""Issue 24: each configuration layer is validated on its own, and a key the user set that a
later layer overrides is a warning (see ugpnet.config: validate_layers, override_warnings)."""
import copy
import json
import shutil
import subprocess

import pytest
import yaml

from ugpnet.config import load_params_file, resolve, resolve_files
from ugpnet.errors import ConfigError


@pytest.fixture(scope="module")
def raw(repo_root):
    return load_params_file(repo_root / "params.yaml")


def _with(raw, path, value):
    """A copy of ``raw`` with the dotted ``path`` set to ``value``."""
    out = copy.deepcopy(raw)
    node = out
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return out


@pytest.fixture
def params(repo_root, tmp_path):
    """params.yaml alone (no dvc.yaml beside it): warnings do not depend on uncommitted edits of
    the checkout's params.yaml (the DVC rule, tested on its own below)."""
    return shutil.copy(repo_root / "params.yaml", tmp_path / "params.yaml")


def _write(folder, name, data):
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


# ------------------------------------------------------------------------- validation per layer
@pytest.mark.parametrize("profile", ["tiny", "smoke"])
def test_a_bad_default_is_an_error_even_where_the_profile_replaces_it(raw, profile):
    bad = _with(raw, "defaults.methods.nafnet.train.total_iters", "lots")
    with pytest.raises(ConfigError, match=r"defaults\.methods\.nafnet\.train\.total_iters: 'lots' "
                                          r"is not of type 'integer' \[in params\.yaml\]"):
        resolve(bad, profile)


def test_every_profile_is_validated_not_only_the_active_one(raw):
    bad = _with(raw, "profiles.paper.data.resolutoin", 64)
    with pytest.raises(ConfigError, match=r"profiles\.paper\.data\.resolutoin: Additional "
                                          r"properties .*\[in params\.yaml\]"):
        resolve(bad, "tiny")
    bad = _with(raw, "profiles.church.degradations.sr.scale", 3)
    with pytest.raises(ConfigError, match=r"profiles\.church\.degradations\.sr\.scale: 3 is "
                                          r"not one of"):
        resolve(bad, "tiny")


def test_a_profiles_method_entry_is_checked_against_the_kind_it_resolves_to(raw):
    # profile entries carry no 'kind': it comes from the merged configuration (defaults)
    bad = _with(raw, "profiles.church.methods", {"ugpnet": {"stages": {"fusion": {"train":
                                                                                  {"lr": -1}}}}})
    with pytest.raises(ConfigError, match=r"profiles\.church\.methods\.ugpnet\.stages\.fusion\."
                                          r"train\.lr: -1 is less than or equal"):
        resolve(bad, "tiny")
    bad = _with(raw, "profiles.paper.methods", {"nafnet": {"train": {"lrr": 1}}})
    with pytest.raises(ConfigError, match=r"profiles\.paper\.methods\.nafnet\.train\.lrr: "
                                          r"Additional properties"):
        resolve(bad, "smoke")


def test_a_layer_is_partial_no_key_is_required(raw):
    # a profile sets a few keys of train/checkpoint/loss: fine in a layer (the resolved
    # configuration still needs them, and gets them from defaults)
    part = {"methods": {"nafnet": {"loss": {}, "train": {"batch_size": 2}}},
            "priors": {"stylegan2": {"pretrain": {"lr": 0.01}}}}
    cfg = resolve(_with(raw, "profiles.tiny", part), "tiny")
    assert cfg["methods"]["nafnet"]["train"]["batch_size"] == 2
    assert cfg["methods"]["nafnet"]["loss"] == {"psnr": 1.0}
    # ... while a key the resolved configuration lacks is still an error
    missing = copy.deepcopy(raw)
    del missing["defaults"]["methods"]["nafnet"]["train"]["lr"]
    with pytest.raises(ConfigError, match=r"methods\.nafnet\.train: 'lr' is a required property"):
        resolve(missing, "paper")


def test_an_override_files_sections_and_each_set_item_are_layers(repo_root, tmp_path):
    params = repo_root / "params.yaml"
    # my.yaml's defaults are replaced by params.yaml's tiny profile, and still checked
    mine = _write(tmp_path, "my.yaml", {"defaults": {"data": {"resolution": "big"}}})
    with pytest.raises(ConfigError, match=rf"defaults\.data\.resolution: 'big' .*\[in {mine}\]"):
        resolve_files([params, mine], "tiny")
    mine = _write(tmp_path, "p.yaml", {"profiles": {"paper": {"device": "gpu"}}})
    with pytest.raises(ConfigError, match=rf"profiles\.paper\.device: 'gpu' .*\[in {mine}\]"):
        resolve_files([params, mine], "tiny")
    # a --set item replaced by a later one is checked and named
    with pytest.raises(ConfigError, match=r"data\.resolution: 'big' .*\[in --set "
                                          r"data\.resolution=big\]"):
        resolve_files([params], "tiny", ["data.resolution=big", "data.resolution=32"])
    # snakemake --config items: a layer too
    with pytest.raises(ConfigError, match=r"overrides\.data\.seed: -1 .*\[in snakemake --config\]"):
        resolve_files([params], "tiny", extra={"overrides": {"data": {"seed": -1}}},
                      extra_source="snakemake --config")


# ------------------------------------------------------------------------ override warnings
@pytest.mark.parametrize("profile", ["smoke", "tiny", "paper", "church"])
def test_the_repository_params_resolve_without_warnings(raw, profile):
    found = []
    resolve(raw, profile, warnings=found)
    assert found == []


def test_a_user_layer_replaced_by_a_later_one_is_a_warning(raw, params, tmp_path):
    found = []
    ours = _with(raw, "overrides.methods.nafnet.train.lr", 2e-4)
    cfg = resolve(ours, "smoke", ["methods.nafnet.train.lr=5e-4"], warnings=found)
    assert cfg["methods"]["nafnet"]["train"]["lr"] == 5e-4
    assert found == ["overrides.methods.nafnet.train.lr = 0.0002 (params.yaml) is overridden by "
                     "--set methods.nafnet.train.lr=5e-4; the later value is used"]
    # an override file's defaults are replaced by params.yaml's profile
    mine = _write(tmp_path, "my.yaml", "defaults:\n  methods:\n    nafnet:\n      train:\n"
                                       "        lr: 2e-4\n        batch_size: 4\n")
    found = []
    resolve_files([params, mine], "smoke", warnings=found)
    # (smoke's lr is its every_train rule's: the warning names the rule's key)
    assert found == [f"defaults.methods.nafnet.train.lr = 0.0002 ({mine}) is overridden by "
                     f"profiles.smoke.every_train.lr = 0.001 ({params}); the later "
                     f"value is used"]
    # (batch_size 4 is what the profile sets too: nothing is lost, no warning)
    found = []  # under paper nothing replaces it
    resolve_files([params, mine], "paper", warnings=found)
    assert found == []


def test_a_value_replaced_at_a_prefix_is_a_warning(raw):
    found = []
    resolve(raw, "tiny", ["methods.ugpnet.restoration_skip.sr=none",
                          "methods.ugpnet.restoration_skip=input"], warnings=found)
    assert found == ["--set methods.ugpnet.restoration_skip.sr=none is overridden by --set "
                     "methods.ugpnet.restoration_skip=input; the later value is used"]


def test_warnings_are_printed_once_and_never_errors(raw, capsys):
    resolve(raw, "tiny", ["data.seed=1", "data.seed=2"])  # the workflow's call: no list given
    err = capsys.readouterr().err
    assert err.count("ugpnet: warning: --set data.seed=1 is overridden by --set data.seed=2") == 1
    assert len(err.strip().splitlines()) == 1


def test_ugpnet_check_lists_the_warnings(params, capsys):
    from ugpnet.cli import main

    params = str(params)
    assert main(["check", "--params", params, "--profile", "tiny", "--set", "data.seed=1",
                 "--set", "data.seed=2"]) == 0
    out, err = capsys.readouterr()
    warning = "--set data.seed=1 is overridden by --set data.seed=2; the later value is used"
    assert json.loads(out)["warnings"] == [warning]
    assert err.strip() == f"ugpnet: warning: {warning}"
    assert main(["check", "--params", params, "--profile", "tiny"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["warnings"] == [] and err == ""


# ------------------------------------------------------------- DVC: `dvc exp run -S defaults.X`
def _git(folder, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder,
                   check=True, capture_output=True)


@pytest.fixture
def dvc_repo(repo_root, tmp_path):
    """A git repository with the project's params.yaml and dvc.yaml committed."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(repo_root / name, tmp_path / name)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "params.yaml", "dvc.yaml")
    _git(tmp_path, "commit", "-q", "-m", "params")
    return tmp_path


def test_a_dvc_tracked_default_shadowed_by_the_profile_is_a_warning(dvc_repo):
    params = dvc_repo / "params.yaml"
    found = []
    resolve_files([params], "smoke", warnings=found)
    assert found == []  # committed: profiles replacing defaults is the design
    # what `dvc exp run -S defaults.methods.nafnet.train.lr=5e-4` does to params.yaml
    edited = _with(load_params_file(params), "defaults.methods.nafnet.train.lr", 5e-4)
    edited = _with(edited, "defaults.data.seed", 3)  # not shadowed by smoke: takes effect
    _write(dvc_repo, "params.yaml", edited)
    resolve_files([params], "smoke", warnings=found)
    assert found == [f"defaults.methods.nafnet.train.lr = 0.0005 ({params}; tracked by dvc.yaml "
                     f"and changed since the last commit, so a DVC experiment records a value "
                     f"that is not used) is overridden by profiles.smoke.every_train.lr "
                     f"= 0.001 ({params}); the later value is used"]
    found = []
    paper = resolve_files([params], "paper", warnings=found)
    assert paper["methods"]["nafnet"]["train"]["lr"] == 5e-4
    assert found == []
    # a key dvc.yaml does not track is not an experiment parameter: no warning
    _write(dvc_repo, "dvc.yaml", {"stages": {"t": {"cmd": "true", "params": ["defaults.data"]}}})
    resolve_files([params], "smoke", warnings=found)
    assert found == []


@pytest.mark.long
def test_the_workflow_prints_the_warning_once(tmp_path):
    """The Snakefile resolves the configuration through ugpnet.config: the warning reaches
    Snakemake's stderr, once, and the dry run goes on."""
    from workspace import REPO, copy_workflow, env_with, snakemake

    work = copy_workflow(tmp_path / "wf")
    _write(work, "my.yaml", "defaults:\n  methods:\n    nafnet:\n      train:\n        lr: 2e-4\n")
    r = snakemake(["-n", "-q", "--cores", "1", "--configfile", "my.yaml", "--config",
                   "profile=tiny"], work, env=env_with(REPO), timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("ugpnet: warning: defaults.methods.nafnet.train.lr = 0.0002 (my.yaml) "
                          "is overridden by profiles.tiny.methods.nafnet.train.lr = 0.001 "
                          "(params.yaml)") == 1, r.stderr
