"""The GPU policy (TF32, cuDNN) and the GPU claimed by a job on a node with several GPUs, as far
as a CPU-only machine can check them (the GPU check, bench/gpu_check.sh, runs the rest)."""
import subprocess
import sys
import textwrap

import pytest
import torch

from ugpnet.errors import ConfigError
from ugpnet.training import common


def test_the_policy_changes_nothing_on_the_cpu():
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
              torch.backends.cuda.matmul.allow_tf32, torch.are_deterministic_algorithms_enabled())
    assert common.configure_backends({"tf32": True, "deterministic": False}, "cpu") == {}
    assert before == (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
                      torch.backends.cuda.matmul.allow_tf32,
                      torch.are_deterministic_algorithms_enabled())


def test_an_unknown_policy_key_is_refused():
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['tf23'\]"):
        common.configure_backends({"tf23": True}, "cpu")


def test_the_policy_on_cuda_sets_both_tf32_switches_and_benchmark_off_when_deterministic(
        monkeypatch):
    # the switches can be set without a GPU: set them as a GPU run would find them
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False
        _check_cuda_policy(monkeypatch)
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) = saved


def _check_cuda_policy(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    calls = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms",
                        lambda flag, warn_only=False: calls.append((flag, warn_only)))
    got = common.configure_backends(None, "cuda:0")
    assert got == {"tf32": False, "deterministic": True, "cudnn_benchmark": False}
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert calls == [(True, True)]
    import os
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    got = common.configure_backends({"tf32": True, "deterministic": False}, "cuda")
    assert got == {"tf32": True, "deterministic": False, "cudnn_benchmark": True}
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic


HOLD = textwrap.dedent("""
    import sys, time
    from ugpnet.training.common import claim_gpu
    print(claim_gpu(4, sys.argv[1]), flush=True)
    time.sleep(60)
""")


def test_concurrent_jobs_claim_different_gpus_and_a_dead_job_frees_its_own(tmp_path):
    holders = []
    try:
        for expected in (0, 1):
            p = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)],
                                 stdout=subprocess.PIPE, text=True)
            holders.append(p)
            assert int(p.stdout.readline()) == expected
        code = f"from ugpnet.training.common import claim_gpu; print(claim_gpu(4, {str(tmp_path)!r}))"
        assert subprocess.run([sys.executable, "-c", code], capture_output=True,
                              text=True).stdout.strip() == "2"
        holders[0].kill()  # killed: the kernel drops its lock
        holders[0].wait()
        assert subprocess.run([sys.executable, "-c", code], capture_output=True,
                              text=True).stdout.strip() == "0"
    finally:
        for p in holders:
            p.kill()
            p.wait()
