"""Sizes on a side view are measured against the side it shows (`model.plane.view_share`): a phone's
top edge runs along its width, and measured against its length every scratch on it read twice too long."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from model.catalogue import lookup_device
from model.inference import Frame, Inferred
from model.outputs import DEFECT_CHANNELS, VIEW_CLASSES
from model.preprocess import letterbox
from model.taxonomy import DefectType, View, Zone
from serving.pipeline import analyse_photo, resolve_device
from serving.predictor import load_model
from tests.serving.tiny_model import build_tiny_model, tiny_card

S = 384
CELL = 4
STRIP = (32, 176, 352, 208)  # the device's edge seen side-on, frame pixels (x0, y0, x1, y1): 320 x 32
SCRATCH = ((112, 192), (272, 192))  # 160 px along the strip: half its length
PHONE = "iPhone 15"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("side") / "tiny.onnx"
    build_tiny_model(path, tiny_card(input_size=S, mask_stride=CELL))
    return load_model(path)


def _outputs(model, view: View) -> tuple[Frame, dict[str, np.ndarray]]:
    """The tiny model's outputs for a grey frame, with a frame-zone strip, one scratch along it and the
    network's view set to `view`."""
    image = np.full((S, S, 3), 200, np.uint8)
    frame_image, lb = letterbox(image, S)
    outputs = {k: v[0] for k, v in model.run(frame_image.transpose(2, 0, 1)[None]).items()}
    g = S // CELL
    zones = np.zeros((1 + len(Zone), g, g), np.float32)
    zones[0] = 1.0
    x0, y0, x1, y1 = (v // CELL for v in STRIP)
    zones[0, y0:y1, x0:x1] = 0.0
    zones[1 + list(Zone).index(Zone.FRAME), y0:y1, x0:x1] = 1.0
    outputs["zone_probs"] = zones
    line = np.zeros((S, S), np.uint8)
    cv2.line(line, *SCRATCH, 255, 6)
    defects = np.zeros((len(DEFECT_CHANNELS), g, g), np.float32)
    defects[DEFECT_CHANNELS.index(DefectType.SCRATCH.value)] = cv2.resize(
        line.astype(np.float32) / 255, (g, g), interpolation=cv2.INTER_AREA
    )
    outputs["defect_probs"] = defects
    views = np.zeros(len(VIEW_CLASSES), np.float32)
    views[VIEW_CLASSES.index(view.value)] = 1.0
    outputs["view_probs"] = views
    return Frame(frame_image, lb), outputs


def _scratch_mm(model, view: View) -> float:
    frame, outputs = _outputs(model, view)
    photo = analyse_photo(Inferred(frame, outputs), model.card, resolve_device(PHONE, None), 0)
    (scratch,) = [i for i in photo.instances if i.type is DefectType.SCRATCH]
    assert scratch.measurement.units == "mm" and scratch.zone is Zone.FRAME
    return scratch.measurement.length


def test_a_scratch_on_a_phone_s_top_edge_is_measured_against_its_width(tiny):
    phone = lookup_device(PHONE)
    top, left = _scratch_mm(tiny, View.TOP), _scratch_mm(tiny, View.LEFT)
    # The strip is the width on a top view, the length on a left one: the same pixels, other sizes.
    assert top / left == pytest.approx(phone.width / phone.length, rel=1e-6)
    # Half the strip's length, as measured against the side it shows (the mask's cells blur the ends).
    assert top == pytest.approx(phone.width / 2, rel=0.15)
    assert left == pytest.approx(phone.length / 2, rel=0.15)
