"""Grade calibration (`model.rules.calibration`): the fit recovers known transitions, the card carries it,
and the rules engine reports calibrated probabilities and flags review on them."""

from __future__ import annotations

import numpy as np
import pytest

from model.card import Thresholds
from model.instances import mm
from model.rules import GradeCalibration, fit_grade_calibration, grade, load_standard
from model.rules.calibration import fit_transition

TRUE_M = np.array(
    [
        [0.5, 0.2, 0.2, 0.1],
        [0.1, 0.6, 0.2, 0.1],
        [0.0, 0.2, 0.7, 0.1],
        [0.0, 0.0, 0.1, 0.9],
    ]
)


def _draw(n, soft, seed=0):
    """Devices whose true grade follows TRUE_M from the rules' grade; `soft`: the rules' probabilities
    spread over two grades instead of one."""
    rng = np.random.default_rng(seed)
    k = len(TRUE_M)
    h = rng.integers(0, k, n)
    probs = np.eye(k)[h]
    if soft:
        other = (h + rng.integers(1, k, n)) % k
        w = rng.uniform(0.5, 1.0, n)[:, None]
        probs = w * probs + (1 - w) * np.eye(k)[other]
    mix = probs @ TRUE_M
    true = np.array([rng.choice(k, p=row) for row in mix])
    return probs, true


@pytest.mark.parametrize("soft", [False, True])
def test_fit_recovers_a_known_transition_matrix(soft):
    probs, true = _draw(6000, soft)
    m = fit_transition(probs, true)
    assert np.allclose(m.sum(axis=1), 1.0)
    assert np.abs(m - TRUE_M).max() < 0.05


def test_em_fit_is_at_least_as_likely_as_its_soft_count_start():
    probs, true = _draw(3000, soft=True, seed=1)

    def loglik(m):
        return np.log((probs @ m)[np.arange(len(true)), true]).sum()

    assert loglik(fit_transition(probs, true)) > loglik(fit_transition(probs, true, iterations=0)) + 1.0


def test_a_grade_validation_never_predicted_keeps_most_of_its_probability():
    probs, true = _draw(500, soft=False)
    keep = probs[:, 3] == 0  # no device the rules grade as the last grade
    m = fit_transition(probs[keep], true[keep])
    assert m[3, 3] > 0.5 and np.allclose(m[3].sum(), 1.0)


def _premium_calibration(premium_right: float) -> GradeCalibration:
    names = load_standard("backmarket").grade_names
    k = len(names)
    m = np.eye(k)
    m[0] = [premium_right, 1 - premium_right] + [0.0] * (k - 2)
    return GradeCalibration(grades=names, matrix=tuple(map(tuple, m)), devices=40, standard_version="test")


def test_calibrated_grade_keeps_the_rules_grade_but_not_their_certainty():
    plain = grade([], "backmarket")
    assert plain.grade == "Premium" and plain.probabilities["Premium"] == 1.0 and not plain.needs_review
    cal = grade([], "backmarket", calibration=_premium_calibration(0.4), review_threshold=0.8)
    assert cal.grade == "Premium" and cal.barred == plain.barred
    assert cal.probabilities["Premium"] == pytest.approx(0.4)
    assert cal.probabilities["Excellent"] == pytest.approx(0.6)
    assert cal.needs_review and "calibrated on 40 validation devices" in cal.method


def test_calibration_mixes_the_rules_probabilities():
    scratch = mm("scratch", "screen", 5.0, confidence=0.5)  # real or not: a coin toss
    raw = grade([scratch], "backmarket").probabilities
    cal = grade([scratch], "backmarket", calibration=_premium_calibration(0.4)).probabilities
    assert raw["Premium"] == pytest.approx(0.5)
    assert cal["Premium"] == pytest.approx(0.4 * raw["Premium"])
    assert sum(cal.values()) == pytest.approx(1.0)


def test_calibration_for_other_grades_is_refused():
    wrong = GradeCalibration(
        grades=("A", "B"), matrix=((1.0, 0.0), (0.0, 1.0)), devices=30, standard_version="1"
    )
    with pytest.raises(ValueError, match="grade calibration is for grades"):
        grade([], "backmarket", calibration=wrong)
    with pytest.raises(ValueError, match="grade calibration is for grades"):
        wrong.apply({"A": 0.5, "C": 0.5})


@pytest.mark.parametrize(
    "matrix, problem",
    [
        (((1.0, 0.0),), "must be 2 x 2"),
        (((0.7, 0.7), (0.0, 1.0)), "summing to 1"),
        (((1.2, -0.2), (0.0, 1.0)), "summing to 1"),
    ],
)
def test_malformed_calibration_is_rejected(matrix, problem):
    with pytest.raises(ValueError, match=problem):
        GradeCalibration(grades=("A", "B"), matrix=matrix, devices=1, standard_version="1")


def test_card_thresholds_carry_the_calibration_through_json():
    names = load_standard("ctia").grade_names
    rows = [({g: float(g == t) for g in names}, t) for t in names for _ in range(8)]
    cal = fit_grade_calibration(names, "1", rows)
    th = Thresholds(defect_pixel={"scratch": 0.4}, grade_calibration={"ctia": cal})
    back = Thresholds.model_validate_json(th.model_dump_json())
    assert back.grade_calibration["ctia"] == cal and cal.devices == len(rows)
    assert Thresholds(defect_pixel={}).grade_calibration == {}  # older cards: the rules' probabilities


def test_set_labels_and_weights_calibrate_what_they_can_tell():
    """Real photos known only to be cracked (one grade) or listable (a set): a rules' best grade that
    such photos contradict loses probability; a label set that allows the rules' grade takes none."""
    from model.rules.calibration import fit_grade_calibration

    grades = ("A", "B", "C")
    sure_a = {"A": 1.0, "B": 0.0, "C": 0.0}
    # Half the devices the rules call A are in truth "B or C" (say, not listable as A), half are A.
    rows = [(sure_a, "A")] * 20 + [(sure_a, ("B", "C"))] * 20
    cal = fit_grade_calibration(grades, "1", rows)
    assert cal.apply(sure_a)["A"] == pytest.approx(0.5, abs=0.03)
    only_sets = fit_grade_calibration(grades, "1", [(sure_a, ("A", "B"))] * 40)
    # Nothing says A was wrong, nothing tells A from B: the prior's trust in the rules splits the set.
    assert only_sets.apply(sure_a)["A"] == pytest.approx(0.8, abs=0.02)
    weighted = fit_grade_calibration(grades, "1", rows, weights=[1.0] * 20 + [3.0] * 20)
    assert weighted.apply(sure_a)["A"] == pytest.approx(0.25, abs=0.03)
