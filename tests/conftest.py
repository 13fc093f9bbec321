import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]


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
