"""Unusable copies of real photos: the same camera faults the generator draws, applied to real photos.

The photo-quality verdict (usable, blurry, bad exposure) is learnt from synthetic photos, where the
fault is known, and real photos, which are all usable (each was labelled by what a person could see
on it). Fitted on those alone, "real-looking" would mean "usable": a real photo taken in the dark would
pass. So each real photo also gets a copy with one fault, drawn by the generator's own camera model
(`training.synth.photography.sensor`, the very ranges the synthetic faults use): too dark or blown out,
or blurred (defocus or motion). The copy keeps the photo's device, view and group (a split stays a
split) and none of its defect labels: a fault hides what the original shows.

    refurbgrade degrade datasets/real/phones_web.jsonl@train,val --out datasets/generated/real_degraded
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from model.manifest import ManifestRecord, resolve, write_manifest
from model.taxonomy import PhotoQuality
from training.dataset import Item
from training.synth.photography import encode_jpeg, load_rgb, sensor

FAULTS = (PhotoQuality.BAD_EXPOSURE, PhotoQuality.BLURRY)
MAX_SIDE = 1024  # copies are made at most this large: the network sees 384 px, and the sets are small
JPEG_QUALITY = 90


def degrade_photo(rgb: np.ndarray, fault: PhotoQuality, rng: np.random.Generator) -> np.ndarray:
    """`rgb` (H x W x 3 uint8) with `fault`, through the generator's sensor at the photo's scale."""
    scale = max(rgb.shape[:2]) / 512  # the generator's blur sizes are per 512 px of long side
    img, _ = sensor(rgb.astype(np.float32) / 255.0, rng, fault, scale)
    return img


def degrade_items(items: Iterable[Item], out: Path, seed: int = 0) -> Path:
    """One faulty copy of each item's photo under `out/images`, and `out/manifest.jsonl`; returns the
    manifest. Each photo's fault and its draws come from `seed` and the photo's position: same seed,
    same files."""
    from tqdm import tqdm

    items = list(items)
    (out / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for k, it in enumerate(tqdm(items, desc="degrading", leave=False)):
        rng = np.random.default_rng([seed, k])
        fault = FAULTS[int(rng.integers(len(FAULTS)))]
        src = it.record
        rgb = degrade_photo(load_rgb(resolve(it.manifest, src.image), MAX_SIDE), fault, rng)
        name = f"images/{k:06d}.jpg"
        (out / name).write_bytes(encode_jpeg(rgb, JPEG_QUALITY))
        records.append(
            ManifestRecord(
                image=name,
                device_id=f"{src.device_id}-degraded",
                split=src.split,
                source=f"{src.source}_degraded",
                license=src.license,
                width=rgb.shape[1],
                height=rgb.shape[0],
                view=src.view,
                device_kind=src.device_kind,
                device_model=src.device_model,
                quality=fault,
                meta={"from": src.image, "from_source": src.source, "fault": fault.value, "seed": seed},
            )
        )
    path = out / "manifest.jsonl"
    write_manifest(path, records)
    return path
