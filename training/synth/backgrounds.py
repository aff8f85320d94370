"""Backgrounds for synthetic photos: procedural surfaces (tables, wood, cloth, paper, stone) and real photos.

Real backgrounds are the `no_device` photos of the shared cracked_screens set (labels.csv), so the
network also sees real clutter. They are found under the shared data folder (REFURBGRADE_REAL_DATA,
else ../shared/data/real beside the repository); without it the generator uses procedural ones only,
and each record says which background it got. Large-scale structure is made at low resolution and
upsampled: it is smooth anyway, and it keeps a 768 px background to a few milliseconds.
"""

from __future__ import annotations

import csv
import math
import os
from functools import cache
from pathlib import Path

import cv2
import numpy as np

REAL_LICENSE = "CC BY 4.0 (background photo: cracked_screens, Roboflow my-first-project-kuvol v1)"


def default_real_root() -> Path | None:
    env = os.environ.get("REFURBGRADE_REAL_DATA")
    candidates = [Path(env)] if env else []
    repo = Path(__file__).resolve().parents[2]
    candidates += [repo.parent / "shared" / "data" / "real", Path.cwd().parent / "shared" / "data" / "real"]
    for c in candidates:
        if (c / "cracked_screens" / "labels.csv").is_file():
            return c
    return None


@cache
def real_background_files(root: str | None) -> tuple[str, ...]:
    """The cracked_screens photos labelled `no_device`, sorted (sorted keeps seeds reproducible)."""
    if root is None:
        return ()
    base = Path(root) / "cracked_screens"
    with (base / "labels.csv").open(newline="", encoding="utf-8") as fh:
        files = [r["file"] for r in csv.DictReader(fh) if r["kind"] == "no_device"]
    return tuple(sorted(str(base / f) for f in files if (base / f).is_file()))


def _low_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    g = rng.normal(0, 1, (cells, max(2, int(cells * w / h)))).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


def _colour(rng: np.random.Generator, palette: list[tuple[float, float, float]]) -> np.ndarray:
    c = np.asarray(palette[int(rng.integers(len(palette)))], np.float32)
    return np.clip(c * rng.uniform(0.85, 1.15) + rng.normal(0, 0.03, 3), 0, 1)


def procedural(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, str]:
    """A surface a device gets photographed on, float32 HxWx3 in 0..1, and its name."""
    kind = str(rng.choice(["table", "wood", "cloth", "paper", "stone"], p=[0.25, 0.25, 0.2, 0.15, 0.15]))
    sh, sw = max(8, h // 4), max(8, w // 4)  # structure at quarter resolution
    if kind == "wood":
        base = _colour(rng, [(0.55, 0.36, 0.2), (0.7, 0.52, 0.33), (0.35, 0.22, 0.13), (0.8, 0.68, 0.5)])
        yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
        ang = rng.uniform(0, math.pi)
        # grain: a random 1-D profile across the boards, sampled along slightly wavy lines
        u0 = -xx * math.sin(ang) + yy * math.cos(ang)
        u = u0 + _low_noise(rng, sh, sw, 3) * rng.uniform(1.5, 5.0)
        n = int(np.ceil(np.abs(u).max())) * 2 + 8
        profile = cv2.GaussianBlur(
            rng.normal(0, 1, (1, n)).astype(np.float32), (0, 0), rng.uniform(0.6, 1.5)
        )[0]
        profile += 0.6 * cv2.GaussianBlur(rng.normal(0, 1, (1, n)).astype(np.float32), (0, 0), 6.0)[0] * 3
        idx = np.clip((u + n / 2).astype(np.int32), 0, n - 1)
        v = 0.86 + 0.05 * profile[idx]
        if rng.random() < 0.5:  # planks: dark seams across the grain direction's normal
            period = rng.uniform(25, 70)
            seam = np.abs(np.mod(u0 + period * 10, period) - period / 2) > period / 2 - 0.6
            v = np.where(seam, v * 0.6, v)
        img = v[..., None] * base
    elif kind == "cloth":
        base = _colour(
            rng,
            [(0.2, 0.25, 0.4), (0.55, 0.1, 0.12), (0.3, 0.3, 0.3), (0.75, 0.72, 0.65), (0.15, 0.35, 0.25)],
        )
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        p = rng.uniform(2.5, 5.0)
        weave = 0.9 + 0.1 * np.sin(xx * 2 * math.pi / p) * np.sin(yy * 2 * math.pi / p)
        folds = cv2.resize(_low_noise(rng, sh, sw, 4), (w, h))
        img = (weave * (0.85 + 0.12 * folds))[..., None] * base
        return np.clip(img, 0, 1), kind
    elif kind == "paper":
        base = _colour(rng, [(0.93, 0.92, 0.88), (0.8, 0.68, 0.5), (0.95, 0.95, 0.95)])
        fib = cv2.GaussianBlur(rng.normal(0, 1, (sh, sw)).astype(np.float32), (0, 0), 1.2)
        img = (0.95 + 0.04 * fib + 0.03 * _low_noise(rng, sh, sw, 3))[..., None] * base
    elif kind == "stone":
        base = _colour(rng, [(0.5, 0.5, 0.5), (0.85, 0.84, 0.82), (0.2, 0.2, 0.22)])
        speck = rng.normal(0, 1, (sh, sw)).astype(np.float32)
        img = (0.9 + 0.08 * speck + 0.05 * _low_noise(rng, sh, sw, 5))[..., None] * base
    else:  # a plain desk: one colour and a broad light fall-off
        base = _colour(
            rng, [(0.9, 0.9, 0.9), (0.6, 0.6, 0.62), (0.15, 0.15, 0.16), (0.8, 0.75, 0.68), (0.35, 0.4, 0.45)]
        )
        img = (0.92 + 0.06 * _low_noise(rng, sh, sw, 2))[..., None] * base
    return np.clip(cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR), 0, 1), kind


def real(rng: np.random.Generator, h: int, w: int, files: tuple[str, ...]) -> tuple[np.ndarray, str]:
    path = files[int(rng.integers(len(files)))]
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    ih, iw = img.shape[:2]
    # a random crop of at least half the photo, resized to the canvas; sometimes mirrored
    scale = rng.uniform(0.5, 1.0)
    ch = int(min(ih, iw * h / w) * scale)
    cw = int(ch * w / h)
    y0, x0 = int(rng.integers(0, ih - ch + 1)), int(rng.integers(0, iw - cw + 1))
    crop = cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return crop.astype(np.float32) / 255.0, "real:" + Path(path).name.split(".rf.")[0]


def background(
    rng: np.random.Generator, h: int, w: int, real_files: tuple[str, ...], p_real: float
) -> tuple[np.ndarray, str]:
    if real_files and rng.random() < p_real:
        img, name = real(rng, h, w, real_files)
    else:
        img, name = procedural(rng, h, w)
    return np.ascontiguousarray(img, dtype=np.float32), name
