"""The fine stream's patches (issue 19, "Generator, two streams"): native-scale square patches of a
device surface at 0.03-0.12 mm/px with scratches whose width and contrast are known exactly, and the
fine network's targets (a centreline heat map, and per pixel a width and a contrast).

Why a second generator: the photo generator (`training.synth.generator`) draws a scratch thinner than
0.6 px at the contrast of a 0.6 px line (`defects._draw_scratch`), so a 0.2 px hairline and a 0.6 px
one look the same and no network can read a width below a pixel from its photos (docs/fine-pass.md).
Here a scratch is rendered analytically at 4x oversampling: its luminance change is a function of the
distance to its centreline whose integral across the line is width x contrast, whatever the width. A
line thinner than a pixel becomes a fainter one-pixel line with the right integrated darkness or
brightness, and that integral is what lets a fine net measure sub-pixel widths. Then the camera: lens
blur, sensor noise, an in-camera denoise or sharpen, JPEG 80-95.

What this module owns: the patch's surface (dark glass with a faint reflection, or an aluminium or
plastic body with a fine texture), the scratches and their truth (polyline, length, width, contrast,
visibility at 20 and 50 cm), the targets, the files (`images/*.jpg`, `targets/*.npz`,
`manifest.jsonl`) and a gallery image. `refurbgrade synth-fine` (training/cli/data.py) calls it.

Why not `model.manifest.ManifestRecord`: a patch is not a photo of a device (no device id, split, view
or grade), its truth is per scratch with fields the record does not have (contrast, polarity,
visibility, a centreline rather than a polygon or mask), and the record's `meta` holds only scalars.
Stretching it would weaken the contract serving and the importers rely on, so `FinePatchRecord` below
is the fine stream's own small record. Every patch draws from `default_rng([seed, index])`: the files
do not depend on the number of workers, and one seed gives byte-identical files.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import erf

from training.synth.geometry import SHIFT, curve_of_length, polyline_length, to_cv
from training.synth.photography import encode_jpeg
from training.synth.pool import worker_pool

MM_PER_PX = (0.03, 0.12)
WIDTH_MM = (0.02, 0.4)
CONTRAST = (0.03, 0.5)
LENGTH_MM = (0.5, 20.0)
MAX_SCRATCHES = 4
OVERSAMPLE = 4
# The edge softness of the analytic profile, in patch pixels. The profile's integral is exactly
# width x contrast for any softness; 0.15 px is the least the 4x grid samples without aliasing (a
# Gaussian edge of 0.6 sub-pixels sums to its integral within 0.1%), and it is far below the lens blur.
EDGE_SOFTNESS_PX = 0.15
HEAT_SIGMA_PX = 1.0
SUPPORT_PX = 1.5  # width and contrast targets: the centreline and its 8-neighbours
# One arc-minute of visual acuity at the two distances of Back Market's tiers (body micro-scratches
# invisible at 20 cm for Excellent, at 50 cm for Good): 20 cm x tan(1') and 50 cm x tan(1').
ARCMIN_MM_20CM = 0.058
ARCMIN_MM_50CM = 0.145


# --------------------------------------------------------------------------------------------------
# the record


class ScratchTruth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    polyline: list[tuple[float, float]]  # the centreline in patch pixels (pixel centres at integers)
    length_mm: float = Field(ge=0)  # the centreline's arc length (drawn with round caps)
    width_mm: float = Field(gt=0)
    width_px: float = Field(gt=0)
    contrast: float = Field(gt=0)  # luminance change (0-1) at the centre of a fully resolved line
    polarity: Literal[1, -1]  # +1 brighter than the surface, -1 darker
    clipped: bool  # the scratch runs off the patch: the polyline is its part inside
    # The width seen at 20 and 50 cm in arc-minutes, and whether it reaches 1 arc-minute. Contrast
    # matters to the eye too (a 2' line at 3% contrast on glass can vanish); this is the width-only
    # criterion a standard can state and check.
    arcmin_20cm: float
    arcmin_50cm: float
    visible_20cm: bool
    visible_50cm: bool


class FineSurface(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # glass, body, flat: rendered patches; device_photo, real_photo: negatives cut from whole photos
    # (`training.synth.fine_photo_patches`): negatives without a scratch, or a synthetic device's own scratches.
    kind: Literal["glass", "body", "flat", "device_photo", "real_photo"]
    material: str  # glass, aluminium, plastic (flat: a uniform test surface)
    luminance: float  # mean luminance of the bare surface, 0-1
    texture: float  # amplitude of its texture (glass: the reflection gradient's strength)


class FineCamera(BaseModel):
    model_config = ConfigDict(extra="forbid")

    blur_sigma_px: float
    noise_sigma: float
    processing: Literal["none", "denoise", "sharpen"]
    processing_strength: float  # denoise: the bilateral filter's colour sigma; sharpen: the amount
    jpeg_quality: int


class FinePatchRecord(BaseModel):
    """One patch: its JPEG, its targets (.npz: heat, width_mm, contrast; float16) and its truth."""

    model_config = ConfigDict(extra="forbid")

    image: str  # relative to the manifest's folder
    targets: str
    index: int
    seed: int
    size: int
    mm_per_px: float = Field(gt=0)
    surface: FineSurface
    camera: FineCamera
    scratches: list[ScratchTruth] = Field(default_factory=list)


def read_fine_manifest(path: str | Path) -> list[FinePatchRecord]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [FinePatchRecord.model_validate_json(line) for line in lines if line.strip()]


def load_targets(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


# --------------------------------------------------------------------------------------------------
# scratches


@dataclass(frozen=True)
class FineScratch:
    points: np.ndarray  # (N, 2) x, y in patch pixels
    width_mm: float
    contrast: float
    polarity: int = 1
    clipped: bool = False


def visibility(width_mm: float) -> dict:
    a20, a50 = width_mm / ARCMIN_MM_20CM, width_mm / ARCMIN_MM_50CM
    return {
        "arcmin_20cm": round(a20, 4),
        "arcmin_50cm": round(a50, 4),
        "visible_20cm": a20 >= 1.0,
        "visible_50cm": a50 >= 1.0,
    }


def truth(s: FineScratch, mm_per_px: float) -> ScratchTruth:
    return ScratchTruth(
        polyline=[(float(x), float(y)) for x, y in s.points],
        length_mm=round(polyline_length(s.points) * mm_per_px, 4),
        width_mm=s.width_mm,
        width_px=round(s.width_mm / mm_per_px, 4),
        contrast=s.contrast,
        polarity=s.polarity,
        clipped=s.clipped,
        **visibility(s.width_mm),
    )


def _inside_run(pts: np.ndarray, size: int) -> tuple[np.ndarray, bool]:
    """The longest run of consecutive points inside the patch (a tile cuts a longer scratch)."""
    ok = (pts >= -0.5).all(axis=1) & (pts <= size - 0.5).all(axis=1)
    best, start, runs = (0, 0), None, []
    for i, inside in enumerate([*ok, False]):
        if inside and start is None:
            start = i
        elif not inside and start is not None:
            runs.append((start, i))
            start = None
    if runs:
        best = max(runs, key=lambda r: r[1] - r[0])
    return pts[best[0] : best[1]], not bool(ok.all())


def draw_scratches(rng: np.random.Generator, size: int, mm_per_px: float, base: float, glass: bool):
    """0-4 gently curved scratches, width log-uniform in 0.02-0.4 mm, contrast log-uniform in 0.03-0.5
    (faint lines are the ones a grade turns on), length log-uniform 0.5-20 mm cut to the patch."""
    out: list[FineScratch] = []
    for _ in range(int(rng.integers(0, MAX_SCRATCHES + 1))):
        width = float(np.exp(rng.uniform(*np.log(WIDTH_MM))))
        contrast = float(np.exp(rng.uniform(*np.log(CONTRAST))))
        # Polarity where the surface leaves room for the full contrast, so the truth is what is drawn
        # (clipping at 0 or 1 would break width x contrast). Glass scratches scatter light: bright.
        options = [p for p, ok in ((1, base + contrast <= 0.97), (-1, base - contrast >= 0.03)) if ok]
        polarity = 1 if glass else int(rng.choice(options or [1 if base < 0.5 else -1]))
        for _try in range(10):
            length_px = float(np.exp(rng.uniform(*np.log(LENGTH_MM)))) / mm_per_px
            start = rng.uniform(0, size - 1, 2)
            pts = curve_of_length(rng, start, rng.uniform(0, 2 * math.pi), length_px, rng.uniform(0, 0.2))
            pts, clipped = _inside_run(np.round(pts, 3), size)
            if len(pts) >= 2 and polyline_length(pts) >= 4.0:
                out.append(FineScratch(pts, round(width, 5), round(contrast, 5), polarity, clipped))
                break
    return out


def _profile(d: np.ndarray, w: float, s: float) -> np.ndarray:
    """A box of width w with erf edges of softness s: its integral over d is exactly w."""
    k = 1.0 / (math.sqrt(2.0) * s)
    return 0.5 * (erf((w / 2 - d) * k) + erf((w / 2 + d) * k))


def scratch_layer(
    scratches: Sequence[FineScratch], size: int, mm_per_px: float, oversample: int = OVERSAMPLE
) -> np.ndarray:
    """The signed luminance change of the scratches, (size, size) float32: the analytic profile of the
    exact distance to each centreline, sampled at `oversample` x and area-averaged to the patch. The
    layer is added to the surface after averaging: both are linear, so this equals rendering the whole
    surface oversampled, at a sixteenth of the cost."""
    layer = np.zeros((size, size), np.float32)
    f = oversample
    for s in scratches:
        w = s.width_mm / mm_per_px
        margin = w / 2 + 5 * EDGE_SOFTNESS_PX + 1
        (xa, ya), (xb, yb) = s.points.min(axis=0) - margin, s.points.max(axis=0) + margin
        x0, y0 = max(0, math.floor(xa)), max(0, math.floor(ya))
        x1, y1 = min(size - 1, math.ceil(xb)), min(size - 1, math.ceil(yb))
        if x1 < x0 or y1 < y0:
            continue
        # sub-pixel centres in patch coordinates (pixel i spans i-0.5..i+0.5)
        sx = (np.arange(x0 * f, (x1 + 1) * f) + 0.5) / f - 0.5
        sy = (np.arange(y0 * f, (y1 + 1) * f) + 0.5) / f - 0.5
        dist = np.full((len(sy), len(sx)), np.inf)
        for a, b in itertools.pairwise(s.points):
            lo, hi = np.minimum(a, b) - margin, np.maximum(a, b) + margin
            ix = slice(*np.searchsorted(sx, [lo[0], hi[0]]))
            iy = slice(*np.searchsorted(sy, [lo[1], hi[1]]))
            px, py = sx[ix][None, :] - a[0], sy[iy][:, None] - a[1]
            dx, dy = b - a
            t = np.clip((px * dx + py * dy) / max(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
            np.minimum(dist[iy, ix], np.hypot(px - t * dx, py - t * dy), out=dist[iy, ix])
        sub = s.polarity * s.contrast * _profile(dist, w, EDGE_SOFTNESS_PX)
        ny, nx = y1 - y0 + 1, x1 - x0 + 1
        layer[y0 : y1 + 1, x0 : x1 + 1] += sub.reshape(ny, f, nx, f).mean(axis=(1, 3)).astype(np.float32)
    return layer


# --------------------------------------------------------------------------------------------------
# surface, camera, targets


def draw_surface(rng: np.random.Generator, size: int) -> tuple[np.ndarray, FineSurface]:
    """(size, size, 3) float32 RGB in 0-1 and its description."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1) * 2 - 1
    a = rng.uniform(0, 2 * math.pi)
    ramp = (xx * math.cos(a) + yy * math.sin(a)) * 0.5 + 0.5  # 0-1 across the patch
    if rng.random() < 0.5:
        # dark cover glass; the faint gradient is a reflection of the room, the texture almost nothing
        base = rng.uniform(0.03, 0.14)
        g = rng.uniform(0.0, 0.1)
        lum = base + g * ramp + rng.normal(0, 0.002, (size, size))
        tint = np.array([0.95, 1.0, 1.08]) * rng.uniform(0.97, 1.03, 3)
        desc = FineSurface(kind="glass", material="glass", luminance=0.0, texture=round(float(g), 4))
    else:
        aluminium = rng.random() < 0.5
        base = rng.uniform(0.45, 0.8) if aluminium else rng.uniform(0.15, 0.75)
        amp = rng.uniform(0.008, 0.03) if aluminium else rng.uniform(0.004, 0.02)
        noise = rng.normal(0, 1, (size, size)).astype(np.float32)
        if aluminium:  # brushed: the grain runs one way
            noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=6.0, sigmaY=0.5)
            if rng.random() < 0.5:
                noise = np.ascontiguousarray(noise.T)
        else:
            noise = cv2.GaussianBlur(noise, (0, 0), 0.7)
        noise /= max(float(noise.std()), 1e-6)
        lum = base + rng.uniform(0.0, 0.06) * (ramp - 0.5) + amp * noise
        tint = rng.uniform(0.97, 1.03, 3) if aluminium else rng.uniform(0.8, 1.2, 3)
        material = "aluminium" if aluminium else "plastic"
        desc = FineSurface(kind="body", material=material, luminance=0.0, texture=round(float(amp), 4))
    img = np.clip(lum[..., None] * tint[None, None, :], 0, 1).astype(np.float32)
    desc.luminance = round(float(lum.mean()), 4)
    return img, desc


def flat_surface(size: int, luminance: float = 0.5) -> tuple[np.ndarray, FineSurface]:
    """A uniform grey surface (tests)."""
    desc = FineSurface(kind="flat", material="flat", luminance=luminance, texture=0.0)
    return np.full((size, size, 3), luminance, np.float32), desc


def draw_camera(rng: np.random.Generator) -> FineCamera:
    r = rng.random()
    noise = float(rng.uniform(0.004, 0.02))
    if r < 0.35:  # a light edge-preserving denoise, as phones do in low light
        proc, strength = "denoise", float(rng.uniform(2.0, 4.0) * noise)
    elif r < 0.7:  # an unsharp mask, as most phone pipelines apply
        proc, strength = "sharpen", float(rng.uniform(0.3, 1.0))
    else:
        proc, strength = "none", 0.0
    return FineCamera(
        blur_sigma_px=round(float(rng.uniform(0.3, 0.9)), 3),
        noise_sigma=round(noise, 4),
        processing=proc,
        processing_strength=round(strength, 4),
        jpeg_quality=int(rng.integers(80, 96)),
    )


def apply_camera(img: np.ndarray, cam: FineCamera, rng: np.random.Generator) -> np.ndarray:
    """Lens blur, sensor noise (shot and read), the camera's denoise or sharpen; uint8 RGB."""
    img = cv2.GaussianBlur(img, (0, 0), cam.blur_sigma_px) if cam.blur_sigma_px > 0 else img
    shot = np.sqrt(0.2 + np.clip(img, 0, 1))  # brighter pixels are noisier in absolute terms
    img = (img + cam.noise_sigma * shot * rng.normal(0, 1, img.shape)).astype(np.float32)
    if cam.processing == "denoise":
        img = cv2.bilateralFilter(img, 5, cam.processing_strength, 1.5)
    elif cam.processing == "sharpen":
        img = cv2.addWeighted(
            img, 1 + cam.processing_strength, cv2.GaussianBlur(img, (0, 0), 1.2), -cam.processing_strength, 0
        )
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def render_patch(
    surface: np.ndarray,
    scratches: Sequence[FineScratch],
    mm_per_px: float,
    camera: FineCamera | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The scratched surface. camera=None: the raw render, float32 RGB, no blur, noise or
    quantisation (the switch the sub-pixel test needs); otherwise uint8 RGB after the camera."""
    layer = scratch_layer(scratches, surface.shape[0], mm_per_px)
    img = surface + layer[..., None]
    if camera is None:
        return img.astype(np.float32)
    return apply_camera(img, camera, rng if rng is not None else np.random.default_rng(0))


def make_targets(scratches: Sequence[FineScratch], size: int, mm_per_px: float) -> dict[str, np.ndarray]:
    """heat: exp(-d^2 / 2 sigma^2) of the distance d to the nearest rasterised centreline (1.0 on it);
    width_mm and contrast: the nearest scratch's truth within 1.5 px of its centreline, 0 elsewhere."""
    if not scratches:
        z = np.zeros((size, size), np.float16)
        return {"heat": z, "width_mm": z.copy(), "contrast": z.copy()}
    dists = []
    for s in scratches:
        line = np.zeros((size, size), np.uint8)
        cv2.polylines(line, [to_cv(s.points)], False, 255, 1, cv2.LINE_8, SHIFT)
        dists.append(cv2.distanceTransform((line == 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE))
    d = np.stack(dists)
    nearest, dmin = d.argmin(axis=0), d.min(axis=0)
    near = dmin <= SUPPORT_PX
    widths = np.array([s.width_mm for s in scratches], np.float32)
    contrasts = np.array([s.contrast for s in scratches], np.float32)
    return {
        "heat": np.exp(-(dmin**2) / (2 * HEAT_SIGMA_PX**2)).astype(np.float16),
        "width_mm": np.where(near, widths[nearest], 0).astype(np.float16),
        "contrast": np.where(near, contrasts[nearest], 0).astype(np.float16),
    }


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """np.savez_compressed stamps the time into the zip; this writes the same format with a fixed
    date, so one seed gives byte-identical target files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            a = io.BytesIO()
            np.lib.format.write_array(a, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, a.getvalue())
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------
# one patch, many patches


@dataclass
class FinePatch:
    jpeg: bytes
    targets: dict[str, np.ndarray]
    record: FinePatchRecord


def make_patch(seed: int, index: int, size: int = 256) -> FinePatch:
    rng = np.random.default_rng([seed, index])
    mm_per_px = round(float(np.exp(rng.uniform(*np.log(MM_PER_PX)))), 5)
    surface, desc = draw_surface(rng, size)
    scratches = draw_scratches(rng, size, mm_per_px, desc.luminance, desc.kind == "glass")
    camera = draw_camera(rng)
    img = render_patch(surface, scratches, mm_per_px, camera, rng)
    name = f"{index:06d}"
    record = FinePatchRecord(
        image=f"images/{name}.jpg",
        targets=f"targets/{name}.npz",
        index=index,
        seed=seed,
        size=size,
        mm_per_px=mm_per_px,
        surface=desc,
        camera=camera,
        scratches=[truth(s, mm_per_px) for s in scratches],
    )
    return FinePatch(encode_jpeg(img, camera.jpeg_quality), make_targets(scratches, size, mm_per_px), record)


_WORKER: tuple[Path, int, int] | None = None


def _init_worker(out_dir: Path, seed: int, size: int) -> None:
    global _WORKER
    _WORKER = (out_dir, seed, size)
    cv2.setNumThreads(1)  # one process per core: cv2's own threads would only contend


def _work(index: int) -> str:
    assert _WORKER is not None
    out_dir, seed, size = _WORKER
    p = make_patch(seed, index, size)
    (out_dir / p.record.image).write_bytes(p.jpeg)
    (out_dir / p.record.targets).write_bytes(npz_bytes(p.targets))
    return json.dumps(p.record.model_dump(mode="json"), sort_keys=True)


def _iter_patches(out_dir: Path, n: int, seed: int, size: int, workers: int) -> Iterator[str]:
    if workers <= 1:
        _init_worker(out_dir, seed, size)
        yield from map(_work, range(n))
        return
    with worker_pool(workers, _init_worker, (out_dir, seed, size)) as pool:
        yield from pool.imap(_work, range(n), chunksize=8)


def write_fine_patches(out_dir: str | Path, n: int, seed: int, size: int = 256, workers: int = 1) -> Path:
    """Write n patches to out_dir (images/, targets/, manifest.jsonl); returns the manifest's path."""
    if n <= 0:
        raise ValueError(f"n must be at least 1, got {n}")
    if size < 16:
        raise ValueError(f"size must be at least 16 px, got {size}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file, not a folder")
    for sub in ("images", "targets"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    lines = _iter_patches(out_dir, n, seed, size, workers)
    try:
        from tqdm import tqdm

        lines = tqdm(lines, total=n, desc="synth-fine", unit="patch", disable=n <= 50)
    except ImportError:  # tqdm comes with the train and serve extras, not the core install
        pass
    path = out_dir / "manifest.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# gallery


def draw_fine_gallery(path: str | Path, n: int = 12, seed: int = 0, size: int = 256, cols: int = 3) -> Path:
    """A grid of n patches with scratches, each shown as the camera wrote it and with the centreline
    target overlaid in magenta; labelled with mm/px and the true widths (mm and px)."""
    tiles, index = [], 0
    while len(tiles) < n and index < 50 * n:
        p = make_patch(seed, index, size)
        index += 1
        if not p.record.scratches:
            continue
        img = cv2.imdecode(np.frombuffer(p.jpeg, np.uint8), cv2.IMREAD_COLOR)  # BGR
        heat = p.targets["heat"].astype(np.float32)[..., None] * 0.8
        over = (img * (1 - heat) + np.array([255, 0, 255], np.float32) * heat).astype(np.uint8)
        label = np.full((34, 2 * size + 4, 3), 255, np.uint8)
        r = p.record
        widths = " ".join(f"{s.width_mm:.3f}" for s in r.scratches)
        pxs = " ".join(f"{s.width_px:.2f}" for s in r.scratches)
        cv2.putText(label, f"{r.mm_per_px:.3f} mm/px  {r.surface.material}", (4, 13), 0, 0.42, 0, 1)
        cv2.putText(label, f"w {widths} mm = {pxs} px", (4, 29), 0, 0.42, 0, 1)
        row = np.concatenate([img, np.full((size, 4, 3), 255, np.uint8), over], axis=1)
        tiles.append(np.concatenate([label, row], axis=0))
    gap = np.full((tiles[0].shape[0], 12, 3), 255, np.uint8)
    rows = []
    for i in range(0, len(tiles), cols):
        chunk = tiles[i : i + cols] + [np.full_like(tiles[0], 255)] * (cols - len(tiles[i : i + cols]))
        rows.append(np.concatenate([x for t in chunk for x in (t, gap)][:-1], axis=1))
    sheet = np.concatenate(
        [x for r in rows for x in (r, np.full((10, r.shape[1], 3), 255, np.uint8))], axis=0
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return path
