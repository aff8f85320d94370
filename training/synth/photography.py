"""The camera: pose (scale, rotation, mild perspective, hand-held framing), light, and the sensor.

Order of operations for one photo: choose the pose, which fixes the flat plane's `ppm` (so the
recorded mm per pixel is exact at the device centre, see geometry.camera_homography); light the flat
device (a gradient and a specular glare band, weighted by each surface's gloss); warp colour, coverage
and zones into the photo; cast a soft shadow on the background; composite; then the sensor: white
balance, exposure, vignetting, defocus or motion blur, noise and JPEG compression. Photo-quality
classes (blurry, bad exposure) are made here by pushing those knobs past what a usable photo shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from model.taxonomy import PhotoQuality
from training.synth.devices import Flat
from training.synth.geometry import apply_h, camera_homography

if TYPE_CHECKING:
    from model.manifest import ManifestRecord


def scale3(img: np.ndarray, m: np.ndarray, gains=(1.0, 1.0, 1.0)) -> np.ndarray:
    """img (HxWx3 float32) times a per-pixel map m (HxW) and per-channel gains.

    cv2.multiply on a merged map is about 4x faster than numpy's `img * m[..., None]` broadcast,
    and this runs on every full-size photo several times.
    """
    m = m.astype(np.float32, copy=False)
    return cv2.multiply(img.astype(np.float32, copy=False), cv2.merge([m * np.float32(g) for g in gains]))


MAX_TILT = 0.05  # at the half length; the local scale goes as 1/(1+t)^2 there, so up to about ±10%


@dataclass(frozen=True)
class Pose:
    ppm: float
    rotation: float
    tilt: tuple[float, float]
    out_centre: tuple[float, float]
    half_extent_mm: float

    def homography(self, flat: Flat) -> np.ndarray:
        return camera_homography(
            flat.centre, self.out_centre, self.rotation, self.tilt, self.half_extent_mm * self.ppm
        )


def choose_pose(
    rng: np.random.Generator, plane_mm: tuple[float, float], out_w: int, out_h: int, flat_tilt: bool = False
) -> Pose:
    """A camera pose that keeps the whole device in frame, filling 45-85% of the photo's limiting side."""
    wmm, hmm = plane_mm
    r = rng.random()
    if r < 0.5:
        rotation = rng.normal(0, 0.12)
    elif r < 0.7:
        rotation = math.pi / 2 * rng.choice([-1, 1]) + rng.normal(0, 0.1)
    else:
        rotation = rng.uniform(-math.pi, math.pi)
    tilt = (0.0, 0.0) if flat_tilt else tuple(float(t) for t in rng.uniform(-MAX_TILT, MAX_TILT, 2))
    half = max(wmm, hmm) / 2
    corners = np.array([[-wmm / 2, -hmm / 2], [wmm / 2, -hmm / 2], [wmm / 2, hmm / 2], [-wmm / 2, hmm / 2]])
    # The projected outline scales linearly with ppm (tilt is relative to the half extent), so measure at 1.
    h1 = camera_homography((0.0, 0.0), (0.0, 0.0), rotation, tilt, half)
    q = apply_h(h1, corners)
    bw, bh = np.ptp(q[:, 0]), np.ptp(q[:, 1])
    fill = rng.uniform(0.45, 0.85)
    ppm = fill * min(out_w / bw, out_h / bh)
    qc = q * ppm
    # hand-held framing: the device lands anywhere that keeps it inside the photo
    lo_x, hi_x = -qc[:, 0].min() + 2, out_w - qc[:, 0].max() - 2
    lo_y, hi_y = -qc[:, 1].min() + 2, out_h - qc[:, 1].max() - 2
    cx = rng.uniform(lo_x, hi_x) if hi_x > lo_x else out_w / 2
    cy = rng.uniform(lo_y, hi_y) if hi_y > lo_y else out_h / 2
    return Pose(float(ppm), float(rotation), tilt, (float(cx), float(cy)), float(half))


def light_flat(flat: Flat, rng: np.random.Generator, light_angle: float) -> dict:
    """Shade the flat device in place: a broad gradient along the light, a specular band on glossy parts."""
    h, w = flat.zone.shape
    cx, cy = flat.centre
    half = max(h, w) / 2
    xs = (np.arange(w, dtype=np.float32) - cx) / half
    ys = (np.arange(h, dtype=np.float32) - cy) / half
    g = float(rng.uniform(0.0, 0.25))
    grad = np.float32(1.0) + np.float32(g) * (
        xs[None, :] * np.float32(math.cos(light_angle)) + ys[:, None] * np.float32(math.sin(light_angle))
    )
    flat.rgb = scale3(flat.rgb, grad)
    # glare: a soft band where the light source mirrors in the surface
    band_angle = rng.uniform(0, math.pi)
    off = rng.uniform(-0.8, 0.8)
    dist = xs[None, :] * math.cos(band_angle) + ys[:, None] * math.sin(band_angle) - off
    width = rng.uniform(0.05, 0.35)
    strength = float(rng.uniform(0.0, 0.45)) if rng.random() < 0.8 else 0.0
    glare = (strength * np.exp(-((dist / width) ** 2)) * flat.gloss).astype(np.float32)
    flat.rgb = cv2.add(flat.rgb, cv2.merge([glare * np.float32(c) for c in (1.0, 0.99, 0.97)]))
    np.clip(flat.rgb, 0, 1, out=flat.rgb)
    return {"light_gradient": round(g, 3), "glare": round(strength, 3)}


def warp_layers(
    flat: Flat, hmat: np.ndarray, out_w: int, out_h: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Premultiplied colour, coverage and zone map of the device in photo pixels."""
    pre = scale3(flat.rgb, flat.alpha)
    rgb = cv2.warpPerspective(pre, hmat, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=0)
    alpha = cv2.warpPerspective(flat.alpha, hmat, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=0)
    zone = cv2.warpPerspective(flat.zone, hmat, (out_w, out_h), flags=cv2.INTER_NEAREST, borderValue=0)
    zone[alpha < 0.5] = 0  # the zone map and the device's visible outline agree
    return rgb, alpha, zone


def cast_shadow(bg: np.ndarray, alpha: np.ndarray, rng: np.random.Generator, light_angle: float) -> None:
    """Darken the background under and beside the device (blurred at quarter resolution: it is soft)."""
    h, w = alpha.shape
    sw, sh = max(4, w // 4), max(4, h // 4)
    small = cv2.resize(alpha, (sw, sh), interpolation=cv2.INTER_AREA)
    d = rng.uniform(0.005, 0.03) * max(w, h) / 4
    m = np.float32([[1, 0, -d * math.cos(light_angle)], [0, 1, -d * math.sin(light_angle)]])
    small = cv2.warpAffine(small, m, (sw, sh))
    small = cv2.GaussianBlur(small, (0, 0), max(0.8, rng.uniform(0.006, 0.025) * max(sw, sh)))
    shadow = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    bg[:] = scale3(bg, 1.0 - rng.uniform(0.25, 0.6) * shadow)


@cache
def _radius2(h: int, w: int) -> np.ndarray:
    """Squared distance from the photo centre, 1 at the middle of each edge (for vignetting)."""
    yy = (np.arange(h, dtype=np.float32) - h / 2) / (h / 2)
    xx = (np.arange(w, dtype=np.float32) - w / 2) / (w / 2)
    return yy[:, None] ** 2 + xx[None, :] ** 2


@cache
def _noise_bank(h: int, w: int) -> np.ndarray:
    """Fixed-seed sensor-noise field (a process-local cache: drawing it per photo costs more than the
    rest of the sensor). Photos take random windows of it, so the noise is still different per photo."""
    return np.random.default_rng(7).normal(0, 1, (h + 64, w + 64, 3)).astype(np.float32)


def sensor(
    img: np.ndarray, rng: np.random.Generator, quality: PhotoQuality, scale: float
) -> tuple[np.ndarray, dict]:
    """Camera and sensor effects; `scale` = photo long side / 512 (blur sizes grow with resolution)."""
    h, w = img.shape[:2]
    meta: dict = {}
    wb = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    gain = float(rng.uniform(0.8, 1.15))
    if quality is PhotoQuality.BAD_EXPOSURE:
        gain = float(rng.uniform(0.1, 0.25)) if rng.random() < 0.6 else float(rng.uniform(2.4, 4.0))
    meta["exposure"] = round(gain, 3)
    # white balance, exposure and vignetting in one pass over the photo
    v = float(rng.uniform(0.0, 0.35))
    falloff = 1.0 - (v * 0.5) * _radius2(h, w)
    img = scale3(img.astype(np.float32, copy=False), falloff, wb * gain)
    blur = "none"
    if quality is PhotoQuality.BLURRY:
        if rng.random() < 0.5:
            sigma = float(rng.uniform(3.0, 6.0) * scale)
            img = cv2.GaussianBlur(img, (0, 0), sigma)
            blur = f"defocus:{sigma:.1f}"
        else:
            img, blur = _motion(img, rng, float(rng.uniform(12, 28) * scale))
    else:
        r = rng.random()
        if r < 0.35:
            sigma = float(rng.uniform(0.3, 0.8) * scale)
            img = cv2.GaussianBlur(img, (0, 0), sigma)
            blur = f"defocus:{sigma:.1f}"
        elif r < 0.45:
            img, blur = _motion(img, rng, float(rng.uniform(1.5, 3.0) * scale))
    meta["blur"] = blur
    sigma_n = float(rng.uniform(0.004, 0.02))
    if quality is PhotoQuality.BAD_EXPOSURE and gain < 1:
        sigma_n *= 2.5  # dark photos are pushed in the camera: noisier
    bank = _noise_bank(h, w)
    oy, ox = int(rng.integers(64)), int(rng.integers(64))
    img = cv2.scaleAdd(bank[oy : oy + h, ox : ox + w], sigma_n, img.astype(np.float32, copy=False))
    meta["noise"] = round(sigma_n, 4)
    _, img = cv2.threshold(img, 0.0, 0.0, cv2.THRESH_TOZERO)  # negatives -> 0 (convertScaleAbs takes |x|)
    return cv2.convertScaleAbs(img, alpha=255.0), meta  # rounds and saturates at 255


def _motion(img: np.ndarray, rng: np.random.Generator, length: float) -> tuple[np.ndarray, str]:
    n = max(3, round(length) | 1)
    k = np.zeros((n, n), np.float32)
    k[n // 2, :] = 1.0
    ang = float(rng.uniform(0, 180))
    k = cv2.warpAffine(k, cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), ang, 1.0), (n, n))
    k /= max(k.sum(), 1e-6)
    return cv2.filter2D(img, -1, k), f"motion:{length:.0f}px@{ang:.0f}"


def load_rgb(path, max_side: int | None = None) -> np.ndarray:
    """A real photo as H x W x 3 uint8 RGB, turned upright by its EXIF orientation and, with `max_side`,
    shrunk to fit it (the copies `degrade`, `reformat` and `jitter` make of real photos start here)."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        if max_side is not None:
            im.thumbnail((max_side, max_side))
        return np.asarray(im)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def save_copy(
    out: Path,
    index: int,
    src: ManifestRecord,
    rgb: np.ndarray,
    quality: int,
    suffix: str,
    meta: dict,
    **update,
) -> ManifestRecord:
    """A copy of the real photo of `src` written as `out/images/<index>.jpg` (JPEG `quality`), and its
    record: `src`'s, with the new image and size, `suffix` on its device id (grouped with its original,
    `training.dataset.COPY_SUFFIXES`), `meta` added to its own with where it came from, and `update`."""
    name = f"images/{index:06d}.jpg"
    (out / name).write_bytes(encode_jpeg(rgb, quality))
    fields = {
        "image": name,
        "device_id": f"{src.device_id}{suffix}",
        "width": rgb.shape[1],
        "height": rgb.shape[0],
    }
    return src.model_copy(update=fields | update | {"meta": {**src.meta, "from": src.image, **meta}})
