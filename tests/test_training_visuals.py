"""What a run shows while it trains (ugpnet/training/visuals.py): loss curves, validation grids
of the documented layout, optional TensorBoard events; none of it in a stage's identity."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ugpnet.config import load_config
from ugpnet.errors import ConfigError
from ugpnet.io import read_image, to_tensor, to_uint8
from ugpnet.methods import kind_of
from ugpnet.plan import Plan
from ugpnet.provenance import digest_of
from ugpnet.training import visuals as V
from ugpnet.training.common import seed_everything
from ugpnet.training.run import finished_model
from workspace import make_tiny_data

TB_ON = {"logging.tensorboard": "true"}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    make_tiny_data(Plan.of(load_config(profile="tiny"), data=str(data)),
                   tasks=("denoise", "sr"))
    return data


def _cfg(sets=None):
    return load_config(profile="tiny", sets=[f"{k}={v}" for k, v in (sets or {}).items()])


def _plan(cfg, data, runs):
    return Plan.of(cfg, data=str(data), runs=str(runs))


def _train(cfg, method, task, stage, data, runs):
    seed_everything(cfg["data"]["seed"])
    ctx = _plan(cfg, data, runs).context(method, task, stage, device="cpu", progress=False)
    return kind_of(cfg, method).train_stage(ctx), ctx.out


def _grid(path):
    img = Image.open(path)
    img.load()
    return (np.asarray(img.convert("RGB")), json.loads(img.text["ugpnet:rows"]),
            json.loads(img.text["ugpnet:columns"]))


def _cell(grid, row, col, h, w):
    y, x = V.cell_origin(row, col, h, w)
    return grid[y:y + h, x:x + w]


def _val_pairs(plan, task):
    """(name, lq, gt) of the val split in sorted id order."""
    lqs = sorted(Path(plan.lq_dir(task, "val")).glob("*.png"))
    return [(p.stem, read_image(p), read_image(Path(plan.gt_dir("val")) / p.name)) for p in lqs]


def test_a_run_draws_its_loss_curves_and_grids_of_the_documented_layout(tiny_data, tmp_path):
    cfg = _cfg()  # tiny: 4 iterations, validation every 2, a log line every iteration
    summary, out = _train(cfg, "nafnet", "denoise", "train", tiny_data, tmp_path)
    curves = Image.open(out / V.LOSS_CURVES)
    assert curves.format == "PNG" and curves.size[0] > 200
    assert sorted(p.name for p in (out / V.GRIDS_DIR).iterdir()) == ["iter_2.png", "iter_4.png"]
    assert not [p for p in out.rglob(".*") if p.name != ".lock"]  # no temporary file left
    pairs = _val_pairs(_plan(cfg, tiny_data, tmp_path), "denoise")[:V.GRID_IMAGES]
    h, w = pairs[0][2].shape[:2]
    grid, rows, columns = _grid(out / V.GRIDS_DIR / f"iter_{summary['selected_iter']}.png")
    assert columns == ["LQ", "output", "GT"] and rows == [n for n, _, _ in pairs]
    assert grid.shape[:2] == V.grid_size(len(pairs), 3, h, w) \
        == (V.LABEL_H + len(pairs) * h + (len(pairs) - 1) * V.PAD, 3 * w + 2 * V.PAD)
    model = kind_of(cfg, "nafnet").load(cfg, "nafnet", "denoise", out / "model.pt", "cpu")
    for r, (_, lq, gt) in enumerate(pairs):
        assert np.array_equal(_cell(grid, r, 0, h, w), lq)
        assert np.array_equal(_cell(grid, r, 2, h, w), gt)
        with torch.no_grad():  # the selected iteration's grid shows the exported model's output
            pred = to_uint8(model(to_tensor(lq)))
        assert np.array_equal(_cell(grid, r, 1, h, w), pred)
    assert grid[:V.LABEL_H].min() < 128  # the labels are drawn


def test_sr_shows_the_small_input_upsampled_by_nearest_neighbour(tiny_data, tmp_path):
    cfg = _cfg({"logging.val_grid_images": 1})
    _, out = _train(cfg, "rrdbnet", "sr", "train", tiny_data, tmp_path)
    grid, rows, columns = _grid(out / V.GRIDS_DIR / "iter_4.png")
    name, lr, gt = _val_pairs(_plan(cfg, tiny_data, tmp_path), "sr")[0]
    h, w = gt.shape[:2]
    f = h // lr.shape[0]
    assert f == cfg["degradations"]["sr"]["scale"] and rows == [name]
    assert columns == ["LQ (x8 nearest)", "output", "GT"]
    assert grid.shape[:2] == V.grid_size(1, 3, h, w)
    assert np.array_equal(_cell(grid, 0, 0, h, w), lr.repeat(f, 0).repeat(f, 1))
    assert np.array_equal(_cell(grid, 0, 2, h, w), gt)


def test_ugpnet_columns_are_what_each_stage_produces(tiny_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ugpnet.training.prior import pretrain_prior

    cfg = _cfg({"methods.ugpnet.init_from.denoise": "null", "logging.val_grid_images": 1})
    plan = _plan(cfg, tiny_data, tmp_path)
    prior = Path(plan.pretrained_prior("stylegan2")).parent
    pretrain_prior(cfg["priors"]["stylegan2"], plan.gt_root(), prior, "cpu", progress=False,
                   logging={"tensorboard": True})
    assert (prior / V.LOSS_CURVES).exists() and not (prior / V.GRIDS_DIR).exists()
    acc = EventAccumulator(str(prior / V.TENSORBOARD_DIR))
    acc.Reload()
    assert {"train/g_loss", "train/d_loss"} <= set(acc.Tags()["scalars"])
    for stage, columns in (("restoration", ["x_reg"]), ("synthesis", ["x_syn"]),
                           ("fusion", ["x_reg", "x_syn", "x_hat"])):
        _, out = _train(cfg, "ugpnet", "denoise", stage, tiny_data, tmp_path)
        assert _grid(out / V.GRIDS_DIR / "iter_2.png")[2] == ["LQ", *columns, "GT"], stage
        assert (out / V.LOSS_CURVES).exists()
    # a dict prediction in another order: x_hat (the final output) last
    rows = V.GridRows(2, "ignored")
    img = torch.rand(1, 3, 8, 8)
    batch = {"lq": torch.rand(1, 3, 2, 2), "gt": img, "name": ["a"]}
    rows(0, batch, {"x_hat": img, "x_reg": img * 0.5, "x_syn": img * 0.25})
    rows(2, batch, {"x_hat": img})  # beyond k: not kept
    grid, labels = V.compose_grid(rows.rows)
    assert labels == ["LQ (x4 nearest)", "x_reg", "x_syn", "x_hat", "GT"]
    assert grid.shape[:2] == V.grid_size(1, 5, 8, 8)
    assert np.array_equal(_cell(grid, 0, 1, 8, 8), to_uint8(img * 0.5))
    assert np.array_equal(_cell(grid, 0, 3, 8, 8), to_uint8(img))


def test_logging_options_are_in_no_identity(tiny_data, tmp_path):
    off = _cfg()
    on = _cfg({**TB_ON, "logging.val_grid_images": 0, "logging.loss_curves": "false"})
    p_off, p_on = _plan(off, tiny_data, tmp_path), _plan(on, tiny_data, tmp_path)
    stages = [(m, t, s.name) for m, t in p_off.table_cells() for s in p_off.stages(m, t)]
    assert len(stages) > 4
    for m, t, s in stages:  # what Snakemake reruns on (rule train's params)
        assert p_on.stage_config(m, t, s) == p_off.stage_config(m, t, s), (m, t, s)
    # a stage finished without TensorBoard is kept when it is switched on (no retraining)
    _, out = _train(off, "nafnet", "denoise", "train", tiny_data, tmp_path)
    ctx = p_on.context("nafnet", "denoise", "train")
    assert ctx.logging["tensorboard"] is True
    assert ctx.identity == p_off.context("nafnet", "denoise", "train").identity
    assert finished_model(out / "model.pt", digest_of(ctx.identity)) is not None


def test_tensorboard_events_and_a_resume_that_purges_the_killed_attempt(
        tiny_data, tmp_path, interrupt_step):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = _cfg({**TB_ON, "methods.nafnet.train.val_every": 1})
    with interrupt_step(4):  # killed in iteration 4: logged and validated 1-3, last.pt at 2
        _train(cfg, "nafnet", "denoise", "train", tiny_data, tmp_path)
    out = tmp_path / "nafnet" / "denoise" / "train"
    assert (out / V.GRIDS_DIR / "iter_3.png").exists() and (out / V.LOSS_CURVES).exists()
    assert not (out / "model.pt").exists()
    # a resume drops what the killed attempt drew after its checkpoint (iter_7: a stand-in
    # that this run would never redraw) and draws those iterations again
    (out / V.GRIDS_DIR / "iter_3.png").write_bytes(b"stale")
    (out / V.GRIDS_DIR / "iter_7.png").write_bytes(b"stale")
    _train(cfg, "nafnet", "denoise", "train", tiny_data, tmp_path)
    assert sorted(p.name for p in (out / V.GRIDS_DIR).iterdir()) == [
        f"iter_{i}.png" for i in range(1, 5)]
    assert _grid(out / V.GRIDS_DIR / "iter_3.png")[2] == ["LQ", "output", "GT"]
    acc = EventAccumulator(str(out / V.TENSORBOARD_DIR), size_guidance={"images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "train/lr", "val/psnr"} <= set(tags["scalars"])
    assert "val/grid" in tags["images"]
    # steps 3 of the killed attempt are purged: each iteration once
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4]
    logged = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx(logged, rel=1e-6)
    assert [e.step for e in acc.Images("val/grid")] == [1, 2, 3, 4]


def test_tensorboard_switched_on_without_the_package_is_one_clear_error(
        tiny_data, tmp_path, monkeypatch):
    for name in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails
    with pytest.raises(ConfigError, match=r"logging\.tensorboard.*pip install tensorboard"):
        _train(_cfg(TB_ON), "nafnet", "denoise", "train", tiny_data, tmp_path)
    run_dir = tmp_path / "nafnet" / "denoise" / "train"
    assert not (run_dir / "options.json").exists()  # stopped before the folder was touched


def test_a_fresh_start_and_a_changed_identity_leave_no_stale_visuals(tiny_data, tmp_path):
    out = tmp_path / "nafnet" / "denoise" / "train"
    (out / V.GRIDS_DIR).mkdir(parents=True)
    (out / V.GRIDS_DIR / "iter_99.png").write_bytes(b"old")  # an attempt killed before last.pt
    (out / V.LOSS_CURVES).write_bytes(b"old")
    (out / f".{V.LOSS_CURVES}.x1y2.png").write_bytes(b"cut")  # a write cut by a kill
    cfg = _cfg({"logging.loss_curves": "false"})
    _train(cfg, "nafnet", "denoise", "train", tiny_data, tmp_path)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(("loss", ".loss"))) == []
    assert not (out / V.GRIDS_DIR / "iter_99.png").exists()
    old_hash = json.loads((out / "options.json").read_text())["identity_hash"]
    # another identity: the visuals move aside with the state they were drawn from
    _train(_cfg({"methods.nafnet.train.lr": 5e-4}), "nafnet", "denoise", "train", tiny_data,
           tmp_path)
    moved = out / f"superseded-{old_hash}"
    assert (moved / V.GRIDS_DIR / "iter_4.png").exists() and (out / V.LOSS_CURVES).exists()
