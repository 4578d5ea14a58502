"""`harness run`: every trial of a spec trained, evaluated and logged, safe to run again.

A trial whose latest run is FINISHED is skipped. Any other (FAILED, KILLED, or RUNNING left behind
by a killed process) runs again in the same run, resuming from its last epoch checkpoint.

What a failure does depends on whose it is. Data and numerics (undecodable videos, a missing
file, a NaN loss, a setting this trial cannot use) end that trial with a one-line reason and the
others go on; so does running out of memory, whose reason names the trial, its batch size and
the memory, after which the cache is freed for the next trial. Anything else (a bug in the code,
a CUDA device-side assert, which leaves the GPU unusable) stops the sweep: the traceback is
saved in the trial's run (`traceback.txt`) and printed, and the trial resumes from its last
checkpoint once fixed. The summary lists finished, skipped and failed trials.

Trials run one after another, in local processes or on a Dask cluster
(`harness.execute.backends`), each worker with a GPU of its own (`harness.execute.gpus`); the
store already exists (the caller opened it), so parallel workers never race on its schema.
"""

from __future__ import annotations

import functools
import gc
import os
import resource
from dataclasses import dataclass, field

import torch

from harness.config import Spec, SpecError, Trial
from harness.device import CONCURRENT_TRIALS_ENV, cores_per_process, device_name
from harness.execute.backends import run_dask, run_local
from harness.execute.fusion import fuse_finished
from harness.execute.gpus import claimed_gpu
from harness.execute.preflight import preflight, readiness
from harness.tracking import Store, open_store
from harness.train import distributed
from harness.train.engine import NonFiniteLoss
from harness.train.trial import run_trial
from registry import ConfigError

# What ends one trial without stopping the others: its data, its numbers, its settings.
TRIAL_FAILURES = (NonFiniteLoss, ConfigError, OSError)


@dataclass
class Summary:
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    fused: list[str] = field(default_factory=list)  # two-stream results logged this time
    missing: list[str] = field(default_factory=list)  # what a dry run found missing


def run_spec(
    spec: Spec, store: Store, *, dry_run: bool = False, progress: bool = True, jobs: int = 1,
    scheduler: str | None = None, per_gpu: int = 1,
) -> Summary:  # fmt: skip
    """Run every unfinished trial: one after another, in `jobs` local processes (joblib), or
    on the Dask cluster at `scheduler`; `per_gpu` trials may share one GPU."""
    if spec.dataset is None:
        raise SpecError(f"{spec.path}: key 'dataset' is missing: this spec can only be profiled.")
    summary = Summary()
    _check_batches(spec)
    if not dry_run:
        preflight(spec)
    todo = _todo(spec, store, summary, dry_run=dry_run)
    if dry_run:
        summary.missing = readiness(spec)
        if not summary.missing:
            preflight(spec)
        return summary
    for key, failure in _execute(spec, store, todo, progress, jobs, scheduler, per_gpu):
        if failure is None:
            summary.finished.append(key)
        else:
            summary.failed[key] = failure
            print(f"FAIL  {key}: {failure}")
    if distributed.current().main:
        summary.fused += fuse_finished(spec, store)
    return summary


def _check_batches(spec: Spec) -> None:
    """Every trial's global batch divides among this torchrun's ranks (before anything runs)."""
    group = distributed.current()
    for trial in spec.trials:
        try:
            distributed.rank_batch(spec.train_for(trial).batch_size, group)
        except ConfigError as error:
            raise SpecError(f"{spec.path}: trial {trial.key}: {error}") from None


def _todo(spec: Spec, store: Store, summary: Summary, *, dry_run: bool) -> list[tuple]:
    """`(trial, how it resumes)` for every unfinished trial; finished ones are skipped."""
    todo = []
    for trial in spec.trials:
        status = store.status(trial.key)
        if status == "FINISHED":
            summary.skipped.append(trial.key)
            print(f"skip  {trial.key} (finished)")
        elif dry_run:
            print(f"todo  {trial.key} ({(status or 'not started').lower()})")
        else:
            todo.append((trial, f" (resuming a {status.lower()} run)" if status else ""))
    return todo


def _execute(spec, store, todo, progress, jobs, scheduler, per_gpu) -> list[tuple[str, str | None]]:
    if jobs == 1 and not scheduler:
        outcomes = []
        for trial, resuming in todo:  # each announced as it starts, its results under it
            print(f"run   {trial.key}{resuming}")
            outcomes.append((trial.key, run_guarded(spec, trial, store, progress=progress)))
        return outcomes
    for trial, resuming in todo:
        print(f"queue {trial.key}{resuming}")
    trials = [trial for trial, _ in todo]
    job = functools.partial(trial_in_worker, spec, store.uri, os.getcwd(), per_gpu)
    if scheduler:
        return run_dask(job, trials, scheduler, slots=max(jobs, 1))
    return run_local(job, trials, jobs)


def run_guarded(spec: Spec, trial: Trial, store: Store, *, progress: bool) -> str | None:
    """Run one trial; None when it finished, else why it failed (the others carry on). Errors
    that are not the trial's (see the module's docstring) propagate and stop the sweep."""
    try:
        run_trial(spec, trial, store, progress=progress)
        return None
    except TRIAL_FAILURES as error:
        return f"{type(error).__name__}: {error}".splitlines()[0]
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
        reason = _out_of_memory(spec, trial)
    _free_memory()  # outside the `except`: the traceback no longer holds the trial's tensors
    return reason


def is_out_of_memory(error: BaseException) -> bool:
    """A CUDA or CPU allocation failure (torch raises both as RuntimeError)."""
    text = str(error)
    return (
        isinstance(error, torch.cuda.OutOfMemoryError)
        or "out of memory" in text.lower()
        or "can't allocate memory" in text
    )


def _out_of_memory(spec: Spec, trial: Trial) -> str:
    device = distributed.current().device
    batch = spec.train_for(trial).batch_size
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        total = torch.cuda.get_device_properties(device).total_memory / 2**30
        memory = f"{peak:.1f} GiB allocated at the peak, of {total:.1f} GiB"
    else:
        memory = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB resident"
    return (
        f"out of memory on {device_name(device)} in trial {trial.key} at train.batch_size "
        f"{batch} (eval.batch_size {spec.eval.batch_size}): {memory}. Lower the batch size "
        "(--set train.batch_size=...) or the clip size."
    )


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def trial_in_worker(
    spec: Spec, uri: str, folder: str, per_gpu: int, trial: Trial, slot: int, slots: int
) -> str | None:
    """One trial in a worker process: a GPU of its own (claimed from the machine's pool for
    the trial's duration) or its share of the CPU cores, in the launching folder (on a
    cluster, a path the workers share), logging to the store at `uri` (created before fan-out)."""
    os.chdir(folder)
    os.environ[CONCURRENT_TRIALS_ENV] = str(slots)  # sizes the loaders (harness.device)
    store = open_store(uri, spec.name)
    if not torch.cuda.is_available():
        torch.set_num_threads(cores_per_process())
        return run_guarded(spec, trial, store, progress=False)
    with claimed_gpu(torch.cuda.device_count(), per_gpu=per_gpu) as gpu:
        torch.cuda.set_device(gpu)
        return run_guarded(spec, trial, store, progress=False)
