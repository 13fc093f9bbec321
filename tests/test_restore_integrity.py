"""Issue 24: restores that never mix and provenance that never lies (docs/RELIABILITY.md).

- A failed or interrupted rerun of ``ugpnet restore`` never leaves a folder mixing two runs:
  outputs are staged and swapped in whole; ``ugpnet evaluate`` refuses a folder that is not
  exactly what its restore manifest records, and notes loudly a folder without one.
- ``--out`` may not be, contain or lie inside the input or the ground-truth folder.
- A checkpoint for a method that trains nothing, a missing checkpoint, a negative ``--threads``
  and an earlier stage's model are clear errors.

The models are tiny UGPNets with random weights (two seeds = two "checkpoints").
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ugpnet.checkpoints import save_checkpoint
from ugpnet.cli import build_parser, main
from ugpnet.config import load_config
from ugpnet.io import write_png
from ugpnet.models.build import build_ugpnet

TINY = ["--profile", "tiny"]
SIZE = 32
LABEL = {"method": "ugpnet", "task": "denoise", "kind": "ugpnet", "profile": "tiny",
         "experiment": "default"}


def _model(root: Path, seed: int, stage: str = "fusion") -> Path:
    """A run folder ``root/ugpnet/denoise`` whose ``stage`` model.pt has random weights."""
    torch.manual_seed(seed)
    model = build_ugpnet(load_config(profile="tiny"), "ugpnet", "denoise")
    run = root / "ugpnet" / "denoise"
    save_checkpoint(run / stage / "model.pt", {"weights": model.state_dict(), "summary": {},
                                               "label": {**LABEL, "stage": stage}})
    return run


def _images(folder: Path, names=("a", "b", "c"), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for n in names:
        write_png(folder / f"{n}.png", rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    return folder


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) → its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _restore(ckpt, inp, out, *extra, method="ugpnet") -> int:
    args = ["--checkpoint", str(ckpt)] if ckpt is not None else []
    return main([*TINY, "restore", "--method", method, "--task", "denoise", *args, "--in",
                 str(inp), "--out", str(out), "--no-progress", *extra])


def _evaluate(pred, gt, out) -> int:
    return main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--metrics", "psnr",
                 "--no-progress", "--out", str(out)])


@pytest.fixture
def two_runs(tmp_path):
    return _model(tmp_path / "A", seed=0), _model(tmp_path / "B", seed=1)


@pytest.fixture
def folders(tmp_path):
    inp = _images(tmp_path / "in")
    gt = _images(tmp_path / "gt", seed=5)
    return inp, gt, tmp_path / "out"


# ------------------------------------------------------------------ fault 1: mixed folders
@pytest.mark.parametrize("bad", ["corrupt", "wrong_size"])
def test_a_failed_rerun_leaves_the_finished_restore_as_it_was(two_runs, folders, capsys, bad):
    """Restore with A, rerun into the same folder with B and one bad input (sorted last, so the
    old code had restored the others with B): the folder is A's, byte for byte, and scores."""
    (a, b), (inp, gt, out) = two_runs, folders
    assert _restore(a, inp, out, "--intermediate") == 0
    before = _tree(out)
    if bad == "corrupt":
        (inp / "zz.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    else:  # readable, but not the model's size: fails in the middle of the run
        write_png(inp / "zz.png", np.zeros((48, 48, 3), np.uint8))
    capsys.readouterr()
    assert _restore(b, inp, out, "--intermediate") == 2
    assert "zz.png" in capsys.readouterr().err
    assert _tree(out) == before  # no image of B, no staging folder left
    (inp / "zz.png").unlink()
    for pred in (out, out / "x_reg", out / "x_syn"):
        assert _evaluate(pred, gt, out.parent / "m.json") == 0
        assert "WARNING" not in capsys.readouterr().err


def test_interrupted_rerun_under_snakemake_leaves_a_folder_evaluate_refuses(two_runs, folders,
                                                                           capsys, monkeypatch):
    """Snakemake deletes manifest.json before the job: a rerun that dies leaves the earlier
    images without manifest, and neither evaluate mode scores them."""
    from ugpnet.methods.ugpnet import UGPNetKind

    (a, b), (inp, gt, out) = two_runs, folders
    assert _restore(a, inp, out, "--intermediate") == 0
    images = {k: v for k, v in _tree(out).items() if k.endswith(".png")}
    (out / "manifest.json").unlink()  # as Snakemake does
    calls = []
    real = UGPNetKind.predict

    def dies_on_second(self, model, x):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # a killed or interrupted run
        return real(self, model, x)

    monkeypatch.setattr(UGPNetKind, "predict", dies_on_second)
    assert _restore(b, inp, out, "--intermediate") == 130
    assert {k: v for k, v in _tree(out).items() if k.endswith(".png")} == images
    assert not (out / "manifest.json").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".ugpnet-restore-staging-")]
    capsys.readouterr()
    for pred in (out, out / "x_reg"):
        assert _evaluate(pred, gt, out.parent / "m.json") == 2
        err = capsys.readouterr().err
        assert "unfinished ugpnet restore" in err and str(pred) in err and "Rerun" in err
    assert not (out.parent / "m.json").exists()
    # the next run completes and leaves a folder that scores
    monkeypatch.setattr(UGPNetKind, "predict", real)
    assert _restore(b, inp, out, "--intermediate") == 0
    assert _evaluate(out, gt, out.parent / "m.json") == 0


def test_a_rerun_replaces_the_folder_whole_and_removes_leftovers(two_runs, folders, tmp_path):
    (a, b), (inp, gt, out) = two_runs, folders
    assert _restore(a, inp, out, "--intermediate") == 0
    # what SIGKILL leaves: a staging folder, a temp file of an atomic write
    (out / ".ugpnet-restore-staging-x1y2" / "x_reg").mkdir(parents=True)
    (out / ".ugpnet-restore-staging-x1y2" / "x_reg" / "a.png").write_bytes(b"")
    (out / ".a.png.abc123.png").write_bytes(b"")
    (inp / "c.png").unlink()
    assert _restore(b, inp, out) == 0  # fewer images, no intermediate outputs
    fresh = tmp_path / "fresh"
    assert _restore(b, inp, fresh) == 0
    got, want = _tree(out), _tree(fresh)
    assert sorted(got) == sorted(want) == [".ugpnet-restore", "a.png", "b.png", "manifest.json"]
    assert all(got[k] == want[k] for k in ("a.png", "b.png"))  # B's images only, c.png gone
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tool"] == "ugpnet restore" and manifest["outputs"] == ["x_hat"]
    assert sorted(manifest["sha256"]) == ["a.png", "b.png"]


def test_a_folder_of_other_images_is_refused_not_overwritten(two_runs, folders, capsys):
    (a, _), (inp, gt, out) = two_runs, folders
    mine = _images(out, names=("holiday",), seed=9)
    before = _tree(mine)
    assert _restore(a, inp, out) == 2
    err = capsys.readouterr().err
    assert "holiday.png" in err and "not written by ugpnet restore" in err
    assert _tree(out) == before


def test_evaluate_refuses_a_restored_folder_that_differs_from_its_manifest(two_runs, folders,
                                                                          capsys):
    (a, _), (inp, gt, out) = two_runs, folders
    assert _restore(a, inp, out, "--intermediate") == 0
    result = out.parent / "m.json"
    capsys.readouterr()
    # an image changed after the restore, in the result and in an intermediate output
    for pred in (out, out / "x_syn"):
        keep = (pred / "b.png").read_bytes()
        write_png(pred / "b.png", np.zeros((SIZE, SIZE, 3), np.uint8))
        assert _evaluate(pred, gt, result) == 2
        err = capsys.readouterr().err
        assert "b.png" in err and "differ from their recorded sha256" in err
        assert str(out / "manifest.json") in err and "Rerun ugpnet restore" in err
        (pred / "b.png").write_bytes(keep)
    # an image of another run added (with its ground truth, so the folders still pair)
    write_png(out / "d.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    write_png(gt / "d.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    assert _evaluate(out, gt, result) == 2
    assert "not in the manifest: d.png" in capsys.readouterr().err
    assert not result.exists()


def test_evaluate_notes_loudly_a_folder_without_restore_manifest(folders, capsys):
    inp, gt, _ = folders
    mine = _images(inp.parent / "mine", seed=3)  # a user's own folder
    result = inp.parent / "m.json"
    assert _evaluate(mine, gt, result) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "no restore manifest" in err and str(mine) in err
    notes = json.loads(result.read_text())["protocol"]["notes"]
    assert any("no restore manifest" in n for n in notes)


# ------------------------------------------------------------------ fault 2: --out over inputs
def _degraded_input(tmp_path) -> Path:
    """A degraded folder with its manifest, as the workflow makes them."""
    from ugpnet.degradations import degrade_folder

    degrade_folder("denoise", 0, _images(tmp_path / "clean"), tmp_path / "lq", sigma=0.1,
                   k=30.0, progress=False)
    return tmp_path / "lq"


@pytest.mark.parametrize("where", ["in", "in/sub", "parent_of_in", "link_to_in", "gt_split",
                                   "gt_parent"])
def test_restore_refuses_an_output_folder_over_the_input_or_ground_truth(tmp_path, capsys,
                                                                         where):
    from ugpnet.plan import Plan

    inp = _degraded_input(tmp_path)
    data = tmp_path / "data"
    gt_root = Path(Plan.of(load_config(profile="tiny", sets=[f"paths.data={data}"])).gt_root())
    gt = _images(gt_root / "test")
    (tmp_path / "link").symlink_to(inp)
    out = {"in": inp, "in/sub": inp / "sub", "parent_of_in": tmp_path,
           "link_to_in": tmp_path / "link", "gt_split": gt_root / "test",
           "gt_parent": data}[where]
    before = _tree(tmp_path)
    rc = main([*TINY, "--set", f"paths.data={data}", "restore", "--method", "input", "--task",
               "denoise", "--in", str(inp), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"--out '{out}'" in err and "Choose an output folder outside it" in err
    assert ("the ground-truth folder" if where.startswith("gt") else "the input folder") in err
    assert _tree(tmp_path) == before and not (inp / "sub").exists()
    assert gt.is_dir()


# ------------------------------------------------------------------ fault 3: smaller ones
def test_a_method_that_trains_nothing_refuses_a_checkpoint(folders, capsys):
    inp, _, out = folders
    assert _restore(Path("/nonexistent"), inp, out, method="input") == 2
    err = capsys.readouterr().err
    assert "'input' trains nothing and takes no --checkpoint" in err and "/nonexistent" in err
    assert not out.exists()
    assert _restore(None, inp, out, method="input") == 0  # without it, it restores


def test_a_missing_checkpoint_is_named(folders, capsys):
    inp, _, out = folders
    missing = inp.parent / "runs" / "nafnet" / "model.pt"
    rc = main([*TINY, "restore", "--method", "nafnet", "--task", "denoise", "--checkpoint",
               str(missing), "--in", str(inp), "--out", str(out), "--no-progress"])
    assert rc == 2
    assert f"--checkpoint '{missing}' does not exist" in capsys.readouterr().err


COMMANDS = {
    "restore": ["restore", "--method", "m", "--task", "denoise", "--in", "i", "--out", "o"],
    "train": ["train", "--method", "m", "--task", "denoise"],
    "pretrain-prior": ["pretrain-prior"],
    "evaluate": ["evaluate", "--pred", "p", "--gt", "g", "--out", "o.json"],
    "bench": ["bench", "--out", "o.json"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_threads_is_checked_alike_by_every_command(command, capsys):
    parser = build_parser()
    assert parser.parse_args([*COMMANDS[command], "--threads", "0"]).threads == 0  # torch's
    assert parser.parse_args(COMMANDS[command]).threads == 0
    assert parser.parse_args([*COMMANDS[command], "--threads", "3"]).threads == 3
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        parser.parse_args([*COMMANDS[command], "--threads", "-3"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--threads: must be 0 (torch's default) or a positive number" in err and "-3" in err


def test_an_earlier_stage_model_names_the_final_one(tmp_path, folders, capsys):
    inp, _, out = folders
    run = _model(tmp_path / "runs", seed=0, stage="restoration")
    model = run / "restoration" / "model.pt"
    assert _restore(model, inp, out) == 2
    err = capsys.readouterr().err
    assert f"'{model}' is the 'restoration' stage's model" in err
    assert f"restore with the final stage's model ({run / 'fusion' / 'model.pt'}) or the run " \
           f"folder {run}" in err
    assert "missing" not in err and not out.exists()
