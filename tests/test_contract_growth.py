"""What the contract grew for the baselines (issue 18): named priors, shared stages, and a stage
identity that covers what ``train_stage`` reads (the configuration views)."""
import copy
import subprocess
import sys

import pytest

from ugpnet.config import resolve_files
from ugpnet.errors import ConfigError, UndeclaredConfigRead
from ugpnet.methods import (Data, MethodKind, Previous, Prior, Stage, UserFile, new_run,
                            register_kind)
from ugpnet.methods.identity import RecordingView, RestrictedView, to_plain
from ugpnet.plan import Plan
from ugpnet.provenance import digest_of


@pytest.fixture(scope="module")
def tiny():
    return resolve_files(["params.yaml"], profile="tiny")


def with_(cfg, **changes):
    out = copy.deepcopy(cfg)
    for dotted, value in changes.items():
        *head, last = dotted.split("__")
        node = out
        for k in head:
            node = node.setdefault(k, {})
        node[last] = value
    return out


# ----------------------------------------------------------------------------- the views
def test_recording_view_records_leaves_and_subtrees_read_whole():
    cfg = {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "f": 4}
    paths = set()
    v = RecordingView(cfg, paths)
    out = to_plain({"b": v["a"]["b"], "c": v["a"]["c"], "g": v.get("g")})
    assert out == {"b": 1, "c": {"d": 2, "e": 3}, "g": None}
    # f never read; c read whole (an absent key under it too: a default the code falls back to)
    assert paths == {("a", "b"), ("a", "c"), ("a", "c", "d"), ("a", "c", "e"), ("g",)}
    view = RestrictedView(cfg, paths, who="s")
    assert view["a"]["c"].get("absent", 7) == 7
    with pytest.raises(UndeclaredConfigRead):
        view.get("f")


def test_restricted_view_refuses_undeclared_reads_even_through_get():
    cfg = {"a": {"b": 1, "x": 9}, "f": {"num_workers": 3, "y": 2}}
    v = RestrictedView(cfg, {("a", "b")}, who="stage 's'", free={"num_workers"})
    assert v["a"]["b"] == 1 and v["f"]["num_workers"] == 3  # declared / operational
    assert "x" in v["a"] and sorted(v["a"]) == ["b", "x"]   # listing keys is free
    with pytest.raises(UndeclaredConfigRead, match="a.x"):
        v["a"]["x"]
    with pytest.raises(UndeclaredConfigRead, match="f.y"):
        v["f"].get("y", 0)  # not a KeyError: .get cannot hide it
    with pytest.raises(UndeclaredConfigRead):
        dict(v["f"])


def test_train_stage_sees_only_its_identity_slice(tiny):
    plan = Plan.of(tiny)
    _, read = plan.stage_slice("ugpnet", "denoise", "synthesis")
    assert ("priors", "stylegan2", "size") in read
    assert ("priors", "stylegan2", "pretrain", "total_iters") not in read
    view = RestrictedView(tiny, read, who="synthesis")
    assert view["methods"]["ugpnet"]["stages"]["synthesis"]["g_lr"] > 0
    with pytest.raises(UndeclaredConfigRead, match="methods.ugpnet.fusion"):
        view["methods"]["ugpnet"]["fusion"]["num_blocks"]  # fusion's, not synthesis's
    with pytest.raises(UndeclaredConfigRead, match="priors.stylegan2.checkpoint"):
        view["priors"]["stylegan2"]["checkpoint"]  # the prior's file is the input


@register_kind("leaky_toy")
class LeakyKind(MethodKind):
    """A kind whose train_stage reads a key its stage_config forgot."""

    def stages(self, mcfg, task):
        return (Stage("only", reads=(Data(),)),)

    def stage_config(self, cfg, method, task, stage):
        return {"width": cfg["methods"][method]["width"], "data": cfg["data"],
                "degradations": cfg["degradations"][task]}

    def train_stage(self, ctx):
        return {"lr": ctx.mcfg["train"]["lr"]}  # train is not in the slice


def test_a_key_missing_from_stage_config_fails_loudly(tiny, tmp_path):
    from workspace import make_tiny_data

    cfg = with_(tiny, methods__leaky={"kind": "leaky_toy", "tasks": ["denoise"], "width": 4,
                                      "train": {"lr": 0.1}})
    plan = Plan(cfg, str(tmp_path / "data"), str(tmp_path / "runs"), str(tmp_path / "res"),
                str(tmp_path / "logs"))
    make_tiny_data(plan, tasks=("denoise",))
    ctx = plan.context("leaky", "denoise", "only", progress=False)
    with pytest.raises(UndeclaredConfigRead, match="methods.leaky.train.lr"):
        plan.kind("leaky").train_stage(ctx)


def test_validation_settings_enter_the_identity_only_when_not_the_defaults(tiny):
    base = Plan.of(tiny).stage_config("nafnet", "denoise", "train")
    assert "validation" not in base  # existing runs keep their identity
    changed = Plan.of(with_(tiny, validation__lpips_net="vgg")).stage_config(
        "nafnet", "denoise", "train")
    assert changed["validation"]["lpips_net"] == "vgg"


# ----------------------------------------------------------------------------- named priors
def second_prior(cfg, **arch):
    p = copy.deepcopy(cfg["priors"]["stylegan2"])
    p.update(arch)
    return with_(cfg, priors__toy_prior=p)


def test_prior_files_are_named_by_their_settings_and_shared(tiny):
    same = Plan.of(second_prior(tiny))
    assert same.pretrained_prior("toy_prior") == same.pretrained_prior("stylegan2")
    other = Plan.of(second_prior(tiny, style_dim=16))
    assert other.pretrained_prior("toy_prior") != other.pretrained_prior("stylegan2")
    assert other.prior_by_id(other.prior_id("toy_prior")) == "toy_prior"
    # the pretraining identity of a prior is what it was under the one global stylegan2 block
    sg = tiny["priors"]["stylegan2"]
    assert other.prior_settings("stylegan2") == {k: v for k, v in sg.items()
                                                 if k != "checkpoint"} | {
        "pretrain": {k: v for k, v in sg["pretrain"].items()
                     if k not in ("log_every", "ckpt_every")}}


def test_unknown_prior_and_missing_checkpoint_name_the_key(tiny):
    plan = Plan.of(with_(tiny, methods__ugpnet__prior="ffhq_nope"))
    with pytest.raises(ConfigError, match="no prior named 'ffhq_nope'.*stylegan2"):
        plan.stage_inputs("ugpnet", "denoise", "synthesis")
    paper = Plan.of(resolve_files(["params.yaml"], profile="paper"))
    with pytest.raises(ConfigError, match=r"priors\.stylegan2\.checkpoint is null"):
        paper.prior("stylegan2")


def test_a_stage_reads_a_prior_by_name(tiny):
    plan = Plan.of(second_prior(tiny, style_dim=16))
    inputs = plan.stage_inputs("ugpnet", "denoise", "synthesis")
    assert inputs["prior"] == plan.pretrained_prior("stylegan2")
    moved = Plan.of(with_(second_prior(tiny, style_dim=16), methods__ugpnet__prior="toy_prior"))
    assert moved.stage_inputs("ugpnet", "denoise", "synthesis")["prior"] == \
        moved.pretrained_prior("toy_prior")
    assert moved.stage_config("ugpnet", "denoise", "synthesis")["stylegan2"]["style_dim"] == 16


def test_prior_needs_a_name_and_distinct_input_names():
    with pytest.raises(TypeError):
        Prior()  # noqa - the name is required
    with pytest.raises(ValueError, match="two inputs named"):
        Stage("s", reads=(Prior("a"), Prior("b")))
    Stage("s", reads=(Prior("a"), Prior("b", name="prior_b")))


# ----------------------------------------------------------------------------- shared stages
@register_kind("shared_toy")
class SharedToyKind(MethodKind):
    family = "generative"

    def stages(self, mcfg, task):
        return (Stage("codebook", reads=(Data(),), shared=True),
                Stage("restore", reads=(Data(), Previous("codebook"))))


@register_kind("bad_shared_toy")
class BadSharedToyKind(MethodKind):
    def stages(self, mcfg, task):
        return (Stage("first", reads=(Data(),)),
                Stage("codebook", reads=(Data(), Previous("first")), shared=True))


def test_a_shared_stage_has_one_folder_and_reads_clean_ground_truth(tiny):
    cfg = with_(tiny, methods__vq={"kind": "shared_toy", "tasks": ["denoise", "deblur", "sr"]})
    plan = Plan.of(cfg)
    dirs = {plan.stage_dir("vq", t, "codebook") for t in ("denoise", "deblur", "sr")}
    assert dirs == {plan.stage_dir("vq", "shared", "codebook")} and "/vq/shared/" in dirs.pop()
    assert plan.stage_inputs("vq", "deblur", "codebook") == {"gt": plan.gt_manifest()}
    for t in ("denoise", "deblur", "sr"):
        assert plan.stage_inputs("vq", t, "restore")["codebook"] == \
            plan.stage_model("vq", "shared", "codebook")
    assert plan.label("vq", "sr", "codebook")["task"] == "shared"
    assert "degradations" not in plan.stage_config("vq", "denoise", "codebook")
    assert plan.stage_config("vq", "denoise", "codebook") == \
        plan.stage_config("vq", "sr", "codebook")


def test_a_shared_stage_cannot_read_per_task_work(tiny):
    with pytest.raises(ValueError, match="per-task files"):
        Stage("s", reads=(Data(), UserFile("pretrained")), shared=True)
    cfg = with_(tiny, methods__bad={"kind": "bad_shared_toy", "tasks": ["denoise"]})
    with pytest.raises(ConfigError, match="reads only shared stages"):
        Plan.of(cfg).stage_inputs("bad", "denoise", "codebook")


def test_a_shared_stage_trains_once_in_the_dag(tmp_path, repo_root):
    """``snakemake -n`` for the three tasks lists one job for the shared stage."""
    from workspace import copy_workflow, env_with, snakemake

    work = copy_workflow(tmp_path / "w")
    plugin = tmp_path / "plugins"
    plugin.mkdir()
    (plugin / "shared_toy_plugin.py").write_text(
        "from ugpnet.methods import Data, MethodKind, Previous, Stage, register_kind\n"
        "@register_kind('shared_toy_dag')\n"
        "class K(MethodKind):\n"
        "    family = 'generative'\n"
        "    schema = {'type': 'object'}\n"
        "    def stages(self, mcfg, task):\n"
        "        return (Stage('codebook', reads=(Data(),), shared=True),\n"
        "                Stage('restore', reads=(Data(), Previous('codebook'))))\n")
    (work / "vq.yaml").write_text(
        "plugins: [shared_toy_plugin]\noverrides:\n  methods:\n"
        "    vq: {kind: shared_toy_dag, tasks: [denoise, deblur, sr], sr_input: bicubic_up}\n"
        "  table1: {methods: [vq], tasks: [denoise, deblur, sr]}\n")
    r = snakemake(["-n", "--cores", "1", "results/table1.csv", "--configfile", "params.yaml",
                   "vq.yaml", "--config", "profile=tiny"], work, env=env_with(plugin),
                  timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert out.count("runs/tiny/default/vq/shared/codebook/model.pt") >= 1
    jobs = [line for line in out.splitlines() if line.strip().startswith("output:")]
    codebook = [j for j in jobs if "/vq/shared/codebook/model.pt" in j]
    restore = [j for j in jobs if "/restore/model.pt" in j]
    assert len(codebook) == 1 and len(restore) == 3, jobs


def test_the_old_stylegan2_block_says_where_it_moved():
    from ugpnet.config import load_config

    with pytest.raises(ConfigError, match=r"stylegan2 \[in --set stylegan2\.checkpoint=/w\.pkl\]"
                                          r".*priors: \{stylegan2"):
        load_config(profile="tiny", sets=["stylegan2.checkpoint=/w.pkl"])


def test_train_task_shared_needs_a_shared_stage(capsys):
    from ugpnet.cli import main

    rc = main(["--profile", "tiny", "train", "--method", "nafnet", "--task", "shared"])
    assert rc == 2 and "has no shared stage" in capsys.readouterr().err


# ----------------------------------------------------------------------------- user files, deviations
@register_kind("external_toy")
class ExternalToyKind(MethodKind):
    """A kind whose shared stage reads one user file for every task (e.g. an identity network)
    and that departs from its authors' recipe when the file is not given."""

    family = "generative"

    def stages(self, mcfg, task):
        face = UserFile("arcface", per_task=False, hint="the official arcface_resnet18.pth")
        return (Stage("codebook", reads=(Data(), face), shared=True),
                Stage("restore", reads=(Data(), Previous("codebook"), UserFile("pretrained"))))

    def deviations(self, cfg, method, task):
        return [] if cfg["methods"][method].get("arcface") else ["no identity loss"]


def test_a_user_file_for_every_task_is_one_path_and_may_feed_a_shared_stage(tiny, tmp_path):
    face = tmp_path / "arcface.pth"
    face.write_bytes(b"x")
    entry = {"kind": "external_toy", "tasks": ["denoise", "sr"], "arcface": str(face),
             "pretrained": {"denoise": None, "sr": None}}
    plan = Plan.of(with_(tiny, methods__ext=entry))
    assert plan.stage_inputs("ext", "sr", "codebook")["arcface"] == str(face)
    assert "pretrained" not in plan.stage_inputs("ext", "sr", "restore")  # null: done without


def test_a_user_file_that_does_not_exist_is_refused_naming_key_path_and_hint(tiny, tmp_path):
    entry = {"kind": "external_toy", "tasks": ["denoise"], "arcface": str(tmp_path / "no.pth"),
             "pretrained": {"denoise": str(tmp_path / "gone.pth")}}
    plan = Plan.of(with_(tiny, methods__ext=entry))
    with pytest.raises(ConfigError, match=r"methods\.ext\.arcface = '.*no\.pth': no such file\. "
                                          r"the official arcface_resnet18\.pth"):
        plan.stage_inputs("ext", "denoise", "codebook")
    with pytest.raises(ConfigError, match=r"methods\.ext\.pretrained\.denoise = '.*gone\.pth'"):
        plan.stage_inputs("ext", "denoise", "restore")


def test_deviations_from_the_authors_recipe_are_named_beside_the_row(tiny):
    from ugpnet.tables import options_footnote

    entry = {"kind": "external_toy", "tasks": ["denoise", "sr"], "arcface": None,
             "pretrained": {"denoise": None, "sr": None}}
    cfg = with_(tiny, methods__ext=entry, table1__methods=["input", "ext"])
    plan = Plan.of(cfg)
    assert plan.options_beyond_paper("ext") == ["no identity loss"]
    assert "ext: no identity loss" in options_footnote({"ext": plan.options_beyond_paper("ext")})
    assert plan.options_beyond_paper("input") == []
