"""Measuring in the device's plane (model/plane.py, extract_instances(plane=...)): a known tilted
rectangle's outline gives back the homography, and lengths through it are the lengths on the device."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from model.card import Thresholds
from model.catalogue import devices, lookup_device
from model.outputs import DEFECT_CHANNELS, ZONE_CHANNELS
from model.plane import DevicePlane, device_quad, fit_device_plane, plane_size_mm, view_share
from model.postprocess import Scale, extract_instances
from model.preprocess import Letterbox
from model.strokes import split_strokes
from model.taxonomy import DeviceKind, View

SIDE = 600  # photo pixels


def _camera(long_mm: float, short_mm: float, ppm: float, tilt=(0.04, -0.03), rotation=0.3) -> np.ndarray:
    """Device mm (origin at the rectangle's centre) -> photo pixels: rotate, a perspective that is zero
    at the centre (the generator's camera: exactly 1/ppm mm a pixel there), into the photo's middle."""
    c, s = math.cos(rotation), math.sin(rotation)
    half = max(long_mm, short_mm) / 2 * ppm
    scale = np.diag([ppm, ppm, 1.0])
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    persp = np.array([[1, 0, 0], [0, 1, 0], [tilt[0] / half, tilt[1] / half, 1]])
    shift = np.array([[1, 0, SIDE / 2], [0, 1, SIDE / 2], [0, 0, 1]])
    return shift @ persp @ rot @ scale


def _apply(h: np.ndarray, pts) -> np.ndarray:
    p = np.concatenate([np.asarray(pts, float), np.ones((len(pts), 1))], axis=1) @ h.T
    return p[:, :2] / p[:, 2:3]


def _rounded_rect(long_mm, short_mm, radius_mm, n=24) -> np.ndarray:
    hx, hy, r = long_mm / 2, short_mm / 2, radius_mm
    pts = []
    for cx, cy, a0 in (
        (hx - r, -hy + r, -90),
        (hx - r, hy - r, 0),
        (-hx + r, hy - r, 90),
        (-hx + r, -hy + r, 180),
    ):
        for t in np.linspace(0, 90, n):
            a = math.radians(a0 + t)
            pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return np.array(pts)


def _device_mask(h, long_mm, short_mm, radius_mm) -> np.ndarray:
    poly = _apply(h, _rounded_rect(long_mm, short_mm, radius_mm))
    m = np.zeros((SIDE, SIDE), np.uint8)
    cv2.fillPoly(m, [np.round(poly * 16).astype(np.int32)], 1, shift=4)
    return m


@pytest.mark.parametrize(
    "long_mm, short_mm, radius_mm",
    [(150.0, 72.0, 9.0), (160.0, 8.0, 4.0)],  # a phone's back, and a side view (a stadium)
)
def test_a_tilted_rounded_rectangle_gives_back_its_homography(long_mm, short_mm, radius_mm):
    ppm = 3.2
    h = _camera(long_mm, short_mm, ppm)
    plane = fit_device_plane(_device_mask(h, long_mm, short_mm, radius_mm), (long_mm, short_mm))
    assert plane is not None and plane.size_mm == (long_mm, short_mm)
    # A line along the device, near its far end, where the camera's scale is off the centre's.
    a, b = np.array([[-0.45 * long_mm, -0.3 * short_mm], [-0.1 * long_mm, -0.3 * short_mm]])
    true = float(np.hypot(*(b - a)))
    pa, pb = _apply(h, [a, b])
    one_scale = float(np.hypot(*(pb - pa))) / ppm  # one mm/px for the photo: exact only at the centre
    in_plane = plane.length(np.array([[pa, pb]]))
    assert abs(one_scale / true - 1) > 0.01
    assert in_plane == pytest.approx(true, rel=0.004)


def test_device_quad_corners_are_the_sharp_rectangle_s():
    h = _camera(120.0, 60.0, 4.0)
    quad = device_quad(_device_mask(h, 120.0, 60.0, 10.0))
    true = _apply(h, [[-60, -30], [60, -30], [60, 30], [-60, 30]])
    nearest = np.min(np.hypot(*(quad[:, None, :] - true[None]).transpose(2, 0, 1)), axis=1)
    # Pixels, on corners rounded off by 40 px (cv2's polygon fill is about 0.4 px fat on every side).
    assert nearest.max() < 1.5


def test_a_notch_in_the_outline_does_not_tilt_its_side():
    # A chip or dent on the edge is drawn as background: the outline is no longer convex there.
    long_mm, short_mm, ppm = 160.0, 8.0, 3.4  # a side view, where a notch spans much of the strip
    h = _camera(long_mm, short_mm, ppm)
    mask = _device_mask(h, long_mm, short_mm, 4.0)
    whole = fit_device_plane(mask, (long_mm, short_mm))
    notch = _apply(h, [[30.0, 4.5], [36.0, 1.0], [42.0, 4.5]])
    cv2.fillPoly(mask, [np.round(notch).astype(np.int32)], 0)
    notched = fit_device_plane(mask, (long_mm, short_mm))
    pts = _apply(h, [[-75.0, 0.0], [75.0, 0.0], [0.0, -3.0], [0.0, 3.0]])
    for plane in (whole, notched):
        assert plane.length(np.array([pts[:2]])) == pytest.approx(150.0, rel=0.004)
        assert plane.length(np.array([pts[2:]])) == pytest.approx(6.0, rel=0.05)


def test_jacobian_and_lengths_through_a_plane():
    h = np.array([[0.1, 0.02, 3.0], [-0.01, 0.12, 1.0], [1e-4, -2e-4, 1.0]])
    plane = DevicePlane(h)
    p = np.array([150.0, 80.0])
    eps = 1e-4
    numeric = np.stack(
        [
            (plane.to_mm(p + d)[0] - plane.to_mm(p - d)[0]) / (2 * eps)
            for d in (np.array([eps, 0]), np.array([0, eps]))
        ],
        axis=1,
    )
    assert plane.jacobian(p) == pytest.approx(numeric, rel=1e-5)
    seg = np.array([[[10.0, 10.0], [200.0, 40.0]], [[200.0, 40.0], [220.0, 60.0]]])
    both = plane.length(seg)
    assert plane.length(seg, np.array([1.0, -1.0])) == pytest.approx(both - 2 * plane.length(seg[1:]))


def test_plane_size_follows_the_view():
    phone = lookup_device("iPhone 15")
    assert plane_size_mm(phone, View.BACK) == (phone.length, phone.width)
    assert plane_size_mm(phone, View.LEFT) == (phone.length, phone.depth)
    assert plane_size_mm(phone, "top") == (phone.width, phone.depth)


def test_view_share_is_the_shown_side_over_the_length():
    phone = lookup_device("iPhone 15")
    for view in (View.FRONT, View.BACK, None, View.LEFT, View.RIGHT):
        assert view_share(view, DeviceKind.PHONE, phone.name) == 1.0
    assert view_share("top", "phone", phone.name) == pytest.approx(phone.width / phone.length)
    assert view_share(View.BOTTOM, "phone", "iphone 15") == pytest.approx(phone.width / phone.length)
    laptop = next(s for s in devices() if s.kind is DeviceKind.LAPTOP)
    assert view_share(View.TOP, "laptop", laptop.name) == 1.0  # a laptop's back edge is its length
    assert view_share(View.LEFT, "laptop", laptop.name) == pytest.approx(laptop.width / laptop.length)


def test_view_share_without_a_known_model_is_the_kind_s_typical_one():
    phones = [s.width / s.length for s in devices() if s.kind is DeviceKind.PHONE]
    typical = view_share(View.TOP, DeviceKind.PHONE)
    assert min(phones) <= typical <= max(phones) and typical == pytest.approx(float(np.median(phones)))
    assert view_share(View.TOP, DeviceKind.PHONE, "no such phone 9000") == typical
    assert view_share(View.RIGHT, DeviceKind.TABLET) == 1.0


def test_plane_size_matches_the_generator_s_plane():
    from training.synth.devices import sample_design

    rng = np.random.default_rng(0)
    for spec in devices()[::7]:
        for view in View:
            design = sample_design(rng, spec, view)
            w, h = design.plane_mm()
            assert plane_size_mm(spec, view) == (max(w, h), min(w, h))


def test_stroke_pieces_sum_to_its_length_along_the_line():
    m = np.zeros((200, 200), np.uint8)  # two lines crossing (tests/model/test_strokes.py's)
    cv2.line(m, (20, 100), (180, 100), 1, 3)
    cv2.line(m, (60, 20), (140, 180), 1, 3)
    single = np.zeros((200, 200), np.uint8)
    cv2.line(single, (20, 30), (180, 90), 1, 3)
    for mask, ends in ((m, "half_width"), (single, "centre")):
        strokes = split_strokes(mask, ends=ends)
        assert len(strokes) == (2 if ends == "half_width" else 1)
        for s in strokes:
            pieces = np.hypot(*(s.segments[:, 1] - s.segments[:, 0]).T)
            assert float((s.signs * pieces).sum()) == pytest.approx(s.length)
            # Every piece ends on the line (or on its edge: a tip is where the mask ends).
            xy = np.clip(np.round(s.segments.reshape(-1, 2)).astype(int), 0, 199)
            assert cv2.dilate(mask, np.ones((3, 3), np.uint8))[xy[:, 1], xy[:, 0]].all()


def _maps(h_photo: np.ndarray, scratch_mm, long_mm, short_mm, width_px=2):
    """A device seen through `h_photo` with one scratch (device mm, two points), as perfect maps."""
    zone = _device_mask(h_photo, long_mm, short_mm, 6.0)
    line = np.zeros((SIDE, SIDE), np.uint8)
    a, b = _apply(h_photo, scratch_mm)
    cv2.line(line, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)), 1, width_px)
    defects = np.zeros((len(DEFECT_CHANNELS), SIDE, SIDE), np.float32)
    defects[DEFECT_CHANNELS.index("scratch")] = line
    zones = np.zeros((len(ZONE_CHANNELS), SIDE, SIDE), np.float32)
    zones[0] = zone == 0
    zones[ZONE_CHANNELS.index("body")] = zone > 0
    return defects, zones, zone


def test_extract_instances_measures_in_the_device_plane_when_asked():
    long_mm, short_mm, ppm = 150.0, 72.0, 3.6
    h = _camera(long_mm, short_mm, ppm, tilt=(0.05, 0.0), rotation=0.0)
    scratch = np.array([[-70.0, 0.0], [-40.0, 0.0]])  # 30 mm near the end nearer the camera
    defects, zones, zone = _maps(h, scratch, long_mm, short_mm)
    lb = Letterbox(1.0, 0, 0, SIDE, SIDE)
    thr = Thresholds(defect_pixel={n: 0.5 for n in DEFECT_CHANNELS}, min_instance_confidence=0.0)
    scale = Scale("mm", 1.0 / ppm, True)
    plane = fit_device_plane(zone, (long_mm, short_mm))

    def length(**kw):
        (inst,) = [i for i in extract_instances(defects, zones, lb, thr, scale, SIDE, measure="fine", **kw)]
        return inst.measurement

    one, default, in_plane = length(), length(plane=None), length(plane=plane)
    assert default == one  # off by default: nothing changes
    assert one.length / 30.0 - 1 > 0.05  # one mm/px for the photo reads it long
    assert in_plane.units == "mm" and in_plane.length == pytest.approx(30.0, rel=0.015)
    assert in_plane.area < one.area  # there, a pixel is less of the device than at its centre
