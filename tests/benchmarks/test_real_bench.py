"""The real-photo benchmark's table (benchmarks/bench_real.py): Back Market's measures read Back
Market's own review flag, and every standard gets its share right, its mean probability and its share
not sent to review, beside the share no standard sends to review."""

from __future__ import annotations

import pytest

from tests.benchmarks import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_real")


def _row(bench, truth, listable, bm_review, ctia, any_review):
    standards = {"backmarket": (True, 0.9, bm_review), "ctia": ctia, "r2": (True, 0.5, True)}
    return bench.Graded(
        "phones_web",
        truth,
        0.9 if truth == "cracked" else 0.1,
        listable,
        bm_review,
        None,
        standards=standards,
        reviewed_by_any=any_review,
    )


def test_the_table_gives_each_standard_and_all_together(bench):
    rows = [
        # A cracked phone Back Market is sure of; CTIA's D is right (cracked glass) but sent to review.
        _row(bench, "cracked", False, False, (True, 0.8, True), True),
        _row(bench, "cracked", False, False, (True, 0.6, True), True),
        # An intact phone: CTIA wrong, nobody sure of it.
        _row(bench, "intact", True, True, (False, 0.2, True), True),
        # An intact phone every standard is sure of.
        _row(bench, "intact", True, False, (True, 1.0, False), False),
    ]
    t = bench.table(rows)["all"]
    assert t["graded without review"] == (0.75, 4)  # Back Market's own flag
    assert t["of those, right on listable"] == (1.0, 3)
    assert t["ctia: grade right"] == (0.75, 4)
    assert t["ctia: mean probability"] == (pytest.approx(0.65), 4)
    assert t["ctia: not sent to review"] == (0.25, 4)
    assert t["r2: not sent to review"] == (0.0, 4)
    assert t["without review, all standards"] == (0.25, 4)
