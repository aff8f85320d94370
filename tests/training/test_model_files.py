"""What the model commands do to model files, as plain functions: the card built from a checkpoint, the
commands' PATH@splits argument, and where a calibration is stored (inside a checkpoint; in an ONNX
file's card and its INT8 sibling's)."""

from __future__ import annotations

import json

import pytest
import torch

from model.card import Thresholds
from model.export import read_card
from model.outputs import DEFECT_CHANNELS
from model.registry import create_model
from training.calibrate import (
    QuantizedModelError,
    calibrate_model_file,
    open_model_file,
    store_calibration,
)
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import load_config
from training.dataset import load_items, load_manifest_args, parse_manifest_arg
from training.packaging import NoPhotosError, card_for_checkpoint, card_test_metrics, export_verified
from training.toydata import write_toy_manifest


def _calibration(cut: float, crop: bool, upright: bool = False) -> dict:
    """A calibration as `training.calibrate.calibrate` returns it, with recognisable thresholds."""
    th = Thresholds(
        defect_pixel=dict.fromkeys(DEFECT_CHANNELS, cut),
        confidence_temperature={"scratch": 2.0},
        needs_review_below=0.7,
    )
    return {
        "thresholds": th.model_dump(mode="json"),
        "figures": {},
        "n_photos": 3,
        "crop_to_device": crop,
        "crop_upright": upright,
    }


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_manifest(tmp_path_factory.mktemp("toy"), n=12, size=64, seed=2)


def _checkpoint(path, toy, crop_to_device: bool = False, **extra):
    torch.manual_seed(0)
    cfg = load_config(
        None,
        [
            f"data.train=[{{manifest: {toy}}}]",
            f"data.val=[{{manifest: {toy}, splits: [val]}}]",
            "model.name=tiny",
            f"crop_to_device={str(crop_to_device).lower()}",
        ],
    )
    history = [{"epoch": 1, "train_loss": 1.0, "val_loss": 0.5, "val_zone_miou": float("nan")}]
    save_checkpoint(path, create_model("tiny"), cfg, history=history, epoch=0, **extra)
    return path


def test_card_carries_the_checkpoints_calibration_and_its_crop_pass(tmp_path, toy):
    cal = _calibration(0.2, crop=True)
    net, ckpt = load_checkpoint(_checkpoint(tmp_path / "best.pt", toy, calibration=cal))
    card = card_for_checkpoint(ckpt, net, "1.2.3", "phones")
    assert card.thresholds.model_dump(mode="json") == cal["thresholds"]
    assert card.crop_to_device is True  # as calibrated, though the run's config says no crop pass
    assert (card.name, card.version, card.input_size, card.mask_stride) == ("phones", "1.2.3", 64, 4)
    assert card.architecture.startswith("tiny ")
    assert card.metrics == {"val_loss": 0.5}  # train_* and undefined (nan) figures stay out
    assert card.crop_upright is False


def test_a_crop_pass_calibrated_upright_stays_upright_in_the_card_and_the_onnx_file(tmp_path, toy):
    cal = _calibration(0.2, crop=True, upright=True)
    net, ckpt = load_checkpoint(_checkpoint(tmp_path / "best.pt", toy, calibration=cal))
    card = card_for_checkpoint(ckpt, net, "1.0.0", "m")
    assert card.crop_upright is True
    export_verified(net, tmp_path / "m.onnx", card.model_copy(update={"crop_upright": False}), [str(toy)])
    assert read_card(tmp_path / "m.onnx").crop_upright is False
    store_calibration(tmp_path / "m.onnx", cal)  # what `refurbgrade calibrate --crop-upright` stores
    assert read_card(tmp_path / "m.onnx").crop_upright is True
    assert open_model_file(tmp_path / "m.onnx").crop_upright is True  # and a recalibration keeps


def test_uncalibrated_card_has_default_thresholds_the_runs_crop_pass_and_evaluates_test_figures(
    tmp_path, toy
):
    net, ckpt = load_checkpoint(_checkpoint(tmp_path / "best.pt", toy, crop_to_device=True))
    metrics = {
        "grades": {},
        "image_auroc": {"real/crack": {"auroc": 0.9}},
        "scratch_length": {"n": 0},
        "zone_miou": 0.4,
        "view_accuracy": None,  # undefined, as metrics.json saves nan
        "quality_accuracy": 1.0,
        "ms_per_photo": float("nan"),
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    card = card_for_checkpoint(ckpt, net, "0.1.0", "m", tmp_path / "metrics.json")
    assert card.thresholds.defect_pixel == dict.fromkeys(DEFECT_CHANNELS, 0.5)
    assert card.crop_to_device is True
    test = {"test_auroc_real_crack": 0.9, "test_zone_miou": 0.4, "test_quality_accuracy": 1.0}
    assert card.metrics == {"val_loss": 0.5, **test}
    assert card_test_metrics(metrics) == test


def test_manifest_argument_names_its_splits_or_takes_the_default(toy):
    assert parse_manifest_arg(str(toy), ("test",)) == (toy, ("test",))
    assert parse_manifest_arg(f"{toy}@train,val", ("test",)) == (toy, ("train", "val"))
    assert parse_manifest_arg(f"{toy}@", ["val"]) == (toy, ("val",))
    items = load_manifest_args([f"{toy}@val", str(toy)], ("test",))
    assert items == load_items(toy, ["val"]) + load_items(toy, ["test"])
    assert {it.record.split for it in items} == {"val", "test"}


def test_a_missing_manifest_is_named_before_any_is_read(tmp_path, toy):
    with pytest.raises(FileNotFoundError, match=r"^no such manifest: .*nope\.jsonl$"):
        parse_manifest_arg(f"{tmp_path / 'nope.jsonl'}@val", ("test",))
    with pytest.raises(FileNotFoundError, match="nope"):
        load_manifest_args([str(toy), str(tmp_path / "nope.jsonl")], ("test",))


def test_checkpoint_keeps_its_calibration_inside(tmp_path, toy):
    (tmp_path / "run").mkdir()
    path = _checkpoint(tmp_path / "run" / "best.pt", toy)
    cal = _calibration(0.3, crop=False)
    assert store_calibration(path, cal) == []  # no card changed
    assert load_checkpoint(path)[1]["calibration"] == cal
    assert json.loads((tmp_path / "run" / "calibration.json").read_text()) == cal


@pytest.fixture
def exported(tmp_path, toy):
    """A tiny checkpoint exported (verified on the toy photos), with a copy as its INT8 sibling."""
    net, ckpt = load_checkpoint(_checkpoint(tmp_path / "best.pt", toy))
    card = card_for_checkpoint(ckpt, net, "0.1.0", "m")
    rep, images = export_verified(net, tmp_path / "m.onnx", card, [str(toy)])
    assert len(images) >= 6 and rep.n_images == len(images)
    return tmp_path / "m.onnx"


def test_onnx_file_and_its_int8_sibling_get_the_calibration_in_their_cards(exported):
    sibling = exported.with_suffix(".int8.onnx")
    sibling.write_bytes(exported.read_bytes())
    cal = _calibration(0.25, crop=True)
    assert store_calibration(exported, cal) == [exported, sibling]
    for path in (exported, sibling):
        card = read_card(path)
        assert card.thresholds.model_dump(mode="json") == cal["thresholds"] and card.crop_to_device
    assert json.loads(exported.with_suffix(".calibration.json").read_text()) == cal
    sibling.unlink()
    assert store_calibration(exported, _calibration(0.4, crop=False)) == [exported]
    assert read_card(exported).thresholds.defect_pixel["scratch"] == 0.4


def test_an_int8_file_is_not_calibrated_itself(exported):
    from model.export import update_card

    int8 = exported.with_suffix(".int8.onnx")
    int8.write_bytes(exported.read_bytes())
    update_card(int8, quantized=True)
    with pytest.raises(QuantizedModelError, match="calibrate the FP32 file"):
        open_model_file(int8)
    opened = open_model_file(exported)
    assert opened.val_sources == [] and opened.crop_to_device is False
    assert open_model_file(int8, alone=True).alone
    with pytest.raises(QuantizedModelError, match="for an INT8 file"):
        open_model_file(exported, alone=True)


def test_an_int8_file_calibrated_alone_keeps_its_own_thresholds_until_fp32_is_calibrated(exported):
    from model.export import update_card

    sibling = exported.with_suffix(".int8.onnx")
    sibling.write_bytes(exported.read_bytes())
    update_card(sibling, quantized=True)
    store_calibration(exported, _calibration(0.25, crop=True))
    assert store_calibration(sibling, _calibration(0.4, crop=True), alone=True) == [sibling]
    fp32, int8 = read_card(exported), read_card(sibling)
    assert fp32.thresholds.defect_pixel["scratch"] == 0.25 and not fp32.calibrated_alone
    assert int8.thresholds.defect_pixel["scratch"] == 0.4 and int8.calibrated_alone
    # Calibrating the FP32 file again hands both files the same thresholds: INT8 shares them again.
    store_calibration(exported, _calibration(0.3, crop=True))
    int8 = read_card(sibling)
    assert int8.thresholds.defect_pixel["scratch"] == 0.3 and not int8.calibrated_alone


def test_export_refuses_to_go_unverified(tmp_path, toy):
    net, ckpt = load_checkpoint(_checkpoint(tmp_path / "best.pt", toy))
    card = card_for_checkpoint(ckpt, net, "0.1.0", "m")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.MonkeyPatch.context() as mp:  # without scikit-image's photos there is nothing to verify on
        mp.setattr("training.packaging.skimage_photos", lambda size: [])
        with pytest.raises(NoPhotosError):
            export_verified(net, tmp_path / "x.onnx", card, [str(empty)])
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
def test_recalibrating_a_checkpoint_follows_its_runs_crop_pass_unless_told(tmp_path, toy):
    path = _checkpoint(tmp_path / "best.pt", toy, crop_to_device=True)
    opened = open_model_file(path)
    assert opened.crop_to_device is True and [s.manifest for s in opened.val_sources] == [str(toy)]
    items = load_items(toy, ["val", "test"])
    cal, cards = calibrate_model_file(opened, items)
    assert cards == [] and cal["crop_to_device"] is True and cal["n_photos"] == len(items)
    assert load_checkpoint(path)[1]["calibration"] == cal
    cal, _ = calibrate_model_file(path, items, crop_to_device=False)  # a path opens the file itself
    assert cal["crop_to_device"] is False and load_checkpoint(path)[1]["calibration"] == cal
