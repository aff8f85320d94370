"""A checkpoint rebuilt from an exported ONNX file (`training.from_onnx`): the exporter folds each BatchNorm
into its convolution, and the rebuilt network must compute what the file computes, before and after its
BatchNorm statistics are restored; with them restored, training mode normalises batches about where the
network learnt them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from torch import nn

from model.card import ModelCard, Thresholds
from model.export import export_onnx, run_onnx
from model.outputs import OUTPUT_NAMES
from model.preprocess import letterbox, to_nchw
from model.registry import create_model
from training.checkpoint import load_checkpoint
from training.from_onnx import RebuildError, checkpoint_from_onnx, rebuild, restore_batch_statistics


def _card(architecture: str = 'tiny {"input_size": 64}') -> ModelCard:
    return ModelCard(
        name="tiny",
        version="0.0.1",
        architecture=architecture,
        input_size=64,
        mask_stride=4,
        thresholds=Thresholds(defect_pixel={"scratch": 0.4}),
        training_data_hash="0" * 64,
        git_commit="test",
    )


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    rng = np.random.default_rng(0)
    natural = [letterbox(p, 64)[0] for p in (data.chelsea(), data.coffee(), data.astronaut(), data.rocket())]
    return to_nchw(natural + [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, photos):
    """A tiny network with BatchNorms that are far from the identity (as a trained one's), exported."""
    torch.manual_seed(0)
    net = create_model("tiny")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen))
                m.running_var.copy_(torch.rand(n, generator=gen) * 3 + 0.2)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.3)
    net.eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(net, path, _card(), photos)
    return net, path


def _outputs(net, photos) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = net.eval()(torch.from_numpy(photos))
    return {k: getattr(out, k).numpy() for k in OUTPUT_NAMES}


def test_the_rebuilt_network_computes_what_the_file_computes(trained, photos):
    original, path = trained
    assert not any(n.endswith("running_mean") for n in _initializer_names(path))  # folded away
    net, arch = rebuild(path)
    assert arch == {"name": "tiny", "overrides": {"input_size": 64}}
    onnx_out, ours = run_onnx(path, photos), _outputs(net, photos)
    for k in OUTPUT_NAMES:
        np.testing.assert_allclose(ours[k], onnx_out[k], atol=1e-4)
    # The folded weights are not the original's (a BatchNorm was folded in), the function is.
    restore_batch_statistics(net, photos)
    for k, v in _outputs(net, photos).items():
        np.testing.assert_allclose(v, _outputs(original, photos)[k], atol=1e-4)


def test_restored_statistics_keep_training_mode_near_the_learnt_normalisation(trained, photos):
    _, path = trained

    def train_vs_eval(net) -> float:
        with torch.no_grad():
            ev = net.eval()(torch.from_numpy(photos)).zone_probs
            tr = net.train()(torch.from_numpy(photos)).zone_probs
        return float((ev - tr).abs().mean())

    identity, _ = rebuild(path)
    restored, _ = rebuild(path)
    restore_batch_statistics(restored, photos)
    bn = next(m for m in restored.modules() if isinstance(m, nn.BatchNorm2d))
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    # On the photos the statistics came from, a batch is normalised exactly as in evaluation.
    assert train_vs_eval(restored) < 1e-4 < train_vs_eval(identity)


def test_the_checkpoint_loads_as_a_training_checkpoint_and_a_wrong_recipe_is_refused(
    trained, photos, tmp_path
):
    _, path = trained
    rep = checkpoint_from_onnx(path, tmp_path / "back.pt", photos)
    assert rep["photos"] == len(photos) and max(rep["max_diff_identity"], rep["max_diff_statistics"]) < 1e-3
    net, ckpt = load_checkpoint(tmp_path / "back.pt")
    assert ckpt["rebuilt_from"]["file"] == "tiny.onnx"
    for k, v in _outputs(net, photos).items():
        np.testing.assert_allclose(v, run_onnx(path, photos)[k], atol=1e-3)
    wrong = tmp_path / "wrong.onnx"
    export_onnx(
        create_model("tiny", decoder_channels=8).eval(), wrong, _card('tiny {"decoder_channels": 16}'), photos
    )
    with pytest.raises(RebuildError, match="ONNX has"):
        rebuild(wrong)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(RebuildError, match=r"junk\.onnx: not an exported refurbgrade model"):
        rebuild(junk)


def _initializer_names(path) -> list[str]:
    import onnx

    return [i.name for i in onnx.load(str(path)).graph.initializer]
