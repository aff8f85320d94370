"""Zone damage through serving follows the device's glass (`model.damage.glass_zones`): a phone's back is
glass, a laptop's lid is not. The tiny model's card judges its screen cracked on every photo."""

from __future__ import annotations

import pytest

from model.damage import ZoneDamageModel
from model.taxonomy import DefectType, DeviceKind, View, Zone
from serving.pipeline import Device, grade_device, run_direct
from serving.predictor import load_model
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
