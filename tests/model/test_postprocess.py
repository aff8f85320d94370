"""Post-processing: masks of known geometry measure back to their true size, zone and scale."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from model.card import Thresholds
from model.postprocess import (
    estimate_scale,
    extract_instances,
    instance_confidence,
    ribbon_length_width,
    vote_zone,
)
from model.preprocess import Letterbox
from model.taxonomy import DefectType, View, Zone

SIZE, STRIDE = 384, 4
H = SIZE // STRIDE
IDENTITY = Letterbox(scale=1.0, pad_x=0, pad_y=0, width=SIZE, height=SIZE)


def _zones(body=(8, 88, 28, 68)) -> np.ndarray:
    """Background everywhere but a body rectangle (rows y0:y1, cols x0:x1 in mask cells)."""
    z = np.zeros((5, H, H), np.float32)
    z[0] = 1
    y0, y1, x0, x1 = body
    z[0, y0:y1, x0:x1] = 0
    z[1 + list(Zone).index(Zone.BODY), y0:y1, x0:x1] = 1
    return z


def _defects(draw) -> np.ndarray:
    """Draw at model resolution, then average down to the mask grid like a network would see it."""
    d = np.zeros((len(DefectType), H, H), np.float32)
    for channel, img in draw().items():
        d[list(DefectType).index(channel)] = cv2.resize(
            img.astype(np.float32) / 255, (H, H), interpolation=cv2.INTER_AREA
        )
    return d


def test_scale_from_device_outline():
    scale = estimate_scale(_zones(), IDENTITY, SIZE, device_length_mm=160.0)
    assert scale.units == "mm" and scale.device_found
    assert scale.device_length_px == pytest.approx(320.0)
    assert scale.per_px == pytest.approx(0.5)


def test_scale_of_a_side_view_is_against_the_side_it_shows():
    # The same outline as a phone's top edge, which shows its width: half its length here.
    scale = estimate_scale(_zones(), IDENTITY, SIZE, device_length_mm=160.0, share=0.5)
    assert scale.per_px == pytest.approx(80.0 / 320.0)  # 80 mm of width over the 320 px it spans
    assert scale.device_length_px == pytest.approx(640.0)  # the whole length, at the photo's scale
    relative = estimate_scale(_zones(), IDENTITY, SIZE, device_length_mm=None, share=0.5)
    assert relative.per_px == pytest.approx(0.5 / 320.0)  # still in device lengths


def test_scale_maps_through_the_letterbox_and_draft_factor():
    lb = Letterbox(scale=0.1, pad_x=0, pad_y=0, width=3840, height=3840, draft_factor=2.0)
    scale = estimate_scale(_zones(), lb, SIZE, device_length_mm=160.0)
    assert scale.device_length_px == pytest.approx(320 / 0.1 * 2)


def test_no_device_means_relative_to_the_photo():
    z = np.zeros((5, H, H), np.float32)
    z[0] = 1
    scale = estimate_scale(z, IDENTITY, SIZE, device_length_mm=150.0)
    assert not scale.device_found and scale.units == "relative"


@pytest.mark.parametrize(
    ("shape", "true_length"),
    [("line", math.hypot(80, 100)), ("arc", 2 * math.pi * 40 / 3)],
)
def test_scratch_length_measures_back_within_3_percent(shape, true_length):
    def draw():
        img = np.zeros((SIZE, SIZE), np.uint8)
        if shape == "line":
            cv2.line(img, (140, 100), (220, 200), 255, 2)
        else:
            cv2.ellipse(img, (180, 240), (40, 40), 0, 0, 120, 255, 2)
        return {DefectType.SCRATCH: img}

    scale = estimate_scale(_zones(), IDENTITY, SIZE, device_length_mm=160.0)
    (inst,) = extract_instances(
        _defects(draw), _zones(), IDENTITY, Thresholds(defect_pixel={"scratch": 0.2}), scale, SIZE
    )
    assert inst.type is DefectType.SCRATCH and inst.zone is Zone.BODY
    assert inst.measurement.units == "mm"
    assert inst.measurement.length == pytest.approx(true_length * 0.5, rel=0.03)
    assert 0 < inst.confidence <= 1


def test_blob_defect_box_and_area():
    def draw():
        img = np.zeros((SIZE, SIZE), np.uint8)
        cv2.rectangle(img, (160, 160), (199, 179), 255, -1)  # 40 x 20 px stain
        return {DefectType.STAIN: img}

    scale = estimate_scale(_zones(), IDENTITY, SIZE, device_length_mm=160.0)
    (inst,) = extract_instances(
        _defects(draw), _zones(), IDENTITY, Thresholds(defect_pixel={"stain": 0.5}), scale, SIZE
    )
    assert inst.measurement.length == pytest.approx(20.0, rel=0.12)  # 40 px x 0.5 mm
    assert inst.measurement.area == pytest.approx(800 * 0.25, rel=0.15)
    x0, y0, x1, y1 = inst.box
    assert (x0, y0) == pytest.approx((160, 160), abs=4) and (x1, y1) == pytest.approx((200, 180), abs=4)


def test_threshold_and_confidence_floor_drop_faint_blobs():
    d = np.zeros((len(DefectType), H, H), np.float32)
    d[0, 40:44, 40:60] = 0.3
    scale = estimate_scale(_zones(), IDENTITY, SIZE, device_length_mm=160.0)
    assert (
        extract_instances(d, _zones(), IDENTITY, Thresholds(defect_pixel={"scratch": 0.5}), scale, SIZE) == []
    )
    # Above a 0.2 cut, uncalibrated: a faint coverage map (a hairline) still counts in grading (> 0.5).
    (inst,) = extract_instances(d, _zones(), IDENTITY, Thresholds(defect_pixel={"scratch": 0.2}), scale, SIZE)
    assert inst.confidence == pytest.approx(instance_confidence(0.3, 0.2)) and inst.confidence > 0.5
    # Calibrated to say such faint blobs are mostly noise, the confidence floor drops it.
    noisy = Thresholds(
        defect_pixel={"scratch": 0.2}, confidence_offset={"scratch": -2.0}, min_instance_confidence=0.5
    )
    assert extract_instances(d, _zones(), IDENTITY, noisy, scale, SIZE) == []


def test_ribbon_formula_on_an_exact_rectangle():
    length, width = ribbon_length_width(area=100 * 3, perimeter=2 * (100 + 3))
    assert length == pytest.approx(100) and width == pytest.approx(3)


@pytest.mark.parametrize(
    ("view", "zone"),
    [(None, Zone.BODY), (View.FRONT, Zone.SCREEN), (View.BACK, Zone.BODY), (View.LEFT, Zone.FRAME)],
)
def test_the_zone_is_one_the_photos_view_can_show(view, zone):
    """A scratch whose pixels the zone map reads two thirds body, one third screen: the body without a
    view, but a front photo shows no back panel, so there it is on the screen; a side view shows only
    the frame."""
    z = _zones()
    z[1 + list(Zone).index(Zone.SCREEN), 8:88, 28:40] = 2  # columns 28-39 read screen (argmax)

    def draw():
        img = np.zeros((SIZE, SIZE), np.uint8)
        cv2.line(img, (128, 180), (224, 180), 255, 3)  # mask columns 32-56: 8 screen, 17 body
        return {DefectType.SCRATCH: img}

    scale = estimate_scale(z, IDENTITY, SIZE, device_length_mm=160.0)
    (inst,) = extract_instances(
        _defects(draw), z, IDENTITY, Thresholds(defect_pixel={"scratch": 0.2}), scale, SIZE, view=view
    )
    assert inst.zone is zone and inst.view is view
    assert vote_zone(np.array([], dtype=np.int64), View.BACK) is Zone.BODY  # no votes: the view's first zone
