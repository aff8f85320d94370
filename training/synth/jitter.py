"""Usable copies of real photos as another phone, another light and another upload would give them, so
that an image-level fit (the zone-damage model, `training.damage`) cannot lean on how a source happened to
be photographed.

Each real source's photos share a camera, a light and an orientation (MSD: landscape bare screens under
one lamp), and a logistic model over the encoder's features can take those for the damage. Graded again
turned, darker, smaller or recompressed (`benchmarks/bench_robustness.py`, real validation photos), the
bundled card's crack calls moved with the photo, not the device. So each real photo labelled at image
level gets one copy, drawn per photo from `seed`:

- turned by a multiple of a quarter (a phone held either way, a photo without its EXIF orientation);
- its exposure scaled in linear light by `GAIN` (darker rooms to brighter ones; the generator's usable
  photos span 0.8-1.15, its bad exposures 0.1-0.25 and 2.4-4, `training.synth.photography.sensor`,
  so the copy stays a photo a person would grade);
- made smaller by `SCALE` (a device photographed from further away, or a resized upload);
- saved as JPEG at a quality in `QUALITY` (messaging apps and marketplaces recompress).

The copy keeps the photo's source, split, device group, view and image labels (the damage is the same)
and drops its pixel geometry (the turn and the scale move it): like `training.synth.reformat`'s copies it
is for the image-level fit, and its device id ends in "-jitter" so it is grouped with its original
(`training.dataset.COPY_SUFFIXES`: never split from it, never counted as another device).

    refurbgrade jitter datasets/real/phones_web.jsonl@train --out datasets/generated/real_jitter

The mixed copies are not in the default config's zone-damage fit: fitted with them the bundled network's
card found more cracks on every kind of photo but its recalibrated review threshold fell back to 0.95
(docs/model-history.md, 2026-12-05 session 38). `--mode quarter-turn` and `--mode darker` make one kind
of change alone: a quarter-turned copy and a 1 EV darker one of each photo, fitted together, gave the
best real validation figures measured (session 39), and are in the default config's zone-damage fit
since session 44 (`make model` makes them; docs/model-history.md, 2026-12-06). `--mode other-quarter-turn`
with the same seed turns each photo the other way from `quarter-turn`'s copy, so that every photo is in
the fit turned both ways (session 56: one random way left MSD's worn screens called cracked when turned
the way their copy was not). `--mode tilted` leans the device away from the camera along a side drawn
from four (`tilt`), and `--mode soft` puts it out of focus (`soften`): `bench_robustness.py`'s "tilted"
and "soft focus" found MSD's worn validation screens called cracked (session 61).

    refurbgrade jitter datasets/real/{phones_web,cracked_screens,msd}.jsonl --mode quarter-turn --seed 7 \
        --out datasets/generated/real_turned
    refurbgrade jitter datasets/real/{phones_web,cracked_screens,msd}.jsonl --mode other-quarter-turn \
        --seed 7 --out datasets/generated/real_turned_other
    refurbgrade jitter datasets/real/{phones_web,cracked_screens,msd}.jsonl --mode darker --seed 8 \
        --out datasets/generated/real_darker
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from model.manifest import resolve, write_manifest
from training.dataset import Item
from training.synth.photography import load_rgb, save_copy

GAIN = (0.45, 1.5)  # exposure factor in linear light, drawn log-uniformly
SCALE = (0.35, 1.0)  # the copy's size against the photo's, drawn uniformly
MIN_SIDE = 256  # a copy is never made smaller than this on its long side
QUALITY = (30, 90)  # JPEG quality, drawn uniformly
MAX_SIDE = 2048  # originals larger than this are shrunk first: the network reads 384 px
SUFFIX = "-jitter"
# One kind of change a copy instead of all four (`jitter_photo`): the quarter-turned and the 1 EV darker
# copies measured in docs/model-history.md (session 39).
MODES = ("mixed", "quarter-turn", "other-quarter-turn", "darker", "tilted", "soft")
DARKER = 0.5  # 1 EV, as `benchmarks/bench_robustness.py`'s "-1 EV"
# "tilted": the device leaning away from the camera along a side drawn from four; the far edge is
# narrower by a share drawn from this, the photo shorter along the lean by half that (bench_robustness's
# "tilted" is one point of it: 0.2, the top).
TILT_NARROWING = (0.08, 0.25)
# "soft": a Gaussian blur whose sd is the long side over a number drawn log-uniformly from this (0.3 to
# 0.85 of a pixel of what the network reads at 384 px; bench_robustness's "soft focus" is 600).
SOFT_PER_SIDE = (450.0, 1300.0)
PLAIN_QUALITY = 92


def exposure_lut(gain: float) -> np.ndarray:
    """sRGB levels -> the same light times `gain`, back in sRGB (a 256-entry table; clipped at white)."""
    v = np.arange(256, dtype=np.float64) / 255.0
    linear = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4) * gain
    linear = np.clip(linear, 0.0, 1.0)
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.round(srgb * 255.0).astype(np.uint8)


def table_colour(rgb: np.ndarray) -> tuple[float, float, float]:
    """The median colour of the photo's outer ring (a fiftieth of its short side deep): the table the
    device lies on, which a tilt uncovers."""
    h, w = rgb.shape[:2]
    m = max(1, min(h, w) // 50)
    ring = np.concatenate([rgb[:m], rgb[-m:], rgb[:, :m].swapaxes(0, 1), rgb[:, -m:].swapaxes(0, 1)], axis=1)
    return tuple(float(v) for v in np.median(ring.reshape(-1, 3), axis=0))


def tilt(rgb: np.ndarray, narrowing: float, side: int = 0) -> np.ndarray:
    """`rgb` as the camera sees it with the device leaning away along `side` (0 top, 1 right, 2 bottom, 3
    left: the far edge): a perspective warp that makes that edge `narrowing` of its length narrower
    and the photo `narrowing / 2` shorter along the lean, the same size; what it uncovers is
    `table_colour`."""
    img = np.ascontiguousarray(np.rot90(rgb, side))  # the far edge to the top
    h, w = img.shape[:2]
    inset, drop = narrowing / 2 * w, narrowing / 2 * h
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[inset, drop], [w - inset, drop], [w, h], [0, h]])
    warped = cv2.warpPerspective(
        img,
        cv2.getPerspectiveTransform(src, dst),
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=table_colour(img),
    )
    return np.ascontiguousarray(np.rot90(warped, -side))


def soften(rgb: np.ndarray, per_side: float) -> np.ndarray:
    """`rgb` out of focus: a Gaussian blur of sd its long side over `per_side`."""
    return cv2.GaussianBlur(rgb, (0, 0), max(rgb.shape[:2]) / per_side)


def jitter_photo(
    rgb: np.ndarray, rng: np.random.Generator, mode: str = "mixed"
) -> tuple[np.ndarray, int, dict]:
    """`rgb` (H x W x 3 uint8) turned, re-exposed and shrunk by one draw of `rng`; returns the copy, the
    JPEG quality to save it at and the draw (for the manifest). `mode` (`MODES`): "mixed" draws all
    four; "quarter-turn" only turns, a quarter either way, "other-quarter-turn" the other way from
    "quarter-turn" with the same `rng`, "darker" only darkens, by `DARKER`, "tilted" only tilts
    (`tilt`, a side and a narrowing drawn) and "soft" only blurs (`soften`) (each saved at
    `PLAIN_QUALITY`, nothing else changed)."""
    if mode == "mixed":
        turns = int(rng.integers(4))
        gain = float(np.exp(rng.uniform(np.log(GAIN[0]), np.log(GAIN[1]))))
        scale = float(rng.uniform(*SCALE))
        quality = int(rng.integers(QUALITY[0], QUALITY[1] + 1))
    elif mode in MODES:
        turns = int(rng.choice([1, 3])) if mode in ("quarter-turn", "other-quarter-turn") else 0
        turns = 4 - turns if mode == "other-quarter-turn" else turns
        gain, scale, quality = (DARKER if mode == "darker" else 1.0), 1.0, PLAIN_QUALITY
    else:
        raise ValueError(f"unknown jitter mode {mode!r}: one of {', '.join(MODES)}")
    img = cv2.LUT(np.ascontiguousarray(np.rot90(rgb, turns)), exposure_lut(gain))  # gain 1: identity
    long_side = max(img.shape[:2])
    scale = max(scale, min(1.0, MIN_SIDE / long_side))
    if scale < 1.0:
        size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    draw = {"turns": turns, "gain": round(gain, 3), "scale": round(scale, 3), "quality": quality}
    if mode == "tilted":
        side, narrowing = int(rng.integers(4)), float(rng.uniform(*TILT_NARROWING))
        img = tilt(img, narrowing, side)
        draw.update(tilt_side=side, tilt_narrowing=round(narrowing, 3))
    elif mode == "soft":
        per_side = float(np.exp(rng.uniform(np.log(SOFT_PER_SIDE[0]), np.log(SOFT_PER_SIDE[1]))))
        img = soften(img, per_side)
        draw.update(blur_per_side=round(per_side, 1))
    return img, quality, draw


def jitter_items(items: Iterable[Item], out: Path, seed: int = 0, mode: str = "mixed") -> tuple[Path, int]:
    """One jittered copy of each item labelled at image level under `out/images`, and
    `out/manifest.jsonl`; returns the manifest and how many copies it holds. Items without image labels are skipped (nothing for the
    image-level fit to learn). Same seed, same files."""
    from tqdm import tqdm

    (out / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for k, it in enumerate(tqdm(list(items), desc="jittering", leave=False)):
        src = it.record
        if not src.image_labels:
            continue
        rng = np.random.default_rng([seed, k])
        rgb, quality, draw = jitter_photo(load_rgb(resolve(it.manifest, src.image), MAX_SIDE), rng, mode)
        # The turn and the scale move every outline: the copy is image-level only.
        geometry = {"instances": [], "instances_complete": False, "screen_polygons": [], "zone_mask": None}
        meta = {f"jitter_{k}": v for k, v in draw.items()}
        records.append(save_copy(out, len(records), src, rgb, quality, SUFFIX, meta, **geometry))
    path = out / "manifest.jsonl"
    write_manifest(path, records)
    return path, len(records)
