"""The cross-fitted zone-damage benchmark's table (benchmarks/bench_damage_cv.py): shares judged cracked
per source, truth and copy, and AUROC on originals only."""

from __future__ import annotations

import numpy as np
import pytest

from tests.benchmarks import load_bench
from training.damage import ZoneSample


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_damage_cv")


def test_rates_split_originals_from_copies_and_skip_unjudged_photos(bench):
    def s(cracked):
        return ZoneSample("web", np.zeros(2), cracked)

    fit = [s(True), s(True), s(False), s(False), s(False), s(True)]
    copies = [False, False, False, False, True, False]
    p_fit = np.array([0.9, 0.4, 0.1, 0.7, 0.8, np.nan])  # the last: its fold had no model
    table = bench.rates(fit, copies, p_fit, [s(True), s(False)], np.array([0.6, 0.2]))
    assert table["web / cracked / original"]["out of fold"] == (0.5, 2)
    assert table["web / not cracked / original"]["out of fold"] == (0.5, 2)
    assert table["web / not cracked / copy"]["out of fold"] == (1.0, 1)
    assert table["web / cracked / original"]["validation"] == (1.0, 1)
    # AUROC over the judged originals: 0.9, 0.4 cracked against 0.1, 0.7 not -> 3 of 4 pairs in order.
    assert table["web AUROC (originals)"]["out of fold"] == (0.75, 4)
    assert table["web AUROC (originals)"]["validation"] == (1.0, 2)
