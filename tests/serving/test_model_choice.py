"""Which file serves a configured model (issue 20): its INT8 sibling where the sibling's card says it
passed parity against this FP32 file, else the FP32 file; REFURBGRADE_MODEL_PRECISION=fp32 keeps FP32."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from model.card import Int8Parity
from serving.predictor import choose_model_file, int8_sibling, load_served_model
from serving.settings import Settings
from tests.serving.tiny_model import build_tiny_model, tiny_card

PASSED = Int8Parity(passed=True, fp32_version="tiny-1", images=12, agreement={"zone_probs": 0.99})
FAILED = Int8Parity(
    passed=False, fp32_version="tiny-1", images=12, problems=["view_probs: decisions agree on 0.8 < 0.9"]
)


def _pair(tmp_path, parity: Int8Parity | None, **int8_changes):
    fp32 = tmp_path / "m.onnx"
    build_tiny_model(fp32)
    card = tiny_card(version="tiny-1-int8").model_copy(
        update={"quantized": True, "int8_parity": parity, **int8_changes}
    )
    build_tiny_model(tmp_path / "m.int8.onnx", card)
    return fp32


def test_the_int8_sibling_is_named_after_the_fp32_file(tmp_path):
    assert int8_sibling(tmp_path / "default.onnx") == tmp_path / "default.int8.onnx"
    assert int8_sibling(tmp_path / "default.int8.onnx") is None
    assert int8_sibling(tmp_path / "notes.txt") is None


def test_a_sibling_whose_card_says_parity_passed_is_served(tmp_path):
    fp32 = _pair(tmp_path, PASSED)
    choice = choose_model_file(fp32)
    assert choice.int8 and choice.path == tmp_path / "m.int8.onnx"
    assert "passed parity" in choice.reason
    model, choice = load_served_model(fp32, intra_op_threads=1)
    assert model.path.name == "m.int8.onnx" and model.card.quantized


@pytest.mark.parametrize(
    ("parity", "changes", "why"),
    [
        (FAILED, {}, "parity check against FP32 failed: view_probs"),
        (None, {}, "records no parity check"),
        (PASSED.model_copy(update={"fp32_version": "tiny-0"}), {}, "checked against FP32 version tiny-0"),
        (PASSED, {"crop_to_device": True}, "crop pass differs"),
    ],
)
def test_fp32_is_kept_when_the_sibling_is_not_known_to_match(tmp_path, parity, changes, why):
    fp32 = _pair(tmp_path, parity, **changes)
    choice = choose_model_file(fp32)
    assert not choice.int8 and choice.path == fp32
    assert why in choice.reason


def test_a_sibling_calibrated_alone_is_served_with_its_own_thresholds(tmp_path):
    """INT8 fitted on its own outputs (`calibrate --alone`): other thresholds, and it is still served;
    the same thresholds without that mark are a stale calibration, and are not."""
    own = tiny_card().thresholds.model_copy(update={"needs_review_below": 0.42})
    fp32 = _pair(tmp_path, PASSED, thresholds=own, calibrated_alone=True)
    choice = choose_model_file(fp32)
    assert choice.int8 and choice.path == tmp_path / "m.int8.onnx"
    (tmp_path / "stale").mkdir()
    stale = _pair(tmp_path / "stale", PASSED, thresholds=own)
    assert "thresholds or calibration differ" in choose_model_file(stale).reason


def test_a_card_reading_the_encoder_serves_int8_only_when_calibrated_alone(tmp_path):
    """Zone damage (or photo probes) read the encoder's features, which the parity check does not
    compare: an INT8 sibling sharing such thresholds is not served; one calibrated alone is."""
    from model.damage import ZoneDamageModel

    damage = ZoneDamageModel(weights=(1.0, 0.0, 0.0, 0.0), bias=0.0, photos=10, positives=5)
    shared = tiny_card().thresholds.model_copy(update={"zone_damage": {"screen": damage}})
    fp32 = tmp_path / "m.onnx"
    build_tiny_model(fp32, tiny_card().model_copy(update={"thresholds": shared}))
    int8_card = tiny_card(version="tiny-1-int8").model_copy(update={"thresholds": shared})
    build_tiny_model(
        tmp_path / "m.int8.onnx", int8_card.model_copy(update={"quantized": True, "int8_parity": PASSED})
    )
    choice = choose_model_file(fp32)
    assert not choice.int8 and "encoder features" in choice.reason
    alone = int8_card.model_copy(update={"quantized": True, "int8_parity": PASSED, "calibrated_alone": True})
    build_tiny_model(tmp_path / "m.int8.onnx", alone)
    assert choose_model_file(fp32).int8


def test_fp32_when_asked_or_without_a_sibling(tmp_path):
    fp32 = _pair(tmp_path, PASSED)
    assert choose_model_file(fp32, "fp32").path == fp32
    (tmp_path / "m.int8.onnx").unlink()
    choice = choose_model_file(fp32)
    assert choice.path == fp32 and "no INT8 sibling" in choice.reason
    with pytest.raises(ValueError, match="precision"):
        choose_model_file(fp32, "int4")


def test_a_configured_int8_file_is_served_as_it_is(tmp_path):
    _pair(tmp_path, FAILED)
    choice = choose_model_file(tmp_path / "m.int8.onnx")
    assert choice.int8 and choice.path == tmp_path / "m.int8.onnx"


def test_the_service_serves_and_logs_the_chosen_file(tmp_path, caplog):
    fp32 = _pair(tmp_path / "models", PASSED)
    from serving.app import create_app

    for precision, served in (("auto", "m.int8.onnx"), ("fp32", "m.onnx")):
        settings = Settings(
            model_path=fp32, data_dir=tmp_path / "data", intra_op_threads=1, model_precision=precision
        )
        with caplog.at_level(logging.INFO, logger="refurbgrade"), TestClient(create_app(settings)) as c:
            state = c.app.state.svc
            assert state.slot.current.path.name == served
        assert any(f"model {served}" in r.getMessage() for r in caplog.records)
        caplog.clear()
