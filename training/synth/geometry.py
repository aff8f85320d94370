"""Plane geometry for the synthetic generator: rounded outlines, curves with exact arc length, homographies.

Everything here works in "flat" pixel coordinates (the device plane, before the camera's perspective),
where one pixel is exactly 1/ppm millimetres. Polygons are float (N, 2) arrays of x, y.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

SHIFT = 4  # cv2 sub-pixel bits: fillPoly/polylines take coordinates * 16, so edges land between pixels
ONE = 1 << SHIFT


def to_cv(points: np.ndarray) -> np.ndarray:
    """Float (N, 2) points -> int32 points in cv2's fixed-point format (use with shift=SHIFT)."""
    return np.round(np.asarray(points, dtype=np.float64) * ONE).astype(np.int32)


def rounded_rect(cx: float, cy: float, w: float, h: float, r: float, per_corner: int = 10) -> np.ndarray:
    """Outline of a w x h rectangle centred at (cx, cy) with corner radius r, clockwise in image axes."""
    r = max(0.0, min(r, w / 2, h / 2))
    hw, hh = w / 2, h / 2
    if r < 1e-6:
        return np.array([[cx - hw, cy - hh], [cx + hw, cy - hh], [cx + hw, cy + hh], [cx - hw, cy + hh]])
    pts = []
    # corner centres, and the start angle of each quarter arc (image y points down)
    corners = [
        (cx + hw - r, cy - hh + r, -90),
        (cx + hw - r, cy + hh - r, 0),
        (cx - hw + r, cy + hh - r, 90),
        (cx - hw + r, cy - hh + r, 180),
    ]
    for ccx, ccy, a0 in corners:
        for t in np.linspace(0, 90, per_corner):
            a = math.radians(a0 + t)
            pts.append((ccx + r * math.cos(a), ccy + r * math.sin(a)))
    return np.array(pts, dtype=np.float64)


def ellipse_poly(cx: float, cy: float, a: float, b: float, angle: float = 0.0, n: int = 24) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x, y = a * np.cos(t), b * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def blob_poly(
    rng: np.random.Generator, cx: float, cy: float, a: float, b: float, angle: float, roughness: float, n=20
) -> np.ndarray:
    """An irregular, star-shaped blob around (cx, cy): an ellipse with smooth radial noise."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    # a few low harmonics keep the outline smooth (stains and oil have soft, rounded shapes)
    r = np.ones(n)
    for k in (2, 3, 5):
        r += roughness / k * rng.normal() * np.cos(k * t + rng.uniform(0, 2 * math.pi))
    r = np.clip(r, 0.35, 1.8)
    x, y = a * r * np.cos(t), b * r * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polyline_length(points: np.ndarray) -> float:
    return float(np.sum(np.hypot(*np.diff(points, axis=0).T))) if len(points) > 1 else 0.0


def extent(poly: np.ndarray) -> tuple[float, float]:
    """Length and width of the minimum-area rectangle around a point set (the postprocessing's measure)."""
    (_, _), (w, h), _ = cv2.minAreaRect(np.asarray(poly, dtype=np.float32))
    return max(w, h), min(w, h)


def bezier(p0, p1, p2, p3, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2, p3 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2, p3))
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def curve_of_length(
    rng: np.random.Generator, start: np.ndarray, direction: float, length: float, bend: float
) -> np.ndarray:
    """A smooth curve from `start` whose arc length is exactly `length` (pixels).

    A cubic Bézier with random control offsets (`bend` = how far they leave the chord, as a fraction of
    it), sampled densely and then rescaled about `start` so that its polyline length equals `length`.
    The returned polyline is what gets drawn, so the recorded length is the drawn length.
    """
    d = np.array([math.cos(direction), math.sin(direction)])
    nrm = np.array([-d[1], d[0]])
    chord = 1.0
    p0 = np.zeros(2)
    p3 = d * chord
    p1 = d * chord / 3 + nrm * rng.normal(0, bend)
    p2 = d * 2 * chord / 3 + nrm * rng.normal(0, bend)
    n = max(8, min(200, int(length / 1.5) + 2))
    pts = bezier(p0, p1, p2, p3, n)
    pts *= length / polyline_length(pts)
    return pts + start


def jagged_path(rng: np.random.Generator, start, direction: float, length: float, step: float, wiggle: float):
    """A crack-like path: straight-ish steps with small random turns; exact polyline, returned as drawn."""
    pts = [np.asarray(start, dtype=np.float64)]
    heading = direction
    travelled = 0.0
    while travelled < length - 1e-9:
        s = min(step * rng.uniform(0.6, 1.4), length - travelled)
        heading += rng.normal(0, wiggle)
        pts.append(pts[-1] + s * np.array([math.cos(heading), math.sin(heading)]))
        travelled += s
    return np.array(pts)


def camera_homography(
    flat_centre: tuple[float, float],
    out_centre: tuple[float, float],
    rotation: float,
    tilt: tuple[float, float],
    half_extent: float,
) -> np.ndarray:
    """Flat device plane -> photo: rotate about the device centre, tilt (mild perspective), translate.

    The perspective row is applied after the rotation and is zero at the device centre, so the Jacobian
    there is a pure rotation: the scale at the device centre stays exactly 1/ppm mm per pixel, and the
    recorded `mm_per_px` is exact there (and within the tilt, a few percent, elsewhere). `tilt` is the
    relative foreshortening at `half_extent` pixels from the centre along the photo's x and y.
    """
    cx, cy = flat_centre
    t1 = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=np.float64)
    c, s = math.cos(rotation), math.sin(rotation)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)
    persp = np.array([[1, 0, 0], [0, 1, 0], [tilt[0] / half_extent, tilt[1] / half_extent, 1]])
    t2 = np.array([[1, 0, out_centre[0]], [0, 1, out_centre[1]], [0, 0, 1]], dtype=np.float64)
    return t2 @ persp @ rot @ t1


def apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, dtype=np.float64)
    p = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ h.T
    return p[:, :2] / p[:, 2:3]
