"""The fine pass's maps -> measured scratches, and every instance of one photo (coarse and fine).
Torch-free.

`fine_instances` reads the stitched maps of `model.fine_pass.FineMaps`, one group of touching tiles at a
time (the maps are zero between them): centreline pixels are those at
`FineCard.heat_cut`; each connected group is split into strokes and measured along its centreline by
the same post-processing as the coarse maps (`model.postprocess`, measure="fine", `model.strokes`), so a
tile seam never splits a scratch. A scratch's width and contrast are the fine network's own heads
(median along its centreline): the heat ridge is as wide as the network draws it, not as the scratch is.

`frame_lines` and `frame_instances` turn the frame reader's lines (`FineMaps.frame`, `model.frame_read`)
into scratches on the frame of a front or back view.

`photo_instances` is what serving, evaluation and calibration call for one photo: the coarse pass's
instances (`model.postprocess.extract_instances`) and the fine pass's scratches, read off the coarse
pass's cracks; a coarse scratch the fine pass found again gives way to the fine one (`merge_fine`), and
a coarse frame scratch the frame reader found again to its line; scratches on glass a counted crack
lies on are that crack's evidence (`model.damage.lines_on_cracked_glass`), in both paths.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from model.card import Thresholds
from model.damage import GLASS_ZONES, lines_on_cracked_glass
from model.fine_pass import FRAME_VIEWS, FineMaps
from model.frame_read import FrameLine
from model.instances import DefectInstance, Measurement
from model.outputs import feature_maps
from model.postprocess import (
    Scale,
    _pieces,
    extract_instances,
    instance_confidence,
    outline,
    vote_zone,
)
from model.rules.engine import counted
from model.taxonomy import DefectType, View, Zone

# Fine scratches are single lines: strokes joined across at most this turn (`model.strokes`).
FINE_STROKE_OPTIONS = {"max_turn_deg": 20.0}
# A coarse outline is placed to a mask cell; within this of a fine scratch (or a coarse crack) is "on" it.
MERGE_MM = 1.0


def lines_mask(heat: np.ndarray, cut: float, low: float | None) -> np.ndarray:
    """Centreline pixels (uint8 0/1): at `cut`, or with `low` the connected pixels at `low` that hold
    one at `cut` (hysteresis)."""
    strong = heat >= cut
    if low is None or low >= cut or not strong.any():
        return strong.astype(np.uint8)
    n, labels = cv2.connectedComponents((heat >= low).astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[np.unique(labels[strong])] = True
    keep[0] = False
    return keep[labels].astype(np.uint8)


def canvas_raster(
    insts: list[DefectInstance],
    fine: FineMaps,
    grow_mm: float,
    within: Sequence[tuple[int, int, int, int]] | None = None,
) -> np.ndarray:
    """`insts`' outlines drawn on `fine`'s canvas (bool), grown by `grow_mm` on every side. `within`:
    the canvas boxes (x0, y0, x1, y1, exclusive) the caller reads; the mask is then exact inside them
    and False outside. A counted zone crack's outline is the whole screen, and growing it over the
    canvas (4 MP on a 12 MP phone photo, by a 41 px disc) cost about 30 ms where only the fine pass's
    tiles are read."""
    h, w = fine.heat.shape
    out = np.zeros((h, w), np.uint8)
    for inst in insts:
        pts = _outline_px(inst, fine)
        if pts is not None:
            _draw(out, pts)
    r = round(grow_mm / fine.mm_per_px)
    if within is None:
        box = _box_of(out)
        if r <= 0 or box is None:
            return out.astype(bool)
        # Grown inside the drawing's box widened by r only: the same pixels as growing the whole canvas
        # (nothing farther than r from a drawn pixel can turn on), at a fraction of a 4 MP dilation.
        x0, y0, x1, y1 = box
        within = [(x0 - r, y0 - r, x1 + r, y1 + r)]
    grown = np.zeros_like(out)
    for box in within:
        _grow(out, grown, box, r)
    return grown.astype(bool)


def _grow(drawn: np.ndarray, into: np.ndarray, box: tuple[int, int, int, int], r: int) -> None:
    """`drawn` grown by a disc of radius `r`, written to `into` over `box` (clipped to the canvas). Only
    the part of the box within r of a drawn pixel can turn on, and it is grown over that part widened by
    r, which holds every drawn pixel within r of it: its values are those of growing the whole canvas."""
    h, w = drawn.shape
    bx0, by0, bx1, by1 = max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h)
    if bx0 >= bx1 or by0 >= by1:
        return
    wx0, wy0 = max(bx0 - r, 0), max(by0 - r, 0)
    near = _box_of(drawn[wy0 : min(by1 + r, h), wx0 : min(bx1 + r, w)])
    if near is None:
        return
    # The part of the box that can turn on, and the window it is grown over.
    px0, py0 = max(bx0, wx0 + near[0] - r), max(by0, wy0 + near[1] - r)
    px1, py1 = min(bx1, wx0 + near[2] + r), min(by1, wy0 + near[3] + r)
    if px0 >= px1 or py0 >= py1:
        return
    x0, y0, x1, y1 = max(px0 - r, 0), max(py0 - r, 0), min(px1 + r, w), min(py1 + r, h)
    window = drawn[y0:y1, x0:x1]
    if r > 0:
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        window = cv2.dilate(window, disc)
    into[py0:py1, px0:px1] |= window[py0 - y0 : py1 - y0, px0 - x0 : px1 - x0]


def _outline_px(inst: DefectInstance, fine: FineMaps) -> np.ndarray | None:
    """`inst`'s outline in `fine`'s canvas pixels (int32 N x 2); None when it has none."""
    if not inst.polygon:
        return None
    return fine.letterbox.to_model(np.asarray(inst.polygon, float)).round().astype(np.int32)


def _draw(out: np.ndarray, pts: np.ndarray) -> None:
    """An outline filled into `out` (uint8), its edge drawn too: a thin outline has no interior."""
    cv2.fillPoly(out, [pts], 1)
    cv2.polylines(out, [pts], True, 1)


def _box_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The bounding box (x0, y0, x1, y1, exclusive) of a mask's nonzero pixels; None when it has none."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def tile_groups(tiles: Sequence[tuple[int, int, int, int]]) -> list[list[tuple[int, int, int, int]]]:
    """The tiles in groups that touch (sides or corners): a line of the fine maps lies inside one group,
    since the maps are zero between groups. A photo's tiles cover a few percent of its canvas, so
    reading the maps group by group is much cheaper than reading the whole canvas."""
    parent = list(range(len(tiles)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(tiles):
        for j in range(i):
            b = tiles[j]
            if a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]:
                parent[root(i)] = root(j)
    groups: dict[int, list[tuple[int, int, int, int]]] = {}
    for i, t in enumerate(tiles):
        groups.setdefault(root(i), []).append(t)
    return list(groups.values())


def group_boxes(fine: FineMaps) -> list[tuple[list[tuple[int, int, int, int]], tuple[int, int, int, int]]]:
    """Each group of `fine`'s tiles that touch (`tile_groups`) with its box (x0, y0, x1, y1, exclusive,
    within the canvas): where its maps are read."""
    h, w = fine.heat.shape
    return [
        (
            g,
            (
                min(t[0] for t in g),
                min(t[1] for t in g),
                min(max(t[2] for t in g), w),
                min(max(t[3] for t in g), h),
            ),
        )
        for g in tile_groups(fine.tiles)
    ]


def _touches(inst: DefectInstance, fine: FineMaps, mask: np.ndarray) -> bool:
    """Whether `inst`'s outline, drawn as `canvas_raster` draws it, meets `mask` (canvas pixels). Drawn
    in its own box only: a full canvas per coarse scratch (4 MP on a 12 MP phone photo) cost milliseconds
    each."""
    pts = _outline_px(inst, fine)
    if pts is None:
        return False
    h, w = mask.shape
    x0, y0 = np.maximum(pts.min(axis=0), 0)
    x1, y1 = np.minimum(pts.max(axis=0) + 1, (w, h))
    if x0 >= x1 or y0 >= y1:
        return False
    box = np.zeros((y1 - y0, x1 - x0), np.uint8)
    _draw(box, pts - (x0, y0))
    return bool((box.astype(bool) & mask[y0:y1, x0:x1]).any())


def fine_instances(
    fine: FineMaps,
    scale: Scale,
    min_confidence: float,
    photo_index: int = 0,
    view: View | None = None,
    exclude: np.ndarray | None = None,
) -> list[DefectInstance]:
    """Measured scratches in `fine`'s maps, read with its card's cuts, outside `exclude` (canvas
    pixels). Sizes in `scale`'s units (mm when the device's length is known); each scratch's zone from
    the coarse zone map on the canvas (as the view shows it)."""
    card = fine.card
    clb = fine.letterbox
    unit = scale.per_px * clb.draft_factor / clb.scale  # canvas pixel -> scale units
    min_len = card.min_length_mm / fine.mm_per_px

    def scratches(binary, heat, maps, origin):
        """The measured scratches of one tile group's centreline pixels (`binary`, group pixels), each with
        the (row, column) of its line's first pixel in a raster scan of the group."""
        n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for k in range(1, n):
            x, y, w, h = (int(v) for v in stats[k, :4])
            if max(w, h) < min_len:
                continue
            sub = labels[y : y + h, x : x + w] == k
            first = (y, x + int(np.argmax(sub[0])))
            for comp, measured, _line in _pieces(
                sub, DefectType.SCRATCH, 0.0, True, "fine", dict(FINE_STROKE_OPTIONS)
            ):
                length, _, _, contour = measured
                if length < min_len:
                    continue
                on = comp.astype(bool)
                h_here = heat[y : y + h, x : x + w][on]
                peak = float(h_here.max())
                conf = instance_confidence(peak, card.heat_cut)
                if conf < min_confidence:
                    continue
                # The heads are meaningful on the ridge: read them where heat is near its local peak.
                ridge = h_here >= 0.5 * peak  # never empty: a piece grown by hysteresis may lack a cut pixel
                width_px = float(np.median(maps["width_px"][y : y + h, x : x + w][on][ridge]))
                contrast = float(np.median(maps["contrast"][y : y + h, x : x + w][on][ridge]))
                if contrast < card.min_contrast:
                    continue
                polygon, box = outline(contour, clb, (x + origin[0], y + origin[1]))
                zone = vote_zone(maps["zones"][y : y + h, x : x + w][on], view)
                yield (
                    first,
                    DefectInstance(
                        type=DefectType.SCRATCH,
                        zone=zone,
                        photo_index=photo_index,
                        view=view,
                        box=box,
                        polygon=polygon,
                        confidence=conf,
                        measurement=Measurement(
                            units=scale.units,
                            length=length * unit,
                            width=width_px * unit,
                            area=length * width_px * unit * unit,
                            contrast=min(max(contrast, 0.0), 1.0),
                        ),
                    ),
                )

    found: list[tuple[tuple[int, int], DefectInstance]] = []
    for group, (gx0, gy0, gx1, gy1) in group_boxes(fine):
        here = (slice(gy0, gy1), slice(gx0, gx1))
        mine = np.zeros((gy1 - gy0, gx1 - gx0), bool)  # this group's tiles only: boxes may overlap
        for x0, y0, x1, y1 in group:
            mine[y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0] = True
        read = mine & fine.covered[here]
        if exclude is not None:
            read &= ~exclude[here]
        heat = np.where(read, fine.heat[here], 0.0)
        binary = lines_mask(heat, card.heat_cut, card.heat_low)
        if not binary.any():
            continue
        maps = {name: getattr(fine, name)[here] for name in ("width_px", "contrast", "zones")}
        for first, inst in scratches(binary, heat, maps, (gx0, gy0)):
            found.append(((first[0] + gy0, first[1] + gx0), inst))
    # In the order of a scan of the whole canvas (each line by its first pixel), as one labelling of the
    # canvas gave them.
    return [inst for _, inst in sorted(found, key=lambda f: f[0])]


def in_fine_tiles(inst: DefectInstance, fine: FineMaps) -> bool:
    """Whether an instance's centre lies where the fine pass looked."""
    if not inst.polygon:
        return False
    centre = np.asarray(inst.polygon, float).mean(axis=0, keepdims=True)
    cx, cy = fine.letterbox.to_model(centre)[0]
    h, w = fine.covered.shape
    return 0 <= cx < w and 0 <= cy < h and bool(fine.covered[int(cy), int(cx)])


def merge_fine(
    coarse: list[DefectInstance], fine: list[DefectInstance], maps: FineMaps
) -> list[DefectInstance]:
    """The coarse instances, less their scratches that the fine pass found again (inside its tiles,
    within `MERGE_MM` of a fine scratch), then the fine scratches. A coarse scratch the tiles covered but
    the fine pass did not find stays: the fine network learnt hairlines and misses wide gouges that the
    coarse pass resolves. On 60 high-resolution synthetic validation photos, replacing every coarse
    scratch in the tiles left 5 of the 32 body scratches 0.2 mm or wider there found; the coarse pass
    alone finds 27 of the 42 body scratches that wide (docs/fine-pass.md)."""
    near = None
    if fine:
        # The fine scratches lie in the tiles, so their outlines grown by r lie in the tile groups'
        # boxes widened by r: the mask is exact everywhere.
        r = round(MERGE_MM / maps.mm_per_px)
        around = [(x0 - r, y0 - r, x1 + r, y1 + r) for _, (x0, y0, x1, y1) in group_boxes(maps)]
        near = canvas_raster(fine, maps, MERGE_MM, around)

    def refound(inst: DefectInstance) -> bool:
        return near is not None and in_fine_tiles(inst, maps) and _touches(inst, maps, near)

    kept = [i for i in coarse if not (i.type == DefectType.SCRATCH and refound(i))]
    return kept + fine


def frame_lines(fine: FineMaps, view: View | None) -> list[FrameLine]:
    """The frame reader's lines the card counts (z at its `frame_z`), where the photo is a front or back
    view as the caller or the network says (the reader ran on the network's view)."""
    if view not in FRAME_VIEWS or fine.card.frame_z is None:
        return []
    return [line for line in fine.frame if line.z >= fine.card.frame_z]


def frame_instances(
    lines: list[FrameLine],
    frame_z: float,
    scale: Scale,
    min_confidence: float,
    photo_index: int = 0,
    view: View | None = None,
) -> list[DefectInstance]:
    """`frame_lines` as scratches on the frame. A line's confidence is z / (z + frame_z): one half at the
    card's cut, as a component's at its pixel threshold."""
    out = []
    for line in lines:
        conf = line.z / (line.z + frame_z)
        if conf < min_confidence:
            continue
        poly = line.polygon.astype(np.float32)
        if len(poly) > 64:
            poly = cv2.approxPolyDP(poly.reshape(-1, 1, 2), 1.0, True)[:, 0, :]
        (x0, y0), (x1, y1) = line.polygon.min(axis=0), line.polygon.max(axis=0)
        length, width = line.length_px * scale.per_px, line.width_px * scale.per_px
        out.append(
            DefectInstance(
                type=DefectType.SCRATCH,
                zone=Zone.FRAME,
                photo_index=photo_index,
                view=view,
                box=(float(x0), float(y0), float(x1), float(y1)),
                polygon=[(float(x), float(y)) for x, y in poly],
                confidence=float(conf),
                # No contrast: the rim's level is a metal's reflection of the room, so the residual over
                # it says more about the light than about the scratch; the rules judge it by its width
                # (as they judge the coarse pass's). On the validation photos, with the contrast
                # read by the visibility model, Back Market accuracy fell 2 photos of 57 (docs/fine-pass.md).
                measurement=Measurement(units=scale.units, length=length, width=width, area=length * width),
            )
        )
    return out


def merge_frame(
    coarse: list[DefectInstance], frame: list[DefectInstance], lines: list[FrameLine], scale: Scale
) -> list[DefectInstance]:
    """`coarse` less its frame scratches lying on one of `lines` (their outline's centre within
    `MERGE_MM` of the line's centre), then `frame`, the lines' scratches: the reader measures a line at
    the photo's pixels, the coarse pass at a cell as wide as the rim."""
    if not frame:
        return coarse
    if scale.units != "mm":  # no mm to measure MERGE_MM in: both are kept
        return coarse + frame
    near = MERGE_MM / scale.per_px
    centres = np.concatenate([line.centre for line in lines])

    def on_a_line(inst: DefectInstance) -> bool:
        if inst.type != DefectType.SCRATCH or inst.zone != Zone.FRAME or not inst.polygon:
            return False
        c = np.asarray(inst.polygon, float).mean(axis=0)
        return bool(np.min(np.hypot(*(centres - c).T)) <= near)

    return [i for i in coarse if not on_a_line(i)] + frame


def photo_instances(
    outputs: dict[str, np.ndarray],
    lb,
    input_size: int,
    thresholds: Thresholds,
    scale: Scale,
    photo_index: int = 0,
    view: View | None = None,
    fine: FineMaps | None = None,
    glass: tuple[Zone, ...] = GLASS_ZONES,
    lit: bool = False,
) -> list[DefectInstance]:
    """Every measured instance of one photo: the coarse maps' (`extract_instances`), and where the fine
    pass ran (`fine`), its scratches in place of the coarse ones it covers. `glass`: the zones that are
    glass on the device (`model.damage.glass_zones`). `lit`: the display is on (`model.display`): no
    scratch is read on its screen, where the picture's own edges are what a scratch map finds."""
    coarse = extract_instances(
        outputs["defect_probs"],
        outputs["zone_probs"],
        lb,
        thresholds,
        scale,
        input_size,
        photo_index,
        view,
        features=feature_maps(outputs),
        glass=glass,
    )
    if lit:
        coarse = [i for i in coarse if not (i.type == DefectType.SCRATCH and i.zone == Zone.SCREEN)]
    if fine is None:
        return lines_on_cracked_glass(coarse, glass)
    # A line on a crack the coarse pass counts is that crack, not a scratch: the fine network learnt lines
    # and reads a crack's branches as scratches (on the synthetic validation photos, this removes 51 of
    # its 62 false scratches). Only cracks the grade counts (`model.rules.engine.counted`): the fragments
    # of a glass zone (`model.damage`, role "evidence") and an uncertain zone crack (an MSD screen's at
    # 0.25, whose outline spans its long scratch) lie on the very scratch the fine pass measures.
    cracks = [i for i in coarse if i.type == DefectType.CRACK and counted(i)]
    # Read only in the tiles (`fine_instances`): a zone crack's outline spans the screen.
    exclude = canvas_raster(cracks, fine, MERGE_MM, [b for _, b in group_boxes(fine)]) if cracks else None
    found = fine_instances(fine, scale, thresholds.min_instance_confidence, photo_index, view, exclude)
    lines = frame_lines(fine, view)
    frame = frame_instances(
        lines, fine.card.frame_z, scale, thresholds.min_instance_confidence, photo_index, view
    )
    merged = merge_frame(merge_fine(coarse, found, fine), frame, lines, scale)
    return lines_on_cracked_glass(merged, glass)
