"""The visibility model (model/visibility.py): known values, the width-only fallback, monotonicity."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.visibility import (
    C_SEEN,
    LINE_SPREAD_ARCMIN,
    angular_width_arcmin,
    arcmin_mm,
    retinal_contrast,
    threshold_contrast,
    visibility_index,
    visible,
    visible_up_to_cm,
)

widths = st.floats(0.0, 2.0)
contrasts = st.floats(0.0, 1.0)
distances = st.floats(5.0, 300.0)


def test_one_arcminute_is_0_058_mm_at_20_cm_and_0_145_mm_at_50_cm():
    assert arcmin_mm(20) == pytest.approx(0.0582, abs=5e-5)
    assert arcmin_mm(50) == pytest.approx(0.1454, abs=5e-5)
    assert angular_width_arcmin(0.145, 50) == pytest.approx(1.0, abs=0.005)
    assert angular_width_arcmin(0.15, 20) == pytest.approx(2.58, abs=0.01)  # the grader scale's width


@pytest.mark.parametrize("distance", [20, 50])
def test_width_only_fallback_is_the_angular_width_and_1_arcminute_is_just_visible(distance):
    w = arcmin_mm(distance)
    assert visibility_index(w, None, distance) == pytest.approx(1.0)
    assert visible(w * 1.01, None, distance) and not visible(w * 0.99, None, distance)
    assert visibility_index(0.3, None, distance) == pytest.approx(angular_width_arcmin(0.3, distance))
    assert visible_up_to_cm(w, None) == pytest.approx(distance)


def test_the_contrast_model_at_1_arcminute_and_10_percent_contrast_agrees_with_the_fallback():
    w = arcmin_mm(20)
    assert visibility_index(w, 2 * C_SEEN, 20) == pytest.approx(visibility_index(w, None, 20))


def test_thin_lines_are_seen_by_width_times_contrast_wide_ones_by_contrast():
    # Far below the line spread: halving the width and doubling the contrast is (almost) the same line.
    thin = visibility_index(0.002, 0.4, 50)
    assert visibility_index(0.001, 0.8, 50) == pytest.approx(thin, rel=0.01)
    # Far above it: the index approaches contrast / C_SEEN whatever the width.
    assert visibility_index(20.0, 0.1, 20) == pytest.approx(0.1 / C_SEEN, rel=0.01)
    assert retinal_contrast(arcmin_mm(20) * LINE_SPREAD_ARCMIN, 0.3, 20) == pytest.approx(0.15)
    # A wide line at the large-target threshold is just visible; a line of no width never is.
    assert threshold_contrast(1000.0, 20) == pytest.approx(C_SEEN, rel=1e-3)
    assert threshold_contrast(0.0, 20) == math.inf and visibility_index(0.0, 1.0, 20) == 0.0


def test_a_faint_0_1_mm_scratch_is_invisible_at_20_cm_a_contrasty_one_visible_at_50_cm():
    assert visibility_index(0.1, 0.03, 20) < 1  # faint: invisible at 20 cm
    assert visibility_index(0.1, 0.1, 20) >= 1 and visibility_index(0.1, 0.1, 50) < 1
    assert visibility_index(0.1, 0.3, 50) > 1
    assert not visible(5.0, C_SEEN, 20)  # at the large-target threshold a line is never quite seen
    assert visible_up_to_cm(0.1, C_SEEN) == 0.0


@settings(max_examples=300, deadline=None)
@given(widths, widths, st.one_of(st.none(), contrasts), distances)
def test_index_never_falls_with_width(w1, w2, c, d):
    lo, hi = sorted((w1, w2))
    assert visibility_index(hi, c, d) >= visibility_index(lo, c, d)


@settings(max_examples=300, deadline=None)
@given(widths, contrasts, contrasts, distances)
def test_index_never_falls_with_contrast(w, c1, c2, d):
    lo, hi = sorted((c1, c2))
    assert visibility_index(w, hi, d) >= visibility_index(w, lo, d)


@settings(max_examples=300, deadline=None)
@given(widths, st.one_of(st.none(), contrasts), distances, distances)
def test_index_never_falls_as_the_observer_comes_closer(w, c, d1, d2):
    near, far = sorted((d1, d2))
    assert visibility_index(w, c, near) >= visibility_index(w, c, far)


@settings(max_examples=300, deadline=None)
@given(st.floats(0.001, 2.0), st.one_of(st.none(), contrasts), distances)
def test_visible_up_to_is_where_the_index_crosses_1(w, c, d):
    farthest = visible_up_to_cm(w, c)
    if farthest == 0.0:
        assert not visible(w, c, d)
    elif d < farthest * 0.999:
        assert visible(w, c, d)
    elif d > farthest * 1.001:
        assert not visible(w, c, d)


@pytest.mark.parametrize(
    ("width", "contrast", "distance"), [(-0.1, 0.1, 20), (0.1, 1.5, 20), (0.1, -0.1, 20), (0.1, 0.1, 0)]
)
def test_out_of_range_inputs_are_errors(width, contrast, distance):
    with pytest.raises(ValueError):
        visibility_index(width, contrast, distance)
