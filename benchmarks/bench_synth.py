"""Synthetic generator benchmark: photos per second and peak memory, end to end (files written).

    .venv/bin/python benchmarks/bench_synth.py [--n 300] [--size 768] [--workers 2] [--seed 0]

Runs `training.synth.generate` (everything `refurbgrade synth` does: render, grade, JPEG/PNG encoding,
manifest) into a temporary folder, with 1 worker and with `--workers`, and prints for each: photos/s,
peak resident memory of the parent and of the largest worker (getrusage max RSS), and bytes written
per photo, and the CPU time per photo (parent + workers, user + system): on a shared machine the wall
figure depends on what else runs, the CPU figure hardly does, and `1000 / CPU ms` x cores is the rate
the cores would give if free. Then one photo's CPU time split into making (in memory) and writing.
The target of issue 3 is >= 20 photos/s at 768 px with 2 workers on 2 cores; the load average is
printed for context.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2


def _run_child(n: int, size: int, workers: int, seed: int) -> dict:
    """One generate() run in a fresh interpreter, so its peak RSS is its own."""
    code = f"""
import resource, time, json, tempfile, pathlib
from training.synth import SynthConfig, generate
with tempfile.TemporaryDirectory() as d:
    cfg = SynthConfig(seed={seed}, size={size})
    t0 = time.perf_counter()
    generate(cfg, {n}, pathlib.Path(d), workers={workers}, progress=False)
    dt = time.perf_counter() - t0
    nbytes = sum(p.stat().st_size for p in pathlib.Path(d).rglob("*") if p.is_file())
ru_s, ru_c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({{"seconds": dt,
    "cpu": ru_s.ru_utime + ru_s.ru_stime + ru_c.ru_utime + ru_c.ru_stime,
    "self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    "bytes": nbytes}}))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    import json

    return json.loads(out.stdout.strip().splitlines()[-1])


def _split_timing(size: int, seed: int, n: int = 40) -> tuple[float, float]:
    from training.synth.generator import SynthConfig, make_sample, write_sample

    cv2.setNumThreads(1)
    cfg = SynthConfig(seed=seed, size=size)
    make_s = write_s = 0.0
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        for sub in ("images", "zones", "masks"):
            (out / sub).mkdir()
        for i in range(n):
            t0 = time.process_time()
            s = make_sample(cfg, i)
            t1 = time.process_time()
            write_sample(s, out, i, seed)
            t2 = time.process_time()
            make_s += t1 - t0
            write_s += t2 - t1
    return make_s / n * 1000, write_s / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"cpus: {os.cpu_count()}, load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"refurbgrade synth, {args.n} photos at {args.size} px (longer side), seed {args.seed}")
    print(
        f"{'workers':>8} {'photos/s':>9} {'seconds':>8} {'CPU ms/photo':>13} {'parent MB':>10} {'worker MB':>10} "
        f"{'KB/photo':>9}"
    )
    for workers in sorted({1, args.workers}):
        r = _run_child(args.n, args.size, workers, args.seed)
        worker_mb = r["child_mb"] if workers > 1 else float("nan")
        print(
            f"{workers:>8} {args.n / r['seconds']:>9.1f} {r['seconds']:>8.1f} {r['cpu'] / args.n * 1000:>13.1f} "
            f"{r['self_mb']:>10.0f} "
            f"{worker_mb:>10.0f} {r['bytes'] / args.n / 1024:>9.0f}"
        )
    make_ms, write_ms = _split_timing(args.size, args.seed)
    print(f"one photo, CPU time in one process: make {make_ms:.1f} ms + write {write_ms:.1f} ms")
    print(
        f"peak RSS of this benchmark process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
