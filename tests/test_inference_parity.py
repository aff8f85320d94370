"""Train/serve parity of the one inference path: serving's pipeline and training's predict, run on the
same photos with the same ONNX file, give identical instances and grades.

Both call `model.inference.infer`; this test guards the adapters around it (decoding, batching, the
crop-to-device pass, post-processing), where drift between training and serving would hide.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from model.catalogue import lookup_device
from model.manifest import ManifestRecord, write_manifest
from model.rules import list_standards
from model.taxonomy import DeviceKind
from serving.pipeline import Device, grade_device, run_direct
from serving.predictor import load_model
from tests.serving.tiny_model import build_tiny_model, device_photo, tiny_card
from training.dataset import load_items
from training.metrics import grade_devices, photo_result
from training.predict import load_predictor, predict

DEVICE_MODEL = "iPhone 12 Pro"


def _photos() -> list[np.ndarray]:
    """A landscape and a portrait device photo with a scratch, a clean device, a photo with no device."""
    return [
        device_photo(800, 600),
        np.ascontiguousarray(device_photo(900, 640).transpose(1, 0, 2)),
        device_photo(640, 480, scratch=False),
        device_photo(800, 600, device=False),
    ]


@pytest.mark.parametrize("crop_to_device", [True, False], ids=["crop pass", "one pass"])
def test_serving_and_training_give_identical_instances_and_grades(tmp_path, crop_to_device):
    path = tmp_path / "tiny.onnx"
    build_tiny_model(path, tiny_card().model_copy(update={"crop_to_device": crop_to_device}))
    photos = _photos()
    records = []
    for k, photo in enumerate(photos):
        cv2.imwrite(str(tmp_path / f"p{k}.png"), photo[..., ::-1])
        records.append(
            ManifestRecord(
                image=f"p{k}.png",
                device_id="dev-1",
                split="test",
                source="parity",
                device_kind=DeviceKind.PHONE,
                device_model=DEVICE_MODEL,
                grades={s: "unknown" for s in list_standards()},
            )
        )
    write_manifest(tmp_path / "m.jsonl", records)

    # Serving: photo bytes through the pipeline, the device model resolved from the catalogue.
    model = load_model(path, intra_op_threads=1)
    datas = [(tmp_path / f"p{k}.png").read_bytes() for k in range(len(photos))]
    device = Device(
        kind=DeviceKind.PHONE, model_name=DEVICE_MODEL, length_mm=lookup_device(DEVICE_MODEL).length
    )
    served = grade_device(run_direct, model, datas, device=device, standards=list_standards())

    # Training: the same photos from the manifest through predict, post-processing and grading.
    predictor = load_predictor(path, threads=1)
    items = load_items(tmp_path / "m.jsonl", ("test",))
    preds = list(predict(items, predictor, batch_size=3))  # batches split differently from serving's
    results = [photo_result(p, predictor.thresholds, predictor.mask_stride, k) for k, p in enumerate(preds)]

    assert sum(len(p.instances) for p in served.photos) >= 2  # the scratches were found: not a vacuous match
    assert [p.device_found for p in served.photos] == [True, True, True, False]
    for photo, result in zip(served.photos, results, strict=True):
        assert [i.model_dump() for i in photo.instances] == [i.model_dump() for i in result.instances]
        assert (photo.width, photo.height) == result.pred.inferred.frame.original_size
    rows = {r["standard"]: r for r in grade_devices(results, list_standards())}
    for name, g in served.grades.items():
        assert g.grade == rows[name]["pred"]
        assert g.probabilities == pytest.approx(rows[name]["rule_probabilities"])
