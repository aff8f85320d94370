"""A tiny ONNX model that honours the model contract, built with `onnx.helper` (no torch).

It stands in for the real network in tests and benchmarks. Its behaviour is simple enough to reason
about, so tests can draw photos with known content and assert on what the service reports:

- zones: pixels whose green+blue is dark are the device's screen, bright ones background (the grey
  letterbox padding counts as background); so a dark rectangle on a white table is a device;
- defects: strongly red pixels are scratches (other defect types never fire);
- view: always "front";
- quality: "bad_exposure" when the photo's mean brightness is below ~0.08, else "usable".

`build_tiny_model(path)` writes the file and returns its ModelCard.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model.card import MODEL_CARD_KEY, ModelCard, Thresholds
from model.outputs import (
    DEFECT_CHANNELS,
    INPUT_NAME,
    OUTPUT_NAMES,
    QUALITY_CLASSES,
    VIEW_CLASSES,
    ZONE_CHANNELS,
)
from model.rules import GradeCalibration


def tiny_card(input_size: int = 128, mask_stride: int = 4, version: str = "tiny-1") -> ModelCard:
    return ModelCard(
        name="tiny-test-model",
        version=version,
        architecture="avgpool+1x1conv (test double)",
        input_size=input_size,
        mask_stride=mask_stride,
        thresholds=Thresholds(defect_pixel=dict.fromkeys(DEFECT_CHANNELS, 0.5), needs_review_below=0.8),
        training_data_hash="none",
        git_commit="none",
        notes="built by tests/serving/tiny_model.py",
    )


def calibrated_card(standard: str, grades: tuple[str, ...], first_right: float = 0.5) -> ModelCard:
    """The tiny card with a grade calibration for `standard`: its first grade right `first_right` of the
    time (else the second), the others always."""
    k = len(grades)
    m = np.eye(k)
    m[0, :2] = first_right, 1 - first_right
    card = tiny_card()
    cal = GradeCalibration(grades=grades, matrix=tuple(map(tuple, m)), devices=50, standard_version="1")
    return card.model_copy(
        update={"thresholds": card.thresholds.model_copy(update={"grade_calibration": {standard: cal}})}
    )


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def build_tiny_model_proto(card: ModelCard | None = None) -> onnx.ModelProto:
    card = card or tiny_card()
    s, k = card.input_size, card.mask_stride
    n_def, n_zone, n_view, n_q = (
        len(DEFECT_CHANNELS),
        len(ZONE_CHANNELS),
        len(VIEW_CLASSES),
        len(QUALITY_CLASSES),
    )

    # 1x1 conv weights over (r, g, b) in 0..1.
    w_def = np.zeros((n_def, 3, 1, 1))
    b_def = np.full(n_def, -10.0)
    w_def[0, :, 0, 0] = (30.0, -15.0, -15.0)  # scratch: red minus the others
    b_def[0] = -5.0
    w_zone = np.zeros((n_zone, 3, 1, 1))
    b_zone = np.full(n_zone, -10.0)
    w_zone[0, :, 0, 0] = (0.0, 5.0, 5.0)  # background: bright in green+blue
    b_zone[0] = -3.0
    w_zone[1, :, 0, 0] = (0.0, -5.0, -5.0)  # screen: dark in green+blue
    b_zone[1] = 3.0
    w_view = np.zeros((n_view, 3))
    b_view = np.zeros(n_view)
    b_view[0] = 2.0  # front
    w_q = np.zeros((n_q, 3))
    b_q = np.zeros(n_q)
    b_q[0] = 1.0  # usable
    w_q[QUALITY_CLASSES.index("bad_exposure")] = (-13.0, -13.0, -13.0)
    b_q[QUALITY_CLASSES.index("bad_exposure")] = 4.0

    inits = [
        _init("scale", np.array(1.0 / 255.0)),
        _init("w_def", w_def),
        _init("b_def", b_def),
        _init("w_zone", w_zone),
        _init("b_zone", b_zone),
        _init("w_view", w_view),
        _init("b_view", b_view),
        _init("w_q", w_q),
        _init("b_q", b_q),
    ]
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["xf", "scale"], ["x"]),
        helper.make_node("AveragePool", ["x"], ["pooled"], kernel_shape=[k, k], strides=[k, k]),
        helper.make_node("Conv", ["pooled", "w_def", "b_def"], ["def_logits"]),
        helper.make_node("Sigmoid", ["def_logits"], ["defect_probs"]),
        helper.make_node("Conv", ["pooled", "w_zone", "b_zone"], ["zone_logits"]),
        helper.make_node("Softmax", ["zone_logits"], ["zone_probs"], axis=1),
        helper.make_node("GlobalAveragePool", ["x"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["feat"], axis=1),
        helper.make_node("Gemm", ["feat", "w_view", "b_view"], ["view_logits"], transB=1),
        helper.make_node("Softmax", ["view_logits"], ["view_probs"], axis=1),
        helper.make_node("Gemm", ["feat", "w_q", "b_q"], ["q_logits"], transB=1),
        helper.make_node("Softmax", ["q_logits"], ["quality_probs"], axis=1),
    ]
    m = s // k
    shapes = {
        "defect_probs": ["N", n_def, m, m],
        "zone_probs": ["N", n_zone, m, m],
        "view_probs": ["N", n_view],
        "quality_probs": ["N", n_q],
    }
    graph = helper.make_graph(
        nodes,
        "tiny_refurbgrade",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["N", 3, s, s])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shapes[name]) for name in OUTPUT_NAMES],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tiny_model")
    proto.ir_version = 8
    helper.set_model_props(proto, {MODEL_CARD_KEY: card.to_json()})
    onnx.checker.check_model(proto)
    return proto


def build_tiny_model(path: str | Path, card: ModelCard | None = None) -> ModelCard:
    """Write the tiny model to `path`; returns the card written into it."""
    card = card or tiny_card()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build_tiny_model_proto(card), str(path))
    return card


def device_photo(
    width: int = 800,
    height: int = 600,
    scratch: bool = True,
    device: bool = True,
    background: tuple[int, int, int] = (245, 245, 245),
) -> np.ndarray:
    """An RGB photo the tiny model understands: a dark device on a light table, maybe with a red scratch."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[:] = background
    if device:
        x0, x1 = int(width * 0.3), int(width * 0.7)
        y0, y1 = int(height * 0.1), int(height * 0.9)
        img[y0:y1, x0:x1] = (20, 20, 25)
        if scratch:
            cy = (y0 + y1) // 2
            t = max(2, height // 40)
            img[cy - t : cy + t, x0 + (x1 - x0) // 5 : x1 - (x1 - x0) // 5] = (230, 0, 0)
    return img
