"""Glare on a photo's main surface (`model.glare`) and the retake advice the pipeline gives with it."""

from __future__ import annotations

import numpy as np
import pytest

from model.glare import EDGE_PX, GLARE_SHARE, HIDDEN_SHARE, blown_share, glare_advice, surface_zones
from model.instances import mm
from model.rules import load_standard
from model.taxonomy import DefectType, DeviceKind, View, Zone
from serving.pipeline import Device, grade_instances
from tests.model.test_detail import _photo

S = 384
ZONES = 1 + len(Zone)  # background first, as the network's zone map


def _frame(screen=(60, 40, 330, 340), body=None):
    """A dark device on a grey table: S x S x 3 RGB, and a zone map (Z x S/4 x S/4) with the screen (and a
    body) where the boxes (x0, y0, x1, y1, frame pixels) say."""
    image = np.full((S, S, 3), 120, np.uint8)
    probs = np.zeros((ZONES, S // 4, S // 4), np.float32)
    probs[0] = 1.0
    for zone, box in ((Zone.SCREEN, screen), (Zone.BODY, body)):
        if box is None:
            continue
        x0, y0, x1, y1 = box
        image[y0:y1, x0:x1] = 25
        k = 1 + list(Zone).index(zone)
        probs[:, y0 // 4 : y1 // 4, x0 // 4 : x1 // 4] = 0.0
        probs[k, y0 // 4 : y1 // 4, x0 // 4 : x1 // 4] = 1.0
    return image, probs


def test_a_glare_patch_on_the_screen_is_measured_as_its_share_of_it():
    image, probs = _frame()
    assert blown_share(image, probs, View.FRONT) == 0.0
    image[150:190, 150:210] = 255  # a 40 x 60 white patch inside the screen
    share = blown_share(image, probs, View.FRONT)
    inner = (330 - 60 - 2 * EDGE_PX) * (340 - 40 - 2 * EDGE_PX)  # the screen less its edge band
    assert share == pytest.approx(40 * 60 / inner, rel=0.05)
    assert share >= GLARE_SHARE
    # Light grey is not blown out: a line on it can still be seen.
    image[150:190, 150:210] = (240, 245, 255)
    assert blown_share(image, probs, View.FRONT) == 0.0


def test_only_the_views_own_surface_counts_and_its_edge_and_specks_do_not():
    image, probs = _frame(screen=(40, 40, 180, 340), body=(200, 40, 340, 340))
    image[150:190, 240:300] = 255  # on the body
    assert blown_share(image, probs, View.FRONT) == 0.0
    assert blown_share(image, probs, View.BACK) > GLARE_SHARE
    assert blown_share(image, probs, View.LEFT) is None  # a side view has no main surface
    image, probs = _frame()
    image[40 : 40 + EDGE_PX - 2, 60:330] = 255  # a white bezel the zone map took for screen
    image[100:340:20, 100:330:20] = 255  # and specks: a pattern, not a glare
    assert blown_share(image, probs, View.FRONT) == 0.0


def test_too_little_surface_in_view_is_not_judged():
    image, probs = _frame(screen=(100, 100, 124, 124))
    image[100:124, 100:124] = 255
    assert blown_share(image, probs, View.FRONT) is None


def test_advice_names_the_photo_the_share_and_the_surface():
    assert glare_advice(1, None, View.FRONT) is None
    assert glare_advice(1, GLARE_SHARE / 2, View.FRONT) is None
    text = glare_advice(3, 0.12, View.BACK)
    assert text.startswith("photo 3: glare (or a display lit white) blows out 12% of the back")
    assert "retake at an angle to the light" in text


def test_grading_asks_for_a_photo_without_glare_only_where_a_top_tier_is_at_stake():
    device = Device(kind=DeviceKind.PHONE, length_mm=150.0)
    # Fine enough (3000 px): no "closer" advice.
    photos = [_photo(0, 3000.0, glare=0.001), _photo(1, 3000.0, view=View.BACK, glare=0.2)]
    graded = grade_instances([], ["backmarket"], device, 0.8, photos=photos)["backmarket"]
    assert graded.listable
    glare = [a for a in graded.advice if "glare" in a]
    assert len(glare) == 1 and glare[0].startswith("photo 2: glare") and "20% of the back" in glare[0]

    crack = mm(DefectType.CRACK, Zone.SCREEN, length=40.0, width=0.5, confidence=0.99)
    cracked = grade_instances([crack], ["backmarket"], device, 0.8, photos=photos)["backmarket"]
    assert not cracked.listable and not any("glare" in a for a in cracked.advice)


def test_the_glass_a_photo_shows_is_its_views_and_the_glass_the_map_gives_most():
    """A photo shows one glass side: a blank white display the zone map calls "back" on a front photo is
    still the front's surface; a sliver of the other label is not."""
    glass = (Zone.SCREEN, Zone.BODY)
    image, probs = _frame(screen=(60, 40, 330, 80), body=(60, 80, 330, 340))  # mostly "body"
    assert surface_zones(probs, View.FRONT, glass) == (Zone.SCREEN, Zone.BODY)
    assert surface_zones(probs, View.BACK, glass) == (Zone.BODY,)
    assert surface_zones(probs, View.FRONT) == (Zone.SCREEN,)  # no glass said: the view's own zone
    assert surface_zones(probs, View.FRONT, (Zone.SCREEN,)) == (Zone.SCREEN,)  # a laptop: a metal lid
    assert surface_zones(probs, View.LEFT, glass) == ()
    image[40:340, 60:330] = 255  # the whole display lit white
    assert blown_share(image, probs, View.FRONT) == pytest.approx(1.0)  # the sliver alone: all white
    assert blown_share(image, probs, View.FRONT, glass) == pytest.approx(1.0)
    image[40:80, 60:330] = 25  # the sliver dark again: the share is the glass's, not the sliver's
    share = blown_share(image, probs, View.FRONT, glass)
    assert HIDDEN_SHARE < share < 1.0


def test_a_view_whose_surface_is_hidden_grades_the_rest_and_goes_to_review():
    """A front photo whose screen is mostly blown out is read as a side photo would be: the device gets
    the grade of what it shows, the front counts as not seen (review, and the advice asks for it)."""
    device = Device(kind=DeviceKind.PHONE, length_mm=150.0)
    photos = [_photo(0, 3000.0, glare=HIDDEN_SHARE), _photo(1, 3000.0, view=View.BACK, glare=0.0)]
    assert photos[0].surface_hidden and not photos[1].surface_hidden
    graded = grade_instances([], ["backmarket"], device, 0.5, photos=photos)["backmarket"]
    assert graded.gradable and graded.listable and graded.missing_views == ["front"] and graded.needs_review
    assert any(a.startswith("no usable front photo") for a in graded.advice)
    assert any(
        a.startswith("photo 1: glare (or a display lit white) blows out 50% of the screen")
        for a in graded.advice
    )
    alone = grade_instances([], ["backmarket"], device, 0.5, photos=photos[:1])["backmarket"]
    assert alone.gradable and alone.needs_review and alone.missing_views == ["front", "back"]
    # What the hidden screen cannot hide: a crack the photo shows anyway is the last grade, sure.
    crack = mm(DefectType.CRACK, Zone.SCREEN, length=40.0, width=0.5, confidence=0.99)
    cracked = grade_instances([crack], ["backmarket"], device, 0.5, photos=photos[:1])["backmarket"]
    assert cracked.grade == load_standard("backmarket").grade_names[-1] and not cracked.needs_review
    # Under the share, the view is seen as before.
    seen = [_photo(0, 3000.0, glare=HIDDEN_SHARE / 2), photos[1]]
    assert grade_instances([], ["backmarket"], device, 0.5, photos=seen)["backmarket"].missing_views == []
