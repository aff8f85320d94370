"""Post-processing, torch-free: the network's per-pixel outputs -> measured defect instances.

Steps for one photo: find the device (largest non-background zone component) and so the scale
(mm per photo pixel from the catalogue length, or device lengths per pixel when the model is unknown);
threshold each defect type's probability map at its calibrated threshold; split it into connected
components, and a scratch component that holds several touching or crossing lines into one per line
(`model.strokes`); give each a zone (majority vote of the zone map among the zones the photo's view
can show), a box and polygon in the original photo's pixels, a calibrated confidence (Platt scaling
of its peak's logit distance above the pixel threshold), and its length, width and area.

Length of a thin defect (scratch, crack) comes from its outline: a ribbon of length L and width w has
perimeter P ~ 2(L + w) and area A ~ L w, so L is the larger root of L^2 - (P/2) L + A = 0. That follows
curves, unlike a bounding box. Blob defects (chip, dent, stain, smudge) use their minimum-area
rectangle. Maps at the defect's own resolution (the fine pass's 0.05 mm/px tiles, `measure="fine"`)
measure a line along its centreline instead (`model.strokes`, ends run out to the mask's edge less
half the width: the outline's ribbon reads a one- or two-pixel line several percent long) and a blob
to its pixels' edges.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from model.card import Thresholds
from model.damage import GLASS_ZONES, judge_zone_damage, zone_damage
from model.geometry import MIN_DEVICE_CELLS, device_mask, mask_box, mask_outline
from model.instances import DefectInstance, Measurement
from model.outputs import DEFECT_CHANNELS
from model.plane import DevicePlane
from model.preprocess import Letterbox
from model.strokes import split_strokes, stroke_masks
from model.taxonomy import LINEAR_DEFECT_TYPES, ZONES_BY_VIEW, DefectType, View, Zone

ZONES = tuple(Zone)
MIN_COMPONENT_PX = 4  # in model-input pixels: smaller blobs are noise at any threshold
# Width a zero-width line takes on the upsampled mask, in mask cells (see `measure_component`). With one
# cell, perfect coverage maps of hairlines measured 1-2 mm wide and barred every grade with a width
# limit; with two, the resolution study's Back Market ceiling rose from 0.45 to 0.53 (bench_model oracle).
LINE_FOOTPRINT_CELLS = 2.0
# Line types whose components are split into their strokes (see `_pieces`).
STROKE_TYPES = frozenset({DefectType.SCRATCH})
# How sizes are read from a component (see `extract_instances`).
Measure = Literal["coarse", "fine"]
# measure="fine": what a blob's extent adds to its contour's (which runs through pixel centres, half a
# pixel inside each edge). One pixel reads chips (pointed ends, partly covered) closer and dents
# (round) longer than the contour alone: docs/fine-pass.md.
FINE_BLOB_EDGE_PX = 1.0
# A line's centreline as straight pieces (M, 2, 2; x, y in model-input pixels) and their signs, for a
# measurement in the device's plane (`_plane_sizes`); None where the length was not measured along one.
Centreline = tuple[np.ndarray, np.ndarray] | None


@dataclass(frozen=True)
class Scale:
    """How to turn original-photo pixels into sizes."""

    units: Literal["mm", "relative"]
    per_px: float  # mm per original pixel, or device lengths per original pixel
    device_found: bool
    device_length_px: float | None = None  # the device's length in original pixels (`estimate_scale`)


def upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """(C, h, w) probability maps at mask resolution -> (C, size, size) at model-input resolution."""
    return np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR) for m in maps])


def estimate_scale(
    zone_probs: np.ndarray,
    lb: Letterbox,
    input_size: int,
    device_length_mm: float | None,
    share: float = 1.0,
) -> Scale:
    """Scale of the original photo from the device's outline in the zone map.

    The device's long side in pixels is the long side of the minimum-area rectangle around its
    outline (robust to rotation). Without a known length, sizes are relative to the device length;
    without a device, to the photo's longer side (and `device_found` is False).

    `share`: the long side the photo shows, as a share of the device's length (`model.plane.view_share`
    of its view): 1 for the front and the back; a phone's top edge shows its width, about half its
    length, and measured against the length every size on it read twice too long.
    `device_length_px` is the device's length at the photo's scale (the long side shown over `share`).
    """
    mask = device_mask(zone_probs)
    h = zone_probs.shape[1]
    to_model = input_size / h
    if mask.sum() < MIN_DEVICE_CELLS:
        longest_px = max(lb.width, lb.height) * lb.draft_factor
        return Scale("relative", 1.0 / longest_px, device_found=False)
    pts = np.argwhere(mask)[:, ::-1].astype(np.float32) * to_model
    (_, _), (rw, rh), _ = cv2.minAreaRect(pts)
    long_model = max(rw, rh) + to_model  # + one cell: argwhere gives cell corners, not extents
    length_px = long_model / lb.scale * lb.draft_factor / share
    if device_length_mm:
        return Scale("mm", device_length_mm / length_px, True, length_px)
    return Scale("relative", 1.0 / length_px, True, length_px)


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def instance_confidence(
    peak: float, threshold: float, temperature: float = 1.0, offset: float = 0.0
) -> float:
    """Calibrated probability that a component is a real defect (see `Thresholds`). Uncalibrated
    (temperature 1, offset 0), a component whose peak just reaches the pixel threshold is a coin toss
    and one well above it is near certain, whatever the absolute level of its coverage map."""
    z = (_logit(peak) - _logit(threshold)) / temperature + offset
    return 1.0 / (1.0 + math.exp(-z))


def ribbon_length_width(area: float, perimeter: float) -> tuple[float, float]:
    """Length and width of a thin ribbon from its area and perimeter (see the module docstring)."""
    half = perimeter / 2.0
    disc = max(half * half - 4.0 * area, 0.0)
    length = (half + math.sqrt(disc)) / 2.0
    return length, (area / length if length > 0 else 0.0)


def measure_component(
    comp: np.ndarray, linear: bool, footprint: float = 0.0
) -> tuple[float, float, float, np.ndarray]:
    """Length, width, area (model pixels) and the outer contour of one component mask (uint8).

    `footprint`: the width, in model pixels, that the mask grid gives a line of zero width
    (`LINE_FOOTPRINT_CELLS` mask cells when masks are coarser than the input). A hairline 0.2 mm wide
    is a fraction of a pixel, yet its bilinearly upsampled coverage map is a band up to two cells wide
    (a tent two cells across, wider still where the line straddles two cells); that band is the
    grid's, not the defect's, so it is taken off the width (0 = thinner than the grid resolves; the grading rules' width limits are
    then not what decides). Length is unaffected: on coverage maps the band's ends fade below the
    threshold, so the ribbon length is already the defect's (tests/model/test_postprocess.py)."""
    contours, _ = cv2.findContours(comp, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)
    area = float(comp.sum())
    if linear:
        # Smooth the pixel staircase (it inflates the perimeter by up to ~8% on diagonals).
        smooth = cv2.approxPolyDP(contour, 0.7, True)
        perimeter = sum(cv2.arcLength(c, True) for c in contours if len(c) > 1) if len(contours) > 1 else 0
        perimeter = max(perimeter, cv2.arcLength(smooth, True))
        length, width = ribbon_length_width(area, perimeter)
        (_, _), (rw, rh), _ = cv2.minAreaRect(contour)
        length = max(length, max(rw, rh))  # a straight line cannot be shorter than its extent
        width = area / length if length else 0.0
        if footprint > 0:
            width = max(width - footprint, 0.0)
    else:
        (_, _), (rw, rh), _ = cv2.minAreaRect(contour)
        length, width = max(rw, rh, 1.0), max(min(rw, rh), 1.0)
    return length, width, area, contour


def _measure_fine(comp: np.ndarray, linear: bool) -> tuple[float, float, float, np.ndarray]:
    """`measure_component` for maps at the defect's own resolution (`extract_instances`'
    measure="fine"): a line's length along its centreline (`model.strokes`, ends="centre": the
    skeleton's arc length, each end run out to the mask's edge less half the line's width), a blob's
    from its pixels' extent (the contour runs through pixel centres, one pixel inside the edges)."""
    return _measure_fine_centreline(comp, linear)[0]


def _centreline(strokes, x0: float = 0.0, y0: float = 0.0) -> Centreline:
    """The strokes' straight pieces and signs (`model.strokes.Stroke.segments`), moved by (x0, y0)."""
    if not strokes:
        return None
    segs = np.concatenate([s.segments for s in strokes]) + np.array([x0, y0], float)
    return segs, np.concatenate([s.signs for s in strokes])


def _measure_fine_centreline(
    comp: np.ndarray, linear: bool
) -> tuple[tuple[float, float, float, np.ndarray], Centreline]:
    """`_measure_fine`, and for a line the centreline its length sums (in `comp`'s pixels)."""
    length, width, area, contour = measure_component(comp, linear)
    line = None
    if linear:
        ys, xs = np.nonzero(comp)
        crop = comp[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        strokes = split_strokes(crop, ends="centre", max_turn_deg=180.0)
        if strokes:
            length = max(sum(s.length for s in strokes), 1.0)
            width = area / length if length else 0.0
            line = _centreline(strokes, xs.min(), ys.min())
    else:
        (_, _), (rw, rh), _ = cv2.minAreaRect(contour)
        length, width = max(rw, rh) + FINE_BLOB_EDGE_PX, min(rw, rh) + FINE_BLOB_EDGE_PX
    return (length, width, area, contour), line


def _pieces(
    mask: np.ndarray,
    dtype: DefectType,
    footprint: float,
    split_lines: bool,
    measure: Measure = "coarse",
    stroke_options: dict | None = None,
) -> list[tuple[np.ndarray, tuple[float, float, float, np.ndarray]]]:
    """One component -> its instances: (mask, measurement) pairs. A scratch component that thins to
    several strokes (crossing or touching lines, see `model.strokes`) gives one per stroke, each with
    the component's pixels nearest to it; anything else is measured whole (`measure_component`).
    Cracks stay whole: a crack network is one defect, its length all its branches.
    `measure`, `stroke_options`: see `extract_instances`."""
    comp = mask.astype(np.uint8)
    linear = dtype in LINEAR_DEFECT_TYPES
    fine = measure == "fine"

    def whole(c, lin):
        if fine:
            return _measure_fine_centreline(c, lin)
        return measure_component(c, lin, footprint), None

    if not (split_lines and dtype in STROKE_TYPES):
        return [(comp, *whole(comp, linear))]
    ys, xs = np.nonzero(comp)
    y0, x0 = ys.min(), xs.min()
    crop = comp[y0 : ys.max() + 1, x0 : xs.max() + 1]
    options = dict(stroke_options or {})
    if "orientation" in options:  # a per-pixel map of the whole frame: this component's part of it
        options["orientation"] = options["orientation"][y0 : ys.max() + 1, x0 : xs.max() + 1]
    if fine:
        options.setdefault("ends", "centre")
    strokes = split_strokes(crop, spur_px=footprint, **options)
    if len(strokes) == 1 and fine:
        length, _, area, contour = measure_component(comp, linear)
        length = max(strokes[0].length, 1.0)
        return [(comp, (length, area / length, area, contour), _centreline(strokes, x0, y0))]
    if len(strokes) < 2:
        return [(comp, *whole(comp, linear))]
    out = []
    for stroke, region in zip(strokes, stroke_masks(crop, strokes), strict=True):
        part = np.zeros_like(comp)
        part[y0 : ys.max() + 1, x0 : xs.max() + 1] = region
        if not part.any():
            continue
        contours, _ = cv2.findContours(part, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        contour = max(contours, key=cv2.contourArea)
        area = float(part.sum())
        length = max(stroke.length, 1.0)
        width = max(area / length - footprint, 0.0)
        out.append((part, (length, width, area, contour), _centreline([stroke], x0, y0)))
    return out


def _plane_sizes(
    comp: np.ndarray,
    measured: tuple[float, float, float, np.ndarray],
    line: Centreline,
    lb: Letterbox,
    plane: DevicePlane,
    linear: bool,
    fine: bool,
) -> tuple[float, float, float]:
    """Length, width (mm) and area (mm^2) of one piece measured in the device's plane
    (`extract_instances`' `plane`), from its model-pixel measurement `measured`:
    a centreline's straight pieces mapped through the homography (exact); a blob's extent the
    minimum-area rectangle of its contour mapped onto the device (plus its pixels' edge, at the local
    scale); what was measured in pixels and not as points (a width, a ribbon length on the coarse map,
    an area) at the Jacobian's scale at the piece's centre, along or across its main axis."""
    length_px, width_px, area_px, contour = measured

    def to_photo(xy):  # model-pixel indices -> photo-pixel indices, through the pixels' centres
        return lb.to_original(np.asarray(xy, float) + 0.5) - 0.5

    px_to_orig = lb.draft_factor / lb.scale
    ys, xs = np.nonzero(comp)
    pts = np.stack([xs, ys], axis=1).astype(float)
    centre = to_photo(pts.mean(axis=0)[None])[0]
    if len(pts) > 1:  # the main axis: the pixels' principal direction
        _, vecs = np.linalg.eigh(np.cov((pts - pts.mean(axis=0)).T))
        axis = vecs[:, -1]
    else:
        axis = np.array([1.0, 0.0])
    across = np.array([-axis[1], axis[0]])
    along_mm = plane.scale_along(centre, axis) * px_to_orig
    across_mm = plane.scale_along(centre, across) * px_to_orig
    iso_mm = plane.scale(centre) * px_to_orig
    area = area_px * plane.area_scale(centre) * px_to_orig**2
    if not linear:
        ring = plane.to_mm(to_photo(contour[:, 0, :].astype(float)))
        (_, _), (rw, rh), _ = cv2.minAreaRect(ring.astype(np.float32))
        if fine:
            edge = FINE_BLOB_EDGE_PX * iso_mm
            return max(rw, rh) + edge, min(rw, rh) + edge, area
        return max(rw, rh, iso_mm), max(min(rw, rh), iso_mm), area
    if line is not None:
        segs, signs = line
        ends = to_photo(segs.reshape(-1, 2)).reshape(-1, 2, 2)
        length = max(plane.length(ends, signs), iso_mm)
    else:
        length = length_px * along_mm
    return length, width_px * across_mm, area


def vote_zone(cells: np.ndarray, view: View | None = None) -> Zone:
    """The zone of a component: the majority of its pixels' zone-map classes (0 is background).

    With the photo's view, only the zones that view can show vote (`ZONES_BY_VIEW`): a front photo has
    no back panel, so a screen scratch whose pixels the zone map half reads as body stays on the screen.
    Ties and a component with no votes go to the view's first zone (front: screen, back: body, sides:
    frame); without a view, to the body as before."""
    votes = np.bincount(cells, minlength=len(ZONES) + 1)[1:]
    if view is None:
        return ZONES[int(votes.argmax())] if votes.any() else Zone.BODY
    return max(ZONES_BY_VIEW[view], key=lambda z: votes[ZONES.index(z)])  # max keeps the first of a tie


def outline(
    contour: np.ndarray, lb: Letterbox, corner: tuple[int, int] = (0, 0)
) -> tuple[list[tuple[float, float]], tuple[float, float, float, float]]:
    """An instance's polygon and box in the original photo's pixels from its contour (OpenCV's, in the
    frame `lb` maps, offset by `corner`): the box from the whole contour, the polygon simplified when
    it has more than 64 points (stored polygons stay small)."""
    shift = np.asarray(corner, float)
    poly = lb.to_original(contour[:, 0, :].astype(float) + shift)
    x0, y0 = poly.min(axis=0)
    x1, y1 = poly.max(axis=0)
    if len(poly) > 64:
        poly = lb.to_original(cv2.approxPolyDP(contour, 1.0, True)[:, 0, :].astype(float) + shift)
    return [(float(x), float(y)) for x, y in poly], (float(x0), float(y0), float(x1), float(y1))


def extract_instances(
    defect_probs: np.ndarray,
    zone_probs: np.ndarray,
    lb: Letterbox,
    thresholds: Thresholds,
    scale: Scale,
    input_size: int,
    photo_index: int = 0,
    view: View | None = None,
    split_lines: bool = True,
    features: Mapping[str, np.ndarray] | None = None,
    measure: Measure = "coarse",
    stroke_options: dict | None = None,
    plane: DevicePlane | None = None,
    glass: tuple[Zone, ...] = GLASS_ZONES,
) -> list[DefectInstance]:
    """Measured instances of every defect type on one photo (outputs for that photo, no batch axis).
    `features`: the photo's optional feature outputs (`model.outputs.feature_maps`), which a card's
    zone-damage models may read (`model.damage`).
    `split_lines`: a scratch component that holds several lines becomes one instance per line
    (`model.strokes`); off, each component is one instance (the measurement before 2026-12-03).
    `measure`: "coarse" (the network's maps at 384 px: lines from their outline, the ribbon formula)
    or "fine" (maps whose pixel is no wider than the defect, the fine pass's tiles at 0.05 mm/px:
    lines along their centreline, blobs from their pixels' extent, `_measure_fine`).
    `stroke_options`: keyword arguments for `model.strokes.split_strokes` (ends, max_turn_deg,
    orientation: a per-pixel map of the model-input frame, cut to each component).
    `plane`: measure in the device's plane (`model.plane`: the homography from the original photo's
    pixels to the device's rectangle in mm) instead of at one `scale.per_px` for the whole photo:
    centrelines and blob outlines mapped through it, widths and areas at its local scale
    (`_plane_sizes`). Sizes are then in mm whatever `scale.units`; zone damage keeps `scale`. Off
    (None) by default: every measurement is as before.
    `glass`: the zones that are glass on the device (`model.damage.glass_zones`), for zone damage."""
    probs = upsample(defect_probs.astype(np.float32), input_size)
    zones = upsample(zone_probs.astype(np.float32), input_size).argmax(axis=0)
    px_to_orig = lb.draft_factor / lb.scale  # model-input pixel -> original pixel
    unit = scale.per_px * px_to_orig  # model-input pixel -> mm (or device lengths)
    cell = input_size / defect_probs.shape[-1]  # model pixels per mask cell
    out: list[DefectInstance] = []
    for d, name in enumerate(DEFECT_CHANNELS):
        dtype = DefectType(name)
        threshold = thresholds.defect_pixel.get(name, 0.5)
        binary = (probs[d] >= threshold).astype(np.uint8)
        if not binary.any():
            continue
        n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        footprint = LINE_FOOTPRINT_CELLS * cell if cell > 1 else 0.0
        for k in range(1, n):
            if stats[k, cv2.CC_STAT_AREA] < MIN_COMPONENT_PX:
                continue
            pieces = _pieces(labels == k, dtype, footprint, split_lines, measure, stroke_options)
            for comp, measured, line in pieces:
                length, width, area, contour = measured
                units, per = scale.units, unit
                if plane is not None:
                    linear = dtype in LINEAR_DEFECT_TYPES
                    length, width, area = _plane_sizes(
                        comp, measured, line, lb, plane, linear, measure == "fine"
                    )
                    units, per = "mm", 1.0
                zone = vote_zone(zones[comp.astype(bool)], view)
                peak = float(probs[d][comp.astype(bool)].max())
                conf = instance_confidence(
                    peak,
                    threshold,
                    thresholds.confidence_temperature.get(name, 1.0),
                    thresholds.confidence_offset.get(name, 0.0),
                )
                if conf < thresholds.min_instance_confidence:
                    continue
                polygon, box = outline(contour, lb)
                out.append(
                    DefectInstance(
                        type=dtype,
                        zone=zone,
                        photo_index=photo_index,
                        view=view,
                        box=box,
                        polygon=polygon,
                        confidence=conf,
                        measurement=Measurement(
                            units=units,
                            length=length * per,
                            width=width * per,
                            area=area * per * per,
                        ),
                    )
                )
    if thresholds.zone_damage:
        maps = {"defect_probs": defect_probs, "zone_probs": zone_probs, **(features or {})}
        judged = zone_damage(maps, thresholds.zone_damage)
        zone_map = zone_probs.argmax(axis=0)
        masks = {z: zone_map == 1 + ZONES.index(z) for z in judged}
        out = judge_zone_damage(
            out,
            judged,
            {z: mask_box(m, lb, input_size) for z, m in masks.items()},
            scale.units,
            scale.per_px,
            thresholds.min_instance_confidence,
            photo_index,
            view,
            glass,
            {z: int(m.sum()) for z, m in masks.items()},
            {z: mask_outline(m, lb, input_size) for z, m in masks.items()},
        )
    return out
