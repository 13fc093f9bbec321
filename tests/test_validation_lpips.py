"""``validation.lpips``: every validation reports LPIPS (always) or only stages selecting on it."""
import torch

from ugpnet.config import load_params_file, resolve
from ugpnet.training import validate as vmod


def _loader(n=2, seed=0):
    from ugpnet.training.data import loader

    g = torch.Generator().manual_seed(seed)
    items = [{"lq": torch.rand(3, 64, 64, generator=g), "gt": torch.rand(3, 64, 64, generator=g)}
             for _ in range(n)]
    return loader(items, batch_size=1, shuffle=False, num_workers=0)


def test_without_lpips_the_network_is_not_built_and_psnr_ssim_are_unchanged(monkeypatch):
    built = []
    monkeypatch.setattr(vmod, "_LPIPS", {})
    real = vmod._lpips
    monkeypatch.setattr(vmod, "_lpips", lambda d, n: built.append(n) or real(d, n))
    loader = _loader()
    off = vmod.validate(lambda x: x, loader, "cpu", lpips=False)
    assert set(off) == {"psnr", "ssim"} and built == []
    on = vmod.validate(lambda x: x, loader, "cpu")
    assert set(on) == {"psnr", "ssim", "lpips"} and built == ["alex"]
    assert on["psnr"] == off["psnr"] and on["ssim"] == off["ssim"]


class _Identity:
    """The smallest stage object run_stage drives: a one-parameter identity map."""

    def __init__(self):
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.modules = []

    def step(self, batch, it):
        return {"loss": 0.0}

    def predict(self, lq):
        return lq + 0 * self.w

    def weights(self):
        return {"w": self.w.detach().clone()}

    def state(self):
        return {}

    def load_state(self, s):
        pass


def test_the_loop_computes_lpips_only_where_the_stage_selects_on_it(tmp_path):
    import json

    from ugpnet.training import Run, run_stage

    train = {"total_iters": 2, "val_every": 1, "ckpt_every": 2, "log_every": 1}
    for select, when, has in (("psnr", "when_selected", False), ("lpips", "when_selected", True),
                              ("psnr", "always", True)):
        out = tmp_path / f"{select}-{when}"
        run = Run(out, {"x": 1}, select_metric=select,
                  validation={"lpips_net": "alex", "psnr_cap_db": 100.0, "lpips": when})
        run_stage(_Identity(), run=run, train=train, train_loader=_loader(4), val_loader=_loader(),
                  device="cpu", progress=False)
        rows = [json.loads(x) for x in (out / "val.jsonl").read_text().splitlines()]
        assert rows and all(("lpips" in json.dumps(r)) is has for r in rows), (select, when)


def test_profiles(repo_root):
    raw = load_params_file(repo_root / "params.yaml")
    assert resolve(raw, "paper")["validation"]["lpips"] == "always"
    assert resolve(raw, "tiny")["validation"]["lpips"] == "always"
    assert resolve(raw, "smoke")["validation"]["lpips"] == "when_selected"
