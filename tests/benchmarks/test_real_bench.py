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
    assert t["kind read right"][1] == 0  # the kinds were given: none read


def test_the_kind_read_from_the_photos_is_scored_where_the_manifest_states_it(bench):
    rows = [_row(bench, "worn", True, True, (True, 0.5, True), True) for _ in range(3)]
    rows[0].kind_ok, rows[1].kind_ok = True, False  # the third photo's manifest names no kind
    assert bench.table(rows)["all"]["kind read right"] == (0.5, 2)


def test_a_laptop_lid_is_worn_and_a_labelled_crack_still_counts(bench):
    """laptop_scratch's lids and covers are worn and uncracked (its data card), labelled or not; the
    other sets' truth is their labels, as before."""
    from model.manifest import ManifestRecord

    def record(source, labels):
        return ManifestRecord(image="a.jpg", device_id="d", split="val", source=source, image_labels=labels)

    assert bench.truth_of(record("laptop_scratch", {"scratch": True})) == "worn"
    assert bench.truth_of(record("laptop_scratch", {})) == "worn"  # nothing annotated: not cracked either
    assert bench.truth_of(record("laptop_scratch", {"crack": True})) == "cracked"
    assert bench.truth_of(record("msd", {"crack": False, "scratch": True})) == "worn"
    assert bench.truth_of(record("phones_web", {"crack": False})) == "intact"
    assert bench.truth_of(record("phones_web", {})) is None


def test_shares_print_their_wilson_interval_and_the_auroc_none(bench):
    # 34 of 34: the point is 1.0, but 34 photos cannot tell it from 0.90 (Wilson 0.898-1.0).
    low, high = bench.wilson(1.0, 34)
    assert 0.89 < low < 0.91 and high == pytest.approx(1.0)
    low, high = bench.wilson(0.5, 100)
    assert low == pytest.approx(0.404, abs=0.002) and high == pytest.approx(0.596, abs=0.002)
    assert bench._fmt((0.5, 100), interval=True) == "0.500 (100; 0.40-0.60)"
    assert bench._fmt((0.5, 100)) == "0.500 (100)"
    assert bench._fmt((float("nan"), 0), interval=True) == "n/a (0)"
    assert bench.is_share("intact graded listable") and bench.is_share("backmarket: grade right")
    assert not bench.is_share("crack AUROC") and not bench.is_share("backmarket: mean probability")


def test_two_models_are_compared_photo_by_photo(bench):
    def photo(truth, listable, reviewed=True):
        return bench.Graded("phones_web", truth, 0.5, listable, reviewed, None)

    # The first model gets two intact photos right that the second calls Unlistable, and one cracked
    # photo wrong that the second gets right; one ungradable photo is wrong for both.
    first = [
        photo("intact", True, False),
        photo("intact", True),
        photo("cracked", True),
        photo("intact", None),
    ]
    second = [photo("intact", False), photo("intact", False), photo("cracked", False), photo("intact", None)]
    table = bench.paired(first, second)
    only_first, only_second, p = table["right on listable"]
    assert (only_first, only_second) == (2, 1) and p == pytest.approx(1.0)  # 3 disagreements: chance
    assert table["right without review"][:2] == (1, 0)
    nine = [photo("intact", True)] * 9
    assert bench.paired(nine, [photo("intact", False)] * 9)["right on listable"][2] == pytest.approx(2 / 2**9)
    with pytest.raises(ValueError, match="same photos"):
        bench.paired(first, second[::-1])
