"""Where the device is in a zone map: the geometry both the crop pass and post-processing read.

`device_mask` is the largest connected region where some zone beats background; fewer than
`MIN_DEVICE_CELLS` cells of it means no device was found. `model.crop` boxes it for the second pass,
`model.postprocess` measures it for the scale, so neither depends on the other. `mask_box` is any
mask's box in the photo (the device's for the crop, a glass zone's for zone damage), `mask_outline`
a mask's outline there (a cracked glass zone's, drawn for a crack judged from the glass as a whole).
Torch-free.
"""

from __future__ import annotations

import cv2
import numpy as np

from model.preprocess import Letterbox

MIN_DEVICE_CELLS = 16  # fewer mask cells of device: nothing reliable to crop to or measure


def device_mask(zone_probs: np.ndarray) -> np.ndarray:
    """Largest connected region where some zone beats background; (h, w) bool."""
    fg = (zone_probs.argmax(axis=0) != 0).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return np.zeros_like(fg, dtype=bool)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == biggest


def mask_box(mask: np.ndarray, lb: Letterbox, input_size: int) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) of a mask's cells (mask resolution, a non-empty mask) in the original
    photo's pixels, through `lb`: cell corners, so a single cell has the cell's size."""
    ys, xs = np.nonzero(mask)
    cell = input_size / mask.shape[0]
    corners = np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]], float) * cell
    (x0, y0), (x1, y1) = lb.to_original(corners)
    return float(x0), float(y0), float(x1), float(y1)


def mask_outline(mask: np.ndarray, lb: Letterbox, input_size: int) -> list[tuple[float, float]]:
    """The convex hull of a mask's largest connected region (mask resolution, a non-empty mask) in the
    original photo's pixels, through `lb`: the hull of its cells' corners, so it encloses every cell
    as `mask_box` does. Why the largest region and its hull: a glass zone's outline drawn on the photo
    follows a tilted phone's screen where a box would take in the table around it, and a stray cell
    of the zone elsewhere does not stretch it."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    ys, xs = np.nonzero(labels == biggest)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], axis=1) for dx in (0, 1) for dy in (0, 1)])
    hull = cv2.convexHull(corners.astype(np.float32))[:, 0, :].astype(float)
    pts = lb.to_original(hull * (input_size / mask.shape[0]))
    return [(float(x), float(y)) for x, y in pts]
