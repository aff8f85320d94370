"""ONNX export verifies itself: checker, card round trip, ORT vs PyTorch parity; INT8 stays close."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from skimage import data

from model.card import ModelCard, Thresholds
from model.export import (
    OPSET,
    ExportVerificationError,
    compare,
    decisions,
    export_onnx,
    noise_stable,
    quantize_int8,
    read_card,
    run_onnx,
    torch_outputs,
    update_card,
    verify,
)
from model.outputs import INPUT_NAME, OUTPUT_NAMES
from model.preprocess import letterbox, to_nchw
from model.registry import create_model


def _card(size: int = 64) -> ModelCard:
    return ModelCard(
        name="tiny",
        version="0.0.1",
        architecture="tiny",
        input_size=size,
        mask_stride=4,
        thresholds=Thresholds(defect_pixel={"scratch": 0.4, "crack": 0.6}),
        training_data_hash="0" * 64,
        git_commit="test",
    )


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    # Real photos (scikit-image samples) plus a synthetic one: parity must hold on natural statistics.
    rng = np.random.default_rng(0)
    synth = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return to_nchw([letterbox(p, 64)[0] for p in (data.chelsea(), data.coffee(), synth)])


@pytest.fixture(scope="module")
def exported(tmp_path_factory, photos):
    torch.manual_seed(0)
    net = create_model("tiny").eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    report = export_onnx(net, path, _card(), photos)
    return net, path, report


def test_export_writes_contract_graph_with_card(exported, photos):
    net, path, report = exported
    m = onnx.load(str(path))
    assert m.opset_import[0].version == OPSET
    assert [i.name for i in m.graph.input] == [INPUT_NAME]
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert tuple(o.name for o in m.graph.output) == OUTPUT_NAMES
    assert read_card(path).thresholds.defect_pixel == {"scratch": 0.4, "crack": 0.6}
    assert report.n_images == 3 and max(report.max_abs.values()) < 1e-4
    # Dynamic batch: 5 photos in, 5 results out, each equal to PyTorch's.
    batch = np.concatenate([photos, photos[:2]])
    got = run_onnx(path, batch)
    ref = torch_outputs(net, batch)
    for name in OUTPUT_NAMES:
        np.testing.assert_allclose(got[name], ref[name], atol=1e-4)


def test_verification_fails_loudly_when_onnx_differs_from_torch(exported, photos):
    _, path, _ = exported
    other = create_model("tiny").eval()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5)
    with pytest.raises(ExportVerificationError, match="parity failed"):
        verify(path, other, photos)


def test_verification_rejects_a_card_that_does_not_round_trip(exported, photos):
    net, path, _ = exported
    with pytest.raises(ExportVerificationError, match="model card"):
        verify(path, net, photos, _card().model_copy(update={"version": "9"}))


def test_int8_quantization_is_checked_against_fp32(exported, photos, tmp_path):
    _, path, _ = exported
    out = tmp_path / "tiny.int8.onnx"
    report = quantize_int8(path, out, photos, photos)
    card = read_card(out)
    assert card.quantized and card.version.endswith("-int8")
    assert report.argmax_agreement["zone_probs"] >= 0.9
    # The card records the check (serving serves an INT8 sibling by default only when it passed).
    parity = card.int8_parity
    assert parity.passed and not parity.problems and parity.fp32_version == read_card(path).version
    assert parity.images == len(photos) and parity.agreement == report.argmax_agreement
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops


def test_a_failing_int8_file_never_stays_under_the_asked_name(exported, photos, tmp_path, monkeypatch):
    _, path, _ = exported
    monkeypatch.setattr("model.export.INT8_TOLERANCE", {"min_argmax_agreement": 1.01})  # unreachable
    out = tmp_path / "bad.int8.onnx"
    with pytest.raises(ExportVerificationError, match="INT8 vs FP32"):
        quantize_int8(path, out, photos, photos)
    assert not out.exists() and out.with_suffix(".failed.onnx").is_file()
    parity = read_card(out.with_suffix(".failed.onnx")).int8_parity
    assert not parity.passed and parity.problems


def test_compare_counts_only_sure_and_stable_decisions():
    # Three photos: FP32 sure on all three; INT8 flips photo 2, whose FP32 decision is marked unstable.
    ref = {n: np.full((3, 2, 2, 2), 0.9, np.float32) for n in ("defect_probs", "zone_probs")}
    ref |= {
        n: np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]], np.float32) for n in ("view_probs", "quality_probs")
    }
    got = {k: v.copy() for k, v in ref.items()}
    got["view_probs"][2] = [0.2, 0.8]
    assert compare(ref, got, margin=0.2).argmax_agreement["view_probs"] == pytest.approx(2 / 3)
    stable = {k: np.ones(v.shape[:1] if v.ndim == 2 else v[:, 0].shape, bool) for k, v in ref.items()}
    stable["defect_probs"] = np.ones(ref["defect_probs"].shape, bool)
    stable["view_probs"][2] = False
    rep = compare(ref, got, margin=0.2, stable=stable)
    assert rep.argmax_agreement["view_probs"] == 1.0 and rep.compared["view_probs"] == 2
    assert compare(ref, got, margin=0.5).compared["view_probs"] == 2  # margins 0.8, 0.6 (not 0.4)


def test_noise_stability_is_measured_not_assumed(exported, photos):
    _, path, _ = exported
    ref = run_onnx(path, photos)
    still = noise_stable(path, photos, ref, amp=0, draws=2)  # no noise: every decision holds
    assert all(s.all() for s in still.values())
    assert (
        still["view_probs"].shape == (len(photos),)
        and still["zone_probs"].shape == ref["zone_probs"][:, 0].shape
    )
    # One draw of +-40 grey levels: exactly the decisions of the model on that noisy copy.
    loud = noise_stable(path, photos, ref, amp=40, draws=1, seed=5)
    noisy = photos.astype(np.int16) + np.random.default_rng(5).integers(-40, 41, photos.shape)
    moved = run_onnx(path, np.clip(noisy, 0, 255).astype(np.uint8))
    for name in OUTPUT_NAMES:
        np.testing.assert_array_equal(loud[name], decisions(moved, name) == decisions(ref, name))


def test_update_card_rewrites_only_the_card(exported, photos, tmp_path):
    _, path, _ = exported
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(path.read_bytes())
    update_card(copy, metrics={"test_bm_grade_accuracy": 0.5})
    card = read_card(copy)
    assert card.metrics["test_bm_grade_accuracy"] == 0.5 and card.thresholds == read_card(path).thresholds
    np.testing.assert_array_equal(run_onnx(copy, photos)["zone_probs"], run_onnx(path, photos)["zone_probs"])
