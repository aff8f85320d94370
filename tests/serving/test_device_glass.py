"""Zone damage through serving follows the device's glass (`model.damage.glass_zones`): a phone's back is
glass, a laptop's lid is not. The tiny model's card judges its screen cracked on every photo."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from model.damage import ZoneDamageModel
from model.taxonomy import DefectType, DeviceKind, View, Zone
from serving.pipeline import Device, grade_device, run_direct
from serving.predictor import load_model
from tests.model.test_probes import laptop_probe
from tests.serving.conftest import encode
from tests.serving.tiny_model import build_tiny_model, device_photo, tiny_card


@pytest.fixture(scope="module")
def always_cracked(tmp_path_factory):
    cracked = ZoneDamageModel(weights=(0.0, 0.0, 0.0, 0.0), bias=5.0, photos=10, positives=5)
    card = tiny_card()
    thresholds = card.thresholds.model_copy(update={"zone_damage": {"screen": cracked}})
    path = tmp_path_factory.mktemp("glass") / "m.onnx"
    build_tiny_model(path, card.model_copy(update={"thresholds": thresholds}))
    return load_model(path, intra_op_threads=1)


@pytest.mark.parametrize(
    ("kind", "view", "cracked_zone"),
    [
        (DeviceKind.PHONE, View.BACK, Zone.BODY),  # the back glass
        (DeviceKind.PHONE, View.FRONT, Zone.SCREEN),
        (DeviceKind.LAPTOP, View.FRONT, Zone.SCREEN),  # an opened laptop's display
        (DeviceKind.LAPTOP, View.BACK, None),  # a closed lid: metal or plastic
    ],
)
def test_a_judged_crack_lands_on_glass_the_device_has(always_cracked, kind, view, cracked_zone):
    photo = encode(device_photo(scratch=False))
    g = grade_device(
        run_direct, always_cracked, [photo], device=Device(kind=kind), standards=["backmarket"], views=[view]
    )
    cracks = [i for i in g.instances if i.type is DefectType.CRACK and i.role == "defect"]
    if cracked_zone is None:
        assert cracks == []
        assert g.grades["backmarket"].listable
    else:
        assert [(c.zone, round(c.confidence, 3)) for c in cracks] == [(cracked_zone, 0.993)]
        assert not g.grades["backmarket"].listable


# The device's kind where the caller said none (`model.device_kind`): the card's kind probe reads the
# encoder's features, which the tiny model has not, so the run adds a channel that says how much of a
# laptop each photo is.
META = {"filename": "lid.jpg", "content_type": "image/jpeg", "sha256": "0" * 64, "bytes": 1}


@pytest.fixture(scope="module")
def kind_reading(tmp_path_factory):
    cracked = ZoneDamageModel(weights=(0.0, 0.0, 0.0, 0.0), bias=5.0, photos=10, positives=5)
    card = tiny_card()
    thresholds = card.thresholds.model_copy(
        update={"zone_damage": {"screen": cracked}, "photo_probes": {"kind": laptop_probe(1, 4.0)}}
    )
    path = tmp_path_factory.mktemp("kind") / "m.onnx"
    build_tiny_model(path, card.model_copy(update={"thresholds": thresholds}))
    return load_model(path, intra_op_threads=1)


def _run_saying(laptop_signal: float):
    import numpy as np

    from model.outputs import ENCODER_S16

    def run(model, images):
        outs = run_direct(model, images)
        return [o | {ENCODER_S16: np.full((1, 2, 2), laptop_signal, np.float32)} for o in outs]

    return run


@pytest.mark.parametrize(
    ("signal", "kind", "listable"),
    [
        (2.0, DeviceKind.LAPTOP, True),  # P(laptop) 0.9997: a lid, whose "crack" is no glass's
        (0.3, DeviceKind.PHONE, False),  # 0.77: not at 9 to 1, so a phone's back glass, cracked
    ],
)
def test_a_device_nobody_described_is_graded_as_the_kind_its_photos_show(
    kind_reading, signal, kind, listable
):
    from serving.pipeline import resolve_device
    from serving.schemas import grading_body

    photo = encode(device_photo(scratch=False))
    device = resolve_device(None, None)
    assert device.kind_source == "default"
    g = grade_device(
        _run_saying(signal), kind_reading, [photo], device=device, standards=["backmarket"], views=[View.BACK]
    )
    assert (g.device.kind, g.device.kind_source) == (kind, "photos")
    bm = g.grades["backmarket"]
    assert bm.listable is listable
    # Not at 9 to 1 a phone either: graded as a laptop the back's crack is no glass's, so the grade
    # hinges on the kind, and a person looks.
    unsure = kind is DeviceKind.PHONE
    assert bm.kind_decides is unsure and (bm.needs_review or not unsure)
    assert any("depends on what kind of device" in r for r in g.review_reasons) is unsure
    said = grade_device(
        _run_saying(signal),
        kind_reading,
        [photo],
        device=resolve_device(None, "phone"),
        standards=["backmarket"],
        views=[View.BACK],
    )
    assert (said.device.kind, said.device.kind_source) == (DeviceKind.PHONE, "caller")  # the caller decides
    assert not said.grades["backmarket"].listable
    body = grading_body(
        g, grading_id="x", created_at=datetime.now(UTC), tenant="t", external_ref=None, photo_meta=[META]
    )
    assert (body["device_kind"], body["device_kind_source"]) == (kind.value, "photos")


def test_without_a_kind_probe_the_default_phone_stands(always_cracked):
    from serving.pipeline import resolve_device

    g = grade_device(
        run_direct,
        always_cracked,
        [encode(device_photo(scratch=False))],
        device=resolve_device(None, None),
        standards=["backmarket"],
        views=[View.BACK],
    )
    assert (g.device.kind, g.device.kind_source) == (DeviceKind.PHONE, "default")


def test_resolve_device_says_who_named_the_kind():
    from serving.pipeline import resolve_device

    assert resolve_device(None, "laptop").kind_source == "caller"
    assert resolve_device("iPhone 13", None).kind_source == "catalogue"
    assert resolve_device("iPhone 13", "tablet").kind_source == "caller"
    assert resolve_device(None, None).kind_source == "default"


def test_an_unsure_kind_that_does_not_change_the_grade_sends_nothing_to_review(kind_reading):
    """A cracked screen is a cracked screen on a phone and on a laptop: the kind decides nothing."""
    from serving.pipeline import resolve_device

    g = grade_device(
        _run_saying(0.3),
        kind_reading,
        [encode(device_photo(scratch=False))],
        device=resolve_device(None, None),
        standards=["backmarket"],
        views=[View.FRONT],
    )
    bm = g.grades["backmarket"]
    assert g.device.kind is DeviceKind.PHONE and not bm.listable and not bm.kind_decides
    assert not any("depends on what kind of device" in r for r in g.review_reasons)
