"""The fine pass's oracle (benchmarks/bench_fine_oracle.py) on a few tiny close-up synthetic photos: it
runs, and a perfect fine pass finds at least the scratches the perfect coarse pass finds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_fine_oracle.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_fine_oracle", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_fine_oracle_finds_at_least_the_coarse_scratches(bench, tmp_path, capsys):
    manifest = bench.synth(n=4, seed=11, out=str(tmp_path / "synth"), size=768, fill=0.9)
    tally = bench.oracle(str(manifest), budgets=[4], limit=4, cut=0.25, min_line_mm=2.0, gallery=None)
    out = capsys.readouterr().out
    assert "(a) coarse 384/4" in out and "(b) fine 0.05 mm/px" in out
    coarse, fine = tally["coarse"], tally["fine all"]
    assert coarse.right and len(fine.right) == len(coarse.right)
    assert fine.true == coarse.true
    assert fine.found >= coarse.found
    assert all(
        0.0 <= x <= 1.0 for x in (sum(fine.right) / len(fine.right), sum(coarse.right) / len(coarse.right))
    )
