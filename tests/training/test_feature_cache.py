"""The frozen-feature cache: the same losses and gradients as the full forward pass, and a cached run."""

from __future__ import annotations

import pytest
import torch

from model.registry import create_model
from training.config import LossConfig, load_config
from training.dataset import ManifestDataset, load_items
from training.engine import Logits, compute_losses, model_inputs, validate
from training.feature_cache import FeatureCache
from training.toydata import write_toy_manifest
from training.train import _collate, run_training


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_manifest(tmp_path_factory.mktemp("toy"), n=12, size=64, seed=3)


@pytest.mark.parametrize(
    ("name", "overrides", "dtype", "tol"),
    [
        ("tiny", {"freeze_blocks": 2}, torch.float32, 1e-6),  # exact
        ("tiny", {"freeze_blocks": 2}, torch.float16, 0.1),
        ("lite0_fpn", {"freeze_blocks": 4}, torch.float32, 1e-6),  # the Lite0 split is exact too
    ],
)
def test_cached_prefix_gives_the_same_losses_and_gradients(toy, name, overrides, dtype, tol):
    torch.manual_seed(0)
    extra = {"pretrained": False, "input_size": 64} if name == "lite0_fpn" else {}
    net = create_model(name, **overrides, **extra).train()
    ds = ManifestDataset(load_items(toy, ["train", "val", "test"]), net.input_size, augment=False)
    idx = [0, 3, 5, 7]
    full = _collate([ds[i] for i in idx])
    cached = FeatureCache(net, ds, dtype=dtype).batch(idx)
    assert len(FeatureCache(net, ds)) == 0  # lazy: nothing computed before a draw
    w = LossConfig()
    model = Logits(net)
    grads = []
    for batch in (full, cached):
        net.zero_grad()
        torch.manual_seed(1)  # same dropout draws in both passes
        losses = compute_losses(model(model_inputs(batch)), batch, net.mask_stride, w)
        losses["loss"].backward()
        grads.append({n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None})
        if batch is full:
            ref = {k: v.item() for k, v in losses.items()}
    # float16 storage of the features: losses equal to under half a percent
    for k, v in losses.items():
        assert v.item() == pytest.approx(ref[k], rel=5e-3, abs=1e-4), k
    assert grads[0].keys() == grads[1].keys() and grads[0]
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen and not frozen & grads[0].keys()  # nothing flows into the frozen blocks
    # Over all trainable weights (single tensors can hold gradients that are zero up to rounding,
    # e.g. a bias just before a batch norm): float32 is exact, float16 rounding moves a few percent,
    # like mixed-precision training and far inside the noise between two batches.
    diff = sum(((grads[0][n] - grads[1][n]) ** 2).sum() for n in grads[0]) ** 0.5
    norm = sum((grads[0][n] ** 2).sum() for n in grads[0]) ** 0.5
    assert diff / norm <= tol, (diff / norm).item()


def test_cache_needs_frozen_blocks(toy):
    net = create_model("tiny")
    ds = ManifestDataset(load_items(toy, ["train"]), net.input_size)
    with pytest.raises(ValueError, match="freeze_blocks"):
        FeatureCache(net, ds)


def test_views_are_kept_and_reused(toy):
    net = create_model("tiny", freeze_blocks=2)
    ds = ManifestDataset(load_items(toy, ["train", "val", "test"]), net.input_size, augment=True)
    cache = FeatureCache(net, ds, views=2, seed=0)
    for _ in range(20):
        cache.batch([0, 1])
    assert len(cache) == 4  # 2 photos x 2 views, computed once each
    a = cache.batch([0], view=0)["prefix"][1]
    b = cache.batch([0], view=1)["prefix"][1]
    assert not torch.equal(a, b)  # two different augmentations
    assert torch.equal(a, cache.batch([0], view=0)["prefix"][1])


def test_cached_training_run_learns_and_validates(toy, tmp_path):
    cfg = load_config(
        None,
        [
            f"data.train=[{{manifest: {toy}, splits: [train, val, test]}}]",
            f"data.val=[{{manifest: {toy}, splits: [val]}}]",
            "model.name=tiny",
            "model.overrides={freeze_blocks: 2}",
            "data.feature_cache=true",
            "data.batch_size=4",
            "data.samples_per_epoch=24",
            "optim.epochs=3",
            "optim.warmup_steps=0",
            "optim.lr=0.01",
            "early_stopping_patience=null",
            "calibrate=false",
            f"run_dir={tmp_path}",
            "progress=false",
        ],
    )
    best = run_training(cfg)
    import json

    history = json.loads((tmp_path / "metrics.json").read_text())
    assert len(history) == 3 and history[-1]["feature_cache_mb"] > 0
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert "val_loss" in history[-1] and best.exists()
    # the validation pass on cached features equals the plain one on the same weights
    from training.checkpoint import load_checkpoint

    net, _ = load_checkpoint(tmp_path / "last.pt")
    val = ManifestDataset(load_items(toy, ["val"]), net.input_size)
    plain = validate(net, [_collate([val[i] for i in range(len(val))])], cfg.loss)
    cached = validate(net, FeatureCache(net, val).in_order(len(val)), cfg.loss)
    assert cached["val_loss"] == pytest.approx(plain["val_loss"], rel=2e-3)
