"""How a grading process asks the kernel for large arrays: without numpy's transparent-huge-page hint.

NumPy marks every array of 4 MB or more `madvise(MADV_HUGEPAGE)` (on Linux from kernel 4.6). Where the
kernel's THP `defrag` setting is `madvise` (the common default, and this project's machines'), a
page fault in such an array waits while the kernel compacts memory to find 2 MB pages. Once a
long-running host's memory is fragmented, that stall is in the grading's path: a 12 MP photo's
full-scale decode (36 MB) took 200-370 ms of kernel time instead of about 35 ms in bursts of
gradings on 2 cores, a grading 430-480 ms instead of 160-175; without the hint, 12 gradings in a row
stayed at 162-174 ms, kernel time at most 39 ms a grading (docs/fine-pass.md, session 45). The
arrays are written once and dropped within the grading, so huge pages buy nothing back.

So a process that grades (the service, the offline grader, a re-grading worker) turns the hint off
when it starts, unless the operator set `NUMPY_MADVISE_HUGEPAGE` (NumPy's own switch, read at its
import), whose choice stands.
"""

from __future__ import annotations

import os

import numpy as np

ENV = "NUMPY_MADVISE_HUGEPAGE"


def no_hugepage_hint() -> bool:
    """Stop NumPy's huge-page hint on new arrays unless `ENV` says otherwise; returns whether the hint
    is now off. A NumPy without the switch (not Linux, an older or newer layout) is left alone."""
    if ENV in os.environ:
        return os.environ[ENV].strip() == "0"
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    switch = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if switch is None:
        return False
    switch(False)
    return True
