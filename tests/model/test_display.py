"""A lit display (`model.display`): measured on the screen, kept out of the fine pass's surface, and
answered with retake advice where a top tier is at stake."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from model.display import (
    LIT_SHARE,
    ONE_HUE_SHARE,
    WHITE_SHARE,
    WHITE_VALUE,
    display_advice,
    is_lit,
    lit_crack_advice,
    lit_share,
)
from model.fine_pass import surface
from model.instances import mm
from model.taxonomy import DefectType, DeviceKind, View, Zone
from serving.pipeline import Device, grade_instances
from tests.model.test_detail import _photo
from tests.model.test_glare import _frame


def _lit(image: np.ndarray, box=(60, 40, 330, 340)) -> np.ndarray:
    """`image` with a wallpaper of saturated colour stripes and dark gaps over the screen's `box`."""
    x0, y0, x1, y1 = box
    colours = np.array([(220, 40, 60), (30, 160, 230), (240, 200, 30), (10, 10, 10)], np.uint8)
    rows = np.arange(y1 - y0) // 12 % len(colours)
    image[y0:y1, x0:x1] = colours[rows][:, None, :]
    return image


def test_a_picture_on_the_screen_is_lit_and_a_dark_mirror_is_not():
    image, probs = _frame()
    assert lit_share(image, probs) == 0.0  # near-black glass
    share = lit_share(_lit(image), probs)
    assert share == pytest.approx(0.75, abs=0.03) and is_lit(share)  # three stripes of four are colour
    # A room mirrored in dark glass: dim, grey, a colour cast: not a picture.
    image[40:340, 60:330] = (70, 60, 85)
    assert lit_share(image, probs) < LIT_SHARE
    # One colour alone is a thing on the glass (a red mark, a sticker), not a picture; red straddles
    # the hue wrap (0 and 180) and is still one colour.
    image[40:340, 60:330] = 25
    image[150:230, 60:330] = (230, 0, 0)
    image[230:260, 60:330] = (230, 0, 20)  # hue 177 in OpenCV's 0-180
    assert lit_share(image, probs) == 0.0
    # ... unless it covers half the screen or more: a wallpaper in shades of one blue is a picture.
    shade = np.linspace(120, 250, 300).astype(np.uint8)[:, None]
    image[40:340, 60:330, 0] = 20
    image[40:340, 60:330, 1] = shade // 3
    image[40:340, 60:330, 2] = shade
    share = lit_share(image, probs)
    assert is_lit(share) and share > ONE_HUE_SHARE
    assert lit_share(*_frame(screen=(100, 100, 124, 124))) is None  # too little screen to judge
    assert not is_lit(None)


def test_a_display_lit_white_is_lit_and_a_bright_mirror_or_a_white_sticker_is_not():
    image, probs = _frame()
    x0, y0, x1, y1 = 60, 40, 330, 340  # the screen's box (`_lit`'s)
    image[y0:y1, x0:x1] = (235, 235, 240)  # a settings page: white, no colour
    image[y0 + 100 : y0 + 104, x0 + 40 : x1 - 40] = 30  # a line of dark text
    share = lit_share(image, probs)
    assert is_lit(share) and share >= WHITE_SHARE
    # A brightly mirrored room in dark glass is grey, not white: under WHITE_VALUE.
    image[y0:y1, x0:x1] = round(WHITE_VALUE * 255) - 25
    assert lit_share(image, probs) == 0.0
    # A pale colour is not white: over WHITE_SATURATION (and one hue on a fifth of the screen is no picture).
    image[y0:y1, x0:x1] = 20
    image[y0 : y0 + 60, x0:x1] = (250, 170, 170)
    assert lit_share(image, probs) == 0.0
    # White under half the screen (a label, a reflection's patch) is not a display lit white.
    image[y0:y1, x0:x1] = 20
    image[y0 : y0 + 120, x0:x1] = 250
    assert lit_share(image, probs) == 0.0


def test_the_fine_pass_leaves_out_the_surfaces_it_is_told_to():
    zones = np.zeros((400, 300), np.uint8)
    zones[20:380, 20:140] = 1 + list(Zone).index(Zone.SCREEN)
    zones[20:380, 160:280] = 1 + list(Zone).index(Zone.BODY)
    both = surface(zones, 0.05)
    assert both[200, 80] and both[200, 220]
    no_screen = surface(zones, 0.05, skip=(Zone.SCREEN,))
    assert not no_screen[:, :150].any() and (no_screen[:, 150:] == both[:, 150:]).all()
    assert not surface(zones, 0.05, skip=(Zone.SCREEN, Zone.BODY)).any()


def test_grading_asks_for_the_display_off_only_where_a_top_tier_is_at_stake():
    assert display_advice(1, None) is None and display_advice(1, LIT_SHARE / 2) is None
    text = display_advice(2, 0.66)
    assert text.startswith("photo 2: the display is on (lit over 66% of the screen)")
    assert "retake with the display off" in text
    device = Device(kind=DeviceKind.PHONE, length_mm=150.0)
    lit = dataclasses.replace(_photo(0, 3000.0), lit_share=0.4)
    graded = grade_instances([], ["backmarket"], device, 0.8, photos=[lit])["backmarket"]
    assert graded.listable and [a for a in graded.advice if "display is on" in a]
    dark = dataclasses.replace(lit, lit_share=0.01)
    graded = grade_instances([], ["backmarket"], device, 0.8, photos=[dark])["backmarket"]
    assert not [a for a in graded.advice if "display is on" in a]
    crack = mm(DefectType.CRACK, Zone.SCREEN, length=40.0, width=0.5, confidence=0.99)
    cracked = grade_instances([crack], ["backmarket"], device, 0.8, photos=[lit])["backmarket"]
    assert not cracked.listable and not any("display is on" in a for a in cracked.advice)


def test_a_crack_on_a_lit_screen_sent_to_review_asks_for_the_display_off():
    """A wallpaper's curved edges read as a crack (5 of 7 real intact phones graded Unlistable): where
    the grading goes to a person, the advice names the photo and asks for it with the display off."""
    assert lit_crack_advice(1, LIT_SHARE / 2) is None and lit_crack_advice(1, None) is None
    device = Device(kind=DeviceKind.PHONE, length_mm=150.0)
    lit = dataclasses.replace(_photo(0, 3000.0), lit_share=0.4)
    dark = dataclasses.replace(_photo(1, 3000.0), lit_share=0.01)
    unsure = mm(DefectType.CRACK, Zone.SCREEN, length=40.0, width=0.5, confidence=0.6)

    def advice(instances, photos, threshold=1.0):  # 1.0: every grading goes to review
        graded = grade_instances(instances, ["backmarket"], device, threshold, photos=photos)["backmarket"]
        return graded, [a for a in graded.advice if "can read as a crack" in a]

    graded, asked = advice([unsure], [lit, dark])
    assert not graded.listable and graded.needs_review
    assert asked == [lit_crack_advice(1, 0.4)] and asked[0].startswith(
        "photo 1: the display is on (lit over 40%"
    )
    assert "retake with the display off" in asked[0]
    assert advice([unsure], [dataclasses.replace(lit, lit_share=0.01), dark])[1] == []  # display off
    on_dark = unsure.model_copy(update={"photo_index": 1})
    assert advice([on_dark], [lit, dark])[1] == []  # the crack is on the dark photo's screen
    candidate = unsure.model_copy(update={"confidence": 0.3})  # not counted: no crack to confirm
    assert advice([candidate], [lit, dark])[1] == []
    sure, asked = advice([unsure], [lit, dark], threshold=0.0)  # not sent to review: nothing to settle
    assert not sure.needs_review and asked == []


def test_the_fine_pass_is_told_to_leave_a_lit_screen_and_a_front_views_body(monkeypatch):
    import cv2

    import model.inference as inference
    from model.outputs import VIEW_CLASSES

    told = []
    # fine_pass(outputs, lb, size, source, original_size, stage, whole, skip, view): the skip it is told.
    monkeypatch.setattr(inference, "fine_pass", lambda *args: told.append(args[7]))

    def run(image: np.ndarray, probs: np.ndarray, view: str, said: View | None = None) -> tuple:
        data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
        frame = inference.frame_photo(data, image.shape[0])
        views = np.eye(len(VIEW_CLASSES), dtype=np.float32)[VIEW_CLASSES.index(view)]
        inferred = inference.Inferred(frame, {"zone_probs": probs, "view_probs": views})
        inference.with_fine(inferred, None, view=said)
        return told.pop()

    image, probs = _frame()
    assert run(image, probs, "front") == ()
    lit = _lit(image.copy())
    assert run(lit, probs, "front") == (Zone.SCREEN, Zone.BODY)
    assert run(lit, probs, "back") == (Zone.SCREEN,)  # a back view's body is the back: read
    assert run(lit, probs, "back", said=View.FRONT) == (Zone.SCREEN, Zone.BODY)  # the caller's view


def test_the_lit_share_is_measured_once_a_photo(monkeypatch):
    """The fine pass's step keeps the share it measured; the post-processing reads it from there."""
    import cv2

    import model.inference as inference
    from model.outputs import VIEW_CLASSES

    monkeypatch.setattr(inference, "fine_pass", lambda *args: None)
    image, probs = _frame()
    lit = _lit(image.copy())
    data = cv2.imencode(".png", cv2.cvtColor(lit, cv2.COLOR_RGB2BGR))[1].tobytes()
    frame = inference.frame_photo(data, lit.shape[0])
    views = np.eye(len(VIEW_CLASSES), dtype=np.float32)[VIEW_CLASSES.index("front")]
    done = inference.with_fine(inference.Inferred(frame, {"zone_probs": probs, "view_probs": views}), None)
    assert done.lit == pytest.approx(lit_share(frame.image, probs)) and is_lit(done.lit)
    measured = []
    monkeypatch.setattr(inference, "lit_share", lambda *a: measured.append(a) or 0.0)
    assert inference.screen_lit(done) == done.lit and not measured  # kept, not measured again
    assert inference.screen_lit(dataclasses.replace(done, lit=None)) == 0.0 and len(measured) == 1


def test_no_scratch_is_read_on_a_lit_screen_and_everything_else_stands(monkeypatch):
    import model.fine_instances as fi

    found = [
        mm(DefectType.SCRATCH, Zone.SCREEN, length=8.0, width=0.1, confidence=0.8),  # an icon's edge
        mm(DefectType.SCRATCH, Zone.FRAME, length=5.0, width=0.1, confidence=0.8),
        mm(DefectType.STAIN, Zone.SCREEN, length=6.0, width=4.0, confidence=0.9),
        mm(DefectType.CRACK, Zone.SCREEN, length=40.0, width=0.5, confidence=0.99),
    ]
    monkeypatch.setattr(fi, "extract_instances", lambda *args, **kwargs: list(found))

    def kept(lit: bool) -> list[tuple[DefectType, Zone]]:
        outputs = {"defect_probs": None, "zone_probs": None}  # read by the stand-in only
        out = fi.photo_instances(outputs, None, 384, None, None, lit=lit)
        return sorted((i.type, i.zone) for i in out)

    assert kept(False) == sorted((i.type, i.zone) for i in found)
    assert kept(True) == sorted((i.type, i.zone) for i in found[1:])
