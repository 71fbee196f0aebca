"""A variant's seeds on every usable CPU: forked workers, the results in seed order, seeds with the same data
trained once."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence

from stages.lib.train.interface import Trained

# What a forked worker of trained_by_seed runs: set before the fork, so the closure needs no pickling.
_SEED_WORK: Callable[[int], Trained] | None = None


def _run_seed_work(repeat: int) -> Trained:
    assert _SEED_WORK is not None
    return _SEED_WORK(repeat)


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group: the stage handles it and ends the pool; a worker killed by it
    # could die holding the pool's queue lock and hang that ending.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def trained_by_seed(
    work: Callable[[int], Trained], seeds: Sequence[int], jobs: int, key: Callable[[int], bytes] | None = None
) -> Iterator[tuple[int, Trained]]:
    """(seed, work(seed)) in seed order, the seeds trained by up to `jobs` forked processes at once.

    A head's seeds are independent and each keeps one BLAS thread, so on C cores they train about C times
    as fast and give the same numbers as one after the other; what `work` returns comes back pickled, and
    an error in a worker is raised here. With `key`, seeds whose keys are equal are trained once: the first
    of them, its result given to each (for work that depends on nothing else)."""
    global _SEED_WORK
    first = {}
    for repeat in seeds:
        first.setdefault(key(repeat) if key is not None else repeat, repeat)
    runs = list(first.values())
    owner = {repeat: first[key(repeat) if key is not None else repeat] for repeat in seeds}
    # fork is safe on Linux only (macOS' system libraries may crash in a forked child).
    jobs = min(jobs, len(runs)) if sys.platform == "linux" else 1
    if jobs <= 1:
        results = (work(repeat) for repeat in runs)
    else:
        import multiprocessing

        _SEED_WORK = work
        # fork: the workers start with the features and the imports already in memory.
        pool = multiprocessing.get_context("fork").Pool(jobs, initializer=_ignore_interrupts)
        results = pool.imap(_run_seed_work, runs)
    try:
        done: dict[int, Trained] = {}
        for repeat in seeds:
            while owner[repeat] not in done:
                done[runs[len(done)]] = next(results)
            yield repeat, done[owner[repeat]]
    finally:
        if jobs > 1:
            pool.terminate()
            pool.join()
            _SEED_WORK = None
