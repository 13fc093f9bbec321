"""Data-parallel training (ugpnet.training.distributed): two gloo processes on the CPU take the
step one process takes on the same global batch; only rank 0 writes; a torchrun run killed with
SIGKILL and resumed ends with the weights of an uninterrupted one."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

from ugpnet.config import load_config
from ugpnet.errors import ConfigError
from ugpnet.methods import kind_of
from ugpnet.methods.common import loaders
from ugpnet.plan import Plan
from ugpnet.training import distributed
from ugpnet.training.common import seed_everything
from ugpnet.training.regression import SupervisedStage
from ugpnet.training.stream import DataStream, EpochSampler
from torch.optim.optimizer import register_optimizer_step_pre_hook
from workspace import env_with, make_tiny_data

GLOBAL_BATCH = 4
SETS = [f"methods.nafnet.train.batch_size={GLOBAL_BATCH}", "methods.nafnet.train.num_workers=0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    make_tiny_data(Plan.of(load_config(profile="tiny"), data=str(d)), tasks=("denoise",))
    return d


# ----------------------------------------------------------------------------- the data shares
def test_rank_shares_are_the_global_batches_of_one_process():
    n, b, world = 11, 2, 2
    one = list(EpochSampler(n, seed=3, batch=b * world))
    for epoch, start in ((0, 0), (1, 4), (2, 8)):
        whole = EpochSampler(n, seed=3)
        whole.set_position(epoch, start)
        order = list(whole)
        shares = []
        for r in range(world):
            s = EpochSampler(n, seed=3, rank=r, world=world, batch=b)
            s.set_position(epoch, start)
            shares.append(list(s))
            assert len(s) == len(shares[-1])
        groups = len(order) // (b * world)  # only whole global batches: every rank steps alike
        assert len(shares[0]) == len(shares[1]) == groups * b
        for g in range(groups):
            assert shares[0][g * b:(g + 1) * b] + shares[1][g * b:(g + 1) * b] == \
                order[g * b * world:(g + 1) * b * world]
    assert len(one) == n


def test_a_global_batch_that_does_not_divide_is_refused(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ConfigError, match="batch_size 4 does not divide over 3"):
        distributed.local_batch(4)


# ----------------------------------------------------------------------------- same gradients
def _steps(data, runs, steps: int) -> dict:
    """``steps`` steps of the tiny NAFNet stage (its own loader, loss and optimiser) on the
    global batch, in this process or this rank; the gradients of each step as the optimiser
    sees them (after averaging) and the final weights."""
    cfg = load_config(profile="tiny", sets=SETS)
    seed_everything(cfg["data"]["seed"])
    ctx = Plan.of(cfg, data=str(data), runs=str(runs)).context("nafnet", "denoise", "train",
                                                               progress=False)
    kind = kind_of(cfg, "nafnet")
    net = kind.build(cfg, "nafnet", "denoise")
    train = ctx.mcfg["train"]
    train_loader, _ = loaders(ctx, train, kind.input_mode(ctx.mcfg, "denoise"))
    stage = SupervisedStage(net, net, net.parameters(), ctx.mcfg["loss"], train, "cpu")
    distributed.broadcast_modules([net])
    batches = DataStream(train_loader)
    grads = []

    def keep(opt, args, kwargs):
        grads.append({n: p.grad.clone() for n, p in net.named_parameters()
                      if p.grad is not None})

    with distributed.averaged_steps():
        handle = register_optimizer_step_pre_hook(keep)  # after averaging
        try:
            for it in range(steps):
                batch = next(batches)
                assert batch["lq"].shape[0] == GLOBAL_BATCH // distributed.world_size()
                stage.step(batch, it)
        finally:
            handle.remove()
    return {"grads": grads, "weights": {k: v.clone() for k, v in net.state_dict().items()}}


def _rank_steps(rank, world, init, data, runs, steps, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        result = _steps(data, runs, steps)
        if rank == 0:
            torch.save(result, out)
    finally:
        torch.distributed.destroy_process_group()


def _close(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        scale = float(a[k].abs().max()) + 1e-12
        err = float((a[k] - b[k]).abs().max())
        assert err <= 1e-5 * scale + 1e-8, f"{what} {k}: max |diff| {err:.3g} (scale {scale:.3g})"


def test_two_gloo_processes_take_the_step_of_one_process_on_the_global_batch(data, tmp_path):
    steps = 3
    one = _steps(data, tmp_path / "one", steps)
    out = tmp_path / "rank0.pt"
    mp.spawn(_rank_steps, args=(2, f"file://{tmp_path / 'rendezvous'}", data, tmp_path / "two",
                                steps, out), nprocs=2, join=True)
    two = torch.load(out, weights_only=True)
    assert len(one["grads"]) == len(two["grads"]) == steps
    for i in range(steps):
        assert one["grads"][i], "no gradient at all: the test would prove nothing"
        _close(one["grads"][i], two["grads"][i], f"gradient of step {i + 1}")
    _close(one["weights"], two["weights"], "weights after the steps")
    # and the per-rank halves really differ (each rank saw its own half of the batch)
    assert any(float(g.abs().max()) > 0 for g in one["grads"][0].values())


def _gan_steps(steps: int) -> dict:
    """An adversarial stage (G and D with their own optimisers, lazy R1 through
    torch.autograd.grad, an EMA of G, an L1 reconstruction term) on fixed global batches, each
    process taking its rank's share; the weights after ``steps`` steps."""
    from ugpnet.training import AdversarialStage, Critic, weighted_loss

    torch.manual_seed(0)
    G = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.LeakyReLU(0.2),
                            torch.nn.Conv2d(8, 3, 3, padding=1))
    D = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
                            torch.nn.LeakyReLU(0.2), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 1))
    critic = Critic(D, torch.optim.Adam(D.parameters(), lr=1e-3), r1_gamma=1.0, r1_every=1)
    stage = AdversarialStage(G, torch.optim.Adam(G.parameters(), lr=1e-3), [critic],
                             recon=weighted_loss({"l1": 1.0}, "cpu"), adv_weight=0.1,
                             ema_beta=0.9)
    distributed.broadcast_modules([G, D, stage.ema])
    b = GLOBAL_BATCH // distributed.world_size()
    r = distributed.rank()
    with distributed.averaged_steps():
        for it in range(steps):
            g = torch.Generator().manual_seed(100 + it)
            lq, gt = torch.rand(2, GLOBAL_BATCH, 3, 8, 8, generator=g)
            stage.step({"lq": lq[r * b:(r + 1) * b], "gt": gt[r * b:(r + 1) * b]}, it)
    return {"weights": {**{f"G.{k}": v for k, v in G.state_dict().items()},
                        **{f"D.{k}": v for k, v in D.state_dict().items()},
                        **{f"ema.{k}": v for k, v in stage.ema.state_dict().items()}}}


def _rank_gan_steps(rank, world, init, steps, out):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        result = _gan_steps(steps)
        if rank == 0:
            torch.save(result, out)
    finally:
        torch.distributed.destroy_process_group()


def test_an_adversarial_stage_with_r1_and_ema_steps_alike_on_two_processes(tmp_path):
    one = _gan_steps(3)
    out = tmp_path / "rank0.pt"
    mp.spawn(_rank_gan_steps, args=(2, f"file://{tmp_path / 'rendezvous'}", 3, out), nprocs=2,
             join=True)
    two = torch.load(out, weights_only=True)
    _close(one["weights"], two["weights"], "G, D and EMA weights after 3 steps")


# ----------------------------------------------------------------------------- torchrun: kill -9
TRAIN = ["train", "--method", "nafnet", "--task", "denoise", "--stage", "train", "--threads",
         "1", "--no-progress"]
FAST = {"methods.nafnet.train.total_iters": 24, "methods.nafnet.train.ckpt_every": 5,
        "methods.nafnet.train.val_every": 8, "methods.nafnet.train.log_every": 1,
        "methods.nafnet.train.batch_size": GLOBAL_BATCH, "methods.nafnet.train.num_workers": 0}


def _torchrun(data, runs, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "-m", "ugpnet", "--profile", "tiny"]
    for k, v in {**FAST, "paths.data": data, "paths.runs": runs}.items():
        cmd += ["--set", f"{k}={v}"]
    return cmd + TRAIN


def _env():
    return dict(env_with(), OMP_NUM_THREADS="1")


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (torchrun starts its workers in sessions of their own)."""
    children: dict = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _kill_9(pid: int) -> None:
    tree = _tree(pid)
    for p in reversed(tree):  # the workers first, then torchrun
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _lines(path):
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted two-process run, as the workflow's train rule launches it."""
    runs = tmp_path_factory.mktemp("ddp-ref")
    r = subprocess.run(_torchrun(data, runs), capture_output=True, text=True, timeout=600,
                       env=_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return runs / "nafnet" / "denoise" / "train"


def _weights(path):
    return torch.load(path, weights_only=True)["weights"]


@pytest.mark.long
def test_torchrun_run_writes_from_rank_0_only_and_records_its_processes(reference, data):
    import json

    opts = json.loads((reference / "options.json").read_text())
    assert opts["operational"]["training_processes"] == 2
    assert "training_processes" not in json.dumps(opts["identity"])  # never part of identity
    files = sorted(p.name for p in reference.iterdir() if not p.name.startswith("val_grids"))
    assert files == sorted([".lock", "best.pt", "last.pt", "log.jsonl", "loss_curves.png", "model.pt",
                            "options.json", "summary.json", "val.jsonl"]), files
    log = [json.loads(x) for x in (reference / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == list(range(1, 25))  # one writer: no line twice
    last = torch.load(reference / "last.pt", weights_only=True)
    assert len(last["rng_ranks"]) == 2
    assert not torch.equal(last["rng_ranks"][0]["torch"], last["rng_ranks"][1]["torch"])


@pytest.mark.long
def test_torchrun_run_killed_and_resumed_matches_an_uninterrupted_one(reference, data,
                                                                     tmp_path):
    runs = tmp_path / "runs"
    run = runs / "nafnet" / "denoise" / "train"
    p = subprocess.Popen(_torchrun(data, runs), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=_env())
    while _lines(run / "log.jsonl") < 13 and p.poll() is None:
        time.sleep(0.002)
    _kill_9(p.pid)  # torchrun and both workers
    p.wait()
    time.sleep(1)
    assert not (run / "model.pt").exists(), "the run finished before it could be killed"
    assert (run / "last.pt").exists()
    killed_at = torch.load(run / "last.pt", weights_only=True)["iter"]
    assert 0 < killed_at < 24
    r = subprocess.run(_torchrun(data, runs), capture_output=True, text=True, timeout=600,
                       env=_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert f"resuming from iteration {killed_at}" in r.stdout
    a, b = _weights(run / "model.pt"), _weights(reference / "model.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_every_multi_gpu_method_of_the_paper_profile_splits_its_global_batches():
    cfg = load_config(profile="paper")
    spec = cfg["resources"]
    gpus = {m: {**spec["train"], **((spec["methods"].get(m) or {}).get("train") or {})}["gpus"]
            for m in cfg["methods"]}
    assert any(n > 1 for n in gpus.values())  # the paper profile trains some over several GPUs
    assert distributed.indivisible_batches(cfg["methods"], gpus) == []
    gpus["gfpgan"] = 5
    assert distributed.indivisible_batches(cfg["methods"], gpus) == [
        "methods.gfpgan.train.batch_size = 12 does not divide over its 5 GPUs "
        "(resources.methods.gfpgan.train.gpus)"]


def test_the_workflow_refuses_an_indivisible_global_batch_before_it_starts(tmp_path):
    from workspace import copy_workflow, snakemake

    work = copy_workflow(tmp_path / "w")
    (work / "gpus.yaml").write_text("overrides:\n  resources:\n    methods:\n"
                                    "      nafnet: {train: {gpus: 3}}\n")
    r = snakemake(["-n", "--cores", "1", "results/table1.csv", "--config", "profile=tiny",
                   "--configfile", "params.yaml", "gpus.yaml"], cwd=work, env=env_with())
    assert r.returncode != 0
    assert "methods.nafnet.train.batch_size = 2 does not divide over its 3 GPUs" in r.stderr, \
        r.stderr[-2000:]
