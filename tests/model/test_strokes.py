"""Stroke decomposition: touching and crossing lines come apart into lines of their true lengths."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from model.card import Thresholds
from model.postprocess import estimate_scale, extract_instances
from model.strokes import split_strokes, stroke_masks
from model.taxonomy import DefectType

from .test_postprocess import IDENTITY, SIZE, _defects, _zones


def _canvas(*lines, thickness=3) -> np.ndarray:
    m = np.zeros((200, 200), np.uint8)
    for a, b in lines:
        cv2.line(m, a, b, 1, thickness)
    return m


def _lengths(mask) -> list[float]:
    return sorted(s.length for s in split_strokes(mask))


def test_a_single_line_is_one_stroke_of_its_length():
    # cv2 draws round caps: the drawn extent is the segment plus the thickness.
    (length,) = _lengths(_canvas(((20, 100), (180, 100)), thickness=5))
    assert length == pytest.approx(165, rel=0.03)


def test_a_curve_is_one_stroke_along_it():
    m = np.zeros((200, 200), np.uint8)
    cv2.ellipse(m, (100, 100), (70, 40), 0, 0, 180, 1, 3)
    half_perimeter = math.pi * (3 * 110 - math.sqrt((3 * 70 + 40) * (70 + 3 * 40))) / 2
    (length,) = _lengths(m)
    assert length == pytest.approx(half_perimeter + 3, rel=0.03)


@pytest.mark.parametrize("thickness", [3, 9])
def test_crossing_lines_come_apart(thickness):
    slanted = math.hypot(80, 160)
    lengths = _lengths(_canvas(((20, 100), (180, 100)), ((60, 20), (140, 180)), thickness=thickness))
    assert len(lengths) == 2
    assert lengths == pytest.approx([160 + thickness, slanted + thickness], rel=0.05)


def test_a_tuft_from_one_point_is_one_stroke_per_line():
    lines = [
        ((50, 150), (int(50 + 100 * math.cos(math.radians(a))), int(150 - 100 * math.sin(math.radians(a)))))
        for a in (0, 20, 40, 60)
    ]
    lengths = _lengths(_canvas(*lines, thickness=2))
    assert len(lengths) == 4
    assert all(90 < v < 110 for v in lengths)


def test_a_t_junction_keeps_the_through_line_whole():
    lengths = _lengths(_canvas(((20, 100), (180, 100)), ((100, 100), (100, 160))))
    assert lengths == pytest.approx([62, 163], rel=0.05)


def test_a_blob_is_one_stroke_not_its_thinning_spurs():
    m = np.zeros((200, 200), np.uint8)
    cv2.rectangle(m, (50, 50), (90, 80), 1, -1)
    assert len(split_strokes(m)) == 1


def test_each_stroke_gets_its_pixels_and_shares_the_crossing():
    m = _canvas(((20, 100), (180, 100)), ((100, 20), (100, 180)))
    strokes = split_strokes(m)
    masks = stroke_masks(m, strokes)
    assert (np.logical_or.reduce(masks) == (m > 0)).all()  # every pixel has a stroke, none outside
    horizontal = int(np.argmax([np.ptp(s.points[:, 0]) for s in strokes]))
    h, v = masks[horizontal], masks[1 - horizontal]
    assert h[100, 30] and not v[100, 30] and v[30, 100] and not h[30, 100]
    assert h[100, 100] and v[100, 100]  # the crossing belongs to both
    for region in masks:  # ... so each stays in one piece
        assert cv2.connectedComponents(region.astype(np.uint8), connectivity=8)[0] == 2


def _crossing_scratches():
    img = np.zeros((SIZE, SIZE), np.uint8)
    cv2.line(img, (130, 190), (250, 190), 255, 2)  # 120 px = 60 mm at 0.5 mm/px
    cv2.line(img, (190, 130), (190, 250), 255, 2)
    return img


def test_extract_instances_splits_crossing_scratches():
    d = _defects(lambda: {DefectType.SCRATCH: _crossing_scratches()})
    scale = estimate_scale(_zones(), IDENTITY, SIZE, device_length_mm=160.0)
    th = Thresholds(defect_pixel={"scratch": 0.2})
    split = extract_instances(d, _zones(), IDENTITY, th, scale, SIZE)
    whole = extract_instances(d, _zones(), IDENTITY, th, scale, SIZE, split_lines=False)
    assert len(whole) == 1 and whole[0].measurement.length > 90  # the tangle measured as one
    assert len(split) == 2
    assert sorted(i.measurement.length for i in split) == pytest.approx([60, 60], rel=0.08)
    for inst in split:  # each keeps its own box
        x0, y0, x1, y1 = inst.box
        assert max(x1 - x0, y1 - y0) == pytest.approx(120, abs=10) and min(x1 - x0, y1 - y0) < 30


def test_a_crack_network_stays_one_defect():
    d = _defects(lambda: {DefectType.CRACK: _crossing_scratches()})
    scale = estimate_scale(_zones(), IDENTITY, SIZE, device_length_mm=160.0)
    (inst,) = extract_instances(d, _zones(), IDENTITY, Thresholds(defect_pixel={"crack": 0.2}), scale, SIZE)
    assert inst.type is DefectType.CRACK
