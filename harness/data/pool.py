"""Process pools for the data commands (`data synth|check|prepare|flow|cache`), stopped at once by
Ctrl-C.

A terminal's Ctrl-C sends SIGINT to the whole process group: to the pool's workers as well as to
the command. With a plain `ProcessPoolExecutor`, each worker abandoned its current video and went
on with the queued ones, while the command waited in `shutdown` for every queued video; the
command seemed to hang, and a second Ctrl-C left workers running on their own. Here the workers
ignore SIGINT (only the command answers it), and a block that ends by an exception (Ctrl-C, or a
failure) cancels the queued jobs and stops the workers before it goes on.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A `ProcessPoolExecutor` of `workers` processes that ignore SIGINT, shut down when the
    block ends: after its jobs when the block completes, at once when it raises."""
    pool = ProcessPoolExecutor(workers, initializer=_ignore_interrupts)
    try:
        yield pool
        pool.shutdown(wait=True)
    except BaseException:  # Ctrl-C (in the block or the shutdown), a consumer giving up: stop
        _stop(pool)
        raise


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued jobs and end the workers now (a video half written is written again
    by the next run)."""
    processes = list((pool._processes or {}).values())  # shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=10)
