"""Each training stage reduces its loss on tiny data; runs resume; selection uses the val split."""
import json

import numpy as np
import pytest
import torch

from ugpnet.config import load_config
from ugpnet.data import layout
from ugpnet.data.prepare import prepare_bundled
from ugpnet.degradations import degrade_folder, write_kernel_bank
from ugpnet.methods import kind_of

ITERS = 40


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    prepare_bundled(data / "gt", resolution=32, counts={"train": 8, "val": 2, "test": 2}, seed=0,
                    progress=False)
    for bank, seed in (("train", 0), ("test", 1)):
        write_kernel_bank(layout.kernel_bank(data, bank), n=8, size=7, seed=seed)
    for task in ("denoise", "deblur", "sr"):
        degrade_folder(task, 3, layout.gt_dir(data, "val"), layout.lq_dir(data, task, "val"),
                       sigma=0.3, k=30, kernel_bank=layout.kernel_bank(data, "test"), scale=8,
                       progress=False)
    return data


def _cfg(stage_sets):
    sets = [f"{k}={v}" for k, v in stage_sets.items()]
    return load_config(profile="tiny", sets=sets)


def _losses(run_dir, key):
    return [r[key] for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())]


def _train_common(prefix):
    return {f"{prefix}.total_iters": ITERS, f"{prefix}.log_every": 1, f"{prefix}.val_every": ITERS,
            f"{prefix}.ckpt_every": ITERS, f"{prefix}.lr": 2e-3}


def _decreased(values, key):
    values = np.asarray(values)
    first, last = values[:8].mean(), values[-8:].mean()
    assert last < first, f"{key} did not decrease: first {first:.4f}, last {last:.4f}"


def test_regression_stage_reduces_loss_and_selects_on_val(tiny_data, tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(_train_common("methods.nafnet.train"))
    out = tmp_path / "nafnet" / "deblur" / "train"
    summary = kind_of(cfg, "nafnet").train(cfg, "nafnet", "deblur", "train", tiny_data, out, "cpu",
                                          progress=False)
    _decreased(_losses(out, "loss"), "PSNR loss")
    assert summary["select_metric"] == "psnr" and summary["val"]["psnr"] > 0
    assert (out / "model.pt").exists() and (out / "options.json").exists()


def test_ugpnet_stages_reduce_their_losses(tiny_data, tmp_path):
    torch.manual_seed(0)
    sets = {}
    for stage in ("restoration", "synthesis", "fusion"):
        sets.update(_train_common(f"methods.ugpnet.stages.{stage}.train"))
    sets["methods.ugpnet.stages.fusion.train.lr_steps"] = "[]"
    cfg = _cfg(sets)
    runs = tmp_path / "runs"
    from ugpnet.training.prior import pretrain_prior

    pretrain_prior(cfg["stylegan2"], tiny_data, runs / "prior", "cpu", progress=False)
    kind = kind_of(cfg, "ugpnet")
    for stage, key in (("restoration", "psnr"), ("synthesis", "l1"), ("fusion", "l1")):
        out = runs / "ugpnet" / "denoise" / stage
        kind.train(cfg, "ugpnet", "denoise", stage, tiny_data, out, "cpu", progress=False,
                   runs=runs)
        _decreased(_losses(out, key), f"{stage} {key}")
    val = json.loads((runs / "ugpnet/denoise/fusion/val.jsonl").read_text().splitlines()[-1])
    assert {"psnr", "x_reg/psnr", "x_syn/psnr"} <= set(val)
    # the fusion stage exports the whole UGPNet: restore with it
    from ugpnet.methods import load_for_inference

    model = load_for_inference(cfg, "ugpnet", "denoise", runs / "ugpnet" / "denoise", "cpu")
    with torch.no_grad():
        out = model.forward_all(torch.rand(1, 3, 32, 32))
    assert set(out) == {"x_hat", "x_reg", "x_syn"} and out["x_hat"].shape == (1, 3, 32, 32)


def test_interrupted_run_resumes_from_last_checkpoint(tiny_data, tmp_path, monkeypatch):
    from ugpnet.training import regression

    sets = _train_common("methods.nafnet.train")
    sets.update({"methods.nafnet.train.total_iters": 6, "methods.nafnet.train.ckpt_every": 2,
                 "methods.nafnet.train.val_every": 2})
    cfg = _cfg(sets)
    out = tmp_path / "run"
    calls = {"n": 0}
    original = regression.SupervisedStage.step

    def flaky(self, batch, it):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("killed")
        return original(self, batch, it)

    monkeypatch.setattr(regression.SupervisedStage, "step", flaky)
    with pytest.raises(KeyboardInterrupt):
        kind_of(cfg, "nafnet").train(cfg, "nafnet", "denoise", "train", tiny_data, out, "cpu",
                                    progress=False)
    assert not (out / "model.pt").exists()  # nothing that looks finished
    assert torch.load(out / "last.pt", weights_only=True)["iter"] == 4
    monkeypatch.setattr(regression.SupervisedStage, "step", original)
    calls["n"] = 0
    kind_of(cfg, "nafnet").train(cfg, "nafnet", "denoise", "train", tiny_data, out, "cpu",
                                progress=False)
    iters = [json.loads(l)["iter"] for l in (out / "log.jsonl").read_text().splitlines()]
    assert iters == [1, 2, 3, 4, 5, 6]  # resumed at 4: no repeated or lost iterations
    assert (out / "model.pt").exists()
