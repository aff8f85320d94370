"""Synthetic defects composited onto real device photos, so the network also sees real devices.

Sources are the committed manifests of the shared real sets whose photos show one device surface
filling much of the frame: laptop_scratch (lids and bottom covers, `body` zone) and msd (phone screens,
display off, `screen` zone). Defects go on *clean areas*: where the photo's local texture is low (no
edges, stickers, ports, or the real defects that make texture), away from every labelled real defect,
and, for MSD, on the dark screen glass. Blending respects the local light: each defect is drawn with
the same drawing code as on procedural devices, then its change to the photo is scaled by the local
brightness (a scratch in a shadow shows less) and softened to the photo's own sharpness.

What a composite record does and does not know: the synthetic instances' masks are exact; their
millimetre sizes are not (the photos have no scale: no device outline or model), so sizes are left
out; the real photo's own defects are only partly labelled, so `instances_complete` is False and
there is no grade. Each composite keeps the real photo's `device_id` and split, so a composite of a
test photo stays in test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from model.manifest import LabelledInstance, ManifestRecord, read_manifest, resolve
from model.taxonomy import DefectType, PhotoQuality, Zone
from training.synth.defects import _DRAW, DefectPlan, photo_mask
from training.synth.geometry import blob_poly, curve_of_length, jagged_path

SOURCES = {"laptop_scratch": Zone.BODY, "msd": Zone.SCREEN}
# Assumed scale, only to size the strokes like the procedural ones (not recorded as a measurement).
ASSUMED_VIEW_MM = {"laptop_scratch": 300.0, "msd": 200.0}


def default_manifests() -> list[Path]:
    root = Path(__file__).resolve().parents[2] / "datasets" / "real"
    return [root / f"{name}.jsonl" for name in SOURCES if (root / f"{name}.jsonl").is_file()]


@cache
def load_sources(paths: tuple[str, ...]) -> tuple[tuple[str, ManifestRecord], ...]:
    """(manifest path, record) of every source photo whose file is present, in a stable order."""
    out = []
    for p in paths:
        for r in read_manifest(p):
            if (
                r.source in SOURCES
                and r.quality is not PhotoQuality.NO_DEVICE
                and resolve(p, r.image).is_file()
            ):
                out.append((p, r))
    return tuple(out)


@dataclass
class Composite:
    image: np.ndarray  # RGB uint8
    plans: list[DefectPlan]
    masks: list[np.ndarray]
    real: list[LabelledInstance]  # the source photo's own labelled instances, rescaled
    record: ManifestRecord  # the source record
    meta: dict
    image_labels: dict[DefectType, bool]


def _clean_map(grey: np.ndarray, source: str, real_mask: np.ndarray) -> np.ndarray:
    """Where a synthetic defect may go: low local texture, not on or near a labelled real defect."""
    h, w = grey.shape
    k = max(5, (max(h, w) // 48) | 1)
    g = grey.astype(np.float32)
    mean = cv2.blur(g, (k, k))
    var = cv2.blur(g * g, (k, k)) - mean * mean
    std = np.sqrt(np.maximum(var, 0))
    ok = np.zeros((h, w), bool)
    ok[h // 10 : h - h // 10, w // 10 : w - w // 10] = True
    if source == "msd":
        # the display-off glass is the dark part of the phone; the grey table is not the device
        ok &= mean < np.percentile(mean, 45)
    else:
        ok &= mean > 18  # Roboflow's rotation augmentation leaves black corners: not the device
    if source != "msd" and real_mask.any():
        # laptop photos also show desks and boxes; the lid is where its labelled defects are
        pts = cv2.findNonZero(real_mask)
        hull = cv2.convexHull(pts)
        region = np.zeros((h, w), np.uint8)
        cv2.fillPoly(region, [hull], 1)
        region = cv2.dilate(region, np.ones((max(h, w) // 6 | 1,) * 2, np.uint8))
        ok &= region > 0
    if ok.any():
        ok &= std <= np.percentile(std[ok], 50)
    near = cv2.dilate(real_mask, np.ones((k, k), np.uint8)) > 0
    ok &= ~near
    # erode so that strokes starting inside stay inside
    return cv2.erode(ok.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


def _inside(ok: np.ndarray, pts: np.ndarray) -> bool:
    h, w = ok.shape
    xi, yi = np.rint(pts[:, 0]).astype(int), np.rint(pts[:, 1]).astype(int)
    if (xi < 0).any() or (yi < 0).any() or (xi >= w).any() or (yi >= h).any():
        return False
    return bool(ok[yi, xi].all())


def _plan(
    rng: np.random.Generator, ok: np.ndarray, zone: Zone, ppm: float, avoid: frozenset[DefectType]
) -> DefectPlan | None:
    ys, xs = np.nonzero(ok)
    if len(xs) < 50:
        return None
    kinds = [DefectType.SCRATCH, DefectType.SCRATCH, DefectType.STAIN, DefectType.SMUDGE]
    if zone is Zone.SCREEN:
        kinds.append(DefectType.CRACK)
    kinds = [k for k in kinds if k not in avoid]
    if not kinds:
        return None
    dtype = kinds[int(rng.integers(len(kinds)))]
    for _ in range(30):
        i = int(rng.integers(len(xs)))
        start = np.array([xs[i], ys[i]], np.float64)
        if dtype is DefectType.SCRATCH:
            width = float(rng.uniform(0.05, 0.5))
            pts = curve_of_length(
                rng, start, rng.uniform(0, 2 * math.pi), rng.uniform(3, 30) * ppm, rng.uniform(0, 0.3)
            )
            if _inside(ok, pts):
                style = "gouge" if width >= 0.25 else "hairline"
                return DefectPlan(
                    dtype, zone, style, lines=[pts], width_mm=width, contrast=float(rng.uniform(0.5, 0.9))
                )
        elif dtype is DefectType.CRACK:
            pts = jagged_path(
                rng, start, rng.uniform(0, 2 * math.pi), rng.uniform(15, 60) * ppm, 3 * ppm, 0.12
            )
            if _inside(ok, pts):
                return DefectPlan(
                    dtype, zone, "long", lines=[pts], width_mm=0.2, contrast=float(rng.uniform(0.5, 0.9))
                )
        else:
            size = rng.uniform(2, 8) if dtype is DefectType.STAIN else rng.uniform(8, 25)
            a = size / 2 * ppm
            poly = blob_poly(
                rng, start[0], start[1], a, a * rng.uniform(0.5, 1), rng.uniform(0, math.pi), 0.3
            )
            if _inside(ok, poly):
                colour = (0.4, 0.3, 0.18) if dtype is DefectType.STAIN else (1.0, 1.0, 1.0)
                style = "spot" if dtype is DefectType.STAIN else "oil"
                plan = DefectPlan(
                    dtype, zone, style, poly=poly, contrast=float(rng.uniform(0.4, 0.75)), colour=colour
                )
                return plan
    return None


def composite(
    rng: np.random.Generator, size: int, sources: tuple[tuple[str, ManifestRecord], ...]
) -> Composite:
    """A real source photo (long side `size`) with 1-4 synthetic defects on its clean areas."""
    mpath, rec = sources[int(rng.integers(len(sources)))]
    bgr = cv2.imread(str(resolve(mpath, rec.image)), cv2.IMREAD_COLOR)
    h0, w0 = bgr.shape[:2]
    s = size / max(h0, w0)
    w, h = max(1, round(w0 * s)), max(1, round(h0 * s))
    rgb = cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    real_mask = np.zeros((h, w), np.uint8)
    real = []
    for inst in rec.instances:
        if inst.polygon:
            poly = [(x * s, y * s) for x, y in inst.polygon]
            cv2.fillPoly(real_mask, [np.round(np.array(poly)).astype(np.int32)], 1)
            real.append(inst.model_copy(update={"polygon": poly}))
    zone = SOURCES[rec.source]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    ok = _clean_map(grey, rec.source, real_mask)
    ppm = max(w, h) / ASSUMED_VIEW_MM[rec.source]
    img = rgb.astype(np.float32) / 255.0
    before = img.copy()
    plans, masks = [], []
    flat = SimpleNamespace(ppm=ppm)
    light_angle = float(rng.uniform(-math.pi, math.pi))
    # A type the photo is known to show but not where (MSD's image-level labels) is left out: a synthetic
    # mask of that type would make the real, unlocalised defect read as a labelled negative.
    located = {i.type for i in rec.instances}
    avoid = frozenset(t for t, present in rec.image_labels.items() if present and t not in located)
    for _ in range(int(rng.integers(1, 5))):
        plan = _plan(rng, ok, zone, ppm, avoid)
        if plan is None:
            continue
        m = photo_mask(plan, np.eye(3), ppm, w, h)
        if not m.any():
            continue
        ys, xs = np.nonzero(m)
        pad = 4
        box = (
            slice(max(0, ys.min() - pad), ys.max() + pad + 1),
            slice(max(0, xs.min() - pad), xs.max() + pad + 1),
        )
        cov = np.zeros((h, w), np.uint8)
        if plan.lines:
            t = max(1, round(plan.width_mm * ppm))
            cv2.polylines(
                cov, [np.round(ln * 16).astype(np.int32) for ln in plan.lines], False, 255, t, cv2.LINE_AA, 4
            )
        else:
            cv2.fillPoly(cov, [np.round(plan.poly * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        a = cov[box].astype(np.float32) / 255.0
        _DRAW[plan.type](flat, plan, img[box], a, rng, light_angle, box)
        plan.length_mm = plan.width_mm = plan.area_mm2 = 0.0  # no true scale: sizes are not recorded
        plans.append(plan)
        masks.append(m)
        ok &= cv2.dilate(m, np.ones((9, 9), np.uint8)) == 0  # defects do not overlap
    # respect the local light and the photo's softness: scale the change by local brightness
    local = cv2.GaussianBlur(cv2.cvtColor(before, cv2.COLOR_RGB2GRAY), (0, 0), max(2.0, max(w, h) / 100))
    gain = np.clip(local / max(1e-3, float(local.mean())), 0.4, 1.6)
    delta = cv2.GaussianBlur(img - before, (0, 0), 0.6)
    out = np.clip(before + delta * gain[..., None], 0, 1)
    image = (out * 255 + 0.5).astype(np.uint8)
    meta = {"composite_of": Path(rec.image).name, "source_set": rec.source, "scale": "unknown"}
    labels = dict(rec.image_labels)
    labels.update({p.type: True for p in plans})
    return Composite(image, plans, masks, real, rec, meta, labels)
