"""Stroke decomposition: touching and crossing lines come apart into lines of their true lengths."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from model.card import Thresholds
from model.postprocess import Scale, estimate_scale, extract_instances
from model.preprocess import Letterbox
from model.strokes import split_strokes, stroke_masks
from model.taxonomy import DefectType, Zone

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


# ---- the fine pass's measurement: maps at the line's own resolution (ends="centre", measure="fine")


def _segment(angle_deg: float, length: float, thickness: int, size: int = 240):
    """A round-capped line (cv2 draws thick lines with round caps) of centreline `length` px through the
    middle of a canvas, drawn at sub-pixel precision."""
    a = math.radians(angle_deg)
    c = np.array([size / 2 + 0.3, size / 2 - 0.2])
    d = np.array([math.cos(a), math.sin(a)]) * length / 2
    m = np.zeros((size, size), np.uint8)
    p, q = (np.round((c + s * d) * 16).astype(int) for s in (-1, 1))
    cv2.line(m, tuple(p), tuple(q), 1, thickness, lineType=cv2.LINE_8, shift=4)
    return m


@pytest.mark.parametrize("angle", [0, 17, 45, 71])
@pytest.mark.parametrize("thickness", [1, 3, 7])
def test_centre_ends_measure_a_straight_line_within_a_pixel(angle, thickness):
    m = _segment(angle, 120.0, thickness)
    (stroke,) = split_strokes(m, ends="centre")
    assert stroke.length == pytest.approx(120.0, abs=1.5)
    # The visible length runs on to the tips of the round caps.
    (tip,) = split_strokes(m, ends="tip")
    assert tip.length > stroke.length + thickness - 1


def test_centre_ends_follow_a_curve():
    m = np.zeros((200, 200), np.uint8)
    cv2.ellipse(m, (100, 100), (70, 40), 0, 0, 180, 1, 3)
    half_perimeter = math.pi * (3 * 110 - math.sqrt((3 * 70 + 40) * (70 + 3 * 40))) / 2
    (stroke,) = split_strokes(m, ends="centre")
    assert stroke.length == pytest.approx(half_perimeter, rel=0.015)


def test_short_line_at_fine_resolution_within_a_pixel():
    # 1 mm at 0.05 mm/px: 20 px, where a pixel at each end is 10% of the length.
    for angle in (0, 30, 45):
        (stroke,) = split_strokes(_segment(angle, 20.0, 2), ends="centre")
        assert stroke.length == pytest.approx(20.0, abs=1.5)


def test_extract_instances_measure_fine_on_a_native_resolution_map():
    # A map at the line's own resolution (one map cell per input pixel, 0.05 mm each): a 90 px diagonal
    # hairline is 4.5 mm; the coarse measurement (outline ribbon) reads it long, the fine one does not.
    size = 256
    m = _segment(33, 90.0, 2, size).astype(np.float32)
    d = np.zeros((len(DefectType), size, size), np.float32)
    d[list(DefectType).index(DefectType.SCRATCH)] = m
    z = np.zeros((5, size, size), np.float32)
    z[1 + list(Zone).index(Zone.BODY)] = 1
    lb = Letterbox(scale=1.0, pad_x=0, pad_y=0, width=size, height=size)
    scale = Scale("mm", 0.05, True)
    th = Thresholds(defect_pixel={"scratch": 0.5})
    (fine,) = extract_instances(d, z, lb, th, scale, size, measure="fine")
    (coarse,) = extract_instances(d, z, lb, th, scale, size)
    assert fine.measurement.length == pytest.approx(4.5, abs=0.06)
    assert coarse.measurement.length > fine.measurement.length


def test_extract_instances_measure_fine_reads_a_blob_to_its_edges():
    size = 128
    d = np.zeros((len(DefectType), size, size), np.float32)
    d[list(DefectType).index(DefectType.DENT), 40:60, 30:90] = 1  # 60 x 20 px
    z = np.zeros((5, size, size), np.float32)
    z[1 + list(Zone).index(Zone.BODY)] = 1
    lb = Letterbox(scale=1.0, pad_x=0, pad_y=0, width=size, height=size)
    th = Thresholds(defect_pixel={"dent": 0.5})
    (dent,) = extract_instances(d, z, lb, th, Scale("mm", 0.05, True), size, measure="fine")
    assert dent.measurement.length == pytest.approx(3.0, abs=1e-6)


def _axis(angle_deg: float, mask: np.ndarray) -> np.ndarray:
    return np.where(mask > 0, math.radians(angle_deg) % math.pi, np.nan)


def test_an_orientation_map_parts_touching_near_collinear_lines():
    # Two lines meeting end to end at 8 degrees: one stroke to the skeleton (a bend under the join
    # angle, and no junction at all), two where an orientation map tells the lines apart.
    a, b = np.zeros((200, 260), np.uint8), np.zeros((200, 260), np.uint8)
    end = (130, 100)
    cv2.line(a, (20, 100), end, 1, 3)
    far = (int(130 + 110 * math.cos(math.radians(8))), int(100 - 110 * math.sin(math.radians(8))))
    cv2.line(b, end, far, 1, 3)
    m = a | b
    orient = np.where(a & ~b, _axis(0, a), np.where(b & ~a, _axis(-8, b), np.nan))
    assert len(split_strokes(m, ends="centre")) == 1
    lengths = sorted(s.length for s in split_strokes(m, ends="centre", orientation=orient))
    assert lengths == pytest.approx([110, 110], abs=4)


def test_an_orientation_map_keeps_one_curved_line_whole():
    m = np.zeros((200, 200), np.uint8)
    cv2.ellipse(m, (100, 100), (70, 40), 0, 0, 180, 1, 3)
    ys, xs = np.nonzero(m)
    t = np.arctan2((ys - 100) / 40, (xs - 100) / 70)
    orient = np.full(m.shape, np.nan)
    orient[ys, xs] = np.arctan2(40 * np.cos(t), -70 * np.sin(t)) % math.pi  # the tangent's orientation
    assert len(split_strokes(m, ends="centre", orientation=orient)) == 1


def test_an_orientation_map_vetoes_a_join_the_skeleton_would_make():
    # Two lines crossing at 12 degrees: the skeleton joins each half to its straight continuation, but
    # also the pairs bending by 12 degrees would pass a 20 degree join; the map keeps each line's own.
    a, b = np.zeros((200, 260), np.uint8), np.zeros((200, 260), np.uint8)
    cv2.line(a, (20, 100), (240, 100), 1, 3)
    dx, dy = 110 * math.cos(math.radians(12)), 110 * math.sin(math.radians(12))
    cv2.line(b, (int(130 - dx), int(100 + dy)), (int(130 + dx), int(100 - dy)), 1, 3)
    orient = np.where(a & ~b, _axis(0, a), np.where(b & ~a, _axis(-12, b), np.nan))
    strokes = split_strokes(a | b, ends="centre", orientation=orient)
    assert sorted(s.length for s in strokes) == pytest.approx([220, 220], rel=0.05)
