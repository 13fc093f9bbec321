"""ugpnet.stats against published values and independent computations."""
import math

import numpy as np
import pytest

from ugpnet.stats import bootstrap_ci, paired_wilcoxon

# Darwin's Zea mays data (cross- minus self-fertilised height differences, in eighths of an
# inch), the example of scipy.stats.wilcoxon's documentation: statistic 24, exact two-sided
# p = 0.041259765625 (= 1352 / 32768: 2 * P(T <= 24) with 2**15 sign patterns)
DARWIN = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75]


def test_wilcoxon_reproduces_the_published_darwin_example():
    a = {f"img{i}": d for i, d in enumerate(DARWIN)}
    b = {f"img{i}": 0.0 for i in range(len(DARWIN))}
    r = paired_wilcoxon(a, b)
    assert r["n"] == 15 and r["statistic"] == 24.0
    assert r["p"] == pytest.approx(0.041259765625, abs=1e-12)


def test_wilcoxon_exact_p_by_enumeration_of_sign_patterns():
    """An independent computation: the exact two-sided p of the signed-rank statistic, by
    enumerating all 2**n sign patterns of the ranks (no ties, no zeros)."""
    rng = np.random.default_rng(3)
    x = rng.normal(0.3, 1.0, 9)
    y = rng.normal(0.0, 1.0, 9)
    d = x - y
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    t_plus = ranks[d > 0].sum()
    t = min(t_plus, ranks.sum() - t_plus)
    signs = ((np.arange(2 ** 9)[:, None] >> np.arange(9)) & 1).astype(bool)
    sums = (signs * ranks).sum(axis=1)
    p = 2 * np.mean(sums <= t)
    r = paired_wilcoxon({str(i): v for i, v in enumerate(x)}, {str(i): v for i, v in enumerate(y)})
    assert r["statistic"] == t and r["p"] == pytest.approx(min(p, 1.0), abs=1e-12)


def test_wilcoxon_pairs_by_image_id_and_names_degenerate_cases():
    a = {"a": 1.0, "b": 2.0, "c": 3.0, "z": 9.0}
    b = {"c": 1.0, "b": 1.0, "a": 0.0, "y": 5.0}   # y and z unpaired: left out
    assert paired_wilcoxon(a, b)["n"] == 3
    assert paired_wilcoxon(a, a)["note"] == "identical on every image"
    assert math.isnan(paired_wilcoxon(a, a)["p"])
    assert paired_wilcoxon({"a": 1.0}, {"a": 2.0})["note"] == "fewer than two paired images"


def test_bootstrap_ci_of_a_large_normal_sample_matches_the_t_interval():
    """Independent: for n = 400 normal values the percentile-bootstrap interval of the mean is
    close to the classical t interval mean +- t * s / sqrt(n)."""
    from scipy import stats

    x = np.random.default_rng(1).normal(10.0, 2.0, 400)
    lo, hi = bootstrap_ci(x)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - half, abs=0.05)
    assert hi == pytest.approx(x.mean() + half, abs=0.05)
    assert bootstrap_ci(x) == (lo, hi)  # a fixed seed: the same table every time


def test_bootstrap_ci_small_and_degenerate_samples():
    lo, hi = bootstrap_ci([20.0, 21.0, 25.0, 19.0, 22.0, 30.0, 18.0, 24.0])  # 8 test images
    assert 18.0 < lo < np.mean([20, 21, 25, 19, 22, 30, 18, 24]) < hi < 30.0
    assert bootstrap_ci([7.0, 7.0, 7.0]) == (7.0, 7.0)
    assert all(math.isnan(v) for v in bootstrap_ci([7.0]))
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci([1.0, float("inf")])


def _bundle(tmp_path, method, task, per_image, fid=50.0):
    """An evaluation file of ``method``/``task`` with these per-image values (test split)."""
    import json

    from ugpnet.metrics.evaluate import evaluation_bundle

    mean = {m: float(np.mean([v[m] for v in per_image.values()])) for m in ("psnr", "ssim", "lpips")}
    rec = {"mean": {**mean, "fid": fid}, "per_image": per_image}
    f = tmp_path / method / f"{task}.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(evaluation_bundle(method, task, {"test": {"x_hat": rec}})))
    return f


def test_table1_statistics_and_markdown(tmp_path):
    """The schema of table1_stats.csv and table1.md: an interval per per-image metric, FID
    without one (said), and one paired test of UGPNet against each other method of the task."""
    from ugpnet.tables import cell_stats, table1, table1_markdown

    rng = np.random.default_rng(0)
    ids = [f"img_{i}" for i in range(8)]
    base = {i: {"psnr": 20 + rng.normal(), "ssim": 0.5 + 0.01 * rng.normal(),
                "lpips": 0.3 + 0.01 * rng.normal()} for i in ids}
    better = {i: {"psnr": v["psnr"] + 1.0, "ssim": v["ssim"] + 0.01, "lpips": v["lpips"] - 0.01}
              for i, v in base.items()}
    records = [("nafnet", "deblur", "x_hat", _bundle(tmp_path, "nafnet", "deblur", base)),
               ("ugpnet", "deblur", "x_hat", _bundle(tmp_path, "ugpnet", "deblur", better))]
    stats = cell_stats(records, ["psnr", "ssim", "lpips", "fid"], ["ugpnet"])
    assert list(stats.columns) == ["method", "task", "metric", "mean", "ci_low", "ci_high",
                                   "n_images", "vs", "wilcoxon_statistic", "wilcoxon_p",
                                   "median_diff", "note"]
    naf = stats[(stats["method"] == "nafnet") & (stats["metric"] == "psnr")].iloc[0]
    assert naf["vs"] == "ugpnet" and naf["n_images"] == 8
    assert naf["ci_low"] < naf["mean"] < naf["ci_high"]
    # UGPNet is higher on every image: the smallest exact two-sided p for 8 pairs, 2 / 2**8
    assert naf["wilcoxon_p"] == pytest.approx(2 / 2 ** 8) and naf["median_diff"] == pytest.approx(1.0)
    fid = stats[(stats["method"] == "nafnet") & (stats["metric"] == "fid")].iloc[0]
    assert math.isnan(fid["ci_low"]) and "one value per set" in fid["note"]
    ours = stats[stats["method"] == "ugpnet"]
    assert (ours["vs"] == "").all()  # no test of UGPNet against itself
    df = table1(records, ["psnr", "ssim", "lpips", "fid"])
    md = table1_markdown(df, stats, {"nafnet": "regression", "ugpnet": "generative"},
                         {"ugpnet": ["fusion x_reg skip"]}, "Table 1 (test)")
    assert "| ugpnet * | generative | " in md and "- ugpnet: fusion x_reg skip" in md
    row = next(line for line in md.splitlines() if line.startswith("| nafnet | regression"))
    assert f"{naf['mean']:.2f} [{naf['ci_low']:.2f}, {naf['ci_high']:.2f}]" in row
    assert "| ugpnet | nafnet | 0.00781 (n 8, +1) |" in md


# ---------------------------------------------------------------- FID over resampled test sets
def _pytorch_fid(a, b):
    """The independent statistic: pytorch-fid's own Fréchet distance (scipy sqrtm)."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    return calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                                      np.cov(b, rowvar=False))


def test_fid_from_features_equals_pytorch_fid():
    from ugpnet.metrics.fid import _features_fid, _psd_factor

    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(30, 12)), rng.normal(0.4, 1.3, size=(30, 12))
    assert _features_fid(a, b) == pytest.approx(_pytorch_fid(a, b), rel=1e-7)
    sigma = np.cov(b, rowvar=False)
    fixed = _features_fid(a, ref_mu=b.mean(0), ref_factor=_psd_factor(sigma))
    assert fixed == pytest.approx(_pytorch_fid(a, b), rel=1e-7)


def test_fid_bootstrap_equals_scipy_bootstrap_of_pytorch_fid():
    """The same resampling (scipy.stats.bootstrap over image ids, same seed) with pytorch-fid's
    statistic gives the same interval: our fast formula changes nothing."""
    from scipy import stats

    from ugpnet.metrics.fid import bootstrap_fid

    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(10, 6)), rng.normal(0.5, 1.0, size=(10, 6))
    ours = bootstrap_fid(a, b, n_resamples=199, seed=0)
    ref = stats.bootstrap((np.arange(10),), lambda i: _pytorch_fid(a[i], b[i]),
                          vectorized=False, n_resamples=199, method="percentile",
                          random_state=np.random.default_rng(0)).confidence_interval
    assert ours["paired"] and ours["n_resamples"] == 199
    assert ours["ci_low"] == pytest.approx(ref.low, rel=1e-6)
    assert ours["ci_high"] == pytest.approx(ref.high, rel=1e-6)
    assert ours["ci_low"] < ours["ci_high"]
    assert bootstrap_fid(a, b, n_resamples=199, seed=0) == ours  # reproducible


def test_fid_bootstrap_says_why_it_is_skipped():
    from ugpnet.metrics.fid import bootstrap_fid

    a = np.zeros((12, 4))
    assert "max_images" in bootstrap_fid(a, a, max_images=10)["skipped"]
    assert "fewer than 3" in bootstrap_fid(a[:2], a[:2])["skipped"]


@pytest.mark.long
def test_evaluation_records_the_fid_interval_and_table1_shows_it(tmp_path, monkeypatch):
    """A real evaluation (Inception features) with the bootstrap on: the record holds the
    interval, a second evaluation against the same ground truth reads the GT features from the
    stats cache and gives the same interval, and Table 1's statistics carry it."""
    import torch
    from PIL import Image

    from ugpnet import pretrained
    from ugpnet.metrics.evaluate import inspect_dirs, score_dirs, write_evaluation, \
        evaluation_bundle
    from ugpnet.tables import cell_stats

    monkeypatch.setenv("UGPNET_CACHE", str(tmp_path / "cache"))
    pretrained.clear_memo()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    for d, shift in (("gt", 0), ("pred", 40)):
        (tmp_path / d).mkdir()
        for i in range(5):
            img = np.clip(rng.integers(0, 255, (48, 48, 3)) + shift, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / d / f"im{i}.png")
    boot = {"resamples": 199, "max_images": 50}
    pairs = inspect_dirs(tmp_path / "pred", tmp_path / "gt")
    a = score_dirs(pairs, "psnr,fid", progress=False, fid_bootstrap=boot)
    b = score_dirs(pairs, "psnr,fid", progress=False, fid_bootstrap=boot)
    assert not a["protocol"]["fid"]["reference_stats_cache_hit"]
    assert b["protocol"]["fid"]["reference_stats_cache_hit"]
    assert a["fid_bootstrap"]["paired"] and a["fid_bootstrap"] == b["fid_bootstrap"]
    assert "fid_bootstrap" not in score_dirs(pairs, "psnr,fid", progress=False)
    path = tmp_path / "m.json"
    write_evaluation(path, evaluation_bundle("m", "deblur", {"test": {"x": a}}))
    st = cell_stats([("m", "deblur", "x", path)], ["psnr", "fid"], [])
    fid = st[st["metric"] == "fid"].iloc[0]
    assert (fid["ci_low"], fid["ci_high"]) == pytest.approx(
        (a["fid_bootstrap"]["ci_low"], a["fid_bootstrap"]["ci_high"]))
    pretrained.clear_memo()
