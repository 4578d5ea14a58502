"""What a failure does, by whose it is (EAM and AARM sweeps run dozens of trials unattended).

Data and numerics (undecodable videos, a missing file, a NaN loss or NaN test scores, a setting the
trial cannot use) end that trial with a one-line reason and the others go on; so does running out of
memory, whose reason names the trial, its batch sizes and the memory, after which the cache is freed
for the next trial. Anything else (a bug in the code, a CUDA device-side assert, which leaves the
GPU unusable) propagates and stops the sweep: `run_trial` has already saved its traceback in the run
(`traceback.txt`), and the command line prints it.
"""

from __future__ import annotations

import gc
import resource

import torch

from harness.config import Spec, Trial
from harness.device import device_name
from harness.tracking import Store
from harness.train import distributed
from harness.train.engine import NonFiniteLoss, NonFiniteScores
from harness.train.trial import run_trial
from registry import ConfigError

# What ends one trial without stopping the others: its data, its numbers, its settings.
TRIAL_FAILURES = (NonFiniteLoss, NonFiniteScores, ConfigError, OSError)


def run_or_reason(spec: Spec, trial: Trial, store: Store, *, progress: bool) -> str | None:
    """Run one trial; None when it finished, else the one-line reason it failed. Under torchrun
    every failure propagates: one rank failing alone would leave the others waiting at their
    next collective, so the job ends (torchrun stops the other ranks)."""
    if distributed.current().launched:
        run_trial(spec, trial, store, progress=progress)
        return None
    try:
        run_trial(spec, trial, store, progress=progress)
        return None
    except TRIAL_FAILURES as error:
        return one_line(error)
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
        reason = _out_of_memory(spec, trial)
    free_memory()  # outside the `except`: the traceback no longer holds the trial's tensors
    return reason


def one_line(error: BaseException) -> str:
    """`Type: message`, first line; for an error re-raised from a DataLoader worker ("Caught X in
    DataLoader worker process 0." + its traceback), the original error's last line."""
    text = str(error)
    if text.startswith("Caught ") and "\n" in text.strip():
        return text.strip().splitlines()[-1]
    return f"{type(error).__name__}: {text}".splitlines()[0]


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


def free_memory() -> None:
    """Collect the trial's garbage and return the GPU's cached blocks to the driver."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
