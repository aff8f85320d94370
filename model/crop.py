"""Crop-to-device: a second pass of the network on the device alone, so fine defects get more pixels.

A listing photo shows the device with a margin of table or background around it; letterboxing the whole
photo spends input pixels on that margin. When a model's card asks for it (`crop_to_device`), the
network runs twice: on the whole photo, then on the box around the device its zone map found there
(`device_box`), letterboxed at the same input size. The second pass gives the defect and zone maps (the
device at up to `MAX_GAIN` times the magnification); the first keeps the photo-level verdicts (view,
photo quality), which are about the photo as a whole. `merge_outputs` makes that split.

When the card also asks for it (`crop_upright`), a device lying wider than tall in the first pass
(`upright_turns`) is turned a quarter for the crop pass, so the network sees it long side up, and its
maps and features are turned back (`turned_back`) so that everything downstream reads them in the
crop's frame as before. Why: the zone-damage model and the photo probes read the encoder's features
(ImageNet's, frozen), which are not invariant to a quarter turn; the same worn screen read landscape
and portrait gave different crack calls (docs/model-history.md, sessions 55 and 56: the quarter-turned
real photos). Turned upright, a phone held either way reaches them upright or upside down, never
sideways.

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
# A device whose box in the first pass is wider than tall by this ratio is turned upright for the crop
# pass: a phone lies about 2:1, a tilted one or a square-ish tablet stays as it is.
UPRIGHT_RATIO = 1.15


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


def upright_turns(zone_probs: np.ndarray, ratio: float = UPRIGHT_RATIO) -> int:
    """Quarter turns (counter-clockwise, `np.rot90`'s k) that stand the device of a first pass's zone
    map long side up: 1 where its cells' box is wider than tall by `ratio`, else 0 (no device: 0)."""
    mask = device_mask(zone_probs)
    if mask.sum() < MIN_DEVICE_CELLS:
        return 0
    ys, xs = np.nonzero(mask)
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    return 1 if width > ratio * height else 0


def turned(image: np.ndarray, turns: int) -> np.ndarray:
    """A letterboxed input (S x S x 3) turned `turns` quarters counter-clockwise."""
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def turned_back(outputs: dict[str, np.ndarray], turns: int) -> dict[str, np.ndarray]:
    """One photo's outputs from an input `turned` by `turns`, in the unturned input's frame: every map
    (C x H x W: defect and zone maps, the encoder's features) turned back; the photo-level
    distributions are unchanged. The input is square and its side a multiple of every map's stride,
    so each map cell goes back to exactly the cell it came from."""
    if not turns:
        return outputs
    return {
        k: np.ascontiguousarray(np.rot90(v, -turns, axes=(1, 2))) if v.ndim == 3 else v
        for k, v in outputs.items()
    }


def merge_outputs(whole: dict[str, np.ndarray], crop: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One photo's outputs: the crop's maps, the whole photo's photo-level verdicts."""
    return {k: (whole[k] if k in PHOTO_LEVEL else v) for k, v in crop.items()}
