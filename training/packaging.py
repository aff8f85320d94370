"""From a training checkpoint to the shipped artifact: the model card, the photos an export is verified
on, the verified ONNX export and its INT8 sibling.

What `refurbgrade export` and `refurbgrade quantize` do, as plain functions: the card carries the
checkpoint's calibrated thresholds and the crop pass they were calibrated with, the training data hash,
val_* metrics from training and test_* metrics from evaluate's metrics.json; the export is checked
against PyTorch on real photos (`model.export.export_onnx`), the INT8 file against the FP32 one.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from model.card import ModelCard, Thresholds
from model.manifest import resolve
from model.preprocess import letterbox, prepare, to_nchw
from training.config import TrainConfig
from training.dataset import load_items
from training.predict import default_thresholds
from training.report import headline

NOTES = "thresholds calibrated on validation data; metrics: val_* from training, test_* from evaluate"


class NoPhotosError(ValueError):
    """No photos to verify an export on."""


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def card_test_metrics(metrics: dict) -> dict[str, float]:
    """Evaluate's headline as the card's test_* metrics; undefined ones (nan, or null once saved in
    metrics.json) stay out of the card."""
    return {f"test_{k}": float(v) for k, v in headline(metrics).items() if v is not None and v == v}


def card_for_checkpoint(
    ckpt: dict, net, version: str, name: str, metrics_file: Path | None = None
) -> ModelCard:
    """The card of `net`, loaded from `ckpt` (`training.checkpoint.load_checkpoint`): the checkpoint's
    calibration (0.5 thresholds without one), val_* metrics of its last epoch, and test_* metrics
    from `metrics_file` (evaluate's metrics.json) where given."""
    cfg = TrainConfig.model_validate(ckpt["config"])
    cal = ckpt.get("calibration")
    thresholds = Thresholds.model_validate(cal["thresholds"]) if cal else default_thresholds()
    # The card runs the model the way its thresholds were calibrated.
    crop = bool(cal.get("crop_to_device", cfg.crop_to_device)) if cal else cfg.crop_to_device
    upright = bool(cal.get("crop_upright", cfg.crop_upright)) if cal else cfg.crop_upright
    card_metrics = {k: float(v) for k, v in ckpt["history"][-1].items() if k.startswith("val_") and v == v}
    if metrics_file is not None:
        card_metrics |= card_test_metrics(json.loads(metrics_file.read_text()))
    return ModelCard(
        name=name,
        version=version,
        architecture=f"{ckpt['model_name']} {json.dumps(ckpt['model_overrides'], sort_keys=True)}",
        input_size=net.input_size,
        mask_stride=net.mask_stride,
        crop_to_device=crop,
        crop_upright=upright,
        thresholds=thresholds,
        metrics=card_metrics,
        training_data_hash=ckpt.get("training_data_hash", "unknown"),
        git_commit=git_commit(),
        notes=NOTES,
    )


def sample_photos(manifests: list[str], splits: tuple[str, ...], n: int, size: int, seed: int = 0):
    """Up to n photos per manifest, letterboxed to the model size, N x 3 x S x S uint8."""
    out = []
    for m in manifests:
        items = load_items(m, splits)
        rng = np.random.default_rng(seed)
        for i in rng.permutation(len(items))[:n]:
            it = items[int(i)]
            out.append(prepare(resolve(it.manifest, it.record.image), size)[0])
    return to_nchw(out) if out else np.zeros((0, 3, size, size), np.uint8)


def skimage_photos(size: int):
    """Real photographs that ship with scikit-image (a dev dependency): parity on natural images."""
    try:
        from skimage import data
    except ImportError:
        return []
    return [letterbox(img, size)[0] for img in (data.chelsea(), data.coffee(), data.astronaut())]


def verification_photos(manifests: list[str], size: int):
    """The parity photos: 6 per manifest (every split) plus scikit-image's real photographs."""
    photos = sample_photos(manifests, ("train", "val", "test"), 6, size)
    real = skimage_photos(size)
    return np.concatenate([photos, to_nchw(real)]) if real else photos


def export_verified(net, out: Path, card: ModelCard, verify_manifests: list[str]):
    """`net` exported to `out` with `card` inside, verified against PyTorch on photos of
    `verify_manifests` (`verification_photos`). Returns the parity report and the photos, which an
    INT8 export is verified on too."""
    from model.export import export_onnx

    images = verification_photos(verify_manifests, net.input_size)
    if len(images) == 0:
        raise NoPhotosError("no photos to verify the export on (give --verify-manifest)")
    return export_onnx(net, out, card, images), images


def quantize_onnx(fp32: Path, out: Path, train_manifests: list[str], verify_images):
    """Static INT8 of `fp32`, calibrated on 64 training photos per training manifest, verified against
    FP32 on `verify_images`; `model.export.ExportVerificationError` when it is not close enough."""
    from model.export import quantize_int8, read_card

    calib = sample_photos(train_manifests, ("train",), 64, read_card(fp32).input_size, seed=1)
    return quantize_int8(fp32, out, calib, verify_images)
