"""Toy manifests for tests, notebooks and smoke runs: flat drawn devices with exact masks, in milliseconds.

Not the synthetic generator (`training.synth` makes believable photos); this draws a flat rectangle
device with zone masks and a few line/blob defects whose true sizes in mm are known, grades them with
the rules engine, and writes everything in the manifest format. Optionally it adds records shaped like
the real sets (polygon labels with incomplete instances, image-level labels, screen polygons), so every
supervision path of the training code runs on it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from model.catalogue import lookup_device
from model.instances import mm
from model.manifest import LabelledInstance, ManifestRecord, write_manifest
from model.rules import grade, list_standards
from model.taxonomy import DefectType, DeviceKind, PhotoQuality, View, Zone

DEVICE = "iPhone 16"  # catalogue entry: its length gives the photo's scale


def _device_photo(rng: np.random.Generator, size: int, view: View):
    """Background + device rectangle; returns image, zone mask, device box and mm per pixel."""
    spec = lookup_device(DEVICE)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = rng.integers(150, 230, 3)
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    long_px = int(size * rng.uniform(0.7, 0.85))
    short_px = int(long_px * spec.width / spec.length)
    x0 = int(rng.integers(2, size - short_px - 2))
    y0 = int(rng.integers(2, size - long_px - 2))
    x1, y1 = x0 + short_px, y0 + long_px
    zones = np.zeros((size, size), np.uint8)
    colour = rng.integers(20, 90, 3) if view is View.FRONT else rng.integers(60, 140, 3)
    cv2.rectangle(img, (x0, y0), (x1, y1), [int(c) for c in colour - 15], -1)
    cv2.rectangle(zones, (x0, y0), (x1, y1), 1 + list(Zone).index(Zone.FRAME), -1)
    inner = (x0 + 3, y0 + 3, x1 - 3, y1 - 3)
    main_zone = Zone.SCREEN if view is View.FRONT else Zone.BODY
    cv2.rectangle(img, inner[:2], inner[2:], [int(c) for c in colour], -1)
    cv2.rectangle(zones, inner[:2], inner[2:], 1 + list(Zone).index(main_zone), -1)
    if view is View.BACK:
        c = (inner[0] + 8, inner[1] + 8)
        cv2.circle(img, c, 5, (15, 15, 15), -1)
        cv2.circle(zones, c, 5, 1 + list(Zone).index(Zone.CAMERA), -1)
    return img, zones, inner, spec.length / long_px, main_zone


def _draw_defects(rng, img, inner, mm_per_px, main_zone, n: int):
    """Scratches (bright lines), cracks (dark polylines) and stains (blobs) inside the main zone."""
    x0, y0, x1, y1 = inner
    out = []
    for _ in range(n):
        kind = rng.choice([DefectType.SCRATCH, DefectType.SCRATCH, DefectType.CRACK, DefectType.STAIN])
        mask = np.zeros(img.shape[:2], np.uint8)
        if kind is DefectType.STAIN:
            c = (int(rng.integers(x0 + 6, x1 - 6)), int(rng.integers(y0 + 6, y1 - 6)))
            r = int(rng.integers(2, 5))
            cv2.circle(mask, c, r, 1, -1)
            img[mask > 0] = (img[mask > 0] * 0.5 + np.array([120, 90, 40]) * 0.5).astype(np.uint8)
            length = width = 2 * r * mm_per_px
            area = float(mask.sum()) * mm_per_px**2
        else:
            L = float(rng.uniform(6, 0.6 * (y1 - y0)))
            ang = rng.uniform(0, np.pi)
            cx, cy = (
                rng.uniform(x0 + L / 2, x1 - L / 2) if x1 - x0 > L else (x0 + x1) / 2,
                rng.uniform(y0 + L / 2, y1 - L / 2),
            )
            p0 = (round(cx - L / 2 * np.cos(ang)), round(cy - L / 2 * np.sin(ang)))
            p1 = (round(cx + L / 2 * np.cos(ang)), round(cy + L / 2 * np.sin(ang)))
            thick = 1 if kind is DefectType.SCRATCH else 2
            cv2.line(mask, p0, p1, 1, thick)
            colour = (235, 235, 235) if kind is DefectType.SCRATCH else (5, 5, 5)
            img[mask > 0] = colour
            length = float(np.hypot(p1[0] - p0[0], p1[1] - p0[1])) * mm_per_px
            width = thick * mm_per_px
            area = length * width
        out.append((kind, mask, length, width, area))
    return out


def write_toy_manifest(
    out_dir: str | Path, n: int = 24, size: int = 96, seed: int = 0, real_like: bool = True
) -> Path:
    """Write a toy dataset under `out_dir`; returns the manifest path. Splits: ~60/20/20 by device."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        view = View.FRONT if i % 2 == 0 else View.BACK
        img, zones, inner, mm_per_px, main_zone = _device_photo(rng, size, view)
        defects = _draw_defects(rng, img, inner, mm_per_px, main_zone, int(rng.integers(0, 4)))
        split = ("train", "train", "train", "val", "test")[i % 5]
        stem = f"{i:05d}"
        cv2.imwrite(str(out_dir / "images" / f"{stem}.png"), img[..., ::-1])
        cv2.imwrite(str(out_dir / "masks" / f"{stem}_zone.png"), zones)
        instances, truth = [], []
        for k, (kind, mask, length, width, area) in enumerate(defects):
            rel = f"masks/{stem}_{k}.png"
            cv2.imwrite(str(out_dir / rel), mask * 255)
            instances.append(
                LabelledInstance(
                    type=kind, zone=main_zone, mask=rel, length_mm=length, width_mm=width, area_mm2=area
                )
            )
            truth.append(mm(kind, main_zone, length, width, area))
        grades = {s: grade(truth, s, device_kind=DeviceKind.PHONE).grade for s in list_standards()}
        records.append(
            ManifestRecord(
                image=f"images/{stem}.png",
                device_id=f"toy-{i}",
                split=split,
                source="toy",
                license="CC0",
                width=size,
                height=size,
                view=view,
                device_kind=DeviceKind.PHONE,
                device_model=DEVICE,
                mm_per_px=mm_per_px,
                quality=PhotoQuality.USABLE,
                instances=instances,
                instances_complete=True,
                zone_mask=f"masks/{stem}_zone.png",
                grades=grades,
            )
        )
    if real_like:
        for i in range(max(2, n // 6)):
            view = View.FRONT
            img, zones, inner, mm_per_px, main_zone = _device_photo(rng, size, view)
            defects = _draw_defects(rng, img, inner, mm_per_px, main_zone, 1 + i % 2)
            stem = f"real{i:03d}"
            cv2.imwrite(str(out_dir / "images" / f"{stem}.jpg"), img[..., ::-1])
            split = ("train", "val", "test")[i % 3]
            x0, y0, x1, y1 = inner
            screen = [[(x0, y0), (x1, y0), (x1, y1), (x0, y1)]]
            has_crack = any(d[0] is DefectType.CRACK for d in defects)
            polys = []
            for kind, mask, *_ in defects:
                cs, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                pts = [(float(x), float(y)) for x, y in max(cs, key=cv2.contourArea)[:, 0]]
                if len(pts) >= 3:
                    polys.append(LabelledInstance(type=kind, polygon=pts))
            records.append(
                ManifestRecord(
                    image=f"images/{stem}.jpg",
                    device_id=f"real-{i}",
                    split=split,
                    source="toy_real",
                    view=view if i % 2 else None,
                    instances=polys if i % 2 else [],
                    image_labels={} if i % 2 else {DefectType.CRACK: has_crack},
                    screen_polygons=screen if not i % 2 else [],
                )
            )
    path = out_dir / "manifest.jsonl"
    write_manifest(path, records)
    return path
