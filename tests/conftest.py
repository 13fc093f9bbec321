import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_end_to_end(tmp_path_factory):
    """The tiny profile's end-to-end run (the real Snakemake DAG, locally, --cores 2) with every
    method of the default table (tests/tiny_all_methods.yaml), made once per session: checked by
    tests/test_dag.py, and the local run that tests/test_slurm.py compares its SLURM run with."""
    import shutil

    from workspace import ALL_METHODS, REPO, copy_workflow, failure, snakemake

    work = copy_workflow(tmp_path_factory.mktemp("dag"))
    shutil.copy(REPO / "tests" / ALL_METHODS, work / ALL_METHODS)
    r = snakemake(["--cores", "2", "results/table1.csv", "--config", "profile=tiny",
                   "--configfile", "params.yaml", ALL_METHODS], work)
    if r.returncode != 0:
        pytest.fail(failure(r, work))
    return work


@pytest.fixture
def interrupt_step(monkeypatch):
    """``with interrupt_step(n): ...`` makes the n-th supervised training step raise
    KeyboardInterrupt (a killed job: nothing of that step is saved) and expects it; the real
    step is back after the block, so the next call resumes."""
    from contextlib import contextmanager

    from ugpnet.training import regression

    original = regression.SupervisedStage.step

    @contextmanager
    def at(n: int):
        calls = {"n": 0}

        def step(self, batch, it):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt("killed")
            return original(self, batch, it)

        monkeypatch.setattr(regression.SupervisedStage, "step", step)
        try:
            with pytest.raises(KeyboardInterrupt):
                yield
        finally:
            monkeypatch.setattr(regression.SupervisedStage, "step", original)

    return at
