"""Trials in parallel: local processes through joblib (`--jobs N`), or an existing Dask cluster
(`--backend dask --scheduler tcp://HOST:8786`).

Each trial runs in a worker exactly as `harness run` runs it alone: it opens the shared tracking
store (created by the launching process before fan-out), resumes its own unfinished run if there
is one, and logs one MLflow run. A worker that dies mid-trial leaves that run RUNNING with its
last epoch checkpoint; Dask reschedules the task on another worker, and any later `harness run`
continues the same run, so nothing is lost or logged twice. Local GPUs are shared out one per
trial; on the CPU each process gets its share of the cores.
"""

from __future__ import annotations

import os

import torch

from harness.spec import Spec, Trial


def run_in_parallel(
    spec: Spec, trials: list[Trial], uri: str, *, jobs: int, scheduler: str | None
) -> list[tuple[str, str | None]]:
    """`(trial key, failure or None)` for every trial, in the order given."""
    if not trials:
        return []
    slots = max(jobs, 1)
    folder = os.getcwd()  # checkpoints and relative paths resolve here, in every worker
    arguments = [
        (spec, trial.key, uri, index % slots, slots, folder) for index, trial in enumerate(trials)
    ]
    if scheduler:
        return _with_dask(arguments, scheduler)  # a Dask worker may run in another folder
    from joblib import Parallel, delayed

    return Parallel(n_jobs=jobs, backend="loky")(delayed(run_one)(*a) for a in arguments)


def _with_dask(arguments: list[tuple], scheduler: str) -> list[tuple[str, str | None]]:
    from distributed import Client

    with Client(scheduler, timeout="30s") as client:
        futures = [client.submit(run_one, *a, pure=False, key=f"trial-{a[1]}") for a in arguments]
        return client.gather(futures)


def run_one(
    spec: Spec, key: str, uri: str, slot: int, slots: int, folder: str
) -> tuple[str, str | None]:
    """One trial in a worker process: its device (a GPU, or a share of the CPU cores), in the
    launching folder (on a cluster, a path the workers share)."""
    from harness.runner import run_guarded
    from harness.tracking import Tracker

    os.chdir(folder)
    if torch.cuda.is_available():
        torch.cuda.set_device(slot % torch.cuda.device_count())
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // slots))
    trial = next(t for t in spec.trials if t.key == key)
    tracker = Tracker(uri, spec.name)  # the store exists: created before fan-out
    return key, run_guarded(spec, trial, tracker, progress=False)
