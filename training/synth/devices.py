"""Procedural devices: a random design (shape, materials, colours, cameras) drawn flat, with its zone map.

A device is drawn on the "flat" device plane at `ppm` pixels per millimetre, axis-aligned, so every
pixel has a known size. The camera (photography.py) later warps these layers into the photo. Sizes
come from the device catalogue (`model.catalogue.devices()`); everything else (corner radius, bezels,
notch style, camera bump, materials) is sampled within ranges seen on real devices.

Orientation on the flat plane: phones and tablets portrait (catalogue `width` along x, `length` along y),
laptops landscape (`length` along x). Side views are a strip: the side's length along x, depth along y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from model.catalogue import DeviceSpec, devices
from model.taxonomy import DeviceKind, View, Zone
from training.synth.geometry import SHIFT, ellipse_poly, rounded_rect, to_cv

# Zone map values: 0 background, i+1 = i-th Zone member (the manifest contract).
ZONE_VALUE = {z: i + 1 for i, z in enumerate(Zone)}

# Colours, linear-ish RGB in 0..1. Bodies as sold (Apple/Samsung/Google palettes, roughly).
BODY_COLOURS = {
    "black": (0.07, 0.07, 0.08),
    "midnight": (0.11, 0.13, 0.18),
    "graphite": (0.26, 0.27, 0.29),
    "silver": (0.84, 0.85, 0.86),
    "white": (0.92, 0.92, 0.90),
    "gold": (0.88, 0.80, 0.66),
    "blue": (0.24, 0.34, 0.52),
    "sierra_blue": (0.62, 0.72, 0.82),
    "green": (0.33, 0.45, 0.38),
    "purple": (0.58, 0.53, 0.68),
    "red": (0.66, 0.08, 0.12),
    "pink": (0.93, 0.78, 0.80),
    "yellow": (0.95, 0.88, 0.55),
    "natural_titanium": (0.62, 0.60, 0.57),
}
FRAME_COLOURS = {
    "silver": (0.80, 0.81, 0.83),
    "graphite": (0.30, 0.31, 0.33),
    "black": (0.10, 0.10, 0.11),
    "gold": (0.85, 0.74, 0.55),
    "titanium": (0.58, 0.56, 0.53),
    "blue": (0.28, 0.36, 0.50),
}
LAPTOP_COLOURS = {
    "silver": (0.80, 0.81, 0.82),
    "space_grey": (0.40, 0.41, 0.43),
    "midnight": (0.14, 0.16, 0.20),
    "black_plastic": (0.10, 0.10, 0.11),
    "starlight": (0.86, 0.83, 0.77),
}
MATERIAL_GLOSS = {"glass": 1.0, "metal": 0.45, "plastic": 0.2}


@dataclass
class Design:
    """One device's look. All lengths in mm on the device plane."""

    spec: DeviceSpec
    view: View
    corner_mm: float
    rim_mm: float  # frame band visible around the front glass / back panel
    frame_colour: tuple[float, float, float]
    frame_name: str
    body_colour: tuple[float, float, float]
    body_name: str
    back_material: str  # glass / metal / plastic
    bezel_mm: float
    chin_mm: float  # extra bottom bezel (home-button phones, laptops)
    forehead_mm: float
    front_cam: str  # notch / island / punch / bezel / home
    glass_colour: tuple[float, float, float]  # bezel colour (black or white front glass)
    screen_on: bool
    wallpaper: tuple[tuple[float, float, float], tuple[float, float, float]]
    bump: str  # square / bar / vertical / single / none
    n_lenses: int
    seed: int  # for texture noise

    @property
    def kind(self) -> DeviceKind:
        return self.spec.kind

    def plane_mm(self) -> tuple[float, float]:
        """Width (x) and height (y) of the drawn plane in mm."""
        s = self.spec
        if self.view in (View.FRONT, View.BACK):
            return (s.length, s.width) if s.kind is DeviceKind.LAPTOP else (s.width, s.length)
        # Sides: left/right run along the length of phones/tablets, along the depth (width) of a laptop.
        along_length = self.view in (View.LEFT, View.RIGHT)
        if s.kind is DeviceKind.LAPTOP:
            along_length = not along_length
        return (s.length if along_length else s.width), s.depth

    def zone_material(self, zone: Zone) -> str:
        if zone is Zone.SCREEN or zone is Zone.CAMERA:
            return "glass"
        if zone is Zone.BODY:
            return self.back_material
        return "metal" if self.kind is not DeviceKind.LAPTOP or self.back_material == "metal" else "plastic"


@dataclass
class Flat:
    """The device drawn on the flat plane: colour, coverage, zones, gloss, and the outlines used later."""

    design: Design
    ppm: float  # pixels per mm on this plane
    rgb: np.ndarray  # float32 HxWx3, 0..1
    alpha: np.ndarray  # float32 HxW, anti-aliased coverage of the device
    zone: np.ndarray  # uint8 HxW, ZONE_VALUE or 0
    gloss: np.ndarray  # float32 HxW, how strongly the surface mirrors light (glare, reflections)
    outline: np.ndarray  # device outline polygon, flat px
    screen_poly: np.ndarray | None = None  # display area polygon (front views)
    glass_poly: np.ndarray | None = None  # front glass polygon (front views)
    extras: dict = field(default_factory=dict)

    @property
    def centre(self) -> tuple[float, float]:
        h, w = self.zone.shape
        return w / 2.0, h / 2.0


# The devices generator 2 draws from: the catalogue as it was when generator 2 was written
# (model/data/devices.yaml 2026.11.0). Models added to the catalogue since (older iPhones and Galaxy S
# models, 2026.12.0) are for users naming their device; drawing them too would change every synthetic
# set of a seed, and with it every baseline, so the next generator version takes them.
GENERATOR_DEVICES = frozenset(
    {
        "iPhone 16 Pro Max",
        "iPhone 16 Pro",
        "iPhone 16 Plus",
        "iPhone 16",
        "iPhone 15 Pro Max",
        "iPhone 15 Pro",
        "iPhone 15 Plus",
        "iPhone 15",
        "iPhone 14 Pro Max",
        "iPhone 14 Pro",
        "iPhone 14 Plus",
        "iPhone 14",
        "iPhone 13 Pro Max",
        "iPhone 13 Pro",
        "iPhone 13",
        "iPhone 13 mini",
        "iPhone 12 Pro Max",
        "iPhone 12 Pro",
        "iPhone 12",
        "iPhone 12 mini",
        "iPhone 11 Pro Max",
        "iPhone 11 Pro",
        "iPhone 11",
        "iPhone SE (3rd generation)",
        "iPhone XR",
        "Galaxy S24 Ultra",
        "Galaxy S24+",
        "Galaxy S24",
        "Galaxy S23 Ultra",
        "Galaxy S23+",
        "Galaxy S23",
        "Galaxy S22 Ultra",
        "Galaxy S22",
        "Galaxy S21",
        "Galaxy S21 FE",
        "Galaxy A55 5G",
        "Galaxy A54 5G",
        "Galaxy A53 5G",
        "Galaxy A35 5G",
        "Galaxy A34 5G",
        "Galaxy A15",
        "Galaxy A14",
        "Pixel 8 Pro",
        "Pixel 8",
        "Pixel 8a",
        "Pixel 7 Pro",
        "Pixel 7",
        "Pixel 7a",
        "Pixel 6 Pro",
        "Pixel 6",
        "iPad (10th generation)",
        "iPad (9th generation)",
        "iPad Air (5th generation)",
        "iPad Pro 11-inch (4th generation)",
        "iPad Pro 12.9-inch (6th generation)",
        "iPad mini (6th generation)",
        "MacBook Air 13-inch (M1, 2020)",
        "MacBook Air 13-inch (M2, 2022)",
        "MacBook Air 15-inch (M2, 2023)",
        "MacBook Pro 13-inch (M2, 2022)",
        "MacBook Pro 14-inch (M3, 2023)",
        "MacBook Pro 16-inch (M3, 2023)",
    }
)


def pick_spec(rng: np.random.Generator, kind: DeviceKind | None = None) -> DeviceSpec:
    """A device of the generator's own list (`GENERATOR_DEVICES`), in catalogue order."""
    specs = [d for d in devices() if d.name in GENERATOR_DEVICES and (kind is None or d.kind is kind)]
    return specs[int(rng.integers(len(specs)))]


def _choice(rng: np.random.Generator, options: dict):
    key = list(options)[int(rng.integers(len(options)))]
    return key, options[key]


def sample_design(rng: np.random.Generator, spec: DeviceSpec, view: View) -> Design:
    kind = spec.kind
    if kind is DeviceKind.LAPTOP:
        body_name, body = _choice(rng, LAPTOP_COLOURS)
        frame_name, frame = body_name, body
        material = "plastic" if body_name == "black_plastic" else "metal"
        corner = rng.uniform(5, 12)
        rim = rng.uniform(0.5, 1.2)
        bezel = rng.uniform(4, 11)
        chin = rng.uniform(4, 14)
        forehead = rng.uniform(0, 4)
        front_cam = "bezel"
        bump, n_lenses = "none", 0
    else:
        body_name, body = _choice(rng, BODY_COLOURS)
        frame_name, frame = _choice(rng, FRAME_COLOURS)
        if rng.random() < 0.35:  # many designs match frame and body
            frame = tuple(0.9 * c + 0.05 for c in body)
            frame_name = body_name
        material = str(rng.choice(["glass", "metal", "plastic"], p=[0.6, 0.25, 0.15]))
        if kind is DeviceKind.TABLET:
            corner = rng.uniform(7, 18)
            bezel = rng.uniform(5, 12)
            front_cam = "bezel" if rng.random() < 0.8 else "home"
            bump, n_lenses = str(rng.choice(["single", "square"])), int(rng.integers(1, 3))
        else:
            corner = rng.uniform(4, 13)
            bezel = rng.uniform(1.3, 4.5)
            front_cam = str(
                rng.choice(["notch", "island", "punch", "bezel", "home"], p=[0.3, 0.25, 0.3, 0.05, 0.1])
            )
            bump = str(rng.choice(["square", "bar", "vertical", "single"], p=[0.45, 0.15, 0.3, 0.1]))
            n_lenses = 1 if bump == "single" else int(rng.integers(1, 5))
        rim = rng.uniform(0.6, 1.6)
        chin = rng.uniform(9, 14) if front_cam == "home" else 0.0
        forehead = chin if front_cam == "home" else 0.0
    glass = (
        (0.92, 0.92, 0.91) if rng.random() < 0.12 and kind is not DeviceKind.LAPTOP else (0.025, 0.025, 0.03)
    )
    wall_a = tuple(float(x) for x in rng.uniform(0.05, 0.95, 3))
    wall_b = tuple(float(x) for x in rng.uniform(0.05, 0.95, 3))
    return Design(
        spec=spec,
        view=view,
        corner_mm=float(corner),
        rim_mm=float(rim),
        frame_colour=tuple(float(c) for c in frame),
        frame_name=frame_name,
        body_colour=tuple(float(c) for c in body),
        body_name=body_name,
        back_material=material,
        bezel_mm=float(bezel),
        chin_mm=float(chin),
        forehead_mm=float(forehead),
        front_cam=front_cam,
        glass_colour=glass,
        screen_on=bool(rng.random() < 0.4),
        wallpaper=(wall_a, wall_b),
        bump=bump,
        n_lenses=n_lenses,
        seed=int(rng.integers(2**31)),
    )


# --------------------------------------------------------------------------------------------------
# drawing helpers (float32 images; coordinates in flat px, drawn with cv2's sub-pixel shift)


def _fill(img: np.ndarray, poly: np.ndarray, value) -> None:
    cv2.fillPoly(img, [to_cv(poly)], value, lineType=cv2.LINE_8, shift=SHIFT)


def _mask_of(shape: tuple[int, int], poly: np.ndarray) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    _fill(m, poly, 1)
    return m.astype(bool)


def _paint(rgb: np.ndarray, mask: np.ndarray, colour, texture: np.ndarray | None = None) -> None:
    col = np.asarray(colour, np.float32)
    # copyto(where=) writes in place without the gather/scatter of boolean indexing (3x faster here)
    value = col if texture is None else np.minimum(cv2.merge([texture * c for c in col]), 1.0)
    np.copyto(rgb, value, where=mask[..., None])


def _texture(rng: np.random.Generator, shape: tuple[int, int], material: str) -> np.ndarray:
    """Multiplicative surface texture: brushed metal streaks, plastic grain, near-flat glass."""
    h, w = shape
    if material == "metal":
        streaks = rng.normal(0, 1, (h, max(2, w // 24))).astype(np.float32)
        streaks = cv2.resize(streaks, (w, h), interpolation=cv2.INTER_LINEAR)
        return 1.0 + 0.025 * streaks
    if material == "plastic":
        grain = rng.normal(0, 1, (max(2, h // 2), max(2, w // 2))).astype(np.float32)
        return 1.0 + 0.02 * cv2.resize(grain, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.ones(shape, np.float32)


def _dark_glass(rng: np.random.Generator, shape: tuple[int, int], base) -> np.ndarray:
    """A switched-off display: near-black glass mirroring a blurry room (large soft blobs, low contrast)."""
    h, w = shape
    low = rng.normal(0, 1, (4, 3, 3)).astype(np.float32)
    room = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    room = np.clip(room, -1.5, 2.5) * 0.018 + 0.02
    return np.clip(np.asarray(base, np.float32)[None, None, :] + room, 0, 1)


def _busy_wallpaper(rng: np.random.Generator, shape: tuple[int, int], files: tuple[str, ...]) -> np.ndarray:
    """A wallpaper with fine detail, as real display-on phones show (the known false-crack trigger: a
    two-colour gradient never taught the network that detail on a lit screen is not broken glass). Half
    a real photo (`backgrounds.real`: a random crop of one of `files`), half a procedural splash: a
    dark or coloured field with thousands of small bright particles swept along a curve, as in the
    splash and particle wallpapers phone makers ship."""
    from training.synth.backgrounds import real

    h, w = shape
    if files and rng.random() < 0.5:
        return real(rng, h, w, files)[0]
    base = rng.uniform(0.0, 0.35, 3).astype(np.float32) * (rng.random() < 0.6)
    img = np.broadcast_to(base, (h, w, 3)).copy()
    n = int(rng.integers(800, 4000))
    t = rng.random(n)
    # particles around a random quadratic curve across the screen, thinning away from it
    p0, p1, p2 = (rng.uniform([0, 0], [w, h]) for _ in range(3))
    centre = (1 - t)[:, None] ** 2 * p0 + 2 * ((1 - t) * t)[:, None] * p1 + (t**2)[:, None] * p2
    pts = centre + rng.normal(0, 1, (n, 2)) * rng.uniform(0.03, 0.15) * max(h, w) * rng.random(n)[:, None]
    palette = rng.uniform(0.3, 1.0, (3, 3))
    colours = palette[rng.integers(0, 3, n)]
    radii = np.maximum(1, rng.exponential(0.004 * max(h, w), n)).astype(int)
    for (x, y), c, r in zip(pts.astype(int), colours, radii, strict=True):
        cv2.circle(img, (int(x), int(y)), int(r), tuple(float(v) for v in c), -1, cv2.LINE_AA)
    return cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 1.5)))


def _screen_on(
    rng: np.random.Generator,
    design: Design,
    shape: tuple[int, int],
    ppm: float,
    wallpapers: tuple[str, ...] | None = None,
) -> np.ndarray:
    """A lit display: a wallpaper (a two-colour gradient, or a busy one when `wallpapers` is given) with
    a grid of app icons and a status bar."""
    h, w = shape
    if wallpapers is not None:
        img = _busy_wallpaper(rng, shape, wallpapers)
        if rng.random() < 0.3:  # a lock screen: the wallpaper alone
            return img
    else:
        a, b = (np.asarray(c, np.float32) for c in design.wallpaper)
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        img = np.broadcast_to(a * (1 - t) + b * t, (h, w, 3)).copy()
    if design.kind is DeviceKind.LAPTOP:
        # a desktop: a dock and a window
        dock_h = 6 * ppm
        cv2.rectangle(
            img,
            (int(w * 0.3), int(h - dock_h * 1.4)),
            (int(w * 0.7), int(h - dock_h * 0.3)),
            (0.85, 0.85, 0.88),
            -1,
        )
        x0, y0 = int(rng.uniform(0.08, 0.3) * w), int(rng.uniform(0.08, 0.3) * h)
        cv2.rectangle(img, (x0, y0), (x0 + int(w * 0.45), y0 + int(h * 0.45)), (0.96, 0.96, 0.96), -1)
        cv2.rectangle(img, (x0, y0), (x0 + int(w * 0.45), y0 + int(5 * ppm)), (0.8, 0.8, 0.82), -1)
        return img
    icon = 10.5 * ppm if design.kind is DeviceKind.PHONE else 14 * ppm
    cols = 4 if design.kind is DeviceKind.PHONE else 6
    gap = (w - cols * icon) / (cols + 1)
    rows = int((h - 14 * ppm) // (icon + gap * 1.2))
    for r in range(max(0, rows - 1)):
        for c in range(cols):
            x = gap + c * (icon + gap)
            y = 12 * ppm + r * (icon + gap * 1.2)
            colour = tuple(float(v) for v in rng.uniform(0.1, 1.0, 3))
            _fill(img, rounded_rect(x + icon / 2, y + icon / 2, icon, icon, icon * 0.22, 4), colour)
    return img


def _lens(rgb, zone, centre, radius, ring_colour, mark_zone=True) -> None:
    x, y = centre
    if mark_zone:
        _fill(zone, ellipse_poly(x, y, radius * 1.25, radius * 1.25, n=28), ZONE_VALUE[Zone.CAMERA])
    _fill(rgb, ellipse_poly(x, y, radius * 1.25, radius * 1.25, n=28), ring_colour)
    _fill(rgb, ellipse_poly(x, y, radius, radius, n=28), (0.015, 0.015, 0.02))
    _fill(rgb, ellipse_poly(x, y, radius * 0.55, radius * 0.55, n=24), (0.05, 0.06, 0.1))
    # the coated lens reflects a small purple-blue highlight
    _fill(
        rgb,
        ellipse_poly(x - radius * 0.3, y - radius * 0.3, radius * 0.18, radius * 0.12, n=12),
        (0.35, 0.3, 0.55),
    )


# --------------------------------------------------------------------------------------------------


def render_flat(
    design: Design,
    ppm: float,
    rng: np.random.Generator,
    pad_px: int = 6,
    wallpapers: tuple[str, ...] | None = None,
) -> Flat:
    """Draw the design at `ppm` px/mm on a plane just large enough for it (plus `pad_px`). `wallpapers`:
    None for the two-colour gradient a lit screen always had (every existing seed's photos), else busy
    wallpapers (`_busy_wallpaper`) from these photo files and procedural splashes."""
    wmm, hmm = design.plane_mm()
    w_px, h_px = wmm * ppm, hmm * ppm
    W, H = math.ceil(w_px) + 2 * pad_px, math.ceil(h_px) + 2 * pad_px
    cx, cy = W / 2.0, H / 2.0
    rgb = np.zeros((H, W, 3), np.float32)
    zone = np.zeros((H, W), np.uint8)
    gloss = np.zeros((H, W), np.float32)
    trng = np.random.default_rng(design.seed)

    side = design.view not in (View.FRONT, View.BACK)
    corner = min(hmm / 2, design.spec.depth / 2) if side else design.corner_mm
    outline = rounded_rect(cx, cy, w_px, h_px, corner * ppm, per_corner=12)
    a8 = np.zeros((H, W), np.uint8)
    cv2.fillPoly(a8, [to_cv(outline)], 255, lineType=cv2.LINE_AA, shift=SHIFT)
    alpha = a8.astype(np.float32) / 255.0
    inside = a8 > 0

    flat = Flat(design, ppm, rgb, alpha, zone, gloss, outline)
    frame_mat = design.zone_material(Zone.FRAME)
    zone[inside] = ZONE_VALUE[Zone.FRAME]
    _paint(rgb, inside, design.frame_colour, _texture(trng, (H, W), frame_mat))
    gloss[inside] = MATERIAL_GLOSS[frame_mat]

    if side:
        _draw_side(flat, trng)
    elif design.view is View.FRONT:
        _draw_front(flat, trng, rng, wallpapers)
    else:
        _draw_back(flat, trng)
        _edge_light(flat, w_px, h_px, corner)
    if design.view is View.FRONT:
        _edge_light(flat, w_px, h_px, corner)
    return flat


def _edge_light(flat: Flat, w_px: float, h_px: float, corner_mm: float) -> None:
    """The rounded edge seen from above: a dark outer contour and a thin highlight just inside it."""
    cx, cy = flat.centre
    ppm = flat.ppm
    t = max(1, round(0.3 * ppm))
    cov = np.zeros(flat.zone.shape, np.uint8)
    cv2.polylines(cov, [to_cv(flat.outline)], True, 255, thickness=t, lineType=cv2.LINE_AA, shift=SHIFT)
    dark = cov.astype(np.float32) * (0.45 / 255)
    d = max(1.0, 0.5 * ppm)
    inner = rounded_rect(cx, cy, w_px - 2 * d, h_px - 2 * d, max(0.0, corner_mm * ppm - d), 12)
    cov[:] = 0
    cv2.polylines(cov, [to_cv(inner)], True, 255, thickness=1, lineType=cv2.LINE_AA, shift=SHIFT)
    bright = cov.astype(np.float32) * (0.18 / 255)
    flat.rgb[:] = np.clip(flat.rgb * (1.0 - dark)[..., None] + bright[..., None], 0, 1)


def _draw_front(
    flat: Flat, trng: np.random.Generator, rng: np.random.Generator, wallpapers: tuple[str, ...] | None = None
) -> None:
    d, ppm = flat.design, flat.ppm
    H, W = flat.zone.shape
    cx, cy = flat.centre
    wmm, hmm = d.plane_mm()
    rim = d.rim_mm
    gw, gh = (wmm - 2 * rim) * ppm, (hmm - 2 * rim) * ppm
    glass = rounded_rect(cx, cy, gw, gh, max(0.5, d.corner_mm - rim) * ppm, per_corner=12)
    flat.glass_poly = glass
    gm = _mask_of((H, W), glass)
    _paint(flat.rgb, gm, d.glass_colour)
    flat.zone[gm] = ZONE_VALUE[Zone.SCREEN]
    flat.gloss[gm] = 1.0
    # display area inside the bezel (a laptop's chin holds the hinge and logo)
    b = d.bezel_mm
    top, bottom = b + d.forehead_mm, b + d.chin_mm
    sw = (wmm - 2 * rim - 2 * b) * ppm
    sh = (hmm - 2 * rim - top - bottom) * ppm
    scy = cy + (top - bottom) / 2 * ppm
    screen_r = max(0.3, d.corner_mm - rim - b) * ppm if d.front_cam != "home" else 0.3 * ppm
    screen = rounded_rect(cx, scy, sw, sh, screen_r, per_corner=10)
    flat.screen_poly = screen
    sm = _mask_of((H, W), screen)
    content = (
        _screen_on(rng, d, (H, W), ppm, wallpapers)
        if d.screen_on
        else _dark_glass(trng, (H, W), (0.02, 0.02, 0.025))
    )
    flat.rgb[sm] = content[sm]
    flat.extras["screen_on"] = d.screen_on
    # front camera and earpiece
    ring = (0.06, 0.06, 0.07)
    top_y = scy - sh / 2
    lens_r = 1.3 * ppm
    if d.kind is DeviceKind.LAPTOP:
        _lens(
            flat.rgb, flat.zone, (cx, cy - (hmm / 2 - rim - (b + d.forehead_mm) / 2) * ppm), 0.9 * ppm, ring
        )
        return
    if d.front_cam == "notch":
        nw, nh = sw * rng.uniform(0.3, 0.42), 5.5 * ppm
        _fill(
            flat.rgb,
            rounded_rect(cx, top_y + nh / 2 - 2 * ppm, nw, nh + 4 * ppm, 2.5 * ppm, 6),
            d.glass_colour,
        )
        _lens(flat.rgb, flat.zone, (cx + nw * 0.3, top_y + nh * 0.45), lens_r, ring)
        _fill(
            flat.rgb,
            rounded_rect(cx, top_y + 1.0 * ppm, 9 * ppm, 0.9 * ppm, 0.45 * ppm, 4),
            (0.12, 0.12, 0.13),
        )
    elif d.front_cam == "island":
        iw, ih = sw * rng.uniform(0.26, 0.34), 5.2 * ppm
        iy = top_y + 2.5 * ppm + ih / 2
        _fill(flat.rgb, rounded_rect(cx, iy, iw, ih, ih / 2, 10), (0.0, 0.0, 0.0))
        _lens(flat.rgb, flat.zone, (cx + iw / 2 - ih / 2, iy), lens_r, (0.01, 0.01, 0.01))
    elif d.front_cam == "punch":
        px = cx if rng.random() < 0.75 else cx - sw * 0.38
        _lens(flat.rgb, flat.zone, (px, top_y + 4 * ppm), lens_r, (0.0, 0.0, 0.0))
    else:  # camera in the bezel above the display (tablets, home-button phones)
        y = cy - (hmm / 2 - rim - top / 2) * ppm
        _lens(flat.rgb, flat.zone, (cx - (6 * ppm if d.front_cam == "home" else 0), y), lens_r * 0.8, ring)
        if d.front_cam == "home":
            _fill(
                flat.rgb, rounded_rect(cx + 2 * ppm, y, 10 * ppm, 1.4 * ppm, 0.7 * ppm, 4), (0.15, 0.15, 0.16)
            )
            by = cy + (hmm / 2 - rim - bottom / 2) * ppm
            br = min(5.5, bottom * 0.4) * ppm
            edge = tuple(min(1.0, c + 0.08) if c < 0.5 else c - 0.12 for c in d.glass_colour)
            _fill(flat.rgb, ellipse_poly(cx, by, br, br, n=32), edge)
            _fill(flat.rgb, ellipse_poly(cx, by, br * 0.88, br * 0.88, n=32), d.glass_colour)


def _draw_back(flat: Flat, trng: np.random.Generator) -> None:
    d, ppm = flat.design, flat.ppm
    H, W = flat.zone.shape
    cx, cy = flat.centre
    wmm, hmm = d.plane_mm()
    rim = d.rim_mm
    body = rounded_rect(
        cx, cy, (wmm - 2 * rim) * ppm, (hmm - 2 * rim) * ppm, max(0.5, d.corner_mm - rim) * ppm, 12
    )
    bm = _mask_of((H, W), body)
    _paint(flat.rgb, bm, d.body_colour, _texture(trng, (H, W), d.back_material))
    flat.zone[bm] = ZONE_VALUE[Zone.BODY]
    flat.gloss[bm] = MATERIAL_GLOSS[d.back_material]
    flat.glass_poly = body  # the back panel (named for symmetry with the front's glass)
    # a logo: a slightly different, glossier mark in the middle
    logo_col = tuple(c * 0.93 + 0.04 for c in d.body_colour)
    lr = (9 if d.kind is DeviceKind.PHONE else 16) * ppm
    ly = cy if d.kind is DeviceKind.LAPTOP else cy - 0.05 * hmm * ppm
    _fill(flat.rgb, ellipse_poly(cx, ly, lr * 0.8, lr, n=30), logo_col)
    if d.bump == "none" or d.n_lenses == 0:
        return
    left = cx - (wmm / 2 - rim) * ppm
    top = cy - (hmm / 2 - rim) * ppm
    bump_col = tuple(min(1.0, c * 0.92 + 0.03) for c in d.body_colour)
    ring = tuple(d.frame_colour)
    lens_r = (4.2 if d.kind is DeviceKind.PHONE else 3.2) * ppm
    if d.bump in ("square", "single"):
        n = d.n_lenses
        side = (wmm - 2 * rim) * (0.42 if n >= 3 else 0.32 if n == 2 else 0.24) * ppm
        if d.kind is DeviceKind.TABLET:
            side = min(side, 22 * ppm)
        bx, by = left + 2.5 * ppm + side / 2, top + 2.5 * ppm + side / 2
        poly = rounded_rect(bx, by, side, side, side * 0.24, 10)
        _fill(flat.zone, poly, ZONE_VALUE[Zone.CAMERA])
        # raised bump: a lighter rim on one side, a darker one on the other (light from the top left)
        _fill(
            flat.rgb,
            rounded_rect(bx + 0.25 * ppm, by + 0.25 * ppm, side, side, side * 0.24, 10),
            tuple(c * 0.7 for c in bump_col),
        )
        _fill(flat.rgb, poly, bump_col)
        flat.gloss[_mask_of((H, W), poly)] = 1.0
        spots = {
            1: [(0, 0)],
            2: [(0, -0.22), (0, 0.22)],
            3: [(-0.22, -0.22), (-0.22, 0.22), (0.22, 0)],
            4: [(-0.22, -0.22), (-0.22, 0.22), (0.22, -0.22), (0.22, 0.22)],
        }[n]
        r = min(lens_r, side * (0.3 if n == 1 else 0.17))
        for sx, sy in spots:
            _lens(flat.rgb, flat.zone, (bx + sx * side, by + sy * side), r, ring, mark_zone=False)
        _fill(
            flat.rgb,
            ellipse_poly(bx + 0.3 * side, by - 0.33 * side, r * 0.35, r * 0.35, n=12),
            (0.95, 0.9, 0.75),
        )
    elif d.bump == "bar":
        bh = 13 * ppm
        by = top + 0.16 * (hmm - 2 * rim) * ppm
        poly = rounded_rect(cx, by, (wmm - 2 * rim) * ppm + 2, bh, bh / 2, 10)
        _fill(flat.zone, poly, ZONE_VALUE[Zone.CAMERA])
        _fill(flat.rgb, poly, (0.05, 0.05, 0.06))
        flat.gloss[_mask_of((H, W), poly)] = 1.0
        for i in range(d.n_lenses):
            _lens(
                flat.rgb,
                flat.zone,
                (left + (8 + i * 11) * ppm, by),
                min(lens_r, 4.0 * ppm),
                (0.2, 0.2, 0.22),
                False,
            )
    else:  # vertical: separate lens rings, no bump (Samsung S2x style)
        for i in range(d.n_lenses):
            _lens(flat.rgb, flat.zone, (left + 8 * ppm, top + (8 + i * 11) * ppm), lens_r * 0.95, ring)
        _fill(
            flat.rgb,
            ellipse_poly(left + 17 * ppm, top + 8 * ppm, 1.2 * ppm, 1.2 * ppm, n=12),
            (0.95, 0.9, 0.75),
        )


def _draw_side(flat: Flat, trng: np.random.Generator) -> None:
    """A side: the frame strip, shaded like a rounded edge, with buttons, ports and antenna lines."""
    d, ppm = flat.design, flat.ppm
    H, W = flat.zone.shape
    cx, cy = flat.centre
    wmm, hmm = d.plane_mm()
    inside = flat.alpha > 0
    # cylindrical shading across the thickness: bright band where the rounded edge faces the light
    v = (np.arange(H, dtype=np.float32) - cy) / max(1.0, hmm * ppm / 2)
    shade = 1.0 - 0.35 * v**2 + 0.18 * np.exp(-((v + 0.35) ** 2) / 0.02)
    flat.rgb *= np.clip(shade, 0.3, 1.4)[:, None, None]
    np.clip(flat.rgb, 0, 1, out=flat.rgb)
    dark = (0.03, 0.03, 0.035)
    x0 = cx - wmm * ppm / 2
    if d.kind is DeviceKind.LAPTOP:
        for i in range(int(trng.integers(1, 4))):  # USB-C ports
            px = x0 + (25 + i * 12) * ppm
            _fill(flat.rgb, rounded_rect(px, cy, 8.4 * ppm, 2.6 * ppm, 1.2 * ppm, 6), dark)
        if d.view in (View.TOP, View.BOTTOM):
            _fill(
                flat.rgb,
                rounded_rect(cx, cy, 40 * ppm, 0.9 * hmm * ppm, 0.4 * ppm, 4),
                tuple(c * 0.75 for c in d.frame_colour),
            )
    elif d.view is View.BOTTOM:
        _fill(flat.rgb, rounded_rect(cx, cy, 9 * ppm, 3.0 * ppm, 1.4 * ppm, 6), dark)  # USB-C
        for k in range(6):
            for sgn in (-1, 1):
                _fill(
                    flat.rgb,
                    ellipse_poly(cx + sgn * (10 + 1.8 * k) * ppm, cy, 0.5 * ppm, 0.5 * ppm, n=8),
                    dark,
                )
    elif d.view is View.TOP:
        _fill(flat.rgb, ellipse_poly(cx + 10 * ppm, cy, 0.4 * ppm, 0.4 * ppm, n=8), dark)
    else:
        btn = tuple(min(1.0, c * 1.08 + 0.02) for c in d.frame_colour)
        buttons = [(0.22, 9), (0.32, 9)] if d.view is View.LEFT else [(0.28, 16)]
        for pos, length in buttons:
            bx = x0 + pos * wmm * ppm
            _fill(
                flat.rgb,
                rounded_rect(bx + 0.4 * ppm, cy + 0.4 * ppm, length * ppm, 0.55 * hmm * ppm, 1 * ppm, 6),
                tuple(c * 0.6 for c in d.frame_colour),
            )
            _fill(flat.rgb, rounded_rect(bx, cy, length * ppm, 0.55 * hmm * ppm, 1 * ppm, 6), btn)
    # antenna lines: thin plastic bands across metal frames
    if d.kind is DeviceKind.PHONE and d.zone_material(Zone.FRAME) == "metal":
        for pos in (0.08, 0.92):
            x = x0 + pos * wmm * ppm
            m = np.zeros((H, W), bool)
            m[:, int(x) : int(x + max(1, 0.6 * ppm))] = True
            flat.rgb[m & inside] = (0.55, 0.55, 0.55) if sum(d.frame_colour) > 1.5 else (0.18, 0.18, 0.19)
