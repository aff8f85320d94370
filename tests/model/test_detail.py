"""Photo detail for the hairline tiers (`model.detail`) and the retake advice the pipeline gives with it."""

from __future__ import annotations

import pytest

from model.detail import FINE_MM_PER_PX, NOMINAL_LENGTH_MM, detail_advice, device_mm_per_px
from model.instances import mm
from model.taxonomy import DefectType, DeviceKind, PhotoQuality, View, Zone
from serving.pipeline import Device, PhotoResult, grade_instances


def test_mm_per_pixel_from_the_catalogue_length_or_a_typical_one():
    assert device_mm_per_px(1500, 147.5, DeviceKind.PHONE) == (pytest.approx(147.5 / 1500), False)
    per_px, estimated = device_mm_per_px(1000, None, DeviceKind.LAPTOP)
    assert per_px == pytest.approx(NOMINAL_LENGTH_MM[DeviceKind.LAPTOP] / 1000) and estimated


def test_advice_only_for_photos_coarser_than_the_fine_pass_needs():
    fine_px = 150.0 / FINE_MM_PER_PX  # 1875 px: a 150 mm phone at exactly the limit
    assert detail_advice(1, fine_px, 150.0, DeviceKind.PHONE) is None
    assert detail_advice(1, None, 150.0, DeviceKind.PHONE) is None  # no device measured
    text = detail_advice(2, 600, 150.0, DeviceKind.PHONE)
    assert text.startswith("photo 2: the device spans 600 px (0.25 mm a pixel)")
    assert "retake closer" in text and "(1875 px along its length)" in text
    assert "about 0.25 mm" in detail_advice(1, 600, None, DeviceKind.PHONE)  # estimated length: "about"


def test_advice_on_a_side_view_counts_pixels_along_the_edge_it_shows():
    # A 150 mm phone's top edge (its width, half its length) over 300 px: 0.25 mm a pixel.
    text = detail_advice(3, 600, 150.0, DeviceKind.PHONE, share=0.5)
    assert text.startswith("photo 3: the device spans 300 px (0.25 mm a pixel)")
    assert "(938 px along the edge the photo shows)" in text  # 75 mm at 0.08 mm a pixel
    assert detail_advice(3, 150.0 / FINE_MM_PER_PX, 150.0, DeviceKind.PHONE, share=0.5) is None


def _photo(
    index: int,
    length_px: float | None,
    quality=PhotoQuality.USABLE,
    view=View.FRONT,
    glare: float | None = None,
) -> PhotoResult:
    """A photo's verdict as `analyse_photo` gives it (also used by tests/model/test_glare.py)."""
    return PhotoResult(
        index=index,
        width=4000,
        height=3000,
        view=view,
        view_source="caller",
        view_confidence=1.0,
        quality=quality,
        quality_confidence=0.9,
        device_found=length_px is not None,
        device_length_px=length_px,
        glare_share=glare,
    )


def test_grading_asks_for_a_closer_photo_only_where_a_top_tier_is_at_stake():
    device = Device(kind=DeviceKind.PHONE, length_mm=150.0)
    photos = [_photo(0, 3000.0), _photo(1, 700.0, view=View.BACK)]  # front fine, back too coarse
    graded = grade_instances([], ["backmarket"], device, 0.8, photos=photos)["backmarket"]
    assert graded.listable
    coarse = [a for a in graded.advice if "too coarse" in a]
    assert len(coarse) == 1 and coarse[0].startswith("photo 2: the device spans 700 px")

    crack = mm(DefectType.CRACK, Zone.SCREEN, length=40.0, width=0.5, confidence=0.99)
    cracked = grade_instances([crack], ["backmarket"], device, 0.8, photos=photos)["backmarket"]
    assert not cracked.listable and not any("too coarse" in a for a in cracked.advice)
