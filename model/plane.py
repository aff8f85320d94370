"""Measuring in the device's plane, torch-free: the photo -> device-rectangle homography from its outline.

One mm per pixel for a whole photo is exact only where the camera's scale is: a tilted device's near
side is larger in the photo than its far side, so a scratch near an edge of a tilted phone reads
several percent long or short (docs/fine-pass.md: 0.8% median error on untilted photos, 3.1% on
photos tilted more than 0.03). The device itself is a rectangle of known size (the catalogue), and
its outline in the photo is that rectangle seen through the camera: the homography that maps the
outline's four corners to the rectangle's, in mm, maps every point of the photo's device to where it
lies on the device, so a length measured through it is the length on the device.

`device_quad` finds the four corners of the outline. Devices have rounded corners (and side views are
stadiums, their ends half circles), so the corners are not points of the outline: each side is a
straight line fitted to the middle of that side (a rounded rectangle's sides are straight there), or
where the middle is curved (a stadium's end) the line in that direction through the outline's
farthest point (a supporting line, tangent at the apex); the corners are where consecutive sides meet.
A homography keeps lines and tangency, so those lines are the images of the sharp rectangle's sides.

`DevicePlane` maps photo pixels to mm on the device and measures through the mapping: a polyline's
length (each straight piece maps to a straight piece, so that is exact), and the local scale (the
Jacobian) along a direction or per unit area, for what is measured in pixels and not as points.
`plane_size_mm` is which of the catalogue's outer dimensions a view shows, and `view_share` the long side
a view shows as a share of the device's length: the length every photo's scale is given in
(`model.postprocess.estimate_scale`) is the device's longest side, which a phone's top or bottom edge
does not show (it runs along the width, half the length).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from model.catalogue import DeviceSpec, UnknownDeviceError, devices, lookup_device
from model.taxonomy import DeviceKind, View

# Each side's direction is fitted to the middle of the side (this share of it): rounded corners bend
# away from the side line over a corner radius, at most a quarter of a side on the catalogue's devices.
SIDE_FIT_SHARE = 0.5
# The supporting line is looked for on the side less this share at each end (the neighbouring side's
# corner arc is inside anyway; the margin keeps a point assigned to the wrong side out).
SIDE_SUPPORT_MARGIN = 0.1
FIT_ITERATIONS = 3
# Outline points farther than this inside the outline's convex hull are in a notch (`_largest_contour`).
HULL_TOLERANCE_PX = 1.5
# A side whose middle points lie within this RMS (pixels) of their line is straight: the line through
# them is its side (a pixel staircase is about 0.3 px RMS); farther, it is curved and supported at its apex.
STRAIGHT_RMS_PX = 0.75


def plane_size_mm(spec: DeviceSpec, view: View | str | None) -> tuple[float, float]:
    """(long, short) outer sides in mm of the face a photo of `view` shows: front and back the length
    by the width; a side view the side's length by the depth: left and right run along the length of a
    phone or tablet and along the depth (the catalogue's width) of a laptop, top and bottom the other
    way (the generator's convention, `training.synth.devices.Design.plane_mm`)."""
    view = View(view) if view is not None else View.FRONT
    if view in (View.FRONT, View.BACK):
        return spec.length, spec.width
    along_length = view in (View.LEFT, View.RIGHT)
    if spec.kind is DeviceKind.LAPTOP:
        along_length = not along_length
    side = spec.length if along_length else spec.width
    return max(side, spec.depth), min(side, spec.depth)


def view_share(view: View | str | None, kind: DeviceKind | str, model_name: str | None = None) -> float:
    """The long side a photo of `view` shows (`plane_size_mm`), as a share of the device's length: 1 for
    the front and the back, about 0.48 for a phone's top or bottom edge, 0.72 for a tablet's, 0.70 for a
    laptop's left or right side. Of the catalogue's `model_name` where it names one, else the median
    over the catalogue's devices of `kind` (sizes measured without a named model are typical too)."""
    view = View(view) if view is not None else View.FRONT
    if view in (View.FRONT, View.BACK):
        return 1.0
    if model_name:
        try:
            spec = lookup_device(model_name)
        except UnknownDeviceError:
            spec = None
        if spec is not None:
            return plane_size_mm(spec, view)[0] / spec.length
    return _typical_share(view, DeviceKind(kind))


@cache
def _typical_share(view: View, kind: DeviceKind) -> float:
    specs = [s for s in devices() if s.kind is kind]
    if not specs:
        return 1.0
    return float(np.median([plane_size_mm(s, view)[0] / s.length for s in specs]))


def _largest_contour(mask: np.ndarray) -> np.ndarray | None:
    """The outline points of the largest region of `mask` that lie on its convex hull: a device is
    convex (and stays so through a camera), so a notch in its outline is a defect (a chip or a dent on
    the edge, drawn as background) or a segmentation error, and would tilt the side it is on."""
    m = (np.asarray(mask) > 0).astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea)
    if len(c) < 8:
        return None
    hull = cv2.convexHull(c).astype(np.float32)
    inside = np.array([cv2.pointPolygonTest(hull, (float(x), float(y)), True) for x, y in c[:, 0, :]])
    pts = c[:, 0, :].astype(np.float64)
    on_hull = inside <= HULL_TOLERANCE_PX
    return pts[on_hull] if on_hull.sum() >= 8 else pts


def _intersect(p: np.ndarray, d: np.ndarray, q: np.ndarray, e: np.ndarray) -> np.ndarray | None:
    """Where the line p + s d meets the line q + t e (None when they are parallel)."""
    a = np.array([d, -e]).T
    if abs(np.linalg.det(a)) < 1e-12:
        return None
    s, _ = np.linalg.solve(a, q - p)
    return p + s * d


def device_quad(mask: np.ndarray, edge_px: float = 0.5) -> np.ndarray | None:
    """The four corners (4, 2: x, y in `mask`'s pixel indices, in order around the outline) of the
    sharp-cornered quadrilateral whose sides support the largest region of `mask` (see the module
    docstring); None without a region to fit. `edge_px`: how far outside the outermost pixel centres
    the outline lies (a binary mask's edge is half a pixel beyond its boundary pixels' centres)."""
    pts = _largest_contour(mask)
    if pts is None:
        return None
    centre = pts.mean(axis=0)
    quad = cv2.boxPoints(cv2.minAreaRect(pts.astype(np.float32))).astype(np.float64)
    for _ in range(FIT_ITERATIONS):
        # Each outline point belongs to the side of the current quad it is nearest to.
        dist = np.empty((len(pts), 4))
        params = np.empty((len(pts), 4))
        for i in range(4):
            a, b = quad[i], quad[(i + 1) % 4]
            ab = b - a
            t = ((pts - a) @ ab) / max(float(ab @ ab), 1e-12)
            params[:, i] = t
            closest = a + np.clip(t, 0, 1)[:, None] * ab
            dist[:, i] = np.hypot(*(pts - closest).T)
        side_of = dist.argmin(axis=1)
        lines = []
        for i in range(4):
            own = side_of == i
            t = params[own, i]
            mid = own.copy()
            mid[own] = np.abs(t - 0.5) <= SIDE_FIT_SHARE / 2
            if mid.sum() < 2:
                return None
            vx, vy, _, _ = cv2.fitLine(pts[mid].astype(np.float32), cv2.DIST_L2, 0, 0.01, 0.01).ravel()
            d = np.array([vx, vy], np.float64)
            d /= np.hypot(*d)
            normal = np.array([d[1], -d[0]])
            if (quad[i] + quad[(i + 1) % 4]) / 2 @ normal < centre @ normal:
                normal = -normal  # outward
            # A straight side (a rounded rectangle's): the line through its middle points; a curved one
            # (a stadium's end): the supporting line at its apex.
            along_mid = pts[mid] @ normal
            offset = float(along_mid.mean())
            if float(np.sqrt(np.mean((along_mid - offset) ** 2))) > STRAIGHT_RMS_PX:
                support = own.copy()
                support[own] = (t >= SIDE_SUPPORT_MARGIN) & (t <= 1 - SIDE_SUPPORT_MARGIN)
                offset = float(np.max(pts[support if support.any() else mid] @ normal))
            lines.append(((offset + edge_px) * normal, d))
        new = []
        for i in range(4):
            corner = _intersect(*lines[i - 1], *lines[i])
            if corner is None:
                return None
            new.append(corner)
        quad = np.array(new)
    return quad


def plane_homography(quad: np.ndarray, size_mm: tuple[float, float]) -> np.ndarray:
    """The 3x3 homography from the pixels of `quad` (four corners in order around the outline) to the
    device's rectangle in mm (origin at a corner): the quad's longer pair of opposite sides goes to the
    rectangle's long sides. Lengths do not depend on which corner is the origin, nor on mirroring."""
    q = np.asarray(quad, np.float64)
    long_mm, short_mm = max(size_mm), min(size_mm)
    sides = np.hypot(*(np.roll(q, -1, axis=0) - q).T)
    if sides[0] + sides[2] < sides[1] + sides[3]:
        q = np.roll(q, -1, axis=0)  # q[0] -> q[1] is a long side
    dst = np.array([[0, 0], [long_mm, 0], [long_mm, short_mm], [0, short_mm]], np.float64)
    h, _ = cv2.findHomography(q, dst, 0)
    return h


@dataclass(frozen=True)
class DevicePlane:
    """Photo pixels (x, y: pixel indices of the original photo) -> mm on the device's plane."""

    h: np.ndarray  # 3x3
    size_mm: tuple[float, float] | None = None  # (long, short): the rectangle `h` maps the outline to

    def to_mm(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) photo points -> (N, 2) points on the device, mm."""
        p = np.asarray(xy, np.float64).reshape(-1, 2)
        q = np.concatenate([p, np.ones((len(p), 1))], axis=1) @ self.h.T
        return q[:, :2] / q[:, 2:3]

    def jacobian(self, xy: np.ndarray) -> np.ndarray:
        """The 2x2 derivative of `to_mm` at one photo point: mm per pixel along x and y."""
        x, y = (float(v) for v in np.asarray(xy, np.float64).ravel()[:2])
        h = self.h
        w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
        u = (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / w
        v = (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / w
        return np.array(
            [
                [(h[0, 0] - u * h[2, 0]) / w, (h[0, 1] - u * h[2, 1]) / w],
                [(h[1, 0] - v * h[2, 0]) / w, (h[1, 1] - v * h[2, 1]) / w],
            ]
        )

    def scale_along(self, xy: np.ndarray, direction: np.ndarray) -> float:
        """mm per photo pixel at `xy` along `direction` (x, y; any length)."""
        d = np.asarray(direction, np.float64).ravel()[:2]
        n = math.hypot(*d)
        return float(np.hypot(*(self.jacobian(xy) @ (d / n)))) if n > 0 else self.scale(xy)

    def scale(self, xy: np.ndarray) -> float:
        """mm per photo pixel at `xy` averaged over directions: the square root of the area scale."""
        return math.sqrt(self.area_scale(xy))

    def area_scale(self, xy: np.ndarray) -> float:
        """mm^2 per photo pixel^2 at `xy`."""
        return abs(float(np.linalg.det(self.jacobian(xy))))

    def length(self, segments: np.ndarray, signs: np.ndarray | None = None) -> float:
        """Summed length in mm of straight pieces (M, 2, 2: each piece's two ends, photo pixels), each
        counted with its sign (+1 or -1; default +1). A straight piece maps to a straight piece."""
        s = np.asarray(segments, np.float64).reshape(-1, 2, 2)
        if not len(s):
            return 0.0
        a, b = self.to_mm(s[:, 0]), self.to_mm(s[:, 1])
        lengths = np.hypot(*(b - a).T)
        return float(lengths.sum() if signs is None else (np.asarray(signs, np.float64) * lengths).sum())


def fit_device_plane(mask: np.ndarray, size_mm: tuple[float, float], to_photo=None) -> DevicePlane | None:
    """The device's plane from a mask of the device (largest region) and its outer size in mm.
    `to_photo`: maps (N, 2) points from the mask's pixel indices to the original photo's (default: the
    mask is at the photo's pixels). None when no outline can be fitted."""
    quad = device_quad(mask)
    if quad is None:
        return None
    if to_photo is not None:
        quad = np.asarray(to_photo(quad), np.float64)
    return DevicePlane(plane_homography(quad, size_mm), (max(size_mm), min(size_mm)))
