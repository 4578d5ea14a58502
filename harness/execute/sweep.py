"""`harness run`: every trial of a spec trained, evaluated and logged, safe to run again.

A trial whose latest run is FINISHED under the same configuration (`Spec.config_hash`: model,
split, seed, train settings, dataset, evaluation) is skipped; one finished under another
configuration runs again as a new run. Any other (FAILED, KILLED, or RUNNING left behind by a
killed process) runs again in the same run, resuming from its last epoch checkpoint. Two sweeps
in one folder never train one trial at once (`harness.execute.locks`). A trial's own failure
ends it alone, other errors stop the sweep (`harness.execute.failures`); Ctrl-C stops it with
the summary of what finished, the interrupted runs KILLED (resumable). The summary lists
finished, skipped and failed trials.

Trials run one after another, in local processes or on a Dask cluster
(`harness.execute.backends`), each worker with a GPU of its own (`harness.execute.gpus`); the
store already exists (the caller opened it), so parallel workers never race on its schema.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch

from harness.config import Spec, SpecError, Trial
from harness.device import CONCURRENT_TRIALS_ENV, cores_per_process
from harness.execute.backends import run_dask, run_local
from harness.execute.failures import free_memory, run_or_reason
from harness.execute.fusion import fuse_finished
from harness.execute.gpus import claimed_gpu, gpu_names, lock_folder
from harness.execute.locks import trial_claim
from harness.execute.preflight import preflight, readiness
from harness.tracking import Store, open_store
from harness.tracking.schema import same_config
from harness.train import distributed
from registry import ConfigError

__all__ = ["Outcome", "Summary", "run_guarded", "run_spec", "trial_in_worker"]


@dataclass(frozen=True)
class Outcome:
    """How one trial of a sweep ended: `finished`, `failed` (with why) or `skipped` (why), its
    video top-1 when it finished, and the seconds it took."""

    kind: str
    reason: str | None = None
    top1: float | None = None
    seconds: float = 0.0


@dataclass
class Summary:
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    fused: list[str] = field(default_factory=list)  # two-stream results logged this time
    missing: list[str] = field(default_factory=list)  # what a dry run found missing
    interrupted: bool = False  # Ctrl-C stopped the sweep
    ran: dict[str, Outcome] = field(default_factory=dict)  # this sweep's trials, in order

    def add(self, key: str, outcome: Outcome) -> None:
        self.ran[key] = outcome
        if outcome.kind == "finished":
            self.finished.append(key)
        elif outcome.kind == "skipped":
            self.skipped.append(key)
            print(f"skip  {key} ({outcome.reason})")
        else:
            self.failed[key] = outcome.reason
            print(f"FAIL  {key}: {outcome.reason}")


def run_spec(
    spec: Spec, store: Store | None, *, dry_run: bool = False, progress: bool = True, jobs: int = 1,
    scheduler: str | None = None, per_gpu: int = 1, preflighted: bool = False,
) -> Summary:  # fmt: skip
    """Run every unfinished trial: one after another, in `jobs` local processes (joblib), or
    on the Dask cluster at `scheduler`; `per_gpu` trials may share one GPU. `store` is None only
    for a dry run against a store not created yet; `preflighted`: the caller ran `preflight`
    (before it opened the store)."""
    require_dataset(spec)
    summary = Summary()
    _check_batches(spec)
    if not dry_run and not preflighted:
        preflight(spec)
    todo = _todo(spec, store, summary, dry_run=dry_run)
    if dry_run:
        summary.missing = readiness(spec)
        if not summary.missing:
            preflight(spec, generate=False)
        return summary
    try:
        _execute(spec, store, todo, summary, progress, jobs, scheduler, per_gpu)
    except KeyboardInterrupt:  # the runs it cut short are KILLED (resumable)
        summary.interrupted = True
        _kill_orphans(spec, store, [trial for trial, _ in todo])
        return summary
    if distributed.current().main:
        summary.fused += fuse_finished(spec, store)
    return summary


def require_dataset(spec: Spec) -> None:
    """A spec without `dataset` trains nothing: a `SpecError` saying it can only be profiled."""
    if spec.dataset is None:
        raise SpecError(f"{spec.path}: key 'dataset' is missing: this spec can only be profiled.")


def _kill_orphans(spec: Spec, store: Store, trials: list[Trial]) -> None:
    """Runs left RUNNING by workers stopped before they could say so (joblib terminates its
    workers on Ctrl-C) are marked KILLED; a trial another process still holds is left alone."""
    records = store.latest_runs(trial.key for trial in trials)
    for trial in trials:
        record = records.get(trial.key)
        if record is None or record.status != "RUNNING":
            continue
        with trial_claim(spec.name, trial.key) as free:
            if free:
                store.mark_killed(record.run_id)


def _check_batches(spec: Spec) -> None:
    """Every trial's global batch divides among this torchrun's ranks (before anything runs)."""
    group = distributed.current()
    for trial in spec.trials:
        try:
            distributed.rank_batch(spec.train_for(trial).batch_size, group)
        except ConfigError as error:
            raise SpecError(f"{spec.path}: trial {trial.key}: {error}") from None


def _todo(spec: Spec, store: Store | None, summary: Summary, *, dry_run: bool) -> list[tuple]:
    """`(trial, how it starts)` for every trial not finished under its configuration; the
    others are skipped. One paged search of the store for all of them (no store: a dry run
    before any run)."""
    todo = []
    records = store.latest_runs(t.key for t in spec.trials) if store else {}
    for trial in spec.trials:
        record = records.get(trial.key)
        same = record is not None and same_config(record, spec.config_hash(trial))
        if same and record.finished:
            summary.skipped.append(trial.key)
            print(f"skip  {trial.key} (finished)")
        elif dry_run:
            print(f"todo  {trial.key} ({_state(record, same)})")
        else:
            todo.append((trial, f" ({_state(record, same)})" if record else ""))
    return todo


def _state(record, same: bool) -> str:
    if record is None:
        return "not started"
    if not same:
        return f"its {record.status.lower()} run had another configuration: a new run"
    return f"resuming a {record.status.lower()} run"


def _execute(spec, store, todo, summary, progress, jobs, scheduler, per_gpu) -> None:
    if jobs == 1 and not scheduler:
        for k, (trial, resuming) in enumerate(todo, 1):  # each announced, its results under it
            print(f"run   [{k}/{len(todo)}] {trial.key}{resuming}{_time_left(summary, todo, k)}")
            with _own_gpu():
                summary.add(trial.key, run_guarded(spec, trial, store, progress=progress))
        return
    for k, (trial, resuming) in enumerate(todo, 1):
        print(f"queue [{k}/{len(todo)}] {trial.key}{resuming}")
    trials = [trial for trial, _ in todo]
    job = functools.partial(trial_in_worker, spec, store.uri, os.getcwd(), per_gpu)
    if scheduler:
        outcomes = run_dask(job, trials, scheduler, slots=max(jobs, 1))
    else:
        outcomes = run_local(job, trials, jobs)
    for key, outcome in outcomes:
        summary.add(key, outcome)


@contextlib.contextmanager
def _own_gpu() -> Iterator[None]:
    """On a GPU machine, a trial of a one-at-a-time sweep claims its GPU from the machine's pool
    as `--jobs` workers do, so sweeps started side by side never share one (under torchrun the
    ranks' GPUs are the launcher's choice)."""
    if not torch.cuda.is_available() or distributed.current().launched:
        yield
        return
    with claimed_gpu(gpu_names(), waiting=_say_waiting) as gpu:
        torch.cuda.set_device(gpu)
        try:
            yield
        finally:  # hand the GPU back empty, not holding this trial's cached blocks
            free_memory()


def _say_waiting() -> None:
    print(f"      waiting for a GPU: other harness trials hold every one (claims in "
          f"{lock_folder()}); this trial starts when one ends.", flush=True)  # fmt: skip


def _time_left(summary: Summary, todo: list, k: int) -> str:
    """`; about N min left` from the mean time of the trials this sweep has run so far."""
    done = [o.seconds for o in summary.ran.values() if o.kind != "skipped"]
    if not done:
        return ""
    minutes = sum(done) / len(done) * (len(todo) - k + 1) / 60
    return f"; about {minutes:.0f} min left" if minutes >= 1 else "; under a minute left"


def run_guarded(spec: Spec, trial: Trial, store: Store, *, progress: bool) -> Outcome:
    """`_run_claimed`, timed, with the trial's video top-1 when it finished."""
    started = time.perf_counter()
    outcome = _run_claimed(spec, trial, store, progress=progress)
    top1 = None
    if outcome.kind == "finished":
        record = store.latest_run(trial.key)
        top1 = record.metrics.get("video_top1") if record is not None else None
    return replace(outcome, top1=top1, seconds=time.perf_counter() - started)


def _run_claimed(spec: Spec, trial: Trial, store: Store, *, progress: bool) -> Outcome:
    """Run one trial unless another process holds it or it finished meanwhile; a trial's own
    failure is an outcome (the others carry on), any other error propagates and stops the
    sweep (`harness.execute.failures`)."""
    if distributed.current().launched:  # under torchrun the ranks run it together, unclaimed
        reason = run_or_reason(spec, trial, store, progress=progress)
        return Outcome("finished" if reason is None else "failed", reason)
    with trial_claim(spec.name, trial.key) as held:
        if not held:
            return Outcome("skipped", "another harness process in this folder is running it")
        record = store.latest_run(trial.key)
        if record is not None and record.finished and same_config(record, spec.config_hash(trial)):
            return Outcome("skipped", "finished meanwhile by another process")
        reason = run_or_reason(spec, trial, store, progress=progress)
    return Outcome("finished" if reason is None else "failed", reason)


def trial_in_worker(
    spec: Spec, uri: str, folder: str, per_gpu: int, trial: Trial, slots: int
) -> Outcome:
    """One trial in a worker process: a GPU of its own (claimed from the machine's pool for
    the trial's duration) or its share of the CPU cores, in the launching folder (on a
    cluster, a path the workers share), logging to the store at `uri` (created before fan-out)."""
    os.chdir(folder)
    if torch.cuda.is_available():  # the trials that run at once: at most per_gpu on each GPU
        slots = min(slots, torch.cuda.device_count() * per_gpu)
    os.environ[CONCURRENT_TRIALS_ENV] = str(slots)  # sizes the loaders (harness.device)
    store = open_store(uri, spec.name)
    if not torch.cuda.is_available():
        torch.set_num_threads(cores_per_process())
        return run_guarded(spec, trial, store, progress=False)
    with claimed_gpu(gpu_names(), per_gpu=per_gpu) as gpu:
        torch.cuda.set_device(gpu)
        try:
            return run_guarded(spec, trial, store, progress=False)
        finally:  # the worker lives on: hand the GPU back empty, not with this trial's cache
            free_memory()
