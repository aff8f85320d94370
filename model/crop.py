"""Crop-to-device: a second pass of the network on the device alone, so fine defects get more pixels.

A listing photo shows the device with a margin of table or background around it; letterboxing the whole
photo spends input pixels on that margin. When a model's card asks for it (`crop_to_device`), the
network runs twice: on the whole photo, then on the box around the device its zone map found there
(`device_box`), letterboxed at the same input size. The second pass gives the defect and zone maps (the
device at up to `MAX_GAIN` times the magnification); the first keeps the photo-level verdicts (view,
photo quality), which are about the photo as a whole. `merge_outputs` makes that split.

Used identically by serving (`serving.pipeline`), evaluation and calibration (`training.predict`).
Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from model.postprocess import device_mask
from model.preprocess import Letterbox, letterbox

# Margin around the device's box, as a share of its size on each side: the zone map's edge is
# uncertain by a mask cell, and frame chips sit right on the outline.
CROP_MARGIN = 0.06
# A crop magnifying the device by less than this is not worth a second pass.
MIN_GAIN = 1.15
# At most this magnification: beyond it the crop of a tiny device is all upsampled blur.
MAX_GAIN = 3.0
MIN_DEVICE_CELLS = 16  # fewer mask cells of device: nothing reliable to crop to
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
    cell = input_size / mask.shape[0]
    ys, xs = np.nonzero(mask)
    corners = np.array([[xs.min() * cell, ys.min() * cell], [(xs.max() + 1) * cell, (ys.max() + 1) * cell]])
    (x0, y0), (x1, y1) = lb.to_original(corners) / lb.draft_factor  # decoded pixels
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


# --- Zoomed, tiled second pass ---------------------------------------------------------------------
# With a card's `crop_zoom` above 1 the device crop is letterboxed onto a canvas `zoom` times the input
# size, and the network runs on input-sized windows of it (at most `MAX_TILES`, overlapping), whose maps
# are stitched back into one map of the canvas: the device at up to `zoom` times the single crop's
# magnification, for the price of one pass per window. The network only ever sees input-sized images.
MAX_TILES = 2
# Cells of the background zone where no window looked (the canvas's padding): background, no defect.
BACKGROUND_ZONE = 0


@dataclass(frozen=True)
class Tiles:
    """A zoomed second pass: the canvas (letterboxed device crop) and its windows' top-left corners."""

    canvas: np.ndarray  # C x C x 3 uint8
    lb: Letterbox  # how the decoded photo sits on the canvas
    windows: tuple[tuple[int, int], ...]  # (x, y) canvas pixels, each window input_size square

    @property
    def size(self) -> int:
        return self.canvas.shape[0]

    def images(self, input_size: int) -> list[np.ndarray]:
        return [self.canvas[y : y + input_size, x : x + input_size] for x, y in self.windows]


def _spans(lo: float, hi: float, window: int, limit: int, stride: int) -> list[int]:
    """Window starts (multiples of `stride`, inside [0, limit - window]) covering [lo, hi) with as few
    windows as possible, spread evenly so that neighbours overlap."""
    n = max(1, int(np.ceil((hi - lo) / window - 1e-6)))
    starts = [(lo + hi) / 2 - window / 2] if n == 1 else list(np.linspace(lo, hi - window, n))
    return [int(min(max(0, round(s / stride) * stride), limit - window)) for s in starts]


def tiled_input(
    decoded: np.ndarray,
    lb: Letterbox,
    zone_probs: np.ndarray,
    input_size: int,
    stride: int,
    zoom: float,
    max_tiles: int = MAX_TILES,
) -> Tiles | None:
    """The zoomed second pass for a photo (decoded as for `lb`), or None when no device is found.

    The zoom is `zoom` at most, less where the device's box would need more than `max_tiles` windows:
    a phone lying straight (box 2:1) gets two windows along its length at the full zoom, a square box
    one window at no zoom (the plain crop)."""
    box = device_box(zone_probs, lb, input_size, min_gain=0.0)
    if box is None:
        return None
    w, h = box[2] - box[0], box[3] - box[1]
    aspect = max(w, h) / min(w, h)
    # n windows along the long side and one across: zoom <= n (along) and zoom <= aspect (across).
    z = max(1.0, min(zoom, float(max_tiles), aspect))
    canvas_size = round(z * input_size / stride) * stride
    canvas, clb = letterbox(decoded, canvas_size, lb.draft_factor, box)
    cw, ch = round(w * clb.scale), round(h * clb.scale)
    xs = _spans(clb.pad_x, clb.pad_x + cw, input_size, canvas_size, stride)
    ys = _spans(clb.pad_y, clb.pad_y + ch, input_size, canvas_size, stride)
    windows = tuple((x, y) for y in ys for x in xs)
    if len(windows) > max_tiles:  # rounding put one more across: take the middle row/column
        windows = (
            tuple((x, ys[len(ys) // 2]) for x in xs)
            if len(xs) >= len(ys)
            else tuple((xs[len(xs) // 2], y) for y in ys)
        )
    return Tiles(canvas, clb, windows)


def window_images(tiled: Mapping[int, Tiles], input_size: int) -> list[np.ndarray]:
    """All photos' windows, photo by photo: one batch for the network (`stitch_all` undoes it)."""
    return [img for t in tiled.values() for img in t.images(input_size)]


def stitch_all(
    tiled: Mapping[int, Tiles], window_outputs: Sequence[dict[str, np.ndarray]], stride: int
) -> dict[int, dict[str, np.ndarray]]:
    """The network's outputs on `window_images` (one dict per window, in that order) -> each photo's
    stitched maps."""
    n = sum(len(t.windows) for t in tiled.values())
    if n != len(window_outputs):
        raise ValueError(f"{len(window_outputs)} window outputs for {n} windows")
    out, k = {}, 0
    for key, t in tiled.items():
        out[key] = stitch(t, list(window_outputs[k : k + len(t.windows)]), stride)
        k += len(t.windows)
    return out


def stitch(tiles: Tiles, outputs: list[dict[str, np.ndarray]], stride: int) -> dict[str, np.ndarray]:
    """The windows' maps (one output dict per window, no batch axis) -> maps of the whole canvas:
    averaged where windows overlap; background and no defect where none looked."""
    cells = tiles.size // stride
    out: dict[str, np.ndarray] = {}
    for key in outputs[0]:
        if key in PHOTO_LEVEL:
            out[key] = outputs[0][key]
            continue
        c, h, w = outputs[0][key].shape
        total = np.zeros((c, cells, cells), np.float32)
        count = np.zeros((cells, cells), np.float32)
        for (x, y), o in zip(tiles.windows, outputs, strict=True):
            cx, cy = x // stride, y // stride
            total[:, cy : cy + h, cx : cx + w] += o[key]
            count[cy : cy + h, cx : cx + w] += 1
        seen = count > 0
        total[:, seen] /= count[seen]
        if key == "zone_probs":
            total[BACKGROUND_ZONE, ~seen] = 1.0
        out[key] = total
    return out
