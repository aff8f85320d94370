"""Crop-to-device: a second pass of the network on the device alone, so fine defects get more pixels.

A listing photo shows the device with a margin of table or background around it; letterboxing the whole
photo spends input pixels on that margin. When a model's card asks for it (`crop_to_device`), the
network runs twice: on the whole photo, then on the box around the device its zone map found there
(`device_box`), letterboxed at the same input size. The second pass gives the defect and zone maps (the
device at up to `MAX_GAIN` times the magnification); the first keeps the photo-level verdicts (view,
photo quality), which are about the photo as a whole. `merge_outputs` makes that split.

`model.inference` runs the two passes for serving, evaluation and calibration alike. Torch-free.
"""

from __future__ import annotations

import numpy as np

from model.geometry import MIN_DEVICE_CELLS, device_mask, mask_box
from model.preprocess import Letterbox, letterbox

# Margin around the device's box, as a share of its size on each side: the zone map's edge is
# uncertain by a mask cell, and frame chips sit right on the outline.
CROP_MARGIN = 0.06
# A crop magnifying the device by less than this is not worth a second pass.
MIN_GAIN = 1.15
# At most this magnification: beyond it the crop of a tiny device is all upsampled blur.
MAX_GAIN = 3.0
# Outputs taken from the first (whole-photo) pass; the maps come from the crop.
PHOTO_LEVEL = ("view_probs", "quality_probs")


def device_box(
    zone_probs: np.ndarray,
    lb: Letterbox,
    input_size: int,
    margin: float = CROP_MARGIN,
    min_gain: float = MIN_GAIN,
    max_gain: float = MAX_GAIN,
) -> tuple[int, int, int, int] | None:
    """The crop (x0, y0, x1, y1, decoded-photo pixels of `lb`) around the device in a first pass's zone
    map, or None when no device is found or the crop would not magnify it by `min_gain`. A crop
    smaller than 1/`max_gain` of the input side is grown around its centre to that size."""
    mask = device_mask(zone_probs)
    if mask.sum() < MIN_DEVICE_CELLS:
        return None
    x0, y0, x1, y1 = (v / lb.draft_factor for v in mask_box(mask, lb, input_size))  # decoded pixels
    rx0, ry0, rx1, ry1 = lb.region
    w, h = x1 - x0, y1 - y0
    x0, x1 = x0 - margin * w, x1 + margin * w
    y0, y1 = y0 - margin * h, y1 + margin * h
    side = max(x1 - x0, y1 - y0)
    region_side = max(rx1 - rx0, ry1 - ry0)
    if region_side / side < min_gain:
        return None
    smallest = region_side / max_gain
    if side < smallest:  # grow around the centre
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, smallest / 2
        x0, x1 = cx - half, cx + half
        y0, y1 = cy - half, cy + half
    box = (
        max(rx0, int(np.floor(x0))),
        max(ry0, int(np.floor(y0))),
        min(rx1, int(np.ceil(x1))),
        min(ry1, int(np.ceil(y1))),
    )
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return None
    return box


def crop_input(
    decoded: np.ndarray, lb: Letterbox, zone_probs: np.ndarray, input_size: int
) -> tuple[np.ndarray, Letterbox] | None:
    """The second pass's input for a photo (decoded as for `lb`), or None when it needs none."""
    box = device_box(zone_probs, lb, input_size)
    return None if box is None else letterbox(decoded, input_size, lb.draft_factor, box)


def merge_outputs(whole: dict[str, np.ndarray], crop: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One photo's outputs: the crop's maps, the whole photo's photo-level verdicts."""
    return {k: (whole[k] if k in PHOTO_LEVEL else v) for k, v in crop.items()}
