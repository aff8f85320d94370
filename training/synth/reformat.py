"""Format-swapped copies of real photos labelled at image level, so that a photo's format says nothing
about its damage.

phones_web's data card warns of a shortcut: nearly every "less damaged" cracked photo is 244 x 244 with
black bars, and almost no intact one is. A model fitted on those photos as they are can tell the
classes by format alone (the zone-damage model over the encoder's features did: the bundled model's
crack score on intact validation photos rose from 0.08 to 0.24 when they were black-barred). So each
photo gets one copy in the other format, with its labels: a black-barred photo is cut out of its
bars, and any other photo is shrunk to 244 px and black-barred (`training.dataset.small_black_barred`,
what `data.reformat` does in training). Fitted on the originals and the copies together, each photo
is seen in both formats with the same label, and the format carries no information. A photo that is
already 244 px square without bars is left out: its copy would be itself.

The copy keeps the photo's source, split, device, view and image labels (it shows the same damage);
only photos without pixel geometry are copied (`training.dataset.image_level_only`), since cutting
bars would move polygons.

    refurbgrade reformat datasets/real/phones_web.jsonl@train --out datasets/generated/real_reformat
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from model.manifest import resolve, write_manifest
from training.dataset import SHORTCUT_SIDE, Item, image_level_only, small_black_barred
from training.synth.photography import load_rgb, save_copy

BAR_LEVEL = 24  # a bar row or column: every pixel darker than this (JPEG ringing stays under it)
MIN_BAR = 3  # pixels of bar on a side before the photo counts as barred
JPEG_QUALITY = 92


def bar_content(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """The (top, bottom, left, right) box of the photo inside its black bars, or None when the photo
    has no bars (or is black all over)."""
    grey = rgb.max(axis=2)
    rows = np.flatnonzero(grey.max(axis=1) >= BAR_LEVEL)
    cols = np.flatnonzero(grey.max(axis=0) >= BAR_LEVEL)
    if not len(rows) or not len(cols):
        return None
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    h, w = grey.shape
    if max(top, h - bottom, left, w - right) < MIN_BAR:
        return None
    return top, bottom, left, right


def swapped_format(rgb: np.ndarray) -> tuple[np.ndarray, str] | None:
    """The photo in the other format and the name of that format ("unbarred" or "barred"); None when
    the copy would be the photo itself."""
    box = bar_content(rgb)
    if box is not None:
        top, bottom, left, right = box
        return np.ascontiguousarray(rgb[top:bottom, left:right]), "unbarred"
    h, w = rgb.shape[:2]
    if max(h, w) <= SHORTCUT_SIDE and h == w:
        return None
    return small_black_barred(rgb), "barred"


def reformat_items(items: Iterable[Item], out: Path) -> tuple[Path, dict[str, int]]:
    """The format-swapped copy of each image-level-only item under `out/images`, and
    `out/manifest.jsonl`; returns the manifest and how many copies of each format (and skips) were
    made. Deterministic: no random draws."""
    from tqdm import tqdm

    (out / "images").mkdir(parents=True, exist_ok=True)
    records, counts = [], {"barred": 0, "unbarred": 0, "skipped": 0}
    for it in tqdm(list(items), desc="reformatting", leave=False):
        src = it.record
        swapped = swapped_format(load_rgb(resolve(it.manifest, src.image))) if image_level_only(src) else None
        if swapped is None:
            counts["skipped"] += 1
            continue
        rgb, fmt = swapped
        counts[fmt] += 1
        records.append(save_copy(out, len(records), src, rgb, JPEG_QUALITY, f"-{fmt}", {"format": fmt}))
    path = out / "manifest.jsonl"
    write_manifest(path, records)
    return path, counts
