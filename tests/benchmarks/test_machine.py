"""The line the timing benchmarks start with (training/machine.py): which CPU, and the vector
instructions that decide how fast ONNX Runtime runs there."""

from __future__ import annotations

from tests.benchmarks import load_bench

EPYC = """processor\t: 0
model name\t: AMD EPYC
cpu MHz\t\t: 1996.249
flags\t\t: fpu sse2 avx fma avx2 bmi2
processor\t: 1
model name\t: another
cpu MHz\t\t: 3000.0
flags\t\t: avx512f
"""
XEON = "model name : Intel Xeon\ncpu MHz : 2900.0\nflags : avx2 fma avx512f avx512_vnni\n"


def test_the_cpu_line_names_the_cpu_and_its_vector_instructions():
    from training import machine

    line = machine.cpu_line(EPYC)
    assert line.startswith("cpu: AMD EPYC, 1996 MHz, avx2 fma, ") and line.endswith(
        " cores"
    )  # the first CPU's
    assert "avx512" not in line
    assert machine.cpu_line(XEON).startswith("cpu: Intel Xeon, 2900 MHz, avx2 fma avx512f avx512_vnni, ")
    assert ", no AVX2, " in machine.cpu_line("model name : old\nflags : sse2\n")
    assert machine.cpu_line("").startswith("cpu: ")  # no /proc/cpuinfo: what platform knows


def test_the_latency_benchmark_says_which_machine_it_timed(capsys, tmp_path, monkeypatch):
    bench = load_bench("bench_model")
    monkeypatch.setattr(bench, "time_onnx", lambda p, threads, runs: dict.fromkeys(
        ("passes", "median_ms", "p90_ms", "min_ms"), 1.0))  # fmt: skip
    bench.latency(["a.onnx"], threads=2, runs=1)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("cpu: ") and out[1].startswith("a.onnx: median 1.0 ms")
