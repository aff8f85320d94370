"""Realistic broken glass for the generator (`crack_style="realistic"` or `"mixed"`; off by default).

Real cracked phones (the phones_web photos) mostly show an impact point: crushed white glass there, long
radial cracks running out to the glass edge (bending, branching), and short concentric arcs between the
rays near the impact (a spider web); or splinters fanning out of a corner; sometimes a broken display
(a dark ink blotch at the impact, coloured vertical lines). Styles:

- ``web``: impact point anywhere in the glass, 5-12 radial cracks that jitter and branch, 1-4 partial
  concentric rings between neighbouring rays, and (often) a crushed patch of short shards at the impact.
- ``splinter``: a fan of short cracks from a corner of the glass, crushed shards in the corner.
- ``display`` (screens only): a small web plus an ink blotch around the impact and 1-2 coloured vertical
  lines through the display.

Every part is a polyline (the blotch a polygon) on the flat plane, so the instance mask is the union of
the drawn lines at the stroke width (plus the blotch), as for the classic cracks. `length_mm` is the
total skeleton length: the sum of the arc lengths of every drawn line (rays, branches, rings, shards,
display lines), the same convention as the classic cracks. The zone is the glass it is drawn on: the
screen on a front view, the body on a glass back.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from model.taxonomy import Zone
from training.synth import defects
from training.synth.defects import DefectPlan, Placer, crack_plan, photo_mask
from training.synth.geometry import SHIFT, blob_poly, jagged_path, polyline_length, to_cv

REALISTIC_STYLES = ("web", "splinter", "display")
MAX_TOTAL_MM = 390.0
MIN_TOTAL_MM = 10.0


def choose_style(rng: np.random.Generator, zone: Zone) -> str:
    if zone is Zone.SCREEN:
        return str(rng.choice(["web", "splinter", "display"], p=[0.6, 0.25, 0.15]))
    return str(rng.choice(["web", "splinter"], p=[0.7, 0.3]))


def plan(pl: Placer, zone: Zone) -> DefectPlan | None:
    """A realistic crack of a random style on `zone` (defects.plan_device's `realistic_crack`)."""
    return plan_realistic_crack(pl, zone, choose_style(pl.rng, zone))


def _shards(pl: Placer, zone: Zone, centre: np.ndarray, radius: float, n: int) -> list[np.ndarray]:
    """Crushed glass: many short kinked segments packed around a point (reads as a white speckle)."""
    rng, ppm = pl.rng, pl.flat.ppm
    out = []
    for _ in range(n):
        r = radius * math.sqrt(rng.random())
        t = rng.uniform(0, 2 * math.pi)
        p = centre + r * np.array([math.cos(t), math.sin(t)])
        seg = jagged_path(rng, p, rng.uniform(0, 2 * math.pi), rng.uniform(0.4, 1.6) * ppm, 0.6 * ppm, 0.8)
        if len(seg) >= 2 and pl.inside(seg, zone):
            out.append(seg)
    return out


def _ray(pl: Placer, zone: Zone, start: np.ndarray, angle: float, length: float) -> np.ndarray:
    ppm, rng = pl.flat.ppm, pl.rng
    path = jagged_path(rng, start, angle, length, rng.uniform(1.5, 3.5) * ppm, rng.uniform(0.04, 0.12))
    return pl.truncate(path, zone)


def _branches(pl: Placer, zone: Zone, ray: np.ndarray, n: int) -> list[np.ndarray]:
    rng = pl.rng
    out = []
    for _ in range(n):
        if len(ray) < 4:
            break
        j = int(rng.integers(len(ray) // 4, len(ray) - 1))
        d = ray[j + 1] - ray[j]
        heading = math.atan2(d[1], d[0]) + rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.8)
        rest = polyline_length(ray[j:])
        br = _ray(pl, zone, ray[j], heading, rest * rng.uniform(0.2, 0.6))
        if len(br) >= 2:
            out.append(br)
    return out


def _rings(pl: Placer, zone: Zone, centre: np.ndarray, rays: list[np.ndarray], reach: float) -> list:
    """Partial concentric arcs joining neighbouring rays at a few radii (some gaps left open)."""
    rng, ppm = pl.rng, pl.flat.ppm
    out = []
    if len(rays) < 2:
        return out
    for radius in np.sort(rng.uniform(0.08, 0.45, int(rng.integers(1, 5)))) * reach:
        for r0, r1 in zip(rays, rays[1:] + rays[:1], strict=False):
            d0, d1 = np.hypot(*(r0 - centre).T), np.hypot(*(r1 - centre).T)
            if d0.max() < radius or d1.max() < radius or rng.random() < 0.35:
                continue
            p0, p1 = r0[int(np.argmax(d0 >= radius))], r1[int(np.argmax(d1 >= radius))]
            a0 = math.atan2(*(p0 - centre)[::-1])
            a1 = math.atan2(*(p1 - centre)[::-1])
            da = (a1 - a0) % (2 * math.pi)
            if da > math.pi * 0.9:  # neighbours more than half a turn apart: no ring there
                continue
            rad0, rad1 = np.hypot(*(p0 - centre)), np.hypot(*(p1 - centre))
            n = max(3, int(da * max(rad0, rad1) / (1.2 * ppm)) + 1)
            t = np.linspace(0, 1, n)
            ang, rad = a0 + da * t, rad0 + (rad1 - rad0) * t
            arc = centre + np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
            arc[1:-1] += rng.normal(0, 0.25 * ppm, arc[1:-1].shape)
            if pl.inside(arc, zone):
                out.append(arc)
    return out


def _web(pl: Placer, zone: Zone, centre: np.ndarray, reach: float, n_rays: int, crush: bool):
    rng, ppm = pl.rng, pl.flat.ppm
    a0 = rng.uniform(0, 2 * math.pi)
    gap = 2 * math.pi / n_rays
    rays = []
    for k in range(n_rays):
        ray = _ray(pl, zone, centre, a0 + k * gap + rng.normal(0, 0.25 * gap), reach * rng.uniform(0.35, 1.0))
        if len(ray) >= 2:
            rays.append(ray)
    lines = list(rays)
    lines += _rings(pl, zone, centre, rays, reach)
    for ray in rays:
        lines += _branches(pl, zone, ray, int(rng.integers(0, 2)))
    parts = ["crack"] * len(lines)
    if crush:
        radius = rng.uniform(2.0, 6.0) * ppm
        sh = _shards(pl, zone, centre, radius, int(rng.uniform(6, 10) * radius / ppm))
        lines += sh
        parts += ["shard"] * len(sh)
    return lines, parts


def _corner(pl: Placer, zone: Zone) -> tuple[np.ndarray, np.ndarray]:
    """A point of the zone in one of its four corners, a little inside, and the zone's centroid."""
    rng = pl.rng
    c = pl.coords(zone)
    mid = c.mean(axis=0)
    span = np.maximum(c.max(axis=0) - c.min(axis=0), 1.0)
    d = np.array([rng.choice([-1.0, 1.0]), rng.choice([-1.0, 1.0])])
    corner = c[int(np.argmax(((c - mid) / span) @ d))]
    corner = corner + (mid - corner) / np.hypot(*(mid - corner)) * 0.6 * pl.flat.ppm
    return corner, mid


def _vertical_line(pl: Placer, zone: Zone, x: float) -> np.ndarray:
    """A display line: the run of the zone at column x through its middle, top to bottom."""
    c = pl.coords(zone)
    col = c[np.abs(c[:, 0] - x) < 0.5]
    if len(col) < 2:
        return np.zeros((0, 2))
    mid = np.array([x, np.median(col[:, 1])])
    step = 2.0
    up = pl.truncate(mid + np.outer(np.arange(0, 1e4, step), [0, -1.0])[: int(len(col) / step) + 3], zone)
    down = pl.truncate(mid + np.outer(np.arange(0, 1e4, step), [0, 1.0])[: int(len(col) / step) + 3], zone)
    if len(up) < 2 or len(down) < 2:
        return np.zeros((0, 2))
    return np.concatenate([up[::-1], down[1:]])


def plan_realistic_crack(pl: Placer, zone: Zone, style: str, tries: int = 8) -> DefectPlan | None:
    """One realistic crack instance of `style` on the glass `zone` (screen or body); None if it cannot
    be placed within the length bounds (MIN_TOTAL_MM..MAX_TOTAL_MM of total skeleton)."""
    if style not in REALISTIC_STYLES or not pl.has(zone):
        return None
    if style == "display" and zone is not Zone.SCREEN:
        style = "web"
    ppm, rng = pl.flat.ppm, pl.rng
    shrink = 1.0
    for _ in range(tries):
        blot = None
        if style == "web":
            centre = pl.point(zone)
            reach = rng.uniform(40, 140) * ppm * shrink
            lines, parts = _web(pl, zone, centre, reach, int(rng.integers(5, 13)), rng.random() < 0.75)
        elif style == "splinter":
            corner, mid = _corner(pl, zone)
            base = math.atan2(*(mid - corner)[::-1])
            lines, parts = [], []
            reach = rng.uniform(15, 50) * ppm * shrink
            rays = []
            for a in np.sort(base + rng.uniform(-0.8, 0.8, int(rng.integers(4, 10)))):
                ray = _ray(pl, zone, corner, float(a), reach * rng.uniform(0.3, 1.0))
                if len(ray) >= 2:
                    rays.append(ray)
            lines += rays
            lines += _rings(pl, zone, corner, rays, reach)
            for ray in rays:
                lines += _branches(pl, zone, ray, int(rng.integers(0, 2)))
            parts = ["crack"] * len(lines)
            radius = rng.uniform(1.0, 3.0) * ppm
            sh = _shards(pl, zone, corner, radius, int(rng.uniform(4, 7) * radius / ppm))
            lines += sh
            parts += ["shard"] * len(sh)
        else:  # display damage under a small impact
            centre = pl.point(zone)
            reach = rng.uniform(8, 30) * ppm * shrink
            lines, parts = _web(pl, zone, centre, reach, int(rng.integers(5, 9)), True)
            r = rng.uniform(3, 12) * ppm
            poly = blob_poly(
                rng, centre[0], centre[1], r, r * rng.uniform(0.5, 1.0), rng.uniform(0, math.pi), 0.35
            )
            if pl.inside(poly, zone):
                blot = poly
            colours = ["line:1.0,0.1,0.9", "line:0.1,1.0,0.3", "line:0.2,0.9,1.0", "line:1.0,1.0,1.0"]
            for _k in range(int(rng.integers(1, 3))):
                vl = _vertical_line(pl, zone, float(round(centre[0] + rng.normal(0, 8 * ppm))))
                if len(vl) >= 2:
                    lines.append(vl)
                    parts.append(colours[int(rng.integers(len(colours)))])
        total = sum(polyline_length(ln) for ln in lines) / ppm
        if total > MAX_TOTAL_MM:
            shrink *= 0.7
            continue
        if total < MIN_TOTAL_MM:
            continue
        return crack_plan(rng, zone, style, lines, total, (0.08, 0.25), (0.8, 1.0), parts=parts, blot=blot)
    return None


def _line_cov(lines: list[np.ndarray], off: np.ndarray, shape, thick: int) -> np.ndarray:
    cov = np.zeros(shape, np.uint8)
    if lines:
        cv2.polylines(cov, [to_cv(ln - off) for ln in lines], False, 255, thick, cv2.LINE_AA, SHIFT)
    return cov.astype(np.float32) / 255.0


def draw_realistic(flat, plan: DefectPlan, region, a, rng, light_angle, box) -> None:
    """Thin anti-aliased fracture lines: bright where the fracture face catches the light (more so across
    the light), darker with a bright lip on a lit display; shards brightest (crushed glass scatters);
    the display's blotch and lines under the glass."""
    ys, xs = box
    off = np.array([xs.start, ys.start], np.float64)
    shape = a.shape
    thick = max(1, round(plan.width_mm * flat.ppm))
    dark_glass = float(region.mean()) < 0.5
    # nothing is drawn beyond the instance mask (the lines at the stroke width, photo_mask) and the
    # one-pixel fringe that anti-aliasing puts beside it
    shift = np.array([[1.0, 0.0, -off[0]], [0.0, 1.0, -off[1]], [0.0, 0.0, 1.0]])
    support = photo_mask(plan, shift, flat.ppm, shape[1], shape[0])
    support = cv2.dilate(support, np.ones((3, 3), np.uint8)).astype(np.float32)
    # display damage first: it is under the glass
    if plan.blot is not None:
        bl = np.zeros(shape, np.uint8)
        cv2.fillPoly(bl, [to_cv(plan.blot - off)], 255, lineType=cv2.LINE_AA, shift=SHIFT)
        b = bl.astype(np.float32) / 255.0 * support
        h, w = shape
        mottle = cv2.resize(
            rng.uniform(0.75, 1.0, (max(2, h // 5), max(2, w // 5))).astype(np.float32), (w, h)
        )
        k = (b * mottle)[..., None]
        ink = np.array([0.02, 0.02, 0.03], np.float32)
        region[:] = region * (1 - k) + ink * k
        rim = np.clip(b - cv2.erode(b, np.ones((3, 3), np.uint8)), 0, 1)[..., None]
        region[:] = region * (1 - 0.6 * rim) + np.array([0.5, 0.1, 0.6], np.float32) * 0.6 * rim
    parts = plan.parts or ["crack"] * len(plan.lines)
    for tag, ln in zip(parts, plan.lines, strict=True):
        if tag.startswith("line:"):
            colour = np.array([float(v) for v in tag[5:].split(",")], np.float32)
            k = (_line_cov([ln], off, shape, 1) * support)[..., None] * 0.9
            region[:] = region * (1 - k) + colour * k
    # glass cracks in four brightness buckets by direction against the light (one polylines call each)
    buckets: dict[int, list[np.ndarray]] = {}
    for tag, ln in zip(parts, plan.lines, strict=True):
        if tag.startswith("line:"):
            continue
        if tag == "shard":
            level = 3
        else:
            d = ln[-1] - ln[0]
            across = abs(math.sin(math.atan2(d[1], d[0]) - light_angle))
            level = min(3, int(across * 4))
        buckets.setdefault(level, []).append(ln)
    inten = np.zeros(shape, np.float32)
    for level, lns in buckets.items():
        inten = np.maximum(inten, _line_cov(lns, off, shape, thick) * (0.7 + 0.1 * level))
    inten *= support
    k = (plan.contrast * inten)[..., None]
    if not dark_glass:  # a lit display or light glass: a dark fringe beside the fracture line
        fringe = (np.clip(cv2.dilate(inten, np.ones((2, 2), np.uint8)) - inten, 0, 1) * support)[..., None]
        region[:] = region * (1 - 0.45 * plan.contrast * fringe)
    # the fracture face: white over dark glass, dark where the glass or display under it is bright
    luma = region.mean(axis=-1, keepdims=True)
    target = np.where(luma > 0.62, np.float32(0.12), np.array([0.9, 0.92, 0.95], np.float32))
    region[:] = region * (1 - k) + target * k


def _draw(*args) -> None:
    draw_realistic(*args)  # looked up at call time (tests replace it)


defects.CRACK_DRAWERS.update({style: _draw for style in REALISTIC_STYLES})
