"""`ugpnet restore` on a user's folder: same names, PNG, manifest; clear error for a wrong size."""
import json

import numpy as np
import pytest
import torch

from ugpnet.checkpoints import save_checkpoint
from ugpnet.cli import main
from ugpnet.config import load_config
from ugpnet.io import write_png
from ugpnet.models.build import build_ugpnet


@pytest.fixture()
def ugpnet_run(tmp_path):
    torch.manual_seed(0)
    cfg = load_config(profile="tiny")
    model = build_ugpnet(cfg, "ugpnet", "denoise")
    run = tmp_path / "runs" / "ugpnet" / "denoise"
    save_checkpoint(run / "fusion" / "model.pt", {"weights": model.state_dict(), "summary": {}})
    return run


def test_restore_writes_same_names_and_intermediates(ugpnet_run, tmp_path):
    inp = tmp_path / "in"
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.jpg"):
        write_png(inp / name, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    (inp / "a.jpg").rename(inp / "a.png")
    out = tmp_path / "out"
    rc = main(["--profile", "tiny", "restore", "--method", "ugpnet", "--task", "denoise",
               "--checkpoint", str(ugpnet_run), "--in", str(inp), "--out", str(out),
               "--intermediate", "--no-progress"])
    assert rc == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png"]
    assert sorted(p.name for p in (out / "x_syn").glob("*.png")) == ["a.png", "b.png"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 2
    # the images are the checkpoint's model (eval mode) applied to each input, 8-bit rounded
    from ugpnet.io import read_image, to_tensor

    model = build_ugpnet(load_config(profile="tiny"), "ugpnet", "denoise")
    model.load_state_dict(torch.load(ugpnet_run / "fusion" / "model.pt",
                                     weights_only=True)["weights"])
    model.eval()
    for name in ("a.png", "b.png"):
        with torch.no_grad():
            want = model.forward_all(to_tensor(read_image(inp / name)))
        for key, path in (("x_hat", out / name), ("x_reg", out / "x_reg" / name),
                          ("x_syn", out / "x_syn" / name)):
            ref = (want[key][0].clamp(0, 1) * 255).permute(1, 2, 0).numpy()
            got = read_image(path).astype(np.float64)
            assert np.abs(got - ref).max() <= 0.5 + 1e-3, (name, key)  # rounding only


def test_restore_wrong_size_is_a_clear_error(ugpnet_run, tmp_path, capsys):
    inp = tmp_path / "in"
    write_png(inp / "big.png", np.zeros((48, 48, 3), np.uint8))
    rc = main(["--profile", "tiny", "restore", "--method", "ugpnet", "--task", "denoise",
               "--checkpoint", str(ugpnet_run), "--in", str(inp), "--out", str(tmp_path / "o"),
               "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "big.png" in err and "32 px" in err
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_restore_missing_checkpoint(tmp_path, capsys):
    write_png(tmp_path / "in" / "x.png", np.zeros((32, 32, 3), np.uint8))
    rc = main(["--profile", "tiny", "restore", "--method", "nafnet", "--task", "denoise",
               "--checkpoint", str(tmp_path / "nowhere"), "--in", str(tmp_path / "in"),
               "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_paper_scale_ugpnet_forward_backward_on_cpu():
    torch.manual_seed(0)
    cfg = load_config(profile="paper")
    model = build_ugpnet(cfg, "ugpnet", "deblur")
    x = torch.rand(1, 3, 512, 512)
    out = model.forward_all(x)
    assert out["x_hat"].shape == (1, 3, 512, 512)
    (out["x_hat"].mean() + out["x_syn"].mean()).backward()

    def finite_and_nonzero(t):
        return t is not None and bool(torch.isfinite(t).all()) and t.abs().sum().item() > 0

    # every module on the path x -> R -> E -> G -> fusion receives a usable gradient
    assert finite_and_nonzero(model.fusion.in_conv.weight.grad)
    assert finite_and_nonzero(model.synthesis.encoder.map2style.heads[-1].weight.grad)
    assert finite_and_nonzero(model.synthesis.encoder.f_encoder.blocks[0].convs[0].weight.grad)
    assert finite_and_nonzero(model.restoration.structure_encoder.conv[0].weight.grad)
