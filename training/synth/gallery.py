"""A contact sheet of synthetic samples: each photo beside its labels, so anyone can judge the generator.

Left tile: the photo as written (JPEG-compressed). Right tile: the same photo dimmed, zones tinted, each
defect instance's mask painted in its type's colour (thickened so hairlines show at thumbnail size),
with the view, device, quality and the Back Market grade as a caption.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from model.taxonomy import DefectType, Zone
from training.synth.generator import Sample, SynthConfig, make_sample

ZONE_TINT = {  # RGB
    Zone.SCREEN: (60, 120, 255),
    Zone.BODY: (60, 200, 90),
    Zone.FRAME: (240, 200, 40),
    Zone.CAMERA: (230, 60, 230),
}
DEFECT_COLOUR = {
    DefectType.SCRATCH: (255, 40, 40),
    DefectType.CRACK: (255, 255, 255),
    DefectType.CHIP: (255, 140, 0),
    DefectType.DENT: (0, 255, 255),
    DefectType.STAIN: (160, 82, 45),
    DefectType.SMUDGE: (190, 190, 255),
}


def _fit(img: np.ndarray, tile: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = tile / max(h, w)
    small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    out = np.full((tile, tile, 3), 30, np.uint8)
    y, x = (tile - small.shape[0]) // 2, (tile - small.shape[1]) // 2
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


def overlay(sample: Sample) -> np.ndarray:
    img = sample.image.astype(np.float32) * 0.55
    for i, z in enumerate(Zone):
        if sample.zone is None:  # composites onto real photos have no zone map
            break
        m = sample.zone == i + 1
        img[m] = img[m] * 0.7 + np.asarray(ZONE_TINT[z], np.float32) * 0.3
    k = max(1, round(max(sample.image.shape[:2]) / 256))
    for plan, m in zip(sample.plans, sample.masks, strict=True):
        thick = cv2.dilate(m, np.ones((2 * k + 1, 2 * k + 1), np.uint8)).astype(bool)
        img[thick] = DEFECT_COLOUR[plan.type]
    return np.clip(img, 0, 255).astype(np.uint8)


def _caption(tile: np.ndarray, lines: list[str]) -> None:
    for j, text in enumerate(lines):
        y = 14 + 14 * j
        cv2.putText(tile, text, (5, y), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, text, (5, y), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)


def _crop_box(s: Sample) -> tuple[slice, slice]:
    """The device's bounding box (zone map) with a small margin; the whole photo when it has none."""
    if s.zone is None or not s.zone.any():
        return slice(None), slice(None)
    ys, xs = np.nonzero(s.zone)
    m = max(2, round(0.03 * max(s.zone.shape)))
    h, w = s.zone.shape
    return slice(max(0, ys.min() - m), min(h, ys.max() + m + 1)), slice(
        max(0, xs.min() - m), min(w, xs.max() + m + 1)
    )


def draw_gallery(
    cfg: SynthConfig, n: int, path: Path, cols: int = 4, tile: int = 256, crop: bool = False
) -> Path:
    """Render n samples (photo + labels side by side), `cols` pairs per row, into one PNG.
    `crop`: both tiles cropped to the device (to judge the defects rather than the scene)."""
    pairs = []
    for i in range(n):
        s = make_sample(cfg, i)
        box = _crop_box(s) if crop else (slice(None), slice(None))
        a, b = _fit(s.image[box], tile), _fit(overlay(s)[box], tile)
        model = s.spec.name if s.spec else "-"
        counts: dict[str, int] = {}
        for p in s.plans:
            counts[p.type.value] = counts.get(p.type.value, 0) + 1
        if s.composite:
            model = f"composite on real {s.meta.get('source_set')}"
        _caption(a, [f"#{i} {s.view.value if s.view else '-'} | {s.quality.value}", model[:34]])
        _caption(
            b,
            [
                f"BM {s.grades.get('backmarket', '-')} CTIA {s.grades.get('ctia', '-')}",
                " ".join(f"{k}:{v}" for k, v in counts.items())[:40],
            ],
        )
        pair = np.concatenate([a, np.full((tile, 2, 3), 255, np.uint8), b], axis=1)
        pairs.append(pair)
    rows = []
    blank = np.zeros_like(pairs[0])
    for r in range(0, len(pairs), cols):
        row = pairs[r : r + cols] + [blank] * (cols - len(pairs[r : r + cols]))
        rows.append(np.concatenate([np.pad(p, ((3, 3), (3, 3), (0, 0))) for p in row], axis=1))
    sheet = np.concatenate(rows, axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path
