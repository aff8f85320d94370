"""Patches for the fine network cut from whole photos: negatives (what a scratch is not) and the
scratches of high-resolution synthetic devices (what a scratch is, drawn as the photo generator draws it).

The first fine network learnt lines on flat rendered patches (`training.synth.fine_patches`) and, on
whole photos, called every sharp edge a scratch: device outlines, camera rings, screen borders,
sensor openings, dust and reflections on real screens (docs/fine-pass.md). This module cuts 256 px
patches at the fine pass's pixel sizes (0.03-0.12 mm/px, never finer than the photo) from:

- synthetic device photos rendered at high resolution (`bench_fine_oracle.py synth`: the device at
  about 0.05 mm/px), half of them centred on an edge of the true zone map (outline, camera, screen
  border), the rest anywhere on or around the device; a patch touching a true scratch, chip or crack
  (its mask, dilated by 1 mm) is skipped: it is not a negative;
- real photos whose image labels say no scratch and no crack (MSD's oily and stained screens), at the
  photo's scale from a typical device length (the phone fills the frame).

Each patch is written as a fine-manifest record (`FinePatchRecord`, surface kind "device_photo" or
"real_photo", no scratches) with all-zero targets, so `refurbgrade train-fine --train A --train B`
mixes them with the rendered patches. One seed gives the same patches.

`write_fine_positives` cuts patches centred on the true scratches of synthetic device photos (the
generator's `_draw_scratch`, which the rendered patches do not reproduce: its light-dependent contrast,
its 0.6 px floor, the device's own surface and light). Targets: the heat of the distance to the
scratches' centrelines (their masks thinned at the photo's resolution), the width from the manifest;
the contrast is not in the manifest, so its target is NaN there and the loss leaves it out. Patches
touching a chip or crack are skipped.

`write_fine_crack_negatives` cuts patches on the true cracks of those photos (the screen and the back),
with all-zero targets: a crack's branches are lines, and the network, which had never seen one, called
them scratches on whole photos. Patches touching a scratch or chip are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from model.detail import NOMINAL_LENGTH_MM
from model.fine_pass import SURFACE_ZONES
from model.manifest import ManifestRecord, read_manifest, resolve
from model.taxonomy import DefectType, DeviceKind
from training.dataset import read_mask
from training.synth.fine_patches import (
    HEAT_SIGMA_PX,
    MM_PER_PX,
    FineCamera,
    FinePatchRecord,
    FineSurface,
    npz_bytes,
)

# Types whose pixels a negative must not hold (what the fine network measures, or looks like it).
LINE_TYPES = {DefectType.SCRATCH, DefectType.CHIP, DefectType.CRACK}
NEAR_MM = 1.0  # a negative keeps this far from any of them
EDGE_SHARE = 0.5  # of a synthetic photo's patches, centred on an edge of the true zone map
JPEG_QUALITY = 92


def _blocked(
    rec: ManifestRecord, manifest: Path, shape: tuple[int, int], near_px: int, types=LINE_TYPES
) -> np.ndarray:
    """The photo's pixels within `near_px` of a true instance of `types` (a scratch, chip or crack)."""
    out = np.zeros(shape, np.uint8)
    for inst in rec.instances:
        if inst.type not in types:
            continue
        if inst.mask:
            m = read_mask(resolve(manifest, inst.mask)) > 0
            out[m[: shape[0], : shape[1]]] = 1
        elif inst.polygon:
            cv2.fillPoly(out, [np.asarray(inst.polygon, np.int32)], 1)
    if near_px > 0 and out.any():
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * near_px + 1, 2 * near_px + 1))
        out = cv2.dilate(out, k)
    return out.astype(bool)


def _centres(rng, zones: np.ndarray | None, shape, n: int) -> np.ndarray:
    """Patch centres: half on an edge of the zone map (where there is one), the rest on or near the device."""
    h, w = shape
    if zones is None:
        return np.stack([rng.uniform(0, w, n), rng.uniform(0, h, n)], 1)
    edges = cv2.Canny((zones * 40).astype(np.uint8), 10, 30)
    ey, ex = np.nonzero(edges)
    dy, dx = np.nonzero(zones)
    n_edge = round(n * EDGE_SHARE) if len(ex) else 0
    out = []
    if n_edge:
        k = rng.integers(0, len(ex), n_edge)
        out.append(np.stack([ex[k], ey[k]], 1).astype(float))
    if n - n_edge:
        if len(dx):
            x0, x1, y0, y1 = dx.min(), dx.max(), dy.min(), dy.max()
            mx, my = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
            out.append(
                np.stack(
                    [rng.uniform(x0 - mx, x1 + mx, n - n_edge), rng.uniform(y0 - my, y1 + my, n - n_edge)], 1
                )
            )
        else:
            out.append(np.stack([rng.uniform(0, w, n - n_edge), rng.uniform(0, h, n - n_edge)], 1))
    return np.concatenate(out)


def _read_rgb(manifest: Path, rec: ManifestRecord) -> np.ndarray:
    path = resolve(manifest, rec.image)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _side(rng, native: float, size: int) -> int:
    """Photo pixels under one patch at a pixel size drawn log-uniform in `MM_PER_PX` (never finer than
    the photo's `native`)."""
    lo, hi = MM_PER_PX
    res = float(np.exp(rng.uniform(np.log(max(lo, native)), np.log(hi))))
    return round(size * res / native)


def _cut(img: np.ndarray, blocked: np.ndarray, x0: int, y0: int, side: int, size: int) -> np.ndarray | None:
    """The `side` x `side` square at (x0, y0) resized to `size`, or None when it leaves the photo or
    touches `blocked`."""
    h, w = img.shape[:2]
    if x0 < 0 or y0 < 0 or x0 + side > w or y0 + side > h:
        return None
    if blocked[y0 : y0 + side, x0 : x0 + side].any():
        return None
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(img[y0 : y0 + side, x0 : x0 + side], (size, size), interpolation=interp)


class _PatchWriter:
    """A fine-patch folder being written: images/, targets/, and manifest.jsonl at `finish`."""

    def __init__(self, out: Path, seed: int, size: int):
        self.out, self.seed, self.size = out, seed, size
        out.mkdir(parents=True, exist_ok=True)
        (out / "images").mkdir(exist_ok=True)
        (out / "targets").mkdir(exist_ok=True)
        self.lines: list[str] = []

    def add(self, patch: np.ndarray, targets: bytes, res: float, kind: str, material: str) -> None:
        index = len(self.lines)
        ok, jpeg = cv2.imencode(
            ".jpg", cv2.cvtColor(patch, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        )
        assert ok
        (self.out / "images" / f"{index:06d}.jpg").write_bytes(jpeg.tobytes())
        (self.out / "targets" / f"{index:06d}.npz").write_bytes(targets)
        record = FinePatchRecord(
            image=f"images/{index:06d}.jpg",
            targets=f"targets/{index:06d}.npz",
            index=index,
            seed=self.seed,
            size=self.size,
            mm_per_px=round(res, 5),
            surface=FineSurface(
                kind=kind, material=material, luminance=float(patch.mean() / 255.0), texture=0.0
            ),
            camera=FineCamera(
                blur_sigma_px=0.0,
                noise_sigma=0.0,
                processing="none",
                processing_strength=0.0,
                jpeg_quality=JPEG_QUALITY,
            ),
        )
        self.lines.append(record.model_dump_json())

    def finish(self) -> Path:
        path = self.out / "manifest.jsonl"
        path.write_text("\n".join(self.lines) + ("\n" if self.lines else ""), encoding="utf-8")
        return path


def photo_patches(
    rec: ManifestRecord, manifest: Path, per_photo: int, size: int, rng
) -> Iterator[tuple[np.ndarray, float, str]]:
    """(patch RGB, its mm per pixel, surface kind) for one photo's negatives."""
    img = _read_rgb(manifest, rec)
    h, w = img.shape[:2]
    synthetic = rec.mm_per_px is not None
    if synthetic:
        native, kind = rec.mm_per_px, "device_photo"
    else:  # a real photo of a device filling the frame
        native, kind = NOMINAL_LENGTH_MM[rec.device_kind or DeviceKind.PHONE] / max(h, w), "real_photo"
    if native > MM_PER_PX[1]:
        return
    zones = read_mask(resolve(manifest, rec.zone_mask)) if rec.zone_mask else None
    blocked = _blocked(rec, manifest, (h, w), round(NEAR_MM / native))
    for cx, cy in _centres(rng, zones, (h, w), per_photo * 2):
        side = _side(rng, native, size)
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
        patch = _cut(img, blocked, x0, y0, side, size)
        if patch is None:
            continue
        yield patch, native * side / size, kind
        per_photo -= 1
        if per_photo == 0:
            return


def _zero_targets(size: int) -> bytes:
    """A negative patch's targets: no centreline, width or contrast anywhere."""
    return npz_bytes({k: np.zeros((size, size), np.float16) for k in ("heat", "width_mm", "contrast")})


def write_fine_negatives(
    manifests: list[Path],
    out: Path,
    per_photo: int = 20,
    seed: int = 0,
    size: int = 256,
    split: str = "train",
) -> Path:
    """Negatives from every photo of `split` in `manifests` that holds no scratch or crack by its image
    labels (instance-labelled photos are cut around their labels) -> `out` as a fine manifest."""
    writer = _PatchWriter(out, seed, size)
    zeros = _zero_targets(size)
    rng = np.random.default_rng(seed)
    todo = [
        (m, r)
        for m in manifests
        for r in read_manifest(m)
        if r.split == split
        and not any(r.image_labels.get(t) for t in (DefectType.SCRATCH, DefectType.CRACK))
        and (r.instances_complete or not r.instances)
    ]
    for manifest, rec in tqdm(todo, desc="negatives"):
        for patch, res, kind in photo_patches(rec, Path(manifest), per_photo, size, rng):
            writer.add(patch, zeros, res, kind, rec.source)
    return writer.finish()


def scratch_targets(lines: list[tuple[np.ndarray, float]], size: int) -> dict[str, np.ndarray]:
    """Targets of a patch from its scratches' centreline pixels (bool masks at the patch's size) and
    widths in mm: heat exp(-d^2/2 sigma^2) of the distance to the nearest centreline, width_mm of the
    nearest within 1.5 px, contrast NaN (unknown)."""
    width = np.zeros((size, size), np.float32)
    best = np.full((size, size), np.inf, np.float32)
    for line, w_mm in lines:
        if not line.any():
            continue
        d = cv2.distanceTransform((~line).astype(np.uint8), cv2.DIST_L2, 5)
        closer = d < best
        best = np.where(closer, d, best)
        width = np.where(closer & (d <= 1.5), w_mm, np.where(closer, 0.0, width))
    heat = np.exp(-(best**2) / (2 * HEAT_SIGMA_PX**2)).astype(np.float32)
    heat[~np.isfinite(best)] = 0.0
    return {
        "heat": heat.astype(np.float16),
        "width_mm": width.astype(np.float16),
        "contrast": np.full((size, size), np.nan, np.float16),
    }


def _skeletons(manifest: Path, insts, shape) -> list[tuple[np.ndarray, float]]:
    """(centreline pixels at the photo's resolution, width in mm) of `insts` (mask files)."""
    from skimage.morphology import skeletonize

    h, w = shape
    return [(skeletonize(read_mask(resolve(manifest, i.mask))[:h, :w] > 0), i.width_mm or 0.0) for i in insts]


def _on_lines(skeletons, rng, native: float, size: int, per_line: int) -> Iterator[tuple[int, int, int]]:
    """(x0, y0, side) of `per_line` patch squares on each line: a random point of it anywhere in the
    patch (not always at its centre), the patch's pixel size drawn as `_side` draws it."""
    for skel, _ in skeletons:
        ys, xs = np.nonzero(skel)
        if not len(xs):
            continue
        for k in rng.integers(0, len(xs), per_line):
            side = _side(rng, native, size)
            yield (
                round(xs[k] - side * rng.uniform(0.2, 0.8)),
                round(ys[k] - side * rng.uniform(0.2, 0.8)),
                side,
            )


def _surface_lines(rec: ManifestRecord, kind: DefectType) -> list:
    """The record's instances of `kind` with a mask on the zones the fine pass reads."""
    return [i for i in rec.instances if i.type == kind and i.mask and i.zone in SURFACE_ZONES]


def _fine_enough(manifests: list[Path], split: str) -> list[tuple[Path, ManifestRecord]]:
    return [
        (Path(m), r)
        for m in manifests
        for r in read_manifest(m)
        if r.split == split and r.mm_per_px and r.mm_per_px <= MM_PER_PX[1]
    ]


def write_fine_positives(
    manifests: list[Path],
    out: Path,
    per_scratch: int = 3,
    seed: int = 0,
    size: int = 256,
    split: str = "train",
) -> Path:
    """Patches on the true scratches of synthetic device photos (`mm_per_px` and instance masks known)."""
    writer = _PatchWriter(out, seed, size)
    rng = np.random.default_rng(seed)
    for manifest, rec in tqdm(_fine_enough(manifests, split), desc="positives"):
        # The fine pass reads the screen and the back (`model.fine_pass.SURFACE_ZONES`); a frame scratch
        # runs along the device's edge, which the negatives teach is not a scratch.
        scratches = [i for i in _surface_lines(rec, DefectType.SCRATCH) if i.width_mm]
        if not scratches:
            continue
        img = _read_rgb(manifest, rec)
        h, w = img.shape[:2]
        blocked = _blocked(
            rec, manifest, (h, w), round(NEAR_MM / rec.mm_per_px), LINE_TYPES - {DefectType.SCRATCH}
        )
        centre = _skeletons(manifest, scratches, (h, w))
        for x0, y0, side in _on_lines(centre, rng, rec.mm_per_px, size, per_scratch):
            patch = _cut(img, blocked, x0, y0, side, size)
            if patch is None:
                continue
            f = size / side
            lines = []
            for sk, w_mm in centre:
                py, px = np.nonzero(sk[y0 : y0 + side, x0 : x0 + side])
                line = np.zeros((size, size), bool)
                line[
                    np.minimum((py * f).astype(int), size - 1), np.minimum((px * f).astype(int), size - 1)
                ] = True
                lines.append((line, w_mm))
            targets = npz_bytes(scratch_targets(lines, size))
            writer.add(patch, targets, rec.mm_per_px * side / size, "device_photo", rec.source)
    return writer.finish()


def write_fine_crack_negatives(
    manifests: list[Path],
    out: Path,
    per_crack: int = 6,
    seed: int = 0,
    size: int = 256,
    split: str = "train",
) -> Path:
    """Patches on the true cracks of synthetic device photos, with all-zero targets: a crack's branches
    are lines, and the fine network, which never saw one, called them scratches (docs/fine-pass.md).
    Patches within `NEAR_MM` of a scratch or chip are skipped."""
    writer = _PatchWriter(out, seed, size)
    zeros = _zero_targets(size)
    rng = np.random.default_rng(seed)
    for manifest, rec in tqdm(_fine_enough(manifests, split), desc="crack negatives"):
        cracks = _surface_lines(rec, DefectType.CRACK)
        if not cracks:
            continue
        img = _read_rgb(manifest, rec)
        h, w = img.shape[:2]
        blocked = _blocked(
            rec, manifest, (h, w), round(NEAR_MM / rec.mm_per_px), LINE_TYPES - {DefectType.CRACK}
        )
        for x0, y0, side in _on_lines(
            _skeletons(manifest, cracks, (h, w)), rng, rec.mm_per_px, size, per_crack
        ):
            patch = _cut(img, blocked, x0, y0, side, size)
            if patch is not None:
                writer.add(patch, zeros, rec.mm_per_px * side / size, "device_photo", rec.source)
    return writer.finish()
