"""Whether the device itself is too dark or blown out (`model.exposure`), and the photo verdict the
pipeline gives with it: a phone on a white sheet is not a blown-out photo."""

from __future__ import annotations

import numpy as np
import pytest

from model.exposure import BLOWN, MAX_BLOWN_SHARE, MIN_P95, device_exposure
from model.inference import Frame, Inferred
from model.outputs import QUALITY_CLASSES
from model.preprocess import letterbox
from model.taxonomy import PhotoQuality, Zone
from serving.pipeline import Device, analyse_photo
from serving.predictor import load_model
from tests.serving.tiny_model import build_tiny_model, tiny_card

S = 384
ZONES = 1 + len(Zone)  # background first, as the network's zone map
BOX = (100, 40, 280, 340)  # the device, frame pixels (x0, y0, x1, y1)


def _frame(background: int = 255, device=(60, 110, 150)):
    """A phone (a mid-toned screen with a lighter band: a wallpaper) on a plain background, and a zone
    map (Z x S/4 x S/4) with the screen where it is."""
    image = np.full((S, S, 3), background, np.uint8)
    x0, y0, x1, y1 = BOX
    image[y0:y1, x0:x1] = device
    image[y0 + 60 : y0 + 120, x0:x1] = np.minimum(np.array(device) + 90, 245)
    probs = np.zeros((ZONES, S // 4, S // 4), np.float32)
    probs[0] = 1.0
    probs[:, y0 // 4 : y1 // 4, x0 // 4 : x1 // 4] = 0.0
    probs[1 + list(Zone).index(Zone.SCREEN), y0 // 4 : y1 // 4, x0 // 4 : x1 // 4] = 1.0
    return image, probs


def test_a_white_background_does_not_make_the_device_blown_out():
    image, probs = _frame(background=255)
    e = device_exposure(image, probs)
    assert e.blown == 0.0 and e.dark == 0.0 and e.p95 >= MIN_P95
    assert e.well_exposed
    # The background alone is judged nowhere: black or white behind it, the same device.
    assert device_exposure(_frame(background=0)[0], probs) == e


def test_a_clipped_or_sunk_device_is_badly_exposed():
    image, probs = _frame()
    x0, y0, x1, _ = BOX
    image[y0 : y0 + 100, x0:x1] = BLOWN  # a third of the device clipped white
    e = device_exposure(image, probs)
    assert e.blown > MAX_BLOWN_SHARE and not e.well_exposed
    dark, _ = _frame(device=(6, 8, 10))  # the device near black (its band 96-100: not a lit display)
    dark[y0 + 60 : y0 + 120, x0:x1] = 9
    e = device_exposure(dark, probs)
    assert e.dark == pytest.approx(1.0, abs=0.01) and not e.well_exposed
    dim, _ = _frame(device=(40, 45, 50))  # dim all over, nothing clipped: its brightest parts stay dark
    dim[y0 + 60 : y0 + 120, x0:x1] = 60
    e = device_exposure(dim, probs)
    assert e.blown == 0.0 and e.dark == 0.0 and e.p95 < MIN_P95 and not e.well_exposed


def test_too_little_device_in_view_is_not_judged():
    image, probs = _frame()
    probs[:] = 0.0
    probs[0] = 1.0
    probs[1, 10:16, 10:16] = 1.0  # 6 x 6 cells: 24 px a side, less its edge
    probs[0, 10:16, 10:16] = 0.0
    assert device_exposure(image, probs) is None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny test model at this file's frame size, so its maps line up with the drawn frame."""
    path = tmp_path_factory.mktemp("exposure") / "tiny.onnx"
    build_tiny_model(path, tiny_card(input_size=S))
    return load_model(path)


def _analysed(model, image: np.ndarray, probs: np.ndarray, quality: dict[str, float]):
    """`analyse_photo` on the tiny model's outputs for `image`, its zone map and quality verdict
    replaced by ours (the tiny model reads neither a white sheet nor a wallpaper)."""
    frame_image, lb = letterbox(image, S)
    outputs = {k: v[0] for k, v in model.run(frame_image.transpose(2, 0, 1)[None]).items()}
    outputs["zone_probs"] = probs
    outputs["defect_probs"] = np.zeros_like(outputs["defect_probs"])
    outputs["quality_probs"] = np.array([quality.get(c, 0.0) for c in QUALITY_CLASSES], np.float32)
    return analyse_photo(Inferred(Frame(frame_image, lb), outputs), model.card, Device(), 0)


def test_the_pipeline_keeps_a_phone_on_white_usable_and_a_blown_phone_not(tiny):
    verdict = {"bad_exposure": 0.85, "usable": 0.1, "blurry": 0.05}
    image, probs = _frame(background=255)
    photo = _analysed(tiny, image, probs, verdict)
    assert photo.device_found and photo.quality is PhotoQuality.USABLE
    assert photo.quality_confidence == pytest.approx(0.1)  # the probe's own probability, not raised
    # The probe's next verdict, not always "usable": here a blur.
    photo = _analysed(tiny, image, probs, {"bad_exposure": 0.85, "usable": 0.05, "blurry": 0.1})
    assert photo.quality is PhotoQuality.BLURRY
    x0, y0, x1, _ = BOX
    image[y0 : y0 + 150, x0:x1] = 255  # half the device clipped white: the verdict stands
    assert _analysed(tiny, image, probs, verdict).quality is PhotoQuality.BAD_EXPOSURE
