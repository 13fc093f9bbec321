"""Pretrain a small StyleGAN2 prior on the training split (smoke profile only).

No FFHQ StyleGAN2 exists offline, so the smoke profile trains its own prior from scratch on the
training GT crops: non-saturating G loss, logistic D loss with lazy R1, EMA generator (StyleGAN2
recipe; the GAN step is the shared :class:`~ugpnet.training.adversarial.AdversarialStage`). At
paper scale ``priors.<name>.checkpoint`` points at the user's pretrained FFHQ model.
The saved file holds ``g_ema`` and ``d`` in our own layout (``format`` says so).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping

import torch
from tqdm.auto import tqdm

from ..checkpoints import read_checkpoint, save_checkpoint
from ..data.datasets import OnTheFlyDegradationDataset
from ..errors import CheckpointError, ConfigError
from ..io import atomic_write_json
from ..models.build import build_discriminator, build_generator
from ..provenance import input_digest
from .data import loader as make_loader
from .adversarial import AdversarialStage
from .gan import GAN_RANGE, Critic
from .loop import rng_state, set_rng_state
from .run import OPERATIONAL_KEYS, Run, finished_model
from .stream import DataStream
from .visuals import Visuals

PRIOR_FORMAT = "ugpnet-bench/stylegan2-prior"


def pretrain_prior(sg: Mapping, gt: Path, out: Path, device, seed: int = 0,
                   progress: bool = True, restart: bool = False,
                   logging: Mapping | None = None) -> dict:
    """Train a StyleGAN2 prior on the prepared ground truth ``gt`` (its ``train/`` split and
    ``manifest.json``) into ``out``; resumes exactly. ``logging``: ``logging:`` of params.yaml
    (its loss curves and TensorBoard scalars, :mod:`.visuals`; no identity)."""
    p = sg["pretrain"]
    total = int(p["total_iters"])
    if total < 1:
        raise ConfigError("the prior's pretrain.total_iters is 0: no prior is pretrained, and a "
                          "prior trained for 0 iterations is never written. Set "
                          "priors.<name>.checkpoint to a pretrained FFHQ StyleGAN2 (see the "
                          "README), or give priors.<name>.pretrain.total_iters > 0.")
    out = Path(out)
    gt = Path(gt)
    gt_manifest = gt / "manifest.json"
    semantic = {k: v for k, v in sg.items() if k != "checkpoint"}
    semantic["pretrain"] = {k: v for k, v in p.items() if k not in OPERATIONAL_KEYS}
    identity = {"stylegan2": semantic, "seed": seed,
                "inputs": {"gt": input_digest(gt_manifest) if gt_manifest.exists() else None}}
    run = Run(out, {"stylegan2": dict(sg), "gt": str(gt), "seed": seed}, identity=identity,
              label={"stage": "prior"}, restart=restart, logging=logging)
    done = None if restart else finished_model(out / "model.pt", run.hash)
    if done is not None:
        print(f"{out}: already finished with this identity (model.pt)", flush=True)
        return done
    G, D = build_generator(sg).to(device), build_discriminator(sg).to(device)
    # StyleGAN2 lazy-regularisation correction of Adam's lr/betas for D
    c = p["r1_every"] / (p["r1_every"] + 1)
    opt_g = torch.optim.Adam(G.parameters(), lr=p["lr"], betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=p["lr"] * c, betas=(0.0, 0.99 ** c))

    def sample(batch, it):
        """(G(z), real) in [0, 1]; drawn once for the D step and once for the G step."""
        real = batch["gt"]
        z = torch.randn(real.shape[0], G.style_dim, device=device)
        return (G(z) + 1) * 0.5, real

    # StyleGAN2 recipe: D step, then G step on a fresh z, then the EMA generator
    stage = AdversarialStage(G, opt_g, [Critic(D, opt_d, input_range=GAN_RANGE,
                                               r1_gamma=p["r1_gamma"], r1_every=p["r1_every"])],
                             forward=sample, fresh_fake=True, name="g",
                             ema_beta=0.5 ** (p["batch_size"] / max(1, p["ema_half_life_images"])))
    ds = OnTheFlyDegradationDataset(gt / "train", lambda img, rng: img,
                                    seed=seed, crop=None, flip=True)
    batches = DataStream(make_loader(ds, p["batch_size"], True, 0, seed))
    visuals = Visuals(out, run.logging, title=f"prior {out.name}")  # no grids: no validation
    s = run.start()
    ended = False
    try:
        visuals.begin(None if s is None else int(s["iter"]))
        start = 0
        if s is not None:
            stage.load_state(s)
            set_rng_state(s["rng"])
            batches.load_state(s["data"])
            start = s["iter"]
        t0 = time.time()
        for it in tqdm(range(start, total), initial=start, total=total, desc="pretrain prior",
                       disable=not progress, dynamic_ncols=True):
            parts = stage.step({"gt": next(batches)["gt"].to(device)}, it)
            logged = {"g_loss": parts["loss"],
                      **{k: parts[k] for k in ("d_loss", "r1") if k in parts}}
            done = it + 1
            if done % p["log_every"] == 0 or done == total:
                run.log.write({"iter": done, **logged})
                visuals.logged(done, logged)
                if not progress:
                    print(f"[prior] iter {done}/{total} g_loss={logged['g_loss']:.4g} "
                          f"d_loss={logged['d_loss']:.4g}", flush=True)
            if done % p["ckpt_every"] == 0 or done == total:
                run.save_last(done, {**stage.state(), "rng": rng_state(),
                                     "data": batches.state()})
        summary = {"total_iters": total, "seconds": round(time.time() - t0, 1),
                   "identity_hash": run.hash, **run.provenance(total)}
        save_checkpoint(out / "model.pt", {"format": PRIOR_FORMAT, "g_ema": stage.weights(),
                                           "d": D.state_dict(), "summary": summary,
                                           "label": run.label, "identity_hash": run.hash})
        _sample_grid(stage.g_eval, out / "samples.png", device, seed)
        visuals.curves(force=True)
        ended = True
        atomic_write_json(out / "summary.json", summary)
        return summary
    finally:
        visuals.close(final=not ended)
        run.close()


@torch.no_grad()
def _sample_grid(G, path: Path, device, seed: int, n: int = 16) -> None:
    """A grid of prior samples to look at (the prior's quality bounds what synthesis can do)."""
    import numpy as np

    from ..io import write_png

    g = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(n, G.style_dim, generator=g).to(device)
    imgs = ((G(z, noise="const") + 1) * 0.5).clamp(0, 1).cpu()
    rows = int(np.sqrt(n))
    grid = imgs.view(rows, n // rows, 3, G.size, G.size).permute(0, 3, 1, 4, 2)
    grid = grid.reshape(rows * G.size, (n // rows) * G.size, 3)
    write_png(path, (grid.numpy() * 255).round().astype(np.uint8))


def load_prior(path: str | Path, generator, discriminator=None,
               d_path: str | Path | None = None) -> str:
    """Load a StyleGAN2 prior into ``generator`` (and ``discriminator``): a prior pretrained here
    (``format`` = :data:`PRIOR_FORMAT`) or an official checkpoint (rosinality, BasicSR, NVIDIA;
    :func:`ugpnet.models.synthesis.loading.load_stylegan2`). ``d_path``: the discriminator's own
    file, as the official release ships them (``net_g.pth`` with ``params_ema``, ``net_d.pth``
    with ``params``). Returns the format's name."""
    if d_path is not None:
        fmt = load_prior(path, generator)
        if discriminator is not None:
            from ..models.synthesis.loading import load_stylegan2

            if not Path(d_path).is_file():
                raise CheckpointError(f"StyleGAN2 discriminator '{d_path}' not found "
                                      f"(priors.<name>.checkpoint.d)")
            fmt_d = load_stylegan2(d_path, None, discriminator).format
            return f"{fmt} + {fmt_d} (separate G and D files)"
        return fmt
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"StyleGAN2 prior '{path}' not found. For the paper profile download an FFHQ 512 "
            f"StyleGAN2 (rosinality .pt, BasicSR params_ema .pth or NVIDIA stylegan2-ada .pkl) "
            f"and set priors.<name>.checkpoint in params.yaml; the smoke profile pretrains one.")
    if path.suffix in (".pt", ".pth"):
        ckpt = read_checkpoint(path, "StyleGAN2 prior")
        if isinstance(ckpt, dict) and ckpt.get("format") == PRIOR_FORMAT:
            from ..checkpoints import load_state_dict_strict

            load_state_dict_strict(generator, ckpt["g_ema"], f"{path} (g_ema)")
            if discriminator is not None:
                load_state_dict_strict(discriminator, ckpt["d"], f"{path} (d)")
            return PRIOR_FORMAT
    from ..models.synthesis.loading import load_stylegan2

    return load_stylegan2(path, generator, discriminator).format
