"""The fine pass's oracle: the Back Market ceiling of a *perfect* network through the two-pass design.

python benchmarks/bench_fine_oracle.py synth --n 150 --seed 707 --out /tmp/synth_fine
    Held-out synthetic devices at the resolution the fine pass is for: `refurbgrade synth`'s generator
    at 4096 px with the camera moved closer, so that the device fills 90% of the photo's limiting side
    (a 12 MP photo of a phone filling the frame, about 0.04-0.05 mm per pixel). Every other draw of
    the photo (device, defects, grade, light, sensor) is the generator's own. No composites.
python benchmarks/bench_fine_oracle.py oracle --manifest /tmp/synth_fine/manifest.jsonl --budgets 8 16 32
    For each graded photo, the grade a perfect network reaches through
    (a) today's design: the true device crop at 384 px, coverage maps at stride 4 (the training
        target), serving's post-processing and stroke split at the cut of `bench_model.py oracle`;
    (b) the new design: those coarse maps, then tiles of the device proposed from a candidate map
        (the coarse scratch/chip map at a low cut, a top-hat/black-hat line filter on the photo and the
        grade-critical zones), at most K tiles of 256 px at about 0.05 mm per pixel (never finer than
        the photo), falling back to 0.1 mm/px tiles when more are proposed; inside them, the true
        scratch masks at the tile's resolution (the perfect fine network's centreline map), stitched
        into one map of the device and extracted by the same post-processing and stroke split;
        scratches and chips inside tiles come from that map, everything else from the coarse pass;
    (c) the same with every tile at 0.1 mm/px.
    Widths: a fine network is to output a per-pixel width; its perfect reading is the true width,
    but a line thinner than the generator's contrast floor (0.6 px, see training/synth/defects.py)
    looks like one 0.6 px wide, so the reading is max(true width, 0.6 px). The table also shows the
    width post-processing measures from the pixels, without a width head.
    Prints per design and K: scratch recall, median length error (absolute and signed), Back Market
    accuracy, the share of devices whose proposals exceeded K at 0.05 mm/px (fallback) and still at 0.1
    (truncated), a tolerance band (below), and the true scratch widths against the tiles' pixel size.
    `--gallery FILE` draws tiles at coarse and fine resolution with the true scratches.

    How the fine pass measures (defaults: as first measured, docs/fine-pass.md's first table):
    `--measure fine` measures in the tiles what the rules compare with limits, at the tiles' own
    resolution (`extract_instances(measure="fine")`): a scratch's length along its centreline, ends
    run out to the mask's edge less half the width (the generator's length is the centreline of a
    round-capped stroke), a blob's to its pixels' edges, blobs' maps at coverage >= 0.5 instead of any
    coverage; `--fine-types scratch chip dent` measures dents in the tiles too (and proposes tiles from
    the coarse dent map); `--join-deg` the stroke split's join angle; `--orientation` gives the split a
    perfect orientation head (each true scratch's structure-tensor orientation on its own pixels, none
    where two overlap). `--ablation` adds rows at K = all, one change at a time from the first
    measurement ("step N"); `--joins 10` rows at other join angles without the orientation head.
    Tolerance band: a photo goes to review when its grade with every length 1 px (of the pixel it
    was measured at: the tile's, or the coarse pass's for what the coarse pass measured) shorter
    differs from its grade with every length 1 px longer; the table gives the share sent and the
    accuracy on the rest, for lengths alone and for lengths and widths.

python benchmarks/bench_fine_oracle.py oracle --manifest /tmp/synth_fine/manifest.jsonl --measure fine
        --fine-types scratch chip dent --orientation --ablation --joins 10 --budgets 8 16 32
    (one command line) The re-run of docs/fine-pass.md ("Measuring in the fine pass").

    `--plane homography` measures every design's sizes in the device's plane instead of at one mm/px
    for the photo (`model.plane`, `extract_instances(plane=...)`): the homography from the device's
    outline in the true zone mask (a perfect zone head at the photo's pixels) to the catalogue's
    rectangle for the photo's view; `--plane homography-coarse` fits the outline of the coarse pass's
    zone cells instead (what a 384 px zone map holds). The report adds how far the fitted plane's scale
    at the device's centre is from the photo's mm/px (exact there in the generator). `lengths --plane
    homography` adds the plane's column to each defect measured alone.

python benchmarks/bench_fine_oracle.py planefit --manifest /tmp/synth_fine/manifest.jsonl --coarse
    Lengths between random pairs of the device's pixels, at one mm/px for the photo and through the
    fitted planes, against the generator's camera rebuilt from the photo's record: the measurement's
    own error before any defect is drawn.
"""

from __future__ import annotations

import argparse
import math
import pickle
import statistics
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from unittest import mock

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

FINE_MM = 0.05  # the fine pass's target pixel size
FALLBACK_MM = 0.1  # its fallback when more than K tiles are proposed
TILE_PX = 256
COARSE_SIZE, COARSE_STRIDE, COARSE_CUT = 384, 4, 0.25  # today's network, bench_model.py oracle's cut
CANDIDATE_CUT = 0.02  # the coarse scratch/chip map's low cut for proposals
FRAME_FILL = 0.9
CONTRAST_FLOOR_PX = 0.6  # training/synth/defects.py `_draw_scratch`: thinner lines look this wide
FINE_TYPES = ("scratch", "chip")
PLANES = ("none", "homography", "homography-coarse")  # how sizes are measured (`device_plane`)


# --------------------------------------------------------------------------------------------------
# data


def _close_pose(fill: float):
    """`choose_pose` with the generator's own draws, then the camera moved so that the device fills
    `fill` of the photo's limiting side (its framing kept where it still fits)."""
    from training.synth import photography
    from training.synth.geometry import apply_h, camera_homography

    original = photography.choose_pose

    def choose(rng, plane_mm, out_w, out_h, flat_tilt=False):
        p = original(rng, plane_mm, out_w, out_h, flat_tilt)
        wmm, hmm = plane_mm
        corners = np.array(
            [[-wmm / 2, -hmm / 2], [wmm / 2, -hmm / 2], [wmm / 2, hmm / 2], [-wmm / 2, hmm / 2]]
        )
        q = apply_h(camera_homography((0.0, 0.0), (0.0, 0.0), p.rotation, p.tilt, p.half_extent_mm), corners)
        ppm = fill * min(out_w / np.ptp(q[:, 0]), out_h / np.ptp(q[:, 1]))
        qc = q * ppm
        lo_x, hi_x = -qc[:, 0].min() + 2, out_w - qc[:, 0].max() - 2
        lo_y, hi_y = -qc[:, 1].min() + 2, out_h - qc[:, 1].max() - 2
        cx = float(np.clip(p.out_centre[0], lo_x, hi_x)) if hi_x > lo_x else out_w / 2
        cy = float(np.clip(p.out_centre[1], lo_y, hi_y)) if hi_y > lo_y else out_h / 2
        return type(p)(float(ppm), p.rotation, p.tilt, (cx, cy), p.half_extent_mm)

    return choose


def synth(
    n: int, seed: int, out: str, size: int, fill: float, start: int = 0, grade_mix: dict | None = None
) -> Path:
    from model.manifest import write_manifest
    from training.synth.generator import SynthConfig, iter_generate

    # measure_shown: each defect's photo_step, how much the photo shows it (`training.synth.shown`)
    cfg = SynthConfig(seed=seed, size=size, p_composite=0.0, grade_mix=grade_mix or {}, measure_shown=True)
    out_dir = Path(out)
    with mock.patch("training.synth.generator.choose_pose", _close_pose(fill)):
        records = []
        for i, rec in enumerate(iter_generate(cfg, n, out_dir, 1, start)):
            records.append(rec)
            if (i + 1) % 10 == 0:
                print(f"{i + 1}/{n} photos", flush=True)
    path = out_dir / "manifest.jsonl"
    write_manifest(path, records)
    mmpx = sorted(r.mm_per_px for r in records if r.mm_per_px)
    if mmpx:
        print(
            f"{len(records)} photos, {path}; mm per px median {statistics.median(mmpx):.3f} "
            f"(10-90%: {mmpx[len(mmpx) // 10]:.3f}-{mmpx[9 * len(mmpx) // 10]:.3f})"
        )
    return path


# --------------------------------------------------------------------------------------------------
# the oracle


@dataclass
class Truth:
    """One true instance: its record, its mask on each fine canvas, its true width."""

    type: str
    width_mm: float
    length_mm: float | None
    canvases: dict[float, np.ndarray] = field(default_factory=dict)  # tile mm/px -> uint8 mask
    full: np.ndarray | None = None  # uint8 mask in the original photo's pixels


@dataclass
class Tally:
    """One design's figures over the photos."""

    found: int = 0
    true: int = 0
    pairs: list = field(default_factory=list)
    blob_pairs: dict = field(default_factory=dict)  # chip, dent -> (true mm, measured mm)
    right: list = field(default_factory=list)
    right_pixel_width: list = field(default_factory=list)
    fallback: list = field(default_factory=list)
    truncated: list = field(default_factory=list)
    tiles: list = field(default_factory=list)
    confusions: dict = field(default_factory=dict)
    # Tolerance band: per photo, (sent to review, right) with lengths +-1 px, and with widths +-1 px too.
    band: list = field(default_factory=list)
    band_width: list = field(default_factory=list)


@dataclass(frozen=True)
class Setting:
    """How the fine pass measures (see the module docstring): `measure` ("coarse": serving's 384 px
    measurement as it was; "fine": `extract_instances(measure="fine")`, lines along their centreline
    and blobs from their extent, blobs' maps at coverage >= 0.5), the types the tiles measure,
    the stroke split's join angle, and whether a perfect orientation head guides the split."""

    measure: str = "coarse"
    fine_types: tuple[str, ...] = FINE_TYPES
    join_deg: float = 20.0
    orientation: bool = False

    def label(self) -> str:
        parts = [
            "centreline lengths" if self.measure == "fine" else "outline lengths",
            "+".join(self.fine_types),
            f"join {self.join_deg:g} deg",
        ]
        if self.orientation:
            parts.append("orientation head")
        return ", ".join(parts)


def _canvas_lb(box: tuple[int, int, int, int], native_mm: float, tile_mm: float, w: int, h: int):
    """A Letterbox from the original photo's `box` to a square canvas at `tile_mm` per pixel (never finer
    than the photo: a fine pass cannot add pixels the photo does not have)."""
    from model.preprocess import Letterbox

    res = max(tile_mm, native_mm)
    scale = native_mm / res
    side = math.ceil(max(box[2] - box[0], box[3] - box[1]) * scale)
    return Letterbox(scale, 0, 0, w, h, 1.0, box), side, res


def _tile_scores(
    points_net: np.ndarray,
    crit_net: np.ndarray,
    points_line: np.ndarray,
    points_crit_zone: np.ndarray,
    box: tuple[int, int, int, int],
    tile_native: float,
) -> tuple[dict, dict, dict]:
    """Per tile (i, j) of a grid over `box` (tile side `tile_native` original px): the coarse
    candidates (weighted x2 in grade-critical zones), the line filter's pixels, the critical zones' area."""

    def binned(pts, weights=None):
        out: dict[tuple[int, int], float] = {}
        if len(pts) == 0:
            return out
        ij = np.floor((pts - (box[0], box[1])) / tile_native).astype(int)
        w = np.ones(len(pts)) if weights is None else weights
        for (i, j), v in zip(map(tuple, ij), w, strict=True):
            out[(i, j)] = out.get((i, j), 0.0) + float(v)
        return out

    return binned(points_net, 1.0 + crit_net), binned(points_line), binned(points_crit_zone)


def _choose_tiles(net: dict, line: dict, crit: dict, k: int | None, min_line: float) -> tuple[list, int]:
    """`model.fine_pass.choose_cells`, as (tiles, number proposed): serving's own tile choice."""
    from model.fine_pass import choose_cells

    plan = choose_cells(net, line, crit, k, min_line)
    return list(plan.cells), plan.proposed


def _rect_mask(tiles, box, tile_native: float, lb, side: int) -> np.ndarray:
    m = np.zeros((side, side), np.uint8)
    for i, j in tiles:
        x0, y0 = box[0] + i * tile_native, box[1] + j * tile_native
        (a, b), (c, d) = lb.to_model(np.array([[x0, y0], [x0 + tile_native, y0 + tile_native]]))
        m[max(0, round(b)) : max(0, round(d)), max(0, round(a)) : max(0, round(c))] = 1
    return m


def _inside_tiles(inst, tiles: set, box, tile_native: float) -> bool:
    cx, cy = np.asarray(inst.polygon, float).mean(axis=0)
    return (int((cx - box[0]) // tile_native), int((cy - box[1]) // tile_native)) in tiles


def _area_mask(mask: np.ndarray, lb, side: int) -> np.ndarray:
    """`letterbox_mask` for a blob: the canvas pixels the blob covers by at least half (area-unbiased;
    `letterbox_mask` keeps any pixel covered 5%, which thin lines need and which grows a blob by up to a
    pixel on every side)."""
    from training.dataset import letterbox_mask

    s = lb.scale / lb.draft_factor
    if s >= 1:
        return letterbox_mask(mask, lb, side)
    x0, y0, x1, y1 = (round(v * lb.draft_factor) for v in lb.crop)
    m = mask[y0:y1, x0:x1]
    nw, nh = max(1, round(m.shape[1] * s)), max(1, round(m.shape[0] * s))
    small = (cv2.resize(m.astype(np.float32), (nw, nh), interpolation=cv2.INTER_AREA) >= 0.5).astype(np.uint8)
    out = np.zeros((side, side), np.uint8)
    hh, ww = min(nh, side - lb.pad_y), min(nw, side - lb.pad_x)
    out[lb.pad_y : lb.pad_y + hh, lb.pad_x : lb.pad_x + ww] = small[:hh, :ww]
    return out


def line_orientation(mask: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Per pixel of a one-line mask, the line's orientation (radians modulo pi, image x right and y
    down; NaN outside the mask): the structure tensor's minor axis, over a Gaussian window of `sigma`
    pixels (default: 5, or the line's width where wider, so that the window reaches both edges from its
    middle). What a perfect orientation head would output on that line's pixels."""
    out = np.full(mask.shape, np.nan, np.float32)
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return out
    if sigma is None:
        dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
        sigma = max(5.0, 2.0 * float(dist.max()))
    pad = int(4 * sigma) + 2
    y0, x0 = max(0, ys.min() - pad), max(0, xs.min() - pad)
    y1, x1 = min(mask.shape[0], ys.max() + pad + 1), min(mask.shape[1], xs.max() + pad + 1)
    m = cv2.GaussianBlur(mask[y0:y1, x0:x1].astype(np.float32), (0, 0), 1.0)
    gx, gy = cv2.Sobel(m, cv2.CV_32F, 1, 0), cv2.Sobel(m, cv2.CV_32F, 0, 1)
    jxx, jxy, jyy = (cv2.GaussianBlur(v, (0, 0), sigma) for v in (gx * gx, gx * gy, gy * gy))
    grad = 0.5 * np.arctan2(2 * jxy, jxx - jyy)  # the dominant gradient, across the line
    theta = np.mod(grad + np.pi / 2, np.pi)
    inside = mask[y0:y1, x0:x1] > 0
    out[y0:y1, x0:x1][inside] = theta[inside]
    return out


def device_plane(rec, zone_native: np.ndarray | None, how: str, zone_cells=None, lb=None, stride: int = 1):
    """The device's plane for `extract_instances(plane=...)` (`model.plane`): the homography from the
    photo's pixels to the device's rectangle in mm, the rectangle's size from the catalogue (the photo's
    device model and view), its corners from the device's outline. `how`: "none" (None: one mm/px for
    the photo, as before), "homography" (the outline of the true zone mask at the photo's pixels: a
    perfect zone head at full resolution) or "homography-coarse" (the outline of the coarse pass's zone
    cells, `zone_cells` at `stride` model pixels through `lb`: what serving's 384 px zone map holds)."""
    from model.catalogue import lookup_device
    from model.plane import fit_device_plane, plane_size_mm

    if how == "none" or not rec.device_model:
        return None
    size_mm = plane_size_mm(lookup_device(rec.device_model), rec.view)
    if how == "homography":
        return fit_device_plane(zone_native > 0, size_mm)

    def to_photo(cells):  # cell indices -> the model pixel each was read at -> photo pixel indices
        return lb.to_original(np.asarray(cells, float) * stride + stride // 2 + 0.5) - 0.5

    return fit_device_plane(zone_cells > 0, size_mm, to_photo)


def plane_centre_error(plane, native_mm: float) -> float:
    """How far the fitted plane's scale along the device's long side, at the device's centre (the
    rectangle's centre mapped back into the photo), is from the photo's mm/px (relative). The
    generator's camera is exactly the photo's mm/px there in every direction (its perspective is zero
    at the device centre), so this is the fit's own error; along the long side, because the short side
    of a side view is a few dozen pixels, where half a pixel of outline is a percent."""
    long_mm, short_mm = plane.size_mm
    c = np.linalg.inv(plane.h) @ np.array([long_mm / 2, short_mm / 2, 1.0])
    centre = c[:2] / c[2]
    along = np.linalg.solve(
        plane.jacobian(centre), np.array([1.0, 0.0])
    )  # photo px per mm along the long side
    return 1.0 / float(np.hypot(*along)) / native_mm - 1.0


def camera_length_errors(rec, zone_native: np.ndarray, centre, plane=None, n: int = 200, seed: int = 0):
    """Relative errors of lengths between `n` random pairs of the device's pixels in the photo, against
    the generator's camera: measured through `plane` (`model.plane.DevicePlane`), or at the photo's one
    mm/px when None. The camera is rebuilt from the photo's record (its mm/px, rotation and tilt, the
    half extent `choose_pose` uses) and placed at `centre`, the device's centre in the photo (a fitted
    plane's: a translation, a pixel off there changes no length measurably)."""
    from model.catalogue import lookup_device
    from model.plane import plane_size_mm
    from training.synth.geometry import camera_homography

    ppm = 1.0 / rec.mm_per_px
    half_mm = max(plane_size_mm(lookup_device(rec.device_model), rec.view)) / 2
    tilt = (float(rec.meta["tilt_x"]), float(rec.meta["tilt_y"]))
    rot = math.radians(float(rec.meta["rotation_deg"]))
    cam = camera_homography((0.0, 0.0), tuple(centre), rot, tilt, half_mm * ppm)
    to_mm = np.linalg.inv(cam @ np.diag([ppm, ppm, 1.0]))
    ys, xs = np.nonzero(zone_native > 0)
    rng = np.random.default_rng(seed)
    a, b = rng.integers(len(xs), size=(2, n))
    pa, pb = np.stack([xs[a], ys[a]], 1).astype(float), np.stack([xs[b], ys[b]], 1).astype(float)

    def through(h, p):
        q = np.concatenate([p, np.ones((len(p), 1))], axis=1) @ h.T
        return q[:, :2] / q[:, 2:3]

    true = np.hypot(*(through(to_mm, pa) - through(to_mm, pb)).T)
    if plane is None:
        got = np.hypot(*(pa - pb).T) * rec.mm_per_px
    else:
        got = np.hypot(*(plane.to_mm(pa) - plane.to_mm(pb)).T)
    keep = true > 1.0  # mm: a pair of nearly the same point has no length to be wrong about
    return got[keep] / true[keep] - 1.0


def device_centre(plane) -> tuple[float, float]:
    """The device's centre in the photo: the centre of the plane's rectangle mapped back."""
    long_mm, short_mm = plane.size_mm
    c = np.linalg.inv(plane.h) @ np.array([long_mm / 2, short_mm / 2, 1.0])
    return float(c[0] / c[2]), float(c[1] / c[2])


def planefit(manifest: str, limit: int, coarse: bool = False) -> dict:
    """How well each way of measuring reads lengths on the device, before any defect: random pairs of
    the device's pixels measured at one mm/px for the photo, through the plane fitted to the true zone
    mask, and (`coarse`) through the plane fitted to the coarse pass's zone cells, against the
    generator's camera (`camera_length_errors`). Prints, per view and over all photos, the median and
    90th percentile of the pairs' |relative error|."""
    from model.manifest import resolve
    from model.preprocess import prepare
    from training.dataset import build_targets, read_mask, true_crop_box

    ways = ["one mm/px", "plane (true zone mask)"] + (["plane (coarse zone cells)"] if coarse else [])
    errors: dict = {}
    for it in _graded_items(manifest)[:limit]:
        rec = it.record
        zone = read_mask(resolve(it.manifest, rec.zone_mask))
        fine = device_plane(rec, zone, "homography")
        if fine is None:
            continue
        planes = [None, fine]
        if coarse:
            path = resolve(it.manifest, rec.image)
            cbox = true_crop_box(it, prepare(path, COARSE_SIZE)[1])
            t = build_targets(it, COARSE_SIZE, cbox)
            s = COARSE_STRIDE
            zcells = t["zone"][s // 2 :: s, s // 2 :: s].astype(int)
            _, lb = prepare(path, COARSE_SIZE, cbox)
            planes.append(device_plane(rec, zone, "homography-coarse", zcells, lb, s))
        centre = device_centre(fine)
        side = "side" if rec.view not in ("front", "back") else "front/back"
        for way, pl in zip(ways, planes, strict=True):
            if pl is None and way != "one mm/px":
                continue
            e = np.abs(camera_length_errors(rec, zone, centre, pl))
            for group in (side, "all"):
                errors.setdefault((way, group), []).append(e)
    print(f"lengths between random pairs of device pixels against the generator's camera ({manifest})")
    for (way, group), es in sorted(errors.items(), key=lambda kv: (kv[0][1], ways.index(kv[0][0]))):
        pooled = np.concatenate(es)
        print(
            f"  {group}, {way}: {len(es)} photos; |error| median {np.median(pooled):.2%}, "
            f"90% {np.quantile(pooled, 0.9):.2%}, max {pooled.max():.2%}"
        )
    return errors


def _fine_instances(
    truths, zone_native, box, native_mm, tile_mm, tiles, tile_native, w, h, cache, setting, plane=None
):
    """A perfect fine network's stitched maps inside `tiles` -> instances, each with the width a width
    head would read (max(true, contrast floor)) and the width measured from pixels. Returns (pairs of
    instances, the canvas's mm per pixel)."""
    from model.card import Thresholds
    from model.outputs import DEFECT_CHANNELS, ZONE_CHANNELS
    from model.postprocess import Scale, extract_instances
    from training.dataset import letterbox_mask
    from training.metrics import instance_mask

    lb, side, res = _canvas_lb(box, native_mm, tile_mm, w, h)
    key = (res, tuple(sorted(tiles)), setting)
    if key in cache:
        return cache[key], res
    inside = _rect_mask(tiles, box, tile_native, lb, side)
    defect = np.zeros((len(DEFECT_CHANNELS), side, side), np.float32)
    width = np.zeros((side, side), np.float32)
    orient = np.full((side, side), np.nan, np.float32) if setting.orientation else None
    owners = np.zeros((side, side), np.uint8) if setting.orientation else None
    for t in truths:
        if t.type not in setting.fine_types:
            continue
        area = setting.measure == "fine" and t.type != "scratch"
        ckey = (res, "area") if area else res
        if ckey not in t.canvases:
            t.canvases[ckey] = _area_mask(t.full, lb, side) if area else letterbox_mask(t.full, lb, side)
        m = t.canvases[ckey] & inside
        d = DEFECT_CHANNELS.index(t.type)
        defect[d] = np.maximum(defect[d], m)
        if t.type == "scratch":
            width = np.where(m > 0, np.maximum(width, t.width_mm), width)
            if orient is not None and m.any():
                okey = (res, "orientation")
                if okey not in t.canvases:
                    t.canvases[okey] = line_orientation(t.canvases[res])
                theta = t.canvases[okey]
                here = m > 0
                owners[here] += 1
                orient[here] = theta[here]
    if orient is not None:
        orient[owners > 1] = np.nan  # where scratches overlap the orientation is not one line's
    zkey = ("zone", res)
    if zkey not in cache:
        cache[zkey] = letterbox_mask(zone_native, lb, side)
    zone = cache[zkey]
    zone_probs = np.zeros((len(ZONE_CHANNELS), side, side), np.float32)
    for c in range(len(ZONE_CHANNELS)):
        zone_probs[c] = zone == c
    thr = Thresholds(defect_pixel={n: 0.5 for n in DEFECT_CHANNELS}, min_instance_confidence=0.0)
    options = {"max_turn_deg": setting.join_deg}
    if orient is not None:
        options["orientation"] = orient
    insts = extract_instances(
        defect,
        zone_probs,
        lb,
        thr,
        Scale("mm", native_mm, True),
        side,
        measure=setting.measure,
        stroke_options=options,
        plane=plane,
    )
    out = []
    floor = CONTRAST_FLOOR_PX * res
    for inst in insts:
        head = inst
        if inst.type.value == "scratch":
            m = instance_mask(inst, lb, side)
            vals = width[m & (width > 0)]
            wmm = max(float(np.median(vals)) if len(vals) else 0.0, floor)
            head = inst.model_copy(update={"measurement": inst.measurement.model_copy(update={"width": wmm})})
        out.append((head, inst))
    cache[key] = out
    return out, res


def _nudged(insts, pixels, sign: float, widths: bool) -> list:
    """`insts` with each length (and width, with `widths`) moved by `sign` times its own pixel (mm), the
    area scaled to match: the grade at the near or the far end of each measurement's +-1 px."""
    out = []
    for inst, px in zip(insts, pixels, strict=True):
        m = inst.measurement
        length = max(m.length + sign * px, 0.0)
        width = max(m.width + sign * px, 0.0) if widths else m.width
        ratio = (length / m.length if m.length else 1.0) * (width / m.width if m.width else 1.0)
        upd = {"length": length, "width": width, "area": m.area * ratio}
        out.append(inst.model_copy(update={"measurement": m.model_copy(update=upd)}))
    return out


def band_grade(insts, pixels, kind: str, widths: bool) -> tuple[str, bool]:
    """The tolerance band: the grade with every measurement 1 px smaller and 1 px larger (each instance's
    own pixel, mm). Grading is monotone in sizes, so when the two differ a limit lies within 1 px of
    a measurement that decides the grade: (the grade as measured, True: send to review)."""
    from model.rules import grade

    small = grade(_nudged(insts, pixels, -1.0, widths), "backmarket", device_kind=kind).grade
    large = grade(_nudged(insts, pixels, 1.0, widths), "backmarket", device_kind=kind).grade
    return grade(insts, "backmarket", device_kind=kind).grade, small != large


def ablation_steps(setting: Setting) -> list[Setting]:
    """From the fine pass as first measured to `setting`, one change at a time (measurement, the types
    the tiles measure, the join angle, the orientation head); steps that change nothing are left out."""
    from dataclasses import replace

    steps = [Setting()]
    for change in (
        {"measure": setting.measure},
        {"fine_types": setting.fine_types},
        {"join_deg": setting.join_deg},
        {"orientation": setting.orientation},
    ):
        nxt = replace(steps[-1], **change)
        if nxt != steps[-1]:
            steps.append(nxt)
    return steps


def oracle(
    manifest: str,
    budgets: list[int],
    limit: int,
    cut: float,
    min_line_mm: float,
    gallery: str | None,
    explain: bool = False,
    setting: Setting | None = None,
    ablation: bool = False,
    joins: tuple[float, ...] = (),
    start: int = 0,
    dump: str | None = None,
    plane: str = "none",
) -> dict:
    """The table of the module docstring. `setting`: how the fine pass measures (default: as first
    measured). `ablation`: add rows at K = all for each step from the first measurement to `setting`
    (`ablation_steps`), named "step N". `joins`: add rows at K = all with `setting` at these join
    angles and no orientation head, named "join J". `start`, `dump`: grade the photos from `start` on
    and pickle the tallies to `dump`, for `report` to put shards run side by side together.
    `plane`: how every design measures sizes (`device_plane`): "none", one mm/px per photo as before;
    "homography" or "homography-coarse", in the device's plane."""
    from dataclasses import replace
    from types import SimpleNamespace

    from model.card import Thresholds
    from model.crop import CROP_MARGIN
    from model.fine_pass import line_filter
    from model.manifest import resolve
    from model.outputs import DEFECT_CHANNELS, ZONE_CHANNELS
    from model.postprocess import Scale, extract_instances
    from model.preprocess import prepare
    from model.rules import grade
    from training.dataset import build_targets, read_mask, true_crop_box, true_device_box
    from training.metrics import gt_instances, instance_mask, length_errors, match_instances, true_grades

    setting = setting or Setting()
    items = _graded_items(manifest)[start : start + limit]
    thr = Thresholds(defect_pixel={n: cut for n in DEFECT_CHANNELS}, min_instance_confidence=0.0)
    # (row name, resolution name, K, setting)
    runs = [("fine", k, setting) for k in budgets] + [("fine", None, setting)]
    runs += [("0.1", k, setting) for k in budgets]
    steps = ablation_steps(setting) if ablation else []
    runs += [("step", i, st) for i, st in enumerate(steps)]
    runs += [("join", j, replace(setting, join_deg=j, orientation=False)) for j in joins]
    designs = ["coarse"] + [_run_name(*r) for r in runs]
    tally = {d: Tally() for d in designs}
    all_types = sorted({t for _, _, st in runs for t in st.fine_types})
    widths, natives, tiles_gallery, plane_errors = [], [], [], []
    for n_done, it in enumerate(items):
        rec = it.record
        path = resolve(it.manifest, rec.image)
        native = float(rec.mm_per_px)
        natives.append(native)
        truth = true_grades(rec)["backmarket"]
        kind = rec.device_kind or "phone"
        # (a) today's design: true device crop, 384 px, coverage at stride 4 (bench_model.py oracle --crop)
        cbox = true_crop_box(it, prepare(path, COARSE_SIZE)[1])
        t = build_targets(it, COARSE_SIZE, cbox)
        s, size = COARSE_STRIDE, COARSE_SIZE
        g = size // s
        defect = t["defects"].reshape(g, s, g, s, -1).astype(np.float32).mean(axis=(1, 3)).transpose(2, 0, 1)
        zcells = t["zone"][s // 2 :: s, s // 2 :: s].astype(int)
        zone_probs = np.eye(len(ZONE_CHANNELS), dtype=np.float32)[np.clip(zcells, 0, 4)].transpose(2, 0, 1)
        _, lb = prepare(path, size, cbox)
        scale = Scale("mm", native, True)
        zone_native = read_mask(resolve(it.manifest, rec.zone_mask))
        dplane = device_plane(rec, zone_native, plane, zcells, lb, s)
        if dplane is not None:
            plane_errors.append(plane_centre_error(dplane, native))
        coarse = extract_instances(defect, zone_probs, lb, thr, scale, size, plane=dplane)
        coarse_px = native * lb.draft_factor / lb.scale  # mm per model-input pixel of the coarse pass
        gts = gt_instances(SimpleNamespace(item=it, lb=lb), size)

        ctx = SimpleNamespace(
            lb=lb, size=size, gts=gts, s=s, kind=kind, truth=truth, rec=rec, native=native, px=coarse_px
        )

        def score(
            name, insts, pixel_insts=None, fallback=None, truncated=None, n_tiles=None, pixels=None, ctx=ctx
        ):
            lb, size, gts, s, kind, truth = ctx.lb, ctx.size, ctx.gts, ctx.s, ctx.kind, ctx.truth
            tl = tally[name]
            masks = [instance_mask(i, lb, size) for i in insts]
            matches = match_instances(insts, masks, gts, radius=s)
            tl.true += sum(1 for x in gts if x.type == "scratch")
            tl.found += sum(
                1 for m in matches if m.type == "scratch" and m.pred is not None and m.gt is not None
            )
            tl.pairs += length_errors(matches, ("scratch",))
            for bt in ("chip", "dent"):
                tl.blob_pairs.setdefault(bt, []).extend(length_errors(matches, (bt,)))
            result = grade(insts, "backmarket", device_kind=kind)
            got = result.grade
            tl.right.append(got == truth)
            if pixels is None:
                pixels = [ctx.px] * len(insts)
            for widths_too, out in ((False, tl.band), (True, tl.band_width)):
                _, review = band_grade(insts, pixels, kind, widths_too)
                out.append((review, got == truth))
            if explain and name == "fine all" and got != truth:
                rec, native = ctx.rec, ctx.native
                print(f"  wrong: {rec.image} ({rec.view}, {native:.3f} mm/px): {truth} -> {got}")
                for reason in result.barred.get(truth, []):
                    print(f"    barred {truth}: {reason}")
                true_sc = [
                    (i.type.value, i.zone.value if i.zone else "", i.length_mm, i.width_mm)
                    for i in rec.instances
                ]
                print(f"    true: {true_sc}")
            tl.confusions[(truth, got)] = tl.confusions.get((truth, got), 0) + 1
            if pixel_insts is not None:
                tl.right_pixel_width.append(grade(pixel_insts, "backmarket", device_kind=kind).grade == truth)
            if fallback is not None:
                tl.fallback.append(fallback)
                tl.truncated.append(truncated)
                tl.tiles.append(n_tiles)

        score("coarse", coarse)

        # (b), (c): the fine pass. Native-resolution truth and photo, cropped to the true device box.
        h, w = rec.height, rec.width
        box = true_device_box(it, 1.0, CROP_MARGIN)
        truths = []
        for inst in rec.instances:
            if inst.type.value in all_types and inst.mask is not None:
                tr = Truth(inst.type.value, inst.width_mm or 0.0, inst.length_mm)
                tr.full = (read_mask(resolve(it.manifest, inst.mask)) > 0).astype(np.uint8)
                truths.append(tr)
                if tr.type == "scratch":
                    widths.append((tr.width_mm, native, inst.zone.value if inst.zone else "", truth))
        x0, y0, x1, y1 = box
        photo = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)[y0:y1, x0:x1]
        f = native / FALLBACK_MM  # the line filter runs at 0.1 mm/px
        small = cv2.resize(photo, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else photo
        fmm = native / f if f < 1 else native
        zsmall = cv2.resize(
            zone_native[y0:y1, x0:x1], (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST
        )
        lines = line_filter(small, zsmall > 0, fmm)  # serving's (model.fine_pass)
        ly, lx = np.nonzero(lines)
        pts_line = np.stack([lx, ly], 1) * (fmm / native) + (x0, y0) if len(lx) else np.zeros((0, 2))
        cy_, cx_ = np.nonzero(np.isin(zsmall, (1, 4)))  # screen, camera
        pts_crit = np.stack([cx_, cy_], 1) * (fmm / native) + (x0, y0) if len(cx_) else np.zeros((0, 2))

        def candidates(types, defect=defect, zcells=zcells, lb=lb, s=s):
            """The coarse cells of `types` at coverage >= the low cut: each cell's centre and corners."""
            cand = np.zeros(defect.shape[1:], bool)
            for ty in types:
                cand |= defect[DEFECT_CHANNELS.index(ty)] >= CANDIDATE_CUT
            cj, ci = np.nonzero(cand)
            offs = np.array([[0.5, 0.5], [0, 0], [1, 0], [0, 1], [1, 1]])
            if not len(ci):
                return np.zeros((0, 2)), np.zeros(0)
            cells = (np.stack([ci, cj], 1)[:, None, :] + offs[None]).reshape(-1, 2) * s
            crit = np.repeat(np.isin(zcells[cj, ci], (1, 4)).astype(float), len(offs))
            return lb.to_original(cells), crit

        cand_cache: dict = {}
        cache: dict = {}
        for name_res, k, st in runs:
            res = FALLBACK_MM if name_res == "0.1" else FINE_MM
            budget = None if name_res in ("step", "join") else k
            if st.fine_types not in cand_cache:
                cand_cache[st.fine_types] = candidates(st.fine_types)
            pts_net, crit_net = cand_cache[st.fine_types]
            r0 = max(res, native)
            tile_native = TILE_PX * r0 / native
            net, line, crit = _tile_scores(pts_net, crit_net, pts_line, pts_crit, box, tile_native)
            min_line = min_line_mm / fmm
            tiles, n_prop = _choose_tiles(net, line, crit, budget, min_line)
            fallback = truncated = False
            use_mm = res
            if name_res == "fine" and budget is not None and n_prop > budget:  # fall back to 0.1 mm/px
                fallback = True
                use_mm = FALLBACK_MM
                r0 = max(FALLBACK_MM, native)
                tile_native = TILE_PX * r0 / native
                net, line, crit = _tile_scores(pts_net, crit_net, pts_line, pts_crit, box, tile_native)
                tiles, n_prop = _choose_tiles(net, line, crit, budget, min_line)
            truncated = budget is not None and n_prop > budget
            fine, fine_mm = _fine_instances(
                truths, zone_native, box, native, use_mm, tiles, tile_native, w, h, cache, st, dplane
            )
            tset = set(tiles)
            keep = [
                i
                for i in coarse
                if i.type.value not in st.fine_types or not _inside_tiles(i, tset, box, tile_native)
            ]
            name = _run_name(name_res, k, st)
            score(
                name,
                keep + [a for a, _ in fine],
                keep + [b for _, b in fine],
                fallback,
                truncated,
                len(tiles),
                [coarse_px] * len(keep) + [fine_mm] * len(fine),
            )
            if (
                gallery
                and name == f"fine {budgets[-1]}"
                and len(tiles_gallery) < 4
                and truth in ("Premium", "Excellent", "Good")
            ):
                tiles_gallery += _gallery_tiles(
                    t["image"],
                    lb,
                    photo,
                    box,
                    native,
                    use_mm,
                    tiles,
                    tile_native,
                    truths,
                    [a for a, _ in fine],
                    truth,
                )[: 4 - len(tiles_gallery)]
        del truths
        if (n_done + 1) % 10 == 0:
            print(f"  {n_done + 1}/{len(items)} photos", file=sys.stderr, flush=True)
    _report(
        manifest,
        items,
        tally,
        designs,
        widths,
        natives,
        cut,
        min_line_mm,
        setting,
        steps,
        plane,
        plane_errors,
    )
    if dump:
        state = {
            "manifest": manifest,
            "start": start,
            "n": len(items),
            "tally": tally,
            "designs": designs,
            "widths": widths,
            "natives": natives,
            "cut": cut,
            "min_line_mm": min_line_mm,
            "setting": setting,
            "steps": steps,
            "plane": plane,
            "plane_errors": plane_errors,
        }
        Path(dump).write_bytes(pickle.dumps(state))
    if gallery and tiles_gallery:
        _save_tiles(tiles_gallery, Path(gallery))
        print(f"gallery: {gallery}")
    return tally


def lengths(manifest: str, limit: int, plane: str = "none") -> list:
    """Each true scratch, chip and dent measured alone (no neighbour to merge with, no tile edge) on
    the fine canvas at 0.05 mm/px: the serving measurement before (`measure_component`, outline) and
    after (`measure="fine"`), against the generator's length, split by the photo's tilt (one mm/px per
    photo: a tilted device's near side is larger than its far side). `plane="homography"` adds the
    fine measurement in the device's plane (`device_plane`, from the true zone mask)."""
    from model.crop import CROP_MARGIN
    from model.manifest import resolve
    from model.postprocess import _measure_fine, _measure_fine_centreline, _plane_sizes, measure_component
    from training.dataset import letterbox_mask, read_mask, true_device_box

    rows = []
    for it in _graded_items(manifest)[:limit]:
        rec = it.record
        box = true_device_box(it, 1.0, CROP_MARGIN)
        lb, side, res = _canvas_lb(box, rec.mm_per_px, FINE_MM, rec.width, rec.height)
        tilt = max(abs(rec.meta.get("tilt_x") or 0.0), abs(rec.meta.get("tilt_y") or 0.0))
        dplane = None
        if plane != "none":
            dplane = device_plane(rec, read_mask(resolve(it.manifest, rec.zone_mask)), plane)
        for inst in rec.instances:
            ty = inst.type.value
            if ty not in ("scratch", "chip", "dent") or inst.mask is None or not inst.length_mm:
                continue
            full = (read_mask(resolve(it.manifest, inst.mask)) > 0).astype(np.uint8)
            line = ty == "scratch"
            m = letterbox_mask(full, lb, side) if line else _area_mask(full, lb, side)
            ys, xs = np.nonzero(m)
            if not len(ys):
                continue
            crop = m[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
            before = measure_component(crop, line)[0] * res
            after = _measure_fine(crop, line)[0] * res
            in_plane = after
            if dplane is not None:
                measured, centreline = _measure_fine_centreline(m, line)
                in_plane = _plane_sizes(m, measured, centreline, lb, dplane, line, True)[0]
            rows.append((ty, inst.length_mm, before, after, res, tilt, in_plane))
    print(
        f"each true defect measured alone at {FINE_MM} mm/px ({limit} photos at most): median |error| (signed)"
    )
    columns = [(2, "outline (before)"), (3, "centreline / extent (fine)")]
    if plane != "none":
        columns.append((6, f"fine, in the device's plane ({plane})"))
    for ty in ("scratch", "chip", "dent"):
        r = [x for x in rows if x[0] == ty]
        if not r:
            continue
        for j, label in columns:
            e = np.array([(x[j] - x[1]) / x[1] for x in r])
            px = np.array([(x[j] - x[1]) / x[4] for x in r])
            print(
                f"  {ty} {label}: n {len(r)}, {np.median(np.abs(e)):.1%} ({np.median(e):+.1%}), "
                f"in pixels {np.median(np.abs(px)):.2f} ({np.median(px):+.2f}); over 1 px off: {np.mean(abs(px) > 1):.0%}"
            )
    r = [x for x in rows if x[0] == "scratch"]
    tilt = np.array([x[5] for x in r])
    for j, label in columns[1:]:
        e = np.array([(x[j] - x[1]) / x[1] for x in r])
        for lo, hi in ((0.0, 0.01), (0.01, 0.03), (0.03, 1.0)):
            sel = (tilt >= lo) & (tilt < hi)
            if sel.any():
                print(
                    f"  scratches, {label}, photo tilt {lo}-{hi}: n {sel.sum()}, median |error| "
                    f"{np.median(np.abs(e[sel])):.1%} ({np.median(e[sel]):+.1%})"
                )
    return rows


def _graded_items(manifest: str) -> list:
    from training.dataset import load_items

    return [
        it
        for it in load_items(manifest, ["train", "val", "test"])
        if it.record.grades.get("backmarket") and it.record.mm_per_px and it.record.zone_mask
    ]


def report(dumps: list[str]) -> dict:
    """The table of shards (`oracle --start N --limit M --dump FILE`) graded side by side: their tallies
    added up, in the order of the photos."""
    states = sorted((pickle.loads(Path(d).read_bytes()) for d in dumps), key=lambda st: st["start"])
    first = states[0]
    tally = {d: Tally() for d in first["designs"]}
    widths, natives, plane_errors = [], [], []
    for st in states:
        assert st["designs"] == first["designs"] and st["setting"] == first["setting"]
        assert st.get("plane", "none") == first.get("plane", "none")
        widths += st["widths"]
        natives += st["natives"]
        plane_errors += st.get("plane_errors", [])
        for d, tl in st["tally"].items():
            out = tally[d]
            for f in fields(Tally):
                a, b = getattr(out, f.name), getattr(tl, f.name)
                if isinstance(a, list):
                    a.extend(b)
                elif isinstance(a, int):
                    setattr(out, f.name, a + b)
                else:
                    for key, v in b.items():
                        a[key] = a.get(key, 0) + v if isinstance(v, int) else a.get(key, []) + v
    end = max(st["start"] + st["n"] for st in states)
    items = _graded_items(first["manifest"])[first["start"] : end]
    assert len(items) == sum(st["n"] for st in states), "the shards must cover consecutive photos"
    _report(
        first["manifest"],
        items,
        tally,
        first["designs"],
        widths,
        natives,
        first["cut"],
        first["min_line_mm"],
        first["setting"],
        first["steps"],
        first.get("plane", "none"),
        plane_errors,
    )
    return tally


def _run_name(name_res: str, k, setting) -> str:
    if name_res in ("step", "join"):
        return f"{name_res} {k:g}"
    return f"{name_res} {k if k is not None else 'all'}"


def _median_rel(pairs) -> float:
    rel = [abs(m - t) / t for t, m in pairs]
    return statistics.median(rel) if rel else float("nan")


def _median_signed(pairs) -> float:
    rel = [(m - t) / t for t, m in pairs]
    return statistics.median(rel) if rel else float("nan")


def _band(rows) -> str:
    """'share sent to review / accuracy on the rest' of a tolerance band's (review, right) rows."""
    if not rows:
        return "-"
    review = np.array([r for r, _ in rows])
    right = np.array([ok for _, ok in rows])
    rest = f"{right[~review].mean():.3f}" if (~review).any() else "-"
    return f"{review.mean():.0%} / {rest}"


def _report(
    manifest,
    items,
    tally,
    designs,
    widths,
    natives,
    cut,
    min_line_mm,
    setting=None,
    steps=(),
    plane="none",
    plane_errors=(),
) -> None:
    from bench_model import true_instances

    from model.rules import grade
    from training.metrics import true_grades

    nat = sorted(natives)
    print(
        f"{len(items)} graded photos from {manifest}; photo mm/px median {statistics.median(nat):.3f} "
        f"(10-90%: {nat[len(nat) // 10]:.3f}-{nat[9 * len(nat) // 10]:.3f}); coarse 384/4 on the true device "
        f"crop, cut {cut}; tiles {TILE_PX} px; line filter candidates >= {min_line_mm} mm of response"
    )
    if setting is not None:
        print(f"fine pass: {setting.label()}")
    if plane != "none":
        e = np.abs(np.asarray(plane_errors, float))
        fit = (
            f"the fitted plane's scale at the device centre against the photo's mm/px: median {np.median(e):.2%}, "
            f"90% {np.quantile(e, 0.9):.2%}, max {e.max():.2%} ({len(e)} of {len(items)} photos fitted)"
            if len(e)
            else "no plane fitted"
        )
        print(f"sizes in the device's plane ({plane}); {fit}")
    print(
        "design | K | scratch recall | median length error | median signed length error | BM acc (width head) "
        "| BM acc (pixel widths) | fallback to 0.1 | truncated at K | tiles used (mean) "
        "| band +-1 px on lengths: review / BM acc on the rest | band on lengths and widths"
    )
    for d in designs:
        tl = tally[d]
        kind, _, k = d.partition(" ")
        label = {
            "coarse": "(a) coarse 384/4",
            "fine": "(b) fine 0.05 mm/px",
            "0.1": "(c) fine 0.1 mm/px",
            "step": "(b) fine 0.05 mm/px, step",
            "join": "(b) fine 0.05 mm/px, join angle",
        }[kind]
        rpw = f"{np.mean(tl.right_pixel_width):.3f}" if tl.right_pixel_width else "-"
        fb = f"{np.mean(tl.fallback):.0%}" if tl.fallback and kind == "fine" and k != "all" else "-"
        tr = (
            f"{np.mean(tl.truncated):.0%}" if tl.truncated and kind in ("fine", "0.1") and k != "all" else "-"
        )
        nt = f"{np.mean(tl.tiles):.1f}" if tl.tiles else "-"
        print(
            f"{label} | {k or '-'} | {tl.found}/{tl.true} ({tl.found / max(tl.true, 1):.0%}) | "
            f"{_median_rel(tl.pairs):.3f} | {_median_signed(tl.pairs):+.3f} | {np.mean(tl.right):.3f} | {rpw} | "
            f"{fb} | {tr} | {nt} | {_band(tl.band)} | {_band(tl.band_width)}"
        )
    for i, st in enumerate(steps):
        print(f"  step {i} (K = all): {st.label()}")
    for d in designs:
        tl = tally[d]
        blobs = ", ".join(
            f"{bt} {_median_rel(v):.3f} ({_median_signed(v):+.3f} signed, {len(v)})"
            for bt, v in tl.blob_pairs.items()
            if v
        )
        print(f"  {d}: median length error of matched {blobs}")
    # What the true widths are against the pixel: the grade limits are 0.05 (Premium), 0.15 (Excellent),
    # 0.3 (Good body) and 0.5 mm (Fair screen).
    ws = np.array([w for w, *_ in widths])
    print(f"true scratch widths ({len(ws)} scratches): median {np.median(ws):.3f} mm; share below")
    for px in (FINE_MM, FALLBACK_MM):
        print(
            f"  at {px} mm/px: 0.6 px {np.mean(ws < CONTRAST_FLOOR_PX * px):.0%}, 1 px {np.mean(ws < px):.0%}, "
            f"2 px {np.mean(ws < 2 * px):.0%}"
        )
    for lim in (0.05, 0.15, 0.3):
        near = np.mean(np.abs(ws - lim) < FINE_MM / 2)
        print(f"  within half a 0.05 mm pixel of the {lim} mm limit: {near:.0%}")
    # The rules on the true instances with widths read at each tile size's contrast floor.
    for px in (0.0, FINE_MM, FALLBACK_MM):
        ok = []
        for it in items:
            r = it.record
            insts = true_instances(
                r,
                width_mm=lambda inst, r=r, px=px: max(
                    inst.width_mm or 0.0, CONTRAST_FLOOR_PX * max(px, r.mm_per_px) if px else 0.0
                ),
            )
            ok.append(
                grade(insts, "backmarket", device_kind=r.device_kind or "phone").grade
                == true_grades(r)["backmarket"]
            )
        label = (
            "true widths" if not px else f"widths read at {px} mm/px (floor {CONTRAST_FLOOR_PX * px:.3f} mm)"
        )
        print(f"  rules on the true instances, {label}: {np.mean(ok):.3f}")
    for d in [designs[0], "fine all"] + [d for d in designs if d.startswith(("step", "join"))]:
        wrong = sorted(((v, a, b) for (a, b), v in tally[d].confusions.items() if a != b), reverse=True)[:6]
        print(
            f"  {d}: commonest errors (truth -> graded): " + ", ".join(f"{a}->{b} {v}" for v, a, b in wrong)
        )


def _gallery_tiles(coarse_img, lb, photo, box, native, use_mm, tiles, tile_native, truths, fine, truth_grade):
    """Per tile with a true scratch: the coarse network's view of it (the 384 crop, upsampled), the
    fine tile, the fine tile with the true scratches (red) and the fine pass's instances (green)."""
    out = []
    for i, j in tiles:
        x0, y0 = box[0] + i * tile_native, box[1] + j * tile_native
        xa, ya = int(x0 - box[0]), int(y0 - box[1])
        tn = round(tile_native)
        if xa < 0 or ya < 0 or ya + tn > photo.shape[0] or xa + tn > photo.shape[1]:
            continue
        hit = [
            tr
            for tr in truths
            if tr.type == "scratch" and tr.full[int(y0) : int(y0) + tn, int(x0) : int(x0) + tn].any()
        ]
        if not hit:
            continue
        hit.sort(key=lambda tr: tr.width_mm)
        fine_tile = cv2.resize(
            photo[ya : ya + tn, xa : xa + tn], (TILE_PX, TILE_PX), interpolation=cv2.INTER_AREA
        )
        (a, b), (c, d) = lb.to_model(np.array([[x0, y0], [x0 + tn, y0 + tn]]))
        a, b, c, d = (round(v) for v in (a, b, c, d))
        if a < 0 or b < 0 or c > coarse_img.shape[1] or d > coarse_img.shape[0] or c <= a or d <= b:
            continue
        coarse_tile = cv2.resize(
            cv2.cvtColor(coarse_img[b:d, a:c], cv2.COLOR_RGB2GRAY),
            (TILE_PX, TILE_PX),
            interpolation=cv2.INTER_NEAREST,
        )
        over = cv2.cvtColor(fine_tile, cv2.COLOR_GRAY2RGB)
        for tr in hit:
            m = cv2.resize(
                tr.full[int(y0) : int(y0) + tn, int(x0) : int(x0) + tn],
                (TILE_PX, TILE_PX),
                interpolation=cv2.INTER_AREA,
            )
            m = cv2.dilate((m > 0).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=3)
            contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(over, contours, -1, (255, 40, 40), 1)
        for inst in fine:
            if inst.type.value != "scratch":
                continue
            pts = (np.asarray(inst.polygon) - (x0, y0)) * TILE_PX / tn
            cv2.polylines(over, [np.round(pts).astype(np.int32)], True, (40, 220, 40), 1)
        panels = [
            cv2.cvtColor(coarse_tile, cv2.COLOR_GRAY2RGB),
            cv2.cvtColor(fine_tile, cv2.COLOR_GRAY2RGB),
            over,
        ]
        mm = max(use_mm, native)
        caps = [
            f"coarse {lb_mm(lb, native):.2f} mm/px",
            f"fine {mm:.3f} mm/px",
            f"true (red) / found (green); {truth_grade}",
        ]
        for p, cap in zip(panels, caps, strict=True):
            cv2.putText(p, cap, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1)
        out.append(np.concatenate([np.pad(p, ((2, 2), (2, 2), (0, 0))) for p in panels], axis=1))
        if len(out) >= 1:  # one tile per device: more devices in the gallery
            break
    return out


def lb_mm(lb, native: float) -> float:
    return native * lb.draft_factor / lb.scale


def _save_tiles(rows, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path, quality=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth")
    s.add_argument("--n", type=int, default=150)
    s.add_argument("--seed", type=int, default=707)
    s.add_argument("--size", type=int, default=4096)
    s.add_argument("--fill", type=float, default=FRAME_FILL)
    s.add_argument("--start", type=int, default=0)
    s.add_argument("--out", required=True)
    s.add_argument(
        "--grade",
        action="append",
        default=[],
        metavar="NAME=WEIGHT",
        help="the Back Market grade mix (repeatable; default every grade alike), e.g. Unlistable=1 for cracks",
    )
    o = sub.add_parser("oracle")
    o.add_argument("--manifest", required=True)
    o.add_argument("--budgets", type=int, nargs="+", default=[8, 16, 32])
    o.add_argument("--limit", type=int, default=200)
    o.add_argument("--cut", type=float, default=COARSE_CUT, help="the coarse maps' pixel threshold")
    o.add_argument("--min-line-mm", type=float, default=2.0, help="line-filter response that proposes a tile")
    o.add_argument("--gallery", help="image of a few tiles at coarse and fine resolution")
    o.add_argument("--explain", action="store_true", help="print why the unlimited fine pass grades wrong")
    o.add_argument(
        "--measure",
        choices=["coarse", "fine"],
        default="coarse",
        help="fine: lengths along the centreline, blobs from their extent (extract_instances measure=fine)",
    )
    o.add_argument("--fine-types", nargs="+", default=list(FINE_TYPES), help="types the tiles measure")
    o.add_argument("--join-deg", type=float, default=20.0, help="the stroke split's join angle in the tiles")
    o.add_argument("--orientation", action="store_true", help="a perfect orientation head guides the split")
    o.add_argument("--ablation", action="store_true", help="rows at K = all for each step of the change")
    o.add_argument("--joins", type=float, nargs="*", default=[], help="rows at K = all at these join angles")
    o.add_argument(
        "--blob-edge-px",
        type=float,
        help="measure fine: what a blob's extent adds to its contour's (model.postprocess.FINE_BLOB_EDGE_PX)",
    )
    o.add_argument(
        "--plane",
        choices=PLANES,
        default="none",
        help="measure in the device's plane: the homography from the outline (true zone mask, or the coarse "
        "pass's zone cells) to the catalogue's rectangle (model.plane); none: one mm/px per photo",
    )
    o.add_argument("--start", type=int, default=0, help="grade the photos from this one on (a shard)")
    o.add_argument("--dump", help="pickle the tallies here, for `report`")
    r = sub.add_parser("report", help="the table of shards run side by side (oracle --dump)")
    r.add_argument("dumps", nargs="+")
    ln = sub.add_parser("lengths", help="each true defect measured alone, before and after --measure fine")
    ln.add_argument("--manifest", required=True)
    ln.add_argument("--limit", type=int, default=200)
    ln.add_argument(
        "--plane", choices=("none", "homography"), default="none", help="add the plane's measurement"
    )
    pf = sub.add_parser("planefit", help="lengths on the device at one mm/px and through the fitted planes")
    pf.add_argument("--manifest", required=True)
    pf.add_argument("--limit", type=int, default=200)
    pf.add_argument("--coarse", action="store_true", help="also the plane from the coarse pass's zone cells")
    args = ap.parse_args()
    if args.cmd == "oracle":
        if args.blob_edge_px is not None:
            import model.postprocess

            model.postprocess.FINE_BLOB_EDGE_PX = args.blob_edge_px
        setting = Setting(args.measure, tuple(args.fine_types), args.join_deg, args.orientation)
        oracle(
            args.manifest,
            args.budgets,
            args.limit,
            args.cut,
            args.min_line_mm,
            args.gallery,
            args.explain,
            setting,
            args.ablation,
            tuple(args.joins),
            args.start,
            args.dump,
            args.plane,
        )
    elif args.cmd == "report":
        report(args.dumps)
    elif args.cmd == "lengths":
        lengths(args.manifest, args.limit, args.plane)
    elif args.cmd == "planefit":
        planefit(args.manifest, args.limit, args.coarse)
    elif args.cmd == "synth":
        mix = {k: float(v) for k, v in (g.split("=", 1) for g in args.grade)}
        synth(args.n, args.seed, args.out, args.size, args.fill, args.start, mix)


if __name__ == "__main__":
    main()
