"""The generators' worker pools collect the parent's garbage before they fork (training/synth/pool.py)."""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import weakref

import pytest

from training.synth.pool import worker_pool


def _noop() -> None:
    pass


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="no fork on this platform")
def test_the_parents_garbage_is_collected_before_the_fork():
    class Held:
        pass

    freed: list[bool] = []
    gc.disable()  # only the pool may collect it
    try:
        cycle = Held()
        cycle.self = cycle  # garbage only a collection frees, like a dropped session in a cycle
        weakref.finalize(cycle, freed.append, True)
        del cycle
        assert not freed
        with worker_pool(1, _noop, ()) as pool:
            assert freed  # gone before any child could inherit it
            assert pool.apply(os.getpid) != os.getpid()  # a real worker process
    finally:
        gc.enable()
