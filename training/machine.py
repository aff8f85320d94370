"""The machine a benchmark ran on, in one line: its CPU, clock, the vector instructions ONNX Runtime's
kernels use, and the cores this process may use.

Speeds move with the CPU more than with anything measured here: the same network file took 32.9 ms a
photo on 2026-12-04 and 115.6 ms on 2026-12-07, on another machine (2 cores of a 2.0 GHz EPYC with AVX2
but no AVX-512), where INT8 was also slower than FP32 (docs/operations.md, "Benchmarks"). The earlier
machines' CPUs were not recorded, so those figures cannot be told apart by machine; the benchmarks that
time things print this line first, and an evaluation report says which machine its inference times are of.
Torch-free.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The instruction sets that decide how fast the convolutions and their INT8 forms run (Linux's flag names).
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_line(cpuinfo: str | None = None) -> str:
    """ "cpu: <model>, <MHz> MHz, <flags of VECTOR_FLAGS it has>, <n> cores"; from /proc/cpuinfo where
    there is one (`cpuinfo`: its text, for tests), else what `platform` knows."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.is_file() else ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:  # the first processor's
            fields[key.strip()] = value.strip()
    model = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    mhz = f", {float(fields['cpu MHz']):.0f} MHz" if "cpu MHz" in fields else ""
    have = set(fields.get("flags", "").split())
    vector = [f for f in VECTOR_FLAGS if f in have]
    flags = f", {' '.join(vector)}" if vector else (", no AVX2" if have else "")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"cpu: {model}{mhz}{flags}, {cores} cores"
