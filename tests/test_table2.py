"""Table 2 (parameters, inference time) and the paper's published numbers file."""
import json
import math

import pandas as pd
import pytest

from ugpnet.cli import main
from ugpnet.errors import ConfigError
from ugpnet.published import FILE, paper_numbers, table2_value
from ugpnet.tables import table2

TABLE2_COLUMNS = ["method", "family", "params_m", "time_ms", "min_ms", "ratio_to_nafnet",
                  "peak_mem_mb", "paper_params_m", "paper_time_ms", "paper_ratio_to_nafnet",
                  "note"]


def _bench(**times):
    return {"inference": [{"method": m, "task": "deblur", "family": "regression",
                           "params": 1_000_000 * (i + 1), "median_s": t, "min_s": t * 0.9,
                           "peak_mem_mb": 100.0} for i, (m, t) in enumerate(times.items())]}


def test_table2_ratios_and_the_papers_columns():
    paper = {"nafnet": {"params_m": 17.1, "time_ms": 50.0}, "ugpnet": {"params_m": None,
                                                                        "time_ms": 150.0}}
    df = table2(_bench(nafnet=0.2, ugpnet=0.5), ["nafnet", "ugpnet", "vqfr"], "deblur", paper)
    assert list(df.columns) == TABLE2_COLUMNS
    r = df.set_index("method")
    assert r.loc["nafnet", "ratio_to_nafnet"] == 1.0
    assert r.loc["ugpnet", "time_ms"] == pytest.approx(500.0)
    assert r.loc["ugpnet", "ratio_to_nafnet"] == pytest.approx(2.5)
    assert r.loc["ugpnet", "params_m"] == pytest.approx(2.0)
    assert r.loc["ugpnet", "paper_ratio_to_nafnet"] == pytest.approx(3.0)
    assert math.isnan(r.loc["ugpnet", "paper_params_m"])      # not transcribed: empty, not 0
    assert "not timed" in r.loc["vqfr", "note"] and math.isnan(r.loc["vqfr", "time_ms"])


def test_the_published_file_holds_facts_with_their_source():
    data = paper_numbers()
    t2 = data["table2"]
    assert t2["device"] == "NVIDIA GeForce RTX 3090" and t2["size"] == 512
    # the paper's Table 2 parameter counts of the four baselines (each matches the official
    # constructor: tests/test_baseline_*.py build them at paper scale)
    assert [table2_value(m, "params_m") for m in ("nafnet", "gfpgan", "vqfr", "uformer")] == \
        [17.1, 76.2, 76.6, 50.9]
    assert t2["transcribed_from"]
    # nothing is guessed: what was not transcribed is null and says so
    assert data["table1"]["status"] == "not_transcribed" and data["table1"]["values"] == {}
    assert table2_value("ugpnet", "time_ms") is None


def test_a_published_file_with_values_but_no_source_is_refused(tmp_path):
    text = FILE.read_text().replace("status: not_transcribed", "status: transcribed", 1)
    bad = tmp_path / "p.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match="transcribed_from"):
        paper_numbers(str(bad))
    bad.write_text(FILE.read_text().replace("params_m: 17.1", "parms_m: 17.1"))
    with pytest.raises(ConfigError, match="unknown key"):
        paper_numbers(str(bad))


@pytest.mark.long
def test_bench_then_table2_end_to_end(tmp_path, monkeypatch, repo_root):
    """`ugpnet bench` of the tiny networks, then `ugpnet table --which table2`: the CSV schema,
    the Markdown beside the paper, the provenance (device, threads, the bench file's hash)."""
    monkeypatch.chdir(repo_root)
    bench = tmp_path / "bench.json"
    assert main(["--profile", "tiny", "bench", "--methods", "nafnet,ugpnet", "--tasks", "deblur",
                 "--size", "32", "--runs", "1", "--threads", "1", "--out", str(bench)]) == 0
    out = tmp_path / "t" / "table2.csv"
    assert main(["--profile", "tiny", "table", "--which", "table2", "--bench", str(bench),
                 "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == TABLE2_COLUMNS
    assert list(df["method"]) == ["nafnet", "gfpgan", "vqfr", "uformer", "ugpnet"]
    timed = df.set_index("method")
    assert timed.loc["nafnet", "ratio_to_nafnet"] == 1.0 and timed.loc["ugpnet", "time_ms"] > 0
    assert "not timed" in timed.loc["vqfr", "note"]
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["device"] == "cpu" and meta["threads"] == 1 and meta["size"] == 32
    assert meta["networks_of_profile"] == "tiny" and len(meta["bench_file"]["sha256"]) == 64
    md = out.with_suffix(".md").read_text()
    assert "RTX 3090" in md and "not transcribed" in md and "tiny profile" in md
    html = out.with_suffix(".html").read_text()   # what the report shows
    assert "<table" in html and "not transcribed" in html and "ugpnet" in html


def test_table2_without_its_bench_file_is_one_clear_error(tmp_path, capsys, repo_root,
                                                          monkeypatch):
    monkeypatch.chdir(repo_root)
    rc = main(["--profile", "tiny", "table", "--which", "table2", "--bench",
               str(tmp_path / "none.json"), "--out", str(tmp_path / "t2.csv")])
    assert rc != 0
    err = capsys.readouterr().err
    assert "none.json" in err and "snakemake --cores all table2" in err
    assert not (tmp_path / "t2.csv").exists()
