"""`ugpnet bench`: every method's parameters, time and memory, each in its own process."""
import json

import pytest

from ugpnet.cli import main
from ugpnet.config import load_config
from ugpnet.plan import table1_methods
from ugpnet.methods import kind_of


@pytest.mark.long
def test_bench_reports_every_method_and_stage(tmp_path, capsys):
    cfg = load_config(profile="tiny")
    # the default table's methods that deblur (read from the configuration, not listed here)
    methods = [m for m in table1_methods(cfg) if "deblur" in cfg["methods"][m]["tasks"]]
    assert {"input", "nafnet", "ugpnet"} <= set(methods)  # the rows the checks below are about
    out = tmp_path / "bench.json"
    rc = main(["--profile", "tiny", "bench", "--methods", ",".join(methods), "--tasks",
               "deblur", "--runs", "1", "--threads", "1", "--train", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["threads"] == 1 and res["size"] == 32 and res["code"]["package"]
    inf = {r["method"]: r for r in res["inference"]}
    assert list(inf) == methods
    trained = [m for m in methods if kind_of(cfg, m).stages(cfg["methods"][m], "deblur")]
    for m in trained:
        model = kind_of(cfg, m).build(cfg, m, "deblur")
        assert inf[m]["params"] == sum(p.numel() for p in model.parameters())
        assert inf[m]["median_s"] > 0 and inf[m]["peak_mem_mb"] > 0
    assert inf["input"]["params"] == 0
    assert inf["nafnet"]["ratio_to_nafnet"] == 1.0
    assert inf["ugpnet"]["ratio_to_nafnet"] == pytest.approx(
        inf["ugpnet"]["median_s"] / inf["nafnet"]["median_s"])
    stages = {(r["method"], r["stage"]): r for r in res["train"]}
    assert set(stages) == {(m, st.name) for m in trained
                           for st in kind_of(cfg, m).stages(cfg["methods"][m], "deblur")}
    assert {("nafnet", "train"), ("ugpnet", "restoration"), ("ugpnet", "synthesis"),
            ("ugpnet", "fusion")} <= set(stages)
    assert all(r["it_per_s"] > 0 and r["batch"] == 1 for r in stages.values())
    assert {r["precision"] for r in stages.values()} == {"fp32"}  # tiny trains in fp32
    assert "ugpnet  deblur" in capsys.readouterr().out


def test_bench_refuses_unknown_methods_and_missing_cuda(tmp_path, capsys):
    assert main(["--profile", "tiny", "bench", "--methods", "ghost", "--out",
                 str(tmp_path / "b.json")]) == 2
    assert "unknown method 'ghost'" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        assert main(["--profile", "tiny", "bench", "--device", "cuda", "--out",
                     str(tmp_path / "b.json")]) == 2


def test_bench_check_options(tmp_path, capsys):
    out = tmp_path / "b.json"
    base = ["--profile", "tiny", "bench", "--methods", "nafnet", "--tasks", "deblur",
            "--out", str(out)]
    assert main(base + ["--no-inference"]) == 2  # nothing left to measure
    assert "nothing to measure" in capsys.readouterr().err
    assert main(base + ["--runs", "0"]) == 2  # inference needs a timed run
    assert "--runs must be at least 1" in capsys.readouterr().err
    # a spent budget: nothing starts, every row is recorded skipped, and --check fails
    assert main(base + ["--train", "--check", "--one-process", "--budget", "0"]) == 1
    res = json.loads(out.read_text())
    assert res["complete"] is True and res["options"]["budget_s"] == 0
    rows = res["inference"] + res["train"]
    assert [(r.get("stage"), r["ok"]) for r in rows] == [(None, False), ("train", False)]
    assert all("time budget" in r["skipped"] for r in rows)
    assert "2 measurement(s) failed or were skipped" in capsys.readouterr().err
