"""Parameter parity at paper scale (issue figures; paper Table 2: UGPNet 69.6 M, NAFNet 17.1 M)."""
import json

import pytest

from ugpnet.cli import main

M = 1e6


def params_json(capsys, *args):
    assert main(["--profile", "paper", "params", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("backbone,task,expected", [
    ("nafnet", "deblur", 69.56),   # paper Table 2: 69.6 M
    ("nafnet", "denoise", 81.61),
    ("hinet", "deblur", 141.19),
    ("hinet", "denoise", 74.62),
    ("rrdbnet", "sr", 68.96),
])
def test_ugpnet_total_parameters(capsys, backbone, task, expected):
    out = params_json(capsys, "--method", "ugpnet", "--task", task, "--backbone", backbone)
    assert out["total"] / M == pytest.approx(expected, rel=5e-3)
    mods = out["modules"]
    assert mods["restoration"] + mods["synthesis"] + mods["fusion"] == out["total"]


def test_ugpnet_nafnet_deblur_parts(capsys):
    mods = params_json(capsys, "--method", "ugpnet", "--task", "deblur")["modules"]
    for name, expected in [("restoration", 17.34), ("synthesis", 51.59),
                           ("synthesis.encoder.f_encoder", 8.13),
                           ("synthesis.encoder.map2style", 13.18),
                           ("synthesis.generator", 30.28), ("fusion", 0.63),
                           ("restoration.backbone", 17.11)]:
        assert mods[name] / M == pytest.approx(expected, rel=5e-3), name


@pytest.mark.parametrize("method,task,expected", [
    ("nafnet", "deblur", 17.11),   # paper Table 2: NAFNet 17.1 M
    ("nafnet", "denoise", 29.16),
])
def test_regression_baselines(capsys, method, task, expected):
    assert params_json(capsys, "--method", method, "--task", task)["total"] / M == pytest.approx(
        expected, rel=5e-3)


def test_bare_backbone_and_errors(capsys):
    assert params_json(capsys, "--method", "hinet", "--task", "deblur")["total"] / M == \
        pytest.approx(88.67, rel=5e-3)
    assert main(["--profile", "paper", "params", "--method", "nope", "--task", "sr"]) == 2
    assert "unknown backbone 'nope'" in capsys.readouterr().err
