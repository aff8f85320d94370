"""The network's output contract, torch-free: names, order and meaning of every ONNX output.

The torch network returns a NamedTuple with exactly these fields (`model.network.NetOutputs`), export
uses these names for the ONNX outputs, and serving reads outputs by these names. Masks come out at
the model's input resolution divided by `MASK_STRIDE`.
"""

from __future__ import annotations

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
FEATURE_OUTPUTS: tuple[str, ...] = (ENCODER_S16,)
