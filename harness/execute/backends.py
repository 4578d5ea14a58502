"""Where trials run when several run at once: local processes through joblib (`--jobs N`), or an
existing Dask cluster (`--backend dask --scheduler tcp://HOST:8786`).

A backend knows nothing of specs or stores: it calls `job(trial, slots)` for every trial, where
`slots` is how many trials run at once (each worker takes that share of the CPU cores; GPUs are
claimed from the machine's pool, `harness.execute.gpus`), and returns `(trial key, what the job
returned)` in the order given. A worker that dies mid-trial leaves that trial's run RUNNING with
its last epoch checkpoint; Dask reschedules the task on another worker, which continues the same
run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from joblib import Parallel, delayed

from harness.config import Trial
from registry import ConfigError

Job = Callable[[Trial, int], Any]  # (trial, slots) → the trial's outcome


def run_local(job: Job, trials: Sequence[Trial], jobs: int) -> list[tuple[str, Any]]:
    """`jobs` trials at a time in local processes (joblib's loky backend)."""
    slots = max(jobs, 1)
    calls = (delayed(_keyed)(job, t, slots) for t in trials)
    return Parallel(n_jobs=jobs, backend="loky")(calls) if trials else []


def run_dask(
    job: Job, trials: Sequence[Trial], scheduler: str, slots: int
) -> list[tuple[str, Any]]:
    """Every trial submitted to the Dask cluster at `scheduler` (`pip install -e ".[dask]"`)."""
    from distributed import Client  # the optional `dask` extra

    if not trials:
        return []
    try:
        client = Client(scheduler, timeout="30s")
    except OSError as error:  # no scheduler answered there
        raise ConfigError(
            f"--scheduler {scheduler}: {error} Start the cluster first (`dask scheduler`, then "
            f"`dask worker {scheduler}` on each machine) or check the address and port."
        ) from None
    with client:
        futures = [
            client.submit(_keyed, job, t, slots, pure=False, key=f"trial-{t.key}") for t in trials
        ]
        return client.gather(futures)


def _keyed(job: Job, trial: Trial, slots: int) -> tuple[str, Any]:
    return trial.key, job(trial, slots)
