"""Model card and manifest contracts: strict schemas with clear errors."""

from __future__ import annotations

import json

import pytest

from model.card import ModelCard, Thresholds
from model.manifest import LabelledInstance, ManifestError, ManifestRecord, read_manifest, write_manifest


def _card(**over) -> dict:
    data = {
        "name": "tiny",
        "version": "0.0.1",
        "architecture": "test",
        "input_size": 64,
        "mask_stride": 4,
        "thresholds": {"defect_pixel": {"scratch": 0.4, "crack": 0.5}},
        "training_data_hash": "abc",
        "git_commit": "deadbeef",
    }
    data.update(over)
    return data


def test_card_round_trips_through_json():
    card = ModelCard.model_validate(_card(metrics={"grade_accuracy": 0.9}))
    again = ModelCard.from_json(card.to_json())
    assert again == card
    assert again.taxonomy.defect_types[0] == "scratch"
    assert again.taxonomy.zones[0] == "background"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"input_sise": 64}, "input_sise"),
        ({"thresholds": {"defect_pixel": {"scratch": 1.5}}}, "defect_pixel"),
        ({"thresholds": {"defect_pixel": {"rust": 0.5}}}, "unknown defect types"),
        ({"output_names": ["a", "b"]}, "contract"),
        ({"schema_version": 99}, "schema_version"),
    ],
)
def test_card_rejects_unknown_or_bad_fields(change, problem):
    with pytest.raises(ValueError, match=problem):
        ModelCard.from_json(json.dumps(_card(**change)), source="x.onnx")


def test_card_missing_field_is_named():
    data = _card()
    del data["git_commit"]
    with pytest.raises(ValueError, match="git_commit"):
        ModelCard.from_json(json.dumps(data), source="x.onnx")


def test_thresholds_default_review_band():
    assert Thresholds(defect_pixel={}).needs_review_below == 0.8


def test_manifest_round_trip_is_byte_stable(tmp_path):
    rec = ManifestRecord(
        image="img/a.jpg",
        device_id="d1",
        split="train",
        source="synthetic",
        view="back",
        instances=[
            LabelledInstance(type="scratch", zone="body", polygon=[(0, 0), (5, 0), (5, 1)], length_mm=5.0)
        ],
        image_labels={"crack": False},
        grades={"backmarket": "Good"},
    )
    path = tmp_path / "m.jsonl"
    write_manifest(path, [rec, rec])
    first = path.read_bytes()
    assert read_manifest(path) == [rec, rec]
    write_manifest(path, read_manifest(path))
    assert path.read_bytes() == first


def test_manifest_error_names_file_and_line(tmp_path):
    path = tmp_path / "m.jsonl"
    good = ManifestRecord(image="a.jpg", device_id="d", split="val", source="s").model_dump_json()
    path.write_text(good + "\n" + good.replace('"val"', '"validation"') + "\n")
    with pytest.raises(ManifestError, match=r"m\.jsonl:2"):
        read_manifest(path)


def test_instance_needs_a_shape():
    with pytest.raises(ValueError, match="polygon or a mask"):
        LabelledInstance(type="dent")
