"""Training: strict config, mixed sources and supervision paths, checkpoints, resume, early stopping."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model.registry import create_model
from training.checkpoint import load_checkpoint
from training.config import ConfigError, LossConfig, load_config
from training.dataset import IGNORE, ManifestDataset, load_items
from training.engine import compute_losses, train_one_epoch, validate
from training.toydata import write_toy_manifest
from training.train import _collate, epoch_indices, run_training


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_manifest(tmp_path_factory.mktemp("toy"), n=20, size=64, seed=0)


def _cfg(toy, run_dir, *extra):
    return load_config(
        None,
        [
            f"data.train=[{{manifest: {toy}}}]",
            f"data.val=[{{manifest: {toy}, splits: [val]}}]",
            "model.name=tiny",
            "data.batch_size=4",
            "optim.warmup_steps=0",
            "optim.lr=0.003",
            f"run_dir={run_dir}",
            "progress=false",
            *extra,
        ],
    )


def test_config_is_strict_and_overrides_keep_types(tmp_path, toy):
    path = tmp_path / "c.yaml"
    path.write_text(f"data:\n  train:\n    - manifest: {toy}\n  val: []\nearly_stopping_patience: null\n")
    cfg = load_config(path, ["optim.lr=3e-4", "data.batch_size=2", "model.overrides={input_size: 96}"])
    assert cfg.optim.lr == 3e-4 and cfg.data.batch_size == 2 and cfg.model.overrides == {"input_size": 96}
    path.write_text(f"data:\n  train:\n    - manifest: {toy}\n  bach_size: 4\n")
    with pytest.raises(ConfigError, match="bach_size"):
        load_config(path)
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(None, ["optim.lr"])
    # A number indexes a list: one source reweighted, the others untouched; a bad index is an error.
    path.write_text(
        f"data:\n  train:\n    - manifest: {toy}\n    - manifest: {toy}\n  val: []\n"
        "early_stopping_patience: null\n"
    )
    cfg = load_config(path, ["data.train.1.weight=4.0"])
    assert [s.weight for s in cfg.data.train] == [1.0, 4.0]
    with pytest.raises(ConfigError, match="not an item"):
        load_config(path, ["data.train.2.weight=4.0"])
    with pytest.raises(ConfigError, match="not an item"):
        load_config(path, ["data.train.first.weight=4.0"])
    with pytest.raises(ConfigError, match="not a section"):
        load_config(path, ["early_stopping_patience.x=1"])
    # Paths in a file are relative to the file, not to where the run starts.
    from training.config import resolve_paths

    rel = resolve_paths(
        load_config(
            None,
            [
                "data.train=[{manifest: m.jsonl}]",
                "early_stopping_patience=null",
                "run_dir=runs/x",
                "init_weights=runs/y/best.pt",
            ],
        ),
        tmp_path,
    )
    assert rel.run_dir == str(tmp_path / "runs" / "x") and rel.data.train[0].manifest == str(
        tmp_path / "m.jsonl"
    )
    assert rel.init_weights == str(tmp_path / "runs" / "y" / "best.pt")
    with pytest.raises(ConfigError, match="early stopping needs"):  # patience without val data
        load_config(None, [f"data.train=[{{manifest: {toy}}}]"])


def test_dataset_carries_each_source_supervision(toy):
    items = load_items(toy, ["train", "val", "test"])
    ds = ManifestDataset(items, 64)
    kinds = {it.record.source for it in items}
    assert kinds == {"toy", "toy_real"}
    for i, it in enumerate(items):
        s = ds[i]
        assert s["image"].dtype == torch.uint8 and s["image"].shape == (3, 64, 64)
        rec = it.record
        if rec.instances_complete:  # synthetic: every channel known per pixel, zones known everywhere
            assert s["pixel_valid"].all() and (s["zone"] != IGNORE).all()
            assert (s["defects"].amax(dim=(1, 2)) == s["image_label"]).all()
        elif rec.image_labels:  # image-level only: no pixel supervision, the pooled loss sees the label
            assert not s["pixel_valid"].any() and s["image_valid"][1] == 1  # crack channel
        if rec.screen_polygons:  # screen zone inside the polygon, unknown elsewhere (but padding)
            assert (s["zone"] == 1).any() and (s["zone"] == IGNORE).any()


def test_pooled_image_level_loss_trains_masks_from_image_labels():
    """A photo labelled only 'has a crack' must push the crack map's peak up, and only that."""
    torch.manual_seed(0)
    net = create_model("tiny")
    batch = {
        "image": torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8),
        "defects": torch.zeros(2, 6, 64, 64),
        "zone": torch.full((2, 64, 64), IGNORE),
        "pixel_valid": torch.zeros(2, 6),
        "image_label": torch.tensor([[0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.float32),
        "image_valid": torch.tensor([[0, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0]], dtype=torch.float32),
        "view": torch.tensor([-100, -100]),
        "quality": torch.tensor([-100, -100]),
    }
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    w = LossConfig(defect=0, defect_dice=0, zone=0, view=0, quality=0, image_level=1)
    for _ in range(30):
        loss = compute_losses(net.forward_logits(batch["image"]), batch, 4, w)
        opt.zero_grad()
        loss["loss"].backward()
        opt.step()
    with torch.no_grad():
        peak = net(batch["image"]).defect_probs.amax(dim=(2, 3))
    assert peak[0, 1] > 0.8 and peak[1, 1] < 0.2


def test_train_one_epoch_reduces_loss_and_validate_reports_metrics(toy):
    torch.manual_seed(0)
    items = load_items(toy, ["train"])
    ds = ManifestDataset(items, 64, cache=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=_collate)
    net = create_model("tiny")
    before = validate(net, loader, LossConfig())
    opt = torch.optim.AdamW(net.parameters(), 3e-3)
    first = train_one_epoch(net, loader, opt, LossConfig())
    for _ in range(6):
        last = train_one_epoch(net, loader, opt, LossConfig())
    assert last["loss"] < first["loss"]
    metrics = validate(net, loader, LossConfig())
    assert {"val_loss", "val_defect_iou", "val_zone_miou", "val_view_acc"} <= set(metrics)
    # Toy zones are big flat rectangles: a few epochs must learn them well beyond the untrained net.
    assert metrics["val_zone_miou"] > before["val_zone_miou"] + 0.1


def test_mixed_sources_follow_weights_not_sizes(toy):
    items = load_items(toy, ["train", "val", "test"])
    weights = {str(toy): 1.0}
    idx = epoch_indices(items, weights, 500, seed=0, epoch=0)
    assert idx == epoch_indices(items, weights, 500, seed=0, epoch=0)  # reproducible
    assert idx != epoch_indices(items, weights, 500, seed=0, epoch=1)
    # Two sources of very different size but equal weight get equal shares.
    from dataclasses import replace

    a = [replace(it, source="a") for it in items[:2]]
    b = [replace(it, source="b") for it in items]
    draws = epoch_indices(a + b, {"a": 1.0, "b": 1.0}, 2000, seed=0, epoch=0)
    share_a = np.mean([i < len(a) for i in draws])
    assert 0.4 < share_a < 0.6


@pytest.mark.slow
def test_run_training_writes_checkpoints_metrics_and_resumes(toy, tmp_path):
    cfg = _cfg(toy, tmp_path / "run", "optim.epochs=2", "early_stopping_patience=null")
    best = run_training(cfg)
    run = tmp_path / "run"
    for name in ("best.pt", "last.pt", "metrics.csv", "metrics.json", "metrics.png", "config.yaml"):
        assert (run / name).exists(), name
    history = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2] and "val_loss" in history[0]
    _net, ckpt = load_checkpoint(best)
    assert ckpt["config"]["model"]["name"] == "tiny" and ckpt["config"]["optim"]["epochs"] == 2
    cal = ckpt["calibration"]["thresholds"]
    assert set(cal["defect_pixel"]) == {"scratch", "crack", "chip", "dent", "stain", "smudge"}
    assert len(ckpt["training_data_hash"]) == 64
    # Resume from last.pt: continues at epoch 3, keeps the history.
    cfg3 = _cfg(toy, run, "optim.epochs=3", "early_stopping_patience=null", f"resume={run / 'last.pt'}")
    run_training(cfg3)
    history = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]


def test_init_weights_starts_a_fresh_run_from_a_checkpoint(toy, tmp_path):
    first = run_training(
        _cfg(toy, tmp_path / "a", "optim.epochs=1", "calibrate=false", "early_stopping_patience=null")
    )
    trained, _ = load_checkpoint(first)
    # lr ~0: the fine-tuning run keeps the weights it started from, and its history starts at epoch 1.
    cfg = _cfg(
        toy,
        tmp_path / "b",
        "optim.epochs=1",
        "optim.lr=1e-12",
        "calibrate=false",
        "early_stopping_patience=null",
        f"init_weights={first}",
    )
    tuned, ckpt = load_checkpoint(run_training(cfg))
    assert [r["epoch"] for r in ckpt["history"]] == [1]
    for (name, a), b in zip(trained.state_dict().items(), tuned.state_dict().values(), strict=True):
        if a.is_floating_point() and "running" not in name:  # batch-norm statistics move in train mode
            assert torch.allclose(a, b, atol=1e-6), name


def test_monitor_picks_best_by_defect_iou(toy, tmp_path):
    cfg = _cfg(
        toy,
        tmp_path / "r",
        "optim.epochs=3",
        "calibrate=false",
        "early_stopping_patience=null",
        "monitor=val_defect_iou",
    )
    _, ckpt = load_checkpoint(run_training(cfg))
    ious = [r["val_defect_iou"] for r in json.loads((tmp_path / "r" / "metrics.json").read_text())]
    assert len(ious) == 3 and ckpt["epoch"] == int(np.argmax(ious)) and ckpt["best"] == -max(ious)


@pytest.mark.slow
def test_early_stopping_stops_when_val_stops_improving(toy, tmp_path):
    # lr 0 -> nothing improves after epoch 1 -> stops after 1 + patience epochs.
    cfg = _cfg(
        toy,
        tmp_path / "run",
        "optim.epochs=10",
        "early_stopping_patience=2",
        "optim.lr=1e-12",
        "calibrate=false",
        "data.augment=false",
    )
    run_training(cfg)
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(history) == 3


def test_seeds_make_runs_repeat(toy, tmp_path):
    a = run_training(
        _cfg(toy, tmp_path / "a", "optim.epochs=1", "calibrate=false", "optim.max_steps_per_epoch=2")
    )
    b = run_training(
        _cfg(toy, tmp_path / "b", "optim.epochs=1", "calibrate=false", "optim.max_steps_per_epoch=2")
    )
    sa, sb = load_checkpoint(a)[1]["state_dict"], load_checkpoint(b)[1]["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
