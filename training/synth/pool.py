"""The generators' worker pools: forked where the platform can fork, the parent's garbage collected first.

A forked child inherits the parent's uncollected garbage and may collect it itself, on its first
allocations. Where that garbage holds an ONNX Runtime session (a model a caller or an earlier test
loaded and dropped in a reference cycle), the child destroys the session's thread pool, whose threads
did not fork with it, and waits for them forever: the test suite hung so once in
`tests/training/test_fine_patches.py` (session 45; the child's stack, in gdb: the garbage collector,
then ONNX Runtime's destructor in `pthread_cond_destroy`). Collected in the parent before the fork,
that garbage is gone from every child.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
from collections.abc import Callable
from multiprocessing.pool import Pool


def worker_pool(workers: int, initializer: Callable, initargs: tuple) -> Pool:
    """A pool of `workers` processes, each set up by `initializer(*initargs)`: forked where the
    platform can (the workers share the parent's imports), spawned elsewhere."""
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    if ctx.get_start_method() == "fork":
        gc.collect()
    return ctx.Pool(workers, initializer=initializer, initargs=initargs)
