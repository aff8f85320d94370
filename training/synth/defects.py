"""Synthetic defects: planning them with their true sizes, then drawing them with exact instance masks.

Planning and drawing are separate so that the grade can be computed (and a target grade mix met by
re-planning) before any pixel is drawn. A plan holds the exact geometry that will be drawn on the flat
device plane (polylines for scratches and cracks, polygons for the rest) and the sizes measured on that
geometry in millimetres:

- scratch, crack: length = arc length of the drawn polyline(s) (all branches of a crack network add
  up, matching the skeleton length the post-processing measures); width = the physical width (may be
  thinner than a pixel: the mask is then 1 px wide and the stroke is drawn at reduced contrast);
  area = length x width.
- chip, dent, stain, smudge: area = polygon area; length and width = sides of its minimum-area
  rectangle (the post-processing's measure for blobs). A dent in the edge of a side view also pushes
  the silhouette in (a notch that becomes background); its instance is the dented crescent around it.

An instance's mask is the same geometry mapped through the camera and rasterised in the photo
(`photo_mask`), so masks and drawn pixels share one source of truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from model.instances import DefectInstance, mm
from model.taxonomy import DefectType, DeviceKind, View, Zone
from training.synth.devices import ZONE_VALUE, Flat
from training.synth.geometry import (
    SHIFT,
    apply_h,
    blob_poly,
    curve_of_length,
    ellipse_poly,
    extent,
    jagged_path,
    polygon_area,
    polyline_length,
    to_cv,
)


@dataclass
class DefectPlan:
    type: DefectType
    zone: Zone
    style: str
    lines: list[np.ndarray] = field(default_factory=list)  # flat px polylines (scratch, crack)
    poly: np.ndarray | None = None  # flat px polygon (chip, dent, stain, smudge)
    width_mm: float = 0.0
    length_mm: float = 0.0
    area_mm2: float = 0.0
    contrast: float = 1.0
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    notch: np.ndarray | None = None  # flat px polygon pushed out of the silhouette (edge dents)
    parts: list[str] = field(default_factory=list)  # per line: what it is (realistic cracks, cracks.py)
    blot: np.ndarray | None = None  # flat px polygon drawn with the lines (a display's ink blotch)

    def instance(self) -> DefectInstance:
        return mm(self.type, self.zone, self.length_mm, self.width_mm, self.area_mm2)


# --------------------------------------------------------------------------------------------------
# placement helpers


class Placer:
    """Random positions inside a zone of the flat plane, and checks that a shape stays in its zone."""

    def __init__(self, flat: Flat, rng: np.random.Generator):
        self.flat, self.rng = flat, rng
        self.zone = flat.zone
        # Shapes must stay a pixel clear of a zone's border, so a thin stroke's mask does not spill
        # over it; the thin rim of a front or back is the exception (checked by fraction instead).
        # Cached on the flat: the generator re-plans a device several times to meet a target grade.
        if "placer_core" not in flat.extras:
            k = np.ones((3, 3), np.uint8)
            same = (cv2.erode(flat.zone, k) == flat.zone) & (cv2.dilate(flat.zone, k) == flat.zone)
            flat.extras["placer_core"] = np.where(same, flat.zone, 0).astype(np.uint8)
            flat.extras["placer_coords"] = {}
        self.core = flat.extras["placer_core"]
        self._coords: dict[Zone, np.ndarray] = flat.extras["placer_coords"]

    def has(self, zone: Zone) -> bool:
        if zone is Zone.FRAME and self.flat.design.view in (View.FRONT, View.BACK):
            # the rim around a front or back is thin: too thin to hold a visible defect at low resolution
            return self.flat.design.rim_mm * self.flat.ppm >= 2.5 and len(self.coords(zone)) > 20
        return len(self.coords(zone)) > 20

    def coords(self, zone: Zone) -> np.ndarray:
        if zone not in self._coords:
            ys, xs = np.nonzero(self.zone == ZONE_VALUE[zone])
            # pixel centres sit at integer coordinates (cv2's drawing and warping convention)
            self._coords[zone] = np.stack([xs, ys], axis=1).astype(np.float64)
        return self._coords[zone]

    def point(self, zone: Zone) -> np.ndarray:
        c = self.coords(zone)
        return c[int(self.rng.integers(len(c)))] + self.rng.uniform(-0.5, 0.5, 2)

    def inside(self, pts: np.ndarray, zone: Zone, frac: float = 1.0) -> bool:
        h, w = self.zone.shape
        xi = np.rint(pts[:, 0]).astype(int)
        yi = np.rint(pts[:, 1]).astype(int)
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        if not ok.all():
            return False
        zmap = self.zone if frac < 1.0 else self.core
        return float(np.mean(zmap[yi, xi] == ZONE_VALUE[zone])) >= frac

    def truncate(self, pts: np.ndarray, zone: Zone) -> np.ndarray:
        """The leading part of a path that stays inside `zone` (cracks stop at the glass edge)."""
        h, w = self.zone.shape
        for i, (x, y) in enumerate(pts):
            xi, yi = round(x), round(y)
            if not (0 <= xi < w and 0 <= yi < h) or self.zone[yi, xi] != ZONE_VALUE[zone]:
                return pts[:i]
        return pts


def _tangent_at(outline: np.ndarray, p: np.ndarray) -> tuple[float, np.ndarray]:
    """Direction of the outline near p, and the inward normal there."""
    i = int(np.argmin(np.hypot(*(outline - p).T)))
    a, b = outline[i - 1], outline[(i + 1) % len(outline)]
    t = b - a
    t = t / (np.linalg.norm(t) + 1e-9)
    centre = outline.mean(axis=0)
    n = np.array([-t[1], t[0]])
    if np.dot(centre - outline[i], n) < 0:
        n = -n
    return math.atan2(t[1], t[0]), n


# --------------------------------------------------------------------------------------------------
# planning one defect


def plan_scratch(
    pl: Placer,
    zone: Zone,
    length_mm: float,
    width_mm: float,
    tries: int = 25,
    near: tuple[np.ndarray, float] | None = None,
) -> DefectPlan | None:
    """A curved scratch of exactly `length_mm`. `near` = (point, direction): start within a few mm of
    the point, running about parallel (wear comes in clusters: a key, sand in a pocket)."""
    if not pl.has(zone):
        return None
    ppm = pl.flat.ppm
    L = length_mm * ppm
    narrow = zone is Zone.FRAME and pl.flat.design.view in (View.FRONT, View.BACK)
    for _ in range(tries):
        start = pl.point(zone)
        if near is not None and not narrow:
            start = near[0] + pl.rng.normal(0, 2.5 * ppm, 2)
            direction = near[1] + pl.rng.normal(0, 0.15)
            bend = pl.rng.uniform(0.0, 0.15)
        elif narrow:  # the frame is a thin band around the outline: scratch along it
            direction, _ = _tangent_at(pl.flat.outline, start)
            direction += pl.rng.choice([0.0, math.pi])
            bend = 0.01
        else:
            direction = pl.rng.uniform(0, 2 * math.pi)
            bend = pl.rng.uniform(0.0, 0.35)
        pts = curve_of_length(pl.rng, start, direction, L, bend)
        if pl.inside(pts, zone, 0.8 if narrow else 1.0):
            style = "gouge" if width_mm >= 0.25 else "hairline"
            return DefectPlan(
                DefectType.SCRATCH,
                zone,
                style,
                lines=[pts],
                width_mm=width_mm,
                length_mm=polyline_length(pts) / ppm,
                area_mm2=polyline_length(pts) / ppm * width_mm,
                contrast=float(pl.rng.uniform(0.35, 0.9)),
            )
    return None


def plan_crack(pl: Placer, zone: Zone, style: str) -> DefectPlan | None:
    ppm, rng = pl.flat.ppm, pl.rng
    glass = pl.flat.glass_poly if pl.flat.glass_poly is not None else pl.flat.outline
    lines: list[np.ndarray] = []
    if style == "spider":
        centre = pl.point(zone)
        n_rays = int(rng.integers(5, 13))
        reach = rng.uniform(12, 60) * ppm
        angles = np.sort(rng.uniform(0, 2 * math.pi, n_rays))
        rays = []
        for a in angles:
            ray = pl.truncate(
                jagged_path(rng, centre, a, reach * rng.uniform(0.4, 1.0), 2.5 * ppm, 0.12), zone
            )
            if len(ray) >= 2:
                rays.append(ray)
                lines.append(ray)
        # concentric rings join neighbouring rays: the web of an impact
        for radius in np.sort(rng.uniform(0.15, 0.6, int(rng.integers(1, 4)))) * reach:
            for r0, r1 in zip(rays, rays[1:] + rays[:1], strict=False):
                d0, d1 = np.hypot(*(r0 - centre).T), np.hypot(*(r1 - centre).T)
                if d0.max() < radius or d1.max() < radius or rng.random() < 0.3:
                    continue
                p0, p1 = r0[int(np.argmax(d0 >= radius))], r1[int(np.argmax(d1 >= radius))]
                seg = np.linspace(p0, p1, max(2, int(np.hypot(*(p1 - p0)) / (2 * ppm)) + 1))
                seg[1:-1] += rng.normal(0, 0.4 * ppm, seg[1:-1].shape)
                if pl.inside(seg, zone):
                    lines.append(seg)
    else:
        if style == "corner":
            corners = glass[np.argsort(-np.hypot(*(glass - glass.mean(axis=0)).T))[:8]]
            start = corners[int(rng.integers(len(corners)))]
            start = start + (glass.mean(axis=0) - start) * 0.01
            base = math.atan2(*(glass.mean(axis=0) - start)[::-1])
            n_br, reach = int(rng.integers(2, 5)), rng.uniform(10, 40) * ppm
        else:  # long single crack from an edge across the glass
            start = pl.point(zone)
            base = rng.uniform(0, 2 * math.pi)
            n_br, reach = 1, rng.uniform(30, 140) * ppm
        for k in range(n_br):
            a = base + (rng.normal(0, 0.5) if k else rng.normal(0, 0.15))
            path = pl.truncate(jagged_path(rng, start, a, reach * rng.uniform(0.5, 1.0), 3 * ppm, 0.1), zone)
            if len(path) >= 2:
                lines.append(path)
        if style == "long" and lines and rng.random() < 0.6:  # a short side branch or two
            main = lines[0]
            j = int(rng.integers(len(main)))
            br = pl.truncate(
                jagged_path(
                    rng, main[j], rng.uniform(0, 2 * math.pi), rng.uniform(3, 15) * ppm, 2 * ppm, 0.2
                ),
                zone,
            )
            if len(br) >= 2:
                lines.append(br)
    total = sum(polyline_length(ln) for ln in lines) / ppm
    if total < 3.0:
        return None
    return crack_plan(rng, zone, style, lines, total, (0.1, 0.35), (0.5, 0.95))


def crack_plan(rng, zone: Zone, style: str, lines, total_mm: float, widths, contrasts, **extra) -> DefectPlan:
    """A crack of `lines` (total skeleton length `total_mm`): its width, then its contrast, drawn from
    the given (low, high) ranges in that order (seeded output depends on it)."""
    width = float(rng.uniform(*widths))
    return DefectPlan(
        DefectType.CRACK,
        zone,
        style,
        lines=lines,
        width_mm=width,
        length_mm=total_mm,
        area_mm2=total_mm * width,
        contrast=float(rng.uniform(*contrasts)),
        **extra,
    )


def plan_blob(
    pl: Placer, dtype: DefectType, zone: Zone, size_mm: float, tries: int = 25
) -> DefectPlan | None:
    """Stain, smudge or dent: a blob of about `size_mm` across, fully inside its zone."""
    if not pl.has(zone):
        return None
    ppm, rng = pl.flat.ppm, pl.rng
    for _ in range(tries):
        c = pl.point(zone)
        a = size_mm / 2 * ppm
        b = a * rng.uniform(0.35 if dtype is DefectType.DENT else 0.5, 1.0)
        ang = rng.uniform(0, math.pi)
        if dtype is DefectType.DENT and zone is Zone.FRAME:
            ang, _ = _tangent_at(pl.flat.outline, c)  # dents run along the edge
            if pl.flat.design.view not in (View.FRONT, View.BACK):
                ang = 0.0
        poly = (
            ellipse_poly(c[0], c[1], a, b, ang, 24)
            if dtype is DefectType.DENT
            else blob_poly(rng, c[0], c[1], a, b, ang, 0.3)
        )
        frac = 0.7 if (zone is Zone.FRAME and pl.flat.design.view in (View.FRONT, View.BACK)) else 1.0
        if pl.inside(poly, zone, frac) and pl.inside(c[None], zone):
            length, width = extent(poly)
            style = {
                DefectType.STAIN: str(rng.choice(["discolouration", "spot", "mineral"])),
                DefectType.SMUDGE: str(rng.choice(["oil", "fingerprint"])),
                DefectType.DENT: "dent",
            }[dtype]
            colour = {
                "discolouration": (0.55, 0.42, 0.22),
                "spot": (0.2, 0.16, 0.12),
                "mineral": (0.88, 0.87, 0.82),
            }
            return DefectPlan(
                dtype,
                zone,
                style,
                poly=poly,
                length_mm=length / ppm,
                width_mm=width / ppm,
                area_mm2=polygon_area(poly) / ppm**2,
                contrast=float(rng.uniform(0.35, 0.75)),
                colour=colour.get(style, (1.0, 1.0, 1.0)),
            )
    return None


def plan_chip(pl: Placer, zone: Zone, size_mm: float, tries: int = 25) -> DefectPlan | None:
    """Material missing at an edge or corner: a convex bite clipped to the part it is taken from."""
    if not pl.has(zone):
        return None
    ppm, rng, flat = pl.flat.ppm, pl.rng, pl.flat
    region = flat.glass_poly if (zone is Zone.SCREEN and flat.glass_poly is not None) else flat.outline
    region32 = np.asarray(region, np.float32)
    for _ in range(tries):
        edge_pt = region[int(rng.integers(len(region)))]
        ang, normal = _tangent_at(region, edge_pt)
        a = size_mm / 2 * ppm
        b = a * rng.uniform(0.4, 0.9)
        centre = edge_pt - normal * b * rng.uniform(0.0, 0.4)
        bite = blob_poly(rng, centre[0], centre[1], a, b, ang, 0.2, n=14)
        hull = cv2.convexHull(bite.astype(np.float32))
        area, inter = cv2.intersectConvexConvex(hull, region32)
        if inter is None or area <= 0.25:
            continue
        poly = inter[:, 0, :].astype(np.float64)
        if len(poly) < 3 or not pl.inside(poly.mean(axis=0, keepdims=True), zone):
            continue
        length, width = extent(poly)
        return DefectPlan(
            DefectType.CHIP,
            zone,
            "chip",
            poly=poly,
            length_mm=length / ppm,
            width_mm=width / ppm,
            area_mm2=float(area) / ppm**2,
            contrast=float(rng.uniform(0.5, 0.9)),
        )
    return None


def plan_edge_dent(pl: Placer, size_mm: float) -> DefectPlan | None:
    """A dent in the edge of a side view: the silhouette is pushed in (a notch) and the dented metal
    around it is a crescent. The crescent is the instance (it is what remains on the device); the
    notch becomes background. Length = the dent's span along the edge, width = its depth."""
    flat, rng = pl.flat, pl.rng
    if flat.design.view in (View.FRONT, View.BACK):
        return None
    ppm = flat.ppm
    cx, cy = flat.centre
    wmm, hmm = flat.design.plane_mm()
    a = size_mm / 2 * ppm
    end = (hmm + size_mm / 2 + 2) * ppm  # keep clear of the rounded ends
    lo, hi = cx - wmm * ppm / 2 + end, cx + wmm * ppm / 2 - end
    if hi <= lo:
        return None
    x = rng.uniform(lo, hi)
    sign = 1.0 if rng.random() < 0.5 else -1.0  # top edge (inside is +y) or bottom edge
    y_edge = cy - sign * hmm * ppm / 2
    depth = min(rng.uniform(0.25, 0.45) * hmm, 0.9 * size_mm / 2) * ppm  # dented metal, from the edge
    notch = depth * rng.uniform(0.2, 0.35)  # how far the silhouette moves in
    if depth - notch < 2.0 or notch < 1.0:  # too small to draw at this resolution: a plain dent instead
        return None
    t = np.linspace(0, math.pi, 25)
    outer = np.stack([x + a * np.cos(t), y_edge + sign * depth * np.sin(t)], axis=1)
    inner = np.stack([x + a * np.cos(t[::-1]), y_edge + sign * notch * np.sin(t[::-1])], axis=1)
    poly = np.concatenate([outer, inner[1:-1]])
    notch_poly = np.concatenate([inner, np.stack([x + a * np.cos(t), y_edge - sign * 2 + 0 * t], axis=1)])
    length, width = extent(poly)
    return DefectPlan(
        DefectType.DENT,
        Zone.FRAME,
        "edge_dent",
        poly=poly,
        notch=notch_poly,
        length_mm=length / ppm,
        width_mm=width / ppm,
        area_mm2=polygon_area(poly) / ppm**2,
        contrast=float(rng.uniform(0.45, 0.8)),
    )


# --------------------------------------------------------------------------------------------------
# a whole device's defects, by severity


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def plan_device(
    flat: Flat,
    rng: np.random.Generator,
    level: int,
    crack_style: str = "classic",
    realistic_crack: Callable[[Placer, Zone], DefectPlan | None] | None = None,
) -> list[DefectPlan]:
    """Defects for one photo at a severity level 0 (pristine) .. 4 (broken), within the view's zones.

    `crack_style`: "classic" (the default; what every bundled model was trained on: do not change its
    random stream), "realistic" (cracks.py's spider webs, corner splinters, display damage) or "mixed"
    (half and half), planned by `realistic_crack` (cracks.plan, passed in: cracks.py builds on this module).

    The levels are tuned so that Back Market's grades (Premium, Excellent, Good, Fair, Unlistable) come
    out at about level 0..4; the generator re-plans until the rules engine agrees with the target grade.
    """
    pl = Placer(flat, rng)
    view, kind = flat.design.view, flat.design.kind
    side = view not in (View.FRONT, View.BACK)
    wear = [z for z in (Zone.BODY, Zone.FRAME) if pl.has(z)]
    if side:
        wear = [Zone.FRAME]
    glass_zones = [Zone.SCREEN] if view is View.FRONT else []
    if view is View.BACK and flat.design.back_material == "glass":
        glass_zones.append(Zone.BODY)
    plans: list[DefectPlan | None] = []

    def wear_zone():
        if side or not wear:
            return Zone.FRAME
        # the back panel is most of the surface; the front's frame is a thin rim
        return Zone.BODY if (Zone.BODY in wear and rng.random() < 0.8) else wear[-1]

    def dent(side_view: bool, size: float) -> DefectPlan | None:
        if side_view and rng.random() < 0.5:
            edge = plan_edge_dent(pl, size)
            if edge is not None:
                return edge
        return plan_blob(pl, DefectType.DENT, Zone.FRAME if side_view else wear_zone(), size)

    def scratches(n, lmin, lmax, wmin, wmax, zone=None):
        cluster = rng.random() < 0.3  # a cluster of near-parallel scratches, else scattered ones
        first: DefectPlan | None = None
        for _ in range(n):
            z = first.zone if (cluster and first is not None) else (zone or wear_zone())
            if pl.has(z):
                near = None
                if cluster and first is not None:
                    a, b = first.lines[0][0], first.lines[0][-1]
                    near = (a, math.atan2(b[1] - a[1], b[0] - a[0]))
                p = plan_scratch(pl, z, _u(rng, lmin, lmax), _u(rng, wmin, wmax), near=near)
                first = first or p
                plans.append(p)

    # Smudges at any level: they never change a grade but the model must learn to tell them apart.
    smudge_zones = [z for z in (Zone.SCREEN, Zone.BODY) if pl.has(z)]
    if smudge_zones and rng.random() < 0.35:
        for _ in range(int(rng.integers(1, 3))):
            plans.append(
                plan_blob(
                    pl, DefectType.SMUDGE, smudge_zones[int(rng.integers(len(smudge_zones)))], _u(rng, 6, 30)
                )
            )

    if level == 0:
        if rng.random() < 0.4 and (wear or side):
            scratches(int(rng.integers(1, 3)), 0.4, 1.0, 0.02, 0.05)
    elif level == 1:
        scratches(int(rng.integers(1, 6)), 0.8, 3.0, 0.03, 0.15)
        if Zone.BODY in wear and rng.random() < 0.3:
            plans.append(plan_blob(pl, DefectType.STAIN, Zone.BODY, _u(rng, 1.0, 2.0)))
    elif level == 2:
        scratches(int(rng.integers(2, 11)), 2.0, 7.0, 0.05, 0.3)
        if rng.random() < 0.5:
            for _ in range(int(rng.integers(1, 3))):
                plans.append(plan_chip(pl, Zone.FRAME, _u(rng, 0.6, 1.5)))
        if rng.random() < 0.3 and (side or kind is DeviceKind.LAPTOP):
            plans.append(dent(side, _u(rng, 1.5, 3.0)))
        if Zone.BODY in wear and rng.random() < 0.4:
            plans.append(plan_blob(pl, DefectType.STAIN, Zone.BODY, _u(rng, 2, 5)))
        if Zone.SCREEN in glass_zones and rng.random() < 0.2:
            plans.append(plan_blob(pl, DefectType.STAIN, Zone.SCREEN, _u(rng, 1.0, 2.0)))
    elif level == 3:
        if Zone.SCREEN in glass_zones:
            scratches(int(rng.integers(1, 7)), 3.0, 20.0, 0.05, 0.5, Zone.SCREEN)
        scratches(int(rng.integers(2, 16)), 5.0, 35.0 if not side else 25.0, 0.1, 0.6)
        if rng.random() < 0.5:
            for _ in range(int(rng.integers(1, 4))):
                plans.append(plan_chip(pl, Zone.FRAME, _u(rng, 1.6, 5.0)))
        if rng.random() < 0.4 and (side or kind is DeviceKind.LAPTOP or flat.design.back_material == "metal"):
            plans.append(dent(side, _u(rng, 3.5, 10)))
        if Zone.BODY in wear and rng.random() < 0.4:
            plans.append(plan_blob(pl, DefectType.STAIN, Zone.BODY, _u(rng, 6, 15)))
    else:
        if glass_zones and rng.random() < 0.85:
            z = glass_zones[int(rng.integers(len(glass_zones)))]
            if crack_style != "classic" and (crack_style == "realistic" or rng.random() < 0.5):
                if realistic_crack is None:
                    raise ValueError(f"crack_style {crack_style!r} needs realistic_crack (cracks.plan)")
                plans.append(realistic_crack(pl, z))
            else:
                style = str(rng.choice(["spider", "corner", "long"], p=[0.45, 0.25, 0.3]))
                plans.append(plan_crack(pl, z, style))
        else:  # no glass in view (sides, laptop lids): damage beyond Fair, a large chip or dent
            # (Back Market 2026.12.2: Fair has no length bound on body scratches, so the long gouges
            # this also drew, 42-80 mm, are Fair now; the generator re-planned them until it drew these)
            if rng.integers(2) == 0:
                for _ in range(int(rng.integers(1, 3))):
                    plans.append(plan_chip(pl, Zone.FRAME, _u(rng, 5.5, 10)))
            else:
                plans.append(dent(side, _u(rng, 11, 25)))
        scratches(int(rng.integers(0, 8)), 2.0, 20.0, 0.05, 0.5)
    return [p for p in plans if p is not None]


# --------------------------------------------------------------------------------------------------
# drawing


def _geometry_box(plan: DefectPlan, ppm: float, shape: tuple[int, int]) -> tuple[slice, slice]:
    pts = np.concatenate(plan.lines) if plan.lines else plan.poly
    if plan.blot is not None:
        pts = np.concatenate([pts, plan.blot])
    pad = 3 + max(1, round(plan.width_mm * ppm))
    h, w = shape
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - pad
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + pad + 1
    return slice(max(0, y0), min(h, y1)), slice(max(0, x0), min(w, x1))


def _coverage(plan: DefectPlan, ppm: float, box: tuple[slice, slice]) -> np.ndarray:
    """Anti-aliased coverage (uint8) of one defect's geometry inside `box` of the flat plane."""
    ys, xs = box
    cov = np.zeros((ys.stop - ys.start, xs.stop - xs.start), np.uint8)
    off = np.array([xs.start, ys.start], np.float64)
    if plan.lines:
        thick = max(1, round(plan.width_mm * ppm))
        lines = [to_cv(ln - off) for ln in plan.lines]
        cv2.polylines(cov, lines, False, 255, thickness=thick, lineType=cv2.LINE_AA, shift=SHIFT)
    else:
        cv2.fillPoly(cov, [to_cv(plan.poly - off)], 255, lineType=cv2.LINE_AA, shift=SHIFT)
    return cov


def draw_defects(flat: Flat, plans: list[DefectPlan], rng: np.random.Generator, light_angle: float) -> None:
    """Draw every plan on `flat.rgb` (in place), before the flat device is lit and photographed."""
    for plan in plans:
        box = _geometry_box(plan, flat.ppm, flat.zone.shape)
        if box[0].stop <= box[0].start or box[1].stop <= box[1].start:
            continue
        cov = _coverage(plan, flat.ppm, box)
        if not cov.any():
            continue
        a = cov.astype(np.float32) / 255.0
        region = flat.rgb[box]
        _DRAW[plan.type](flat, plan, region, a, rng, light_angle, box)


def photo_mask(plan: DefectPlan, hmat: np.ndarray, ppm: float, out_w: int, out_h: int) -> np.ndarray:
    """The instance's mask in photo pixels (uint8 0/1): its exact flat geometry mapped through the camera
    homography and rasterised there, so thin scratches stay connected and masks stay sharp.

    Lines keep the drawn stroke width (at least one pixel, 8-connected); polygons keep the pixels they
    cover by at least half (unbiased area), and at least the one pixel under their centre.
    """
    out = np.zeros((out_h, out_w), np.uint8)
    if plan.lines:
        thick = max(1, round(plan.width_mm * ppm))
        pts = [to_cv(apply_h(hmat, ln)) for ln in plan.lines]
        cv2.polylines(out, pts, False, 1, thickness=thick, lineType=cv2.LINE_8, shift=SHIFT)
        if plan.blot is not None:  # a display's ink blotch under a realistic crack (cracks.py)
            out |= photo_mask(
                DefectPlan(plan.type, plan.zone, "blot", poly=plan.blot), hmat, ppm, out_w, out_h
            )
        return out
    poly = apply_h(hmat, plan.poly)
    # cv2 fills every pixel the outline touches (area biased up by half the perimeter): rasterise the
    # polygon's box at 8x and keep the pixels covered at least half, which is unbiased.
    x0, y0 = np.floor(poly.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(poly.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(out_w, x1), min(out_h, y1)
    if x1 > x0 and y1 > y0:
        ss = 8
        big = np.zeros(((y1 - y0) * ss, (x1 - x0) * ss), np.uint8)
        cv2.fillPoly(
            big, [to_cv((poly - (x0, y0)) * ss + (ss - 1) / 2)], 255, lineType=cv2.LINE_8, shift=SHIFT
        )
        cov = cv2.resize(big, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        out[y0:y1, x0:x1] = cov >= 128
    if not out.any():
        x, y = np.clip(poly.mean(axis=0).astype(int), 0, [out_w - 1, out_h - 1])
        out[y, x] = 1
    return out


def _luma(region: np.ndarray) -> float:
    return float(region.mean())


# A finish darker than this under a gouge shows the gouge lighter, not darker (`_draw_scratch`).
GOUGE_DARK_BASE = 0.3


def _draw_scratch(flat, plan, region, a, rng, light_angle, box):
    pts = plan.lines[0]
    d = pts[-1] - pts[0]
    angle = math.atan2(d[1], d[0])
    # A scratch's groove scatters light sideways: it shows most when it runs across the light.
    light = 0.35 + 0.65 * abs(math.sin(angle - light_angle))
    subpixel = min(1.0, max(0.6, plan.width_mm * flat.ppm))
    # never fainter than a floor: a labelled defect the camera cannot show teaches the model nothing
    floor = 0.5 if plan.style == "gouge" else 0.3
    k = (max(floor, plan.contrast * light) * subpixel * a)[..., None]
    base = _luma(region)
    if plan.style == "gouge":
        # A deep gouge: a groove with a bright lip. On a light finish the groove is dark. On a dark one
        # (black anodising, paint, black glass) it shows the lighter material under the finish, scattered:
        # darkening black by two thirds changed it by a few grey levels. On the 12 MP photos of seed 708,
        # the median step a gouge makes in the photo went 8 -> 13 grey levels on the frame, 13.5 -> 46.5
        # on the body (docs/fine-pass.md, "Where the scratches are lost, and generator 2").
        under = float((region.mean(axis=2) * a).sum() / max(float(a.sum()), 1e-6))
        if under < GOUGE_DARK_BASE:
            groove = np.full(3, min(0.8, under + 0.45), np.float32)
        else:
            groove = np.clip(region * 0.35, 0, 1)
        region[:] = region * (1 - k) + groove * k
        lip = cv2.GaussianBlur(a, (3, 3), 0.8)[..., None] * 0.5 * plan.contrast
        region[:] = np.clip(region + lip * (0.25 if base > 0.5 else 0.45), 0, 1)
    else:
        target = np.full(3, 0.92 if base < 0.55 else max(0.0, base - 0.45), np.float32)
        region[:] = region * (1 - k) + target * k


# crack style -> drawing function, for styles defined outside this module (cracks.py fills it in)
CRACK_DRAWERS: dict[str, Callable] = {}


def _draw_crack(flat, plan, region, a, rng, light_angle, box):
    if plan.style in CRACK_DRAWERS:  # a realistic crack: cracks.py registers how it is drawn
        CRACK_DRAWERS[plan.style](flat, plan, region, a, rng, light_angle, box)
        return
    k = (plan.contrast * a)[..., None]
    bright = np.array([0.85, 0.87, 0.9], np.float32)
    region[:] = region * (1 - k) + bright * k
    # a faint darker shadow line beside the bright fracture face, inside the mask's bounds
    shadow = np.roll(a, 1, axis=0) * (1 - a)
    region[:] = np.clip(region * (1 - 0.4 * shadow[..., None]), 0, 1)


def _draw_chip(flat, plan, region, a, rng, light_angle, box):
    glass = plan.zone is Zone.SCREEN
    exposed = np.array([0.75, 0.77, 0.78] if glass else [0.86, 0.86, 0.85], np.float32)
    edge = a - cv2.erode(a, np.ones((3, 3), np.uint8))
    k = a[..., None]
    region[:] = region * (1 - k) + exposed * k
    region[:] = np.clip(region * (1 - 0.5 * np.clip(edge, 0, 1)[..., None]), 0, 1)


def _draw_dent(flat, plan, region, a, rng, light_angle, box):
    ys, xs = box
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c = plan.poly.mean(axis=0) - (xs.start, ys.start)
    r = max(1.0, plan.length_mm * flat.ppm / 2)
    # the dent's slope faces towards the light on one side and away on the other
    t = ((xx - c[0]) * math.cos(light_angle) + (yy - c[1]) * math.sin(light_angle)) / r
    shade = 1.0 + plan.contrast * 0.6 * np.clip(t, -1, 1) * a
    region[:] = np.clip(region * shade[..., None], 0, 1)
    if plan.notch is not None:  # the deformed silhouette: the notch is no longer device
        # rasterised like the instance masks (half coverage), so the notch and the crescent's mask
        # share their boundary instead of overlapping
        fh, fw = flat.zone.shape
        gone = photo_mask(
            DefectPlan(plan.type, plan.zone, "notch", poly=plan.notch), np.eye(3), flat.ppm, fw, fh
        )
        flat.alpha[gone > 0] = 0.0
        flat.zone[gone > 0] = 0


def _draw_stain(flat, plan, region, a, rng, light_angle, box):
    soft = cv2.GaussianBlur(a, (0, 0), max(0.8, 0.15 * plan.width_mm * flat.ppm)) * a
    k = (plan.contrast * soft)[..., None]
    colour = np.asarray(plan.colour, np.float32)
    base = _luma(region)
    if abs(float(colour.mean()) - base) < 0.25:  # a white mineral stain on silver would be invisible
        colour = np.array([0.42, 0.32, 0.18] if base > 0.5 else [0.85, 0.84, 0.8], np.float32)
    region[:] = region * (1 - k) + colour * k


def _draw_smudge(flat, plan, region, a, rng, light_angle, box):
    h, w = a.shape
    soft = cv2.GaussianBlur(a, (0, 0), max(1.0, 0.2 * plan.width_mm * flat.ppm)) * a
    mottled = cv2.resize(rng.uniform(0.4, 1.0, (max(2, h // 6), max(2, w // 6))).astype(np.float32), (w, h))
    if plan.style == "fingerprint":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        rad = np.hypot(xx - w / 2, (yy - h / 2) * 0.8)
        mottled *= 0.6 + 0.4 * np.sin(rad * 2 * math.pi / max(1.5, 0.45 * flat.ppm))
    haze = (soft * mottled * 0.09 * plan.contrast / 0.55)[..., None]
    tint = np.array([1.0, 0.97, 1.03], np.float32)  # oil films are faintly iridescent
    # oil lifts dark glass (it scatters light) and dulls bright metal
    sign = 1.0 if _luma(region) < 0.5 else -0.8
    region[:] = np.clip(region + sign * haze * tint, 0, 1)


_DRAW = {
    DefectType.SCRATCH: _draw_scratch,
    DefectType.CRACK: _draw_crack,
    DefectType.CHIP: _draw_chip,
    DefectType.DENT: _draw_dent,
    DefectType.STAIN: _draw_stain,
    DefectType.SMUDGE: _draw_smudge,
}
