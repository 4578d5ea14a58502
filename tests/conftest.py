"""Shared test helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# One thread per test process, and for the `python -m harness` processes tests start: the suite
# runs on two cores in two workers (pytest-xdist), and its tensors are tiny, where a second
# intra-op thread costs more in synchronisation than it gains (5-10x slower under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the checkout; HARNESS_SHARED names a copy where it does not travel (tools/gpu)
SHARED = Path(os.environ.get("HARNESS_SHARED") or ROOT.parent / "shared")
FIXTURES_REASON = "needs ../shared/fixtures beside the checkout (README, Development)"


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _cpu_unless_marked_gpu(request, monkeypatch) -> None:
    """A test not marked `gpu` tests the CPU path, also on a machine with a GPU: its exact
    expectations (CPU speed settings, bit-equal losses across processes) are the CPU's. The
    `harness`, `torchrun` and Dask processes it starts inherit an empty CUDA_VISIBLE_DEVICES;
    in this process, every device choice goes through `torch.cuda.is_available`."""
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def requires_gpu() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def prepare_gradient_check(model: torch.nn.Module) -> None:
    """Make every attention parameter's gradient observable in one step.

    Two design choices hide gradients on purpose and are tested elsewhere: the non-local block's
    output BatchNorm starts at zero (the block begins as the identity), and STAM's highlight map
    is a hard threshold picked at random in training. Here BatchNorm scales inside attention
    modules are set to one and the highlight pick rate to zero.
    """
    for name, module in model.named_modules():
        if hasattr(module, "chi"):
            module.chi = 0.0
        if "attention" in name or not name:
            for child in module.modules():
                if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
                    torch.nn.init.ones_(child.weight)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch) -> None:
    """Frame-count indexes go to a cache private to the test session, not the user's."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path_factory.getbasetemp() / "harness-cache"))


# The suite must leave the working tree as it found it: every test works in a temporary folder,
# and nothing (an MLflow store, mlruns/, checkpoints/, reports/) may appear in the checkout. The
# controller process compares `git status` (ignored files included) before and after the run.
_CACHES = ("__pycache__", ".pytest_cache", ".ruff_cache", ".egg-info", ".coverage")


def _tree_state() -> set[str] | None:
    import subprocess

    try:
        command = ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None  # not a git checkout
    return {line for line in done.stdout.splitlines() if not any(c in line for c in _CACHES)}


def pytest_sessionstart(session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller, not an xdist worker
        session.config._tree_before = _tree_state()


def pytest_sessionfinish(session, exitstatus) -> None:
    before = getattr(session.config, "_tree_before", None)
    if before is None or hasattr(session.config, "workerinput"):
        return
    after = _tree_state() or set()
    left = sorted(after - before)
    if left:
        print("\nthe tests left files in the working tree:\n  " + "\n  ".join(left[:20]))
        session.exitstatus = 1
