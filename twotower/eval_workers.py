"""`twotower eval --workers N`: the eval's prompts scored in N processes, one engine each.

A decode pass of the default model is too small to split over threads (BENCHMARKS.md: two intra-op threads
did not shorten a speculative round), but the eval's prompts are independent, so a machine with N cores runs
N prompts at once. Workers are spawned, not forked (a fork after torch has run its thread pool can hang), and
each builds its engine from `engine_factory` and keeps it for all its prompts. Results come back in the jobs'
order, so the report is the single-process one (tests/test_bench_eval.py compares them).
"""

from __future__ import annotations

import multiprocessing
import os
import sys

import torch

_worker: dict = {}  # per worker process: its engine and the scoring settings


def _start(engine_factory, scoring: dict, threads: int, hf_verbosity: int) -> None:
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)  # N workers share the cores instead of each taking them all
    hf_logging.set_verbosity(hf_verbosity)  # as the parent has it (the CLI silences the kernel notices)
    try:
        _worker["engine"], _worker["scoring"] = engine_factory(), scoring
    except Exception as exc:  # said by the first job (an initializer's error was a child's traceback)
        _worker["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]


def _score(job: tuple) -> dict:
    from .evaluation import score_item

    if "error" in _worker:
        raise ValueError(f"an eval worker could not build its engine ({_worker['error']}); fewer --workers "
                         "need less memory")
    task, item = job
    return score_item(_worker["engine"], task, item, **_worker["scoring"])


def records_in_workers(engine_factory, workers: int, jobs: list[tuple], scoring: dict):
    """score_item's records for `jobs` [(task, item)], in order, computed by `workers` spawned processes.

    A process pool that notices a worker gone: multiprocessing.Pool restarted a worker killed mid-job (the
    kernel's out-of-memory killer) and waited for that job's result forever."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from transformers.utils import logging as hf_logging

    threads = max(1, torch.get_num_threads() // workers)
    ctx = multiprocessing.get_context("spawn")
    initargs = (engine_factory, scoring, threads, hf_logging.get_verbosity())
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start, initargs=initargs)
    try:
        # small chunks: prompts differ in length, and the progress bar moves as they come back
        yield from pool.map(_score, jobs, chunksize=max(1, min(8, len(jobs) // (4 * workers))))
    except BrokenProcessPool:
        raise ValueError(f"an eval worker process ended before its prompts were scored (out of memory? each of "
                         f"the {workers} workers holds its own model: fewer --workers need less)") from None
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the chunks running are given up too (the shutdown below
        # waited for them, up to half a minute with no word); the workers' scores so far go with the run
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        raise
    finally:  # a run given up (an error, Ctrl-C) does not wait for the jobs still queued, only for the chunks
        # already running (wait=False left the pool's thread to meet a closed pipe at exit: an "Exception
        # ignored ... Bad file descriptor" traceback, seen once in six `bench --eval --workers 0` runs)
        pool.shutdown(wait=True, cancel_futures=True)


def default_workers() -> int:
    """What `--workers 0` picks: one worker per core this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def resolve_workers(workers: int) -> int:
    """A command's --workers, checked: N >= 1 as given, 0 as one per core."""
    if workers < 0:
        raise ValueError(f"--workers must be >= 0 (0: one per core), got {workers}")
    if workers > default_workers():  # allowed (a test of the pooled path on a small machine), but said: each
        # worker is a process holding its own model, and more than the cores only share them
        print(f"note: --workers {workers} on {default_workers()} core(s): each worker loads its own model; more "
              "workers than cores add memory, not speed", file=sys.stderr)
    return workers or default_workers()
