"""The fine pass (issue 19): native-resolution tiles of the device through the fine network, stitched
into maps of the device. Torch-free (numpy, OpenCV).

Back Market's top grades differ by scratches a buyer sees at 20 or 50 cm, 0.05-0.3 mm wide: a pixel or
less even at 0.05 mm per pixel, invisible at the coarse pass's 0.2-0.5 mm. After the coarse passes
(`model.inference.infer`), `fine_pass` does, for a photo that shows the device finely enough
(`FineCard.coarsest_mm`):

1. decode the photo again at the resolution the tiles need (a JPEG at 1/2, 1/4 or 1/8 scale where the
   photo is finer than that), keep the device's box, resized to `fine_mm` per pixel (never finer than
   the photo: a fine pass cannot add pixels the photo does not have): the *canvas*;
2. find the surface it reads (`surface`): the screen and the back, more than `EDGE_MM` inside their
   zone's edge (the network calls sharp edges scratches; frame and camera keep the coarse pass's);
3. propose tiles on a grid over the canvas (`tile_scores`, `choose_cells`): every tile with a coarse
   scratch or chip cell at `candidate_cut` on the surface (cells in the screen count double: any
   scratch there bars Excellent), or with `line_min_mm` of a top-hat/black-hat line filter's
   response; ranked coarse evidence first. More than `max_tiles` proposed: the whole plan at
   `fallback_mm` per pixel instead; still more: the best `max_tiles`. Budget left over goes to the
   surface, the screen first;
4. run the fine network on each tile with `margin_px` of context on every side and keep the tile's
   inner part, so neighbouring tiles meet without seams; stitch `heat`, `width_px` and `contrast`
   into maps of the canvas (`FineMaps`).
5. on a front or back view, with the card's `frame_z`, read the frame's rim along the device's outline
   on the same canvas (`model.frame_read`): the lines there, which the tiles do not read (`FineMaps.frame`).

`model.fine_instances` turns the maps into measured scratches and merges them with the coarse pass's.
The fine network's file is a sibling of the coarse model's (`NAME.fine.onnx`, `fine_sibling`), with its
own card (`FineCard`) in its metadata. docs/fine-pass.md has the design and the measurements.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.frame_read import FrameLine, read_frame
from model.geometry import MIN_DEVICE_CELLS, device_mask, mask_box
from model.outputs import DEFECT_CHANNELS, network_view
from model.plane import view_share
from model.postprocess import estimate_scale
from model.preprocess import Letterbox, decode_part
from model.taxonomy import DefectType, DeviceKind, View, Zone
from model.tiled_map import TiledMap, tiled

T = TypeVar("T")

FINE_CARD_KEY = "refurbgrade.fine_card"
FINE_CARD_SCHEMA_VERSION = 1
FINE_SUFFIX = ".fine.onnx"
# The fine network's outputs (`model.fine_network.FineNet`), each N x 1 x H x W at the tile's size.
FINE_OUTPUT_NAMES = ("heat", "width_px", "contrast")
# Coarse channels whose candidates propose tiles: what the fine network measures (scratches) and what
# it may find to be a scratch (a chip cell is often a short scratch at 0.3 mm per pixel).
CANDIDATE_TYPES = (DefectType.SCRATCH, DefectType.CHIP)
# Zones where any scratch bars Excellent: the budget left after the candidates goes there.
CRITICAL_ZONES = (Zone.SCREEN, Zone.CAMERA)
# The fine pass measures the flat glass and back: the zones it reads, each less EDGE_MM inside its edge.
# The fine network learnt lines on flat surfaces (`training.synth.fine_patches`) and calls any sharp
# edge a scratch: the device's outline, the camera's rings, the screen's border; and the coarse zone map
# places those edges to a mask cell (about 2 mm on a phone). Frame and camera keep the coarse pass's.
SURFACE_ZONES = (Zone.SCREEN, Zone.BODY)
EDGE_MM = 2.0
SURFACE_MM = 0.25
# The line filter looks at the canvas at this pixel size (it finds where lines are, not their width),
# or at up to `LINE_FILTER_SLACK` times it where a whole-number shrink gets there (`line_filter_shrink`).
LINE_FILTER_RES_MM = 0.1
LINE_FILTER_SLACK = 1.25
LINE_FILTER_MM = 0.6  # structuring element (a line narrower than this is "thin")
LINE_FILTER_K = 6.0  # response above median + K x MAD of the device's responses
OUTLINE_MM = 1.0  # the device's outline is the strongest "line": the filter ignores this band inside it


class FineCard(BaseModel):
    """What serving needs to know of a fine network: the tiles it reads and the cuts it was checked at.
    Carried as JSON in the fine file's ONNX metadata (`FINE_CARD_KEY`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = FINE_CARD_SCHEMA_VERSION
    name: str
    version: str
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    git_commit: str = ""
    tile_px: int = Field(default=256, ge=32)
    # Context on each side of a tile that is run but not kept (the tile's edge sees half a kernel).
    margin_px: int = Field(default=16, ge=0)
    fine_mm: float = Field(default=0.05, gt=0)  # the tiles' pixel size on the device
    fallback_mm: float = Field(default=0.1, gt=0)  # when more than max_tiles are proposed
    # A photo whose device is coarser than this gets no fine pass (the network trained on 0.03-0.12 mm
    # per pixel; `model.detail` asks for a closer photo).
    coarsest_mm: float = Field(default=0.12, gt=0)
    max_tiles: int = Field(default=8, ge=1)
    # Tiles left over once the proposed cells (coarse candidates, line response) have theirs go to the
    # grade-critical zones' cells, most line response first. Off from card 2026.12.06.1: on the
    # validation photos those tiles found one true scratch more and two false ones, and took five of a
    # clean 12 MP phone's six tiles (docs/fine-pass.md, session 45).
    fill_critical: bool = True
    heat_cut: float = Field(default=0.5, gt=0, lt=1)  # a centreline pixel: heat at least this
    # Hysteresis: a line is the connected pixels at `heat_low` or more that hold one at `heat_cut`. The
    # cut that is best per pixel (0.97-0.99) breaks a line into fragments where its heat dips; growing
    # from it over the low cut keeps the line whole (None: no hysteresis, the cut alone).
    heat_low: float | None = Field(default=None, gt=0, lt=1)
    # A fine scratch shorter or fainter than these is not reported: on real screens the network marks
    # dust, display pixels and sensor openings with short, faint strokes (docs/fine-pass.md).
    min_length_mm: float = Field(default=1.0, ge=0)
    min_contrast: float = Field(default=0.08, ge=0, le=1)
    candidate_cut: float = Field(default=0.1, gt=0, lt=1)  # a coarse scratch/chip cell proposes a tile
    line_min_mm: float = Field(default=2.0, gt=0)  # line-filter response that proposes a tile
    # The frame reader (`model.frame_read`) on front and back views: a line on the rim is connected
    # pixels at a z-score of `frame_z_low` or more whose peak reaches `frame_z`. The pass keeps lines
    # from `frame_z_low` on (`FineMaps.frame`); `frame_z` is applied when they are read, so `fine-cut`
    # can choose it without running the pass again. None: the frame is not read (cards before
    # 2026.12.05.3).
    frame_z: float | None = Field(default=None, gt=0)
    frame_z_low: float | None = Field(default=None, gt=0)
    metrics: dict[str, float] = Field(default_factory=dict)
    notes: str = ""

    @property
    def stride(self) -> int:
        """The grid's cell: a tile less its context margins (the part of a tile that is kept)."""
        return self.tile_px - 2 * self.margin_px

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str = "fine model") -> FineCard:
        """The card in a fine file's ONNX metadata; ValueError when missing or invalid."""
        if FINE_CARD_KEY not in metadata:
            raise ValueError(f"{source}: no fine card in the ONNX metadata (key {FINE_CARD_KEY!r})")
        try:
            card = cls.model_validate(json.loads(metadata[FINE_CARD_KEY]))
        except (ValidationError, json.JSONDecodeError) as exc:
            raise ValueError(f"{source}: invalid fine card: {exc}") from exc
        if card.schema_version != FINE_CARD_SCHEMA_VERSION:
            raise ValueError(f"{source}: fine card schema_version {card.schema_version}")
        return card


def fine_sibling(path: str | Path) -> Path:
    """`NAME.fine.onnx` beside `NAME.onnx` or `NAME.int8.onnx` (both precisions share one fine file)."""
    path = Path(path)
    stem = path.name.removesuffix(".onnx").removesuffix(".int8")
    return path.with_name(stem + FINE_SUFFIX)


# The fine network on one N x 3 x T x T uint8 batch -> FINE_OUTPUT_NAMES, each N x 1 x T x T.
FineRun = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class FineStage:
    """What `model.inference.infer` needs to run the fine pass: the network, its card, and the device's
    length in mm (the catalogue's, or a typical one for its kind: it only sets the tiles' pixel size),
    its kind and its catalogue name (which side a side view shows, `model.plane.view_share`)."""

    card: FineCard
    run: FineRun
    length_mm: float
    # Whether a photo's work may go to a thread of its own now (`beside`: the rim read beside the tiles,
    # a large photo's full-scale decode beside the coarse passes): the service says yes only while this
    # grading is the only one in flight, when the cores would otherwise wait on it. None: always
    # (offline grading and evaluation, one photo at a time).
    spare_cores: Callable[[], bool] | None = None
    # The caller did not say what the device is: `model.inference.infer` sets `length_mm` to the typical
    # length of the kind the photos show (`model.device_kind`) before the pass runs.
    guess_kind: bool = False
    kind: DeviceKind = DeviceKind.PHONE
    model_name: str | None = None

    def cores_free(self) -> bool:
        """Whether a photo's work may go to a thread of its own now (`spare_cores`; None: always)."""
        return self.spare_cores is None or self.spare_cores()


@dataclass(frozen=True)
class FineMaps:
    """The fine network's maps over the device's canvas, zero outside the tiles (kept as the tiles:
    `model.tiled_map`; read a box or a pixel, or `np.asarray` for the dense map)."""

    heat: TiledMap  # H x W float32
    width_px: TiledMap  # H x W float32, in canvas pixels
    contrast: TiledMap  # H x W float32
    covered: TiledMap  # H x W bool: inside a tile's kept part and on a surface it reads (`surface`)
    zones: np.ndarray  # H x W uint8: the coarse zone map on the canvas (`canvas_zones`)
    card: FineCard  # the fine network's card the maps were made and are read with
    letterbox: Letterbox  # canvas pixels -> the original photo's (pad 0, crop = the device's box)
    mm_per_px: float  # the canvas's pixel size on the device (from the length `FineStage` gave)
    tiles: tuple[tuple[int, int, int, int], ...]  # kept parts, canvas pixels (x0, y0, x1, y1)
    proposed: int  # tiles the plan proposed at this resolution
    fallback: bool  # the plan fell back to `fallback_mm`
    # Lines on the rim (`model.frame_read`) whose z reaches the card's frame_z_low, in the original
    # photo's pixels (`model.fine_instances.frame_instances` keeps those at frame_z).
    frame: tuple[FrameLine, ...] = ()
    skipped: tuple[Zone, ...] = ()  # surfaces the pass did not read (a lit display's screen)


@dataclass(frozen=True)
class TilePlan:
    """The tiles to run, as grid cells (i, j) of `stride` canvas pixels, and how many were proposed."""

    cells: tuple[tuple[int, int], ...]
    proposed: int


def _cells(
    points: np.ndarray, stride: int, weights: np.ndarray | None = None
) -> dict[tuple[int, int], float]:
    """How many of `points` (N x 2, x y) fall in each grid cell (i, j) of `stride` pixels, or the sum of
    their positive `weights`; cells with none left out. Summed with one bincount over the cells' flat
    index: a real photo's busy screen (a cracked one, a lit wallpaper) gives the line filter tens of
    thousands of pixels, and a Python loop over them took over 100 ms."""
    ij = np.floor(np.asarray(points, float).reshape(-1, 2) / stride).astype(np.int64)
    if not len(ij):
        return {}
    low = ij.min(axis=0)
    rel = ij - low
    nj = int(rel[:, 1].max()) + 1
    counts = np.bincount(rel[:, 0] * nj + rel[:, 1], weights=weights)
    return {(int(k // nj + low[0]), int(k % nj + low[1])): float(counts[k]) for k in np.flatnonzero(counts)}


def choose_cells(
    net: Mapping[tuple[int, int], float],
    line: Mapping[tuple[int, int], float],
    crit: Mapping[tuple[int, int], float],
    k: int | None,
    min_line: float,
) -> TilePlan:
    """Proposed cells: every cell with a coarse candidate or at least `min_line` of line response;
    ranked coarse evidence first, then line response; at most `k` (None: all). The budget left over goes
    to the grade-critical zones' cells `crit`, most line response first, then most area (the pass hands
    none where its card does not fill, `FineCard.fill_critical`)."""
    proposed = set(net) | {t for t, v in line.items() if v >= min_line}
    ranked = sorted(proposed, key=lambda t: (-net.get(t, 0.0), -line.get(t, 0.0), t))
    if k is None:
        return TilePlan(tuple(ranked), len(proposed))
    chosen = ranked[:k]
    if len(chosen) < k:
        rest = sorted((t for t in crit if t not in proposed), key=lambda t: (-line.get(t, 0.0), -crit[t], t))
        chosen += rest[: k - len(chosen)]
    return TilePlan(tuple(chosen), len(proposed))


def line_filter(gray: np.ndarray, device: np.ndarray, px_mm: float) -> np.ndarray:
    """Thin bright or dark lines on `gray` (pixel size `px_mm`): the larger of the white top-hat and the
    black-hat with a disc of `LINE_FILTER_MM`, kept above median + K x MAD of the device's responses,
    inside the device less `OUTLINE_MM` of its outline."""
    r = max(1, round(LINE_FILTER_MM / px_mm / 2))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    g = cv2.GaussianBlur(gray, (0, 0), 0.7)
    resp = np.maximum(cv2.morphologyEx(g, cv2.MORPH_TOPHAT, k), cv2.morphologyEx(g, cv2.MORPH_BLACKHAT, k))
    inner = cv2.erode(
        (device > 0).view(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, round(OUTLINE_MM / px_mm))
    )
    # The histogram of the responses inside, with OpenCV's mask: indexing them out first cost a copy.
    counts = cv2.calcHist([resp], [0], inner, [256], [0, 256]).ravel().astype(np.int64)
    if not counts.any():
        return np.zeros(inner.shape, bool)
    med, mad = median_and_mad(counts)
    # resp is an integer, so resp > t is resp > floor(t), which is what OpenCV's 8-bit threshold tests;
    # 0/1 bytes anded with the 0/1 mask, read as bool without a copy (a numpy comparison and `&` over
    # the canvas cost three passes and two temporaries).
    above = cv2.threshold(resp, float(np.floor(med + LINE_FILTER_K * (mad + 1.0))), 1, cv2.THRESH_BINARY)[1]
    return cv2.bitwise_and(above, inner).view(bool)


def median_and_mad(counts: np.ndarray) -> tuple[float, float]:
    """`np.median` of uint8 values and the median of their absolute deviations from it, exactly as
    `np.median` gives them, from the values' 256-bin histogram `counts`: linear time, where
    `np.median`'s partition of a 12 MP photo's responses took 15 ms twice."""
    n = int(counts.sum())
    middle = ((n - 1) // 2, n // 2)  # the order statistics an even count averages

    def median_of(order: np.ndarray, value: np.ndarray) -> float:
        cum = np.cumsum(counts[order])
        return float(np.mean([value[order[np.searchsorted(cum, k + 1)]] for k in middle]))

    levels = np.arange(256, dtype=np.float64)
    med = median_of(np.arange(256), levels)
    deviation = np.abs(levels - med)
    return med, median_of(np.argsort(deviation, kind="stable"), deviation)


def _canvas_to_model(canvas_lb: Letterbox, lb: Letterbox) -> np.ndarray:
    """The 2 x 3 affine map from canvas pixels to the coarse frame's model pixels (both letterboxes are
    a scale and a shift per axis)."""
    p = np.array([[0.0, 0.0], [1.0, 1.0]])
    m = lb.to_model(canvas_lb.to_original(p))
    a = m[1] - m[0]
    return np.array([[a[0], 0.0, m[0, 0]], [0.0, a[1], m[0, 1]]], np.float32)


def canvas_zones(
    zone_probs: np.ndarray, lb: Letterbox, input_size: int, canvas_lb: Letterbox, shape
) -> np.ndarray:
    """The coarse zone map (argmax, 0 = background) on the canvas's pixels, nearest neighbour."""
    cell = input_size / zone_probs.shape[-1]
    to_model = _canvas_to_model(canvas_lb, lb)
    to_cell = to_model / np.array([[cell], [cell]], np.float32)
    to_cell[:, 2] -= 0.5  # cell centres
    zones = zone_probs.argmax(axis=0).astype(np.uint8)
    return cv2.warpAffine(
        zones,
        to_cell,
        (shape[1], shape[0]),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def surface(zones: np.ndarray, res_mm: float, skip: Collection[Zone] = ()) -> np.ndarray:
    """Canvas pixels the fine pass reads: in a `SURFACE_ZONES` zone (less `skip`), more than `EDGE_MM`
    from its edge. Worked out at `SURFACE_MM` per pixel (the zones come from a coarse map: finer adds
    nothing)."""
    f = min(1.0, res_mm / SURFACE_MM)
    small = cv2.resize(zones, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST) if f < 1 else zones
    out = np.zeros(small.shape, np.uint8)
    r = EDGE_MM / (res_mm / f)
    for z in (z for z in SURFACE_ZONES if z not in skip):
        inside = (small == 1 + list(Zone).index(z)).astype(np.uint8)
        if inside.any():
            out |= (cv2.distanceTransform(inside, cv2.DIST_L2, 3) > r).astype(np.uint8)
    if f < 1:
        out = cv2.resize(out, (zones.shape[1], zones.shape[0]), interpolation=cv2.INTER_NEAREST)
    return out.view(bool)  # 0/1 bytes: read as bool without copying the canvas-sized mask


Scores = tuple[dict, dict, dict]  # per grid cell: coarse candidates, line response (mm), critical area


def tile_scores(
    canvas: np.ndarray,
    zones: np.ndarray,
    surf: np.ndarray,
    candidates: np.ndarray,
    res_mm: float,
    card: FineCard,
    gray: np.ndarray | None = None,
) -> Scores:
    """Per cell of the canvas's grid: `candidates` (N x 2 canvas points of coarse cells at the
    candidate cut, those in critical zones listed twice), the line filter's response on `canvas` shrunk by
    `line_filter_shrink` (mm of line) inside the surface `surf`, and the surface's area, screen pixels
    weighing ten (what `choose_cells` gives the budget left over to). `gray`: the canvas in grey, where
    the caller has it."""
    stride = card.stride
    net = _cells(candidates, stride)
    f = line_filter_shrink(res_mm)
    gray = cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY) if gray is None else gray
    small = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else gray
    dev = cv2.resize(surf.view(np.uint8), (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
    lines = line_filter(small, dev, res_mm / f)  # dev: the surface; line_filter drops its outline too
    # A few hundred pixels of millions: OpenCV's scan finds them 5-10x faster than np.nonzero's.
    found = cv2.findNonZero(lines.view(np.uint8))
    xy = np.zeros((0, 2)) if found is None else found.reshape(-1, 2)
    line = {t: v * res_mm / f for t, v in _cells(xy / f, stride).items()}
    # The budget left over: the surface, the screen first (any scratch there bars Excellent). Area only
    # ranks, so every 8th pixel suffices.
    sub, on = zones[::8, ::8], surf[::8, ::8]
    ys, xs = np.nonzero(on)
    weight = 1.0 + 9.0 * (sub[ys, xs] == 1 + list(Zone).index(Zone.SCREEN))
    crit = _cells(np.stack([xs, ys], 1) * 8, stride, weight)
    return net, line, crit


def line_filter_shrink(res_mm: float) -> float:
    """The factor the line filter shrinks a canvas of `res_mm` per pixel by: 1/n for the largest whole n
    that keeps it within `LINE_FILTER_SLACK` x `LINE_FILTER_RES_MM` (a 12 MP phone's canvas, 0.05-0.06
    mm a pixel: a half, to 0.1-0.12 mm), else to `LINE_FILTER_RES_MM` itself (1 at or above it).

    Why whole numbers: OpenCV averages n x n blocks in one pass (1 ms for a 12 MP phone's canvas),
    where its area average at a fractional scale took 11-16 ms; and a one-pixel line keeps half its
    contrast through a shrink by a half, more than through any fractional shrink from 0.55 to 0.9
    (30-40% in the worst phase: `tests/model/test_fine_pass.py`)."""
    n = math.floor(LINE_FILTER_SLACK * LINE_FILTER_RES_MM / res_mm + 1e-9)
    return 1.0 / n if n >= 2 else min(1.0, res_mm / LINE_FILTER_RES_MM)


def _candidate_points(
    outputs: Mapping[str, np.ndarray], lb: Letterbox, input_size: int, canvas_lb: Letterbox, cut: float
) -> np.ndarray:
    """Canvas points of the coarse scratch/chip cells at `cut`; a cell in a critical zone twice."""
    probs = outputs["defect_probs"]
    cell = input_size / probs.shape[-1]
    hit = np.zeros(probs.shape[1:], bool)
    for t in CANDIDATE_TYPES:
        hit |= probs[DEFECT_CHANNELS.index(t.value)] >= cut
    ys, xs = np.nonzero(hit)
    if not len(xs):
        return np.zeros((0, 2))
    model_xy = (np.stack([xs, ys], 1) + 0.5) * cell
    pts = canvas_lb.to_model(lb.to_original(model_xy))
    zone = outputs["zone_probs"].argmax(axis=0)[ys, xs]
    crit = np.isin(zone, [1 + list(Zone).index(z) for z in CRITICAL_ZONES])
    return np.concatenate([pts, pts[crit]])


# A 12 MP phone photo shows the device at 0.04-0.05 mm/px: its canvas at 0.05 is a 0.8-1x shrink. There
# OpenCV's area average costs 25-30 ms of a 7 MP box, bilinear 5 ms, and from 0.75 bilinear keeps as much
# of a one-pixel line's contrast as the area average at its worst phase (about half; a test). Below 0.75
# it would step over thin lines, so the area average stays (JPEG's DCT scaling keeps the scale above 0.5).
# On the validation photos (seed 708, 60 photos): scratch F1 0.308 against 0.309 with the area average
# everywhere, the same Back Market grades, 13 ms less a photo where it applies.
LINEAR_SHRINK_FROM = 0.75


def _shrink_interpolation(scale: float) -> int:
    return cv2.INTER_LINEAR if scale >= LINEAR_SHRINK_FROM else cv2.INTER_AREA


def _decode_box(
    source,
    box: tuple[float, float, float, float],
    native_mm: float,
    res_mm: float,
    size: tuple[int, int],
    whole: Callable[[], tuple[np.ndarray, float]] | None = None,
):
    """The original photo's `box` decoded at no more pixels than `res_mm` needs (JPEG draft scale) ->
    (canvas RGB at `res_mm` per pixel, its Letterbox). `whole`: the full-scale decode, started early."""
    w, h = size
    factor = 2 ** max(0, min(3, math.floor(math.log2(max(res_mm / native_mm, 1.0) + 1e-9))))
    early = whole() if whole is not None and factor == 1 else None
    part = decode_part(source, math.ceil(max(w, h) / factor) if factor > 1 else None, box, early)
    crop, draft, (dw, dh), (x0, y0, x1, y1) = part.rgb, part.draft_factor, part.size, part.crop
    scale = min(1.0, native_mm * draft / res_mm)  # canvas pixels per decoded pixel
    if scale < 1.0:
        nw, nh = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
        crop = cv2.resize(crop, (nw, nh), interpolation=_shrink_interpolation(scale))
    lb = Letterbox(
        scale=scale, pad_x=0, pad_y=0, width=dw, height=dh, draft_factor=draft, crop=(x0, y0, x1, y1)
    )
    return crop, lb  # decode_part's part (a view where the photo is upright) or the resized one


def _rescaled(canvas: np.ndarray, lb: Letterbox, f: float) -> tuple[np.ndarray, Letterbox]:
    """The canvas at `f` times its pixel density (f < 1: coarser).

    Where `f` is 1/k for a whole k (the fallback from 0.05 to 0.1 mm a pixel: 1/2), the canvas is first
    cut to whole blocks of k x k pixels (at most k - 1 pixels off its right and bottom, inside the
    device box's millimetre of margin): OpenCV's area average then takes its whole-factor path, each
    output pixel the mean of one block, in 1 ms instead of 20-40 ms for a 6 MP canvas (an odd width
    made the ratio 2029/1014, the general path, and shifted pixels by up to one at the far edge)."""
    k = round(1 / f)
    if k > 1 and abs(k * f - 1) < 1e-9 and min(canvas.shape[:2]) >= k:
        h, w = (canvas.shape[0] // k) * k, (canvas.shape[1] // k) * k
        canvas = canvas[:h, :w]
    nh, nw = max(1, round(canvas.shape[0] * f)), max(1, round(canvas.shape[1] * f))
    small = cv2.resize(canvas, (nw, nh), interpolation=cv2.INTER_AREA)
    return small, Letterbox(
        scale=lb.scale * nw / canvas.shape[1],
        pad_x=0,
        pad_y=0,
        width=lb.width,
        height=lb.height,
        draft_factor=lb.draft_factor,
        crop=lb.crop,
    )


# Tiles a fine-network run takes at once. On 2 cores a tile costs about the same at 1-4 a run and more
# at 8 (the light head: 6.2-6.7 ms a tile at 1-4, 7.9 ms at 8; `benchmarks/bench_fine_net.py`), and
# much more at 8 when another job shares the cores. A tile's outputs do not depend on its batch.
TILE_BATCH = 4


def _reflect(start: int, size: int, n: int) -> np.ndarray:
    """Indices start .. start + size - 1 of an axis of `n`, folded back into it as OpenCV's
    BORDER_REFLECT_101 folds them (`cv2.borderInterpolate`: periodic, the edge pixel not repeated)."""
    k = np.arange(start, start + size)
    if n == 1:
        return np.zeros(size, np.intp)
    period = 2 * (n - 1)
    k = np.mod(k, period)
    return np.where(k >= n, period - k, k)


def _window(canvas: np.ndarray, x0: int, y0: int, size: int) -> np.ndarray:
    """The `size` x `size` window of the canvas at (x0, y0), reflected where it runs off the canvas:
    the pixels of `cv2.copyMakeBorder(..., BORDER_REFLECT_101)` without padding the whole canvas."""
    h, w = canvas.shape[:2]
    if x0 >= 0 and y0 >= 0 and x0 + size <= w and y0 + size <= h:
        return canvas[y0 : y0 + size, x0 : x0 + size]
    return canvas[np.ix_(_reflect(y0, size, h), _reflect(x0, size, w))]


def run_tiles(
    canvas: np.ndarray, cells, card: FineCard, run: FineRun, batch: int = TILE_BATCH
) -> dict[str, TiledMap]:
    """The fine network over `cells` of the canvas's grid, each with `margin_px` of context (the canvas
    reflected at its edges): each output's kept parts as a canvas-sized `TiledMap`, plus `covered`
    (True on the kept parts). Kept as tiles, never stitched into dense maps: they cover a few percent
    of the canvas (`model.tiled_map`)."""
    t, m, stride = card.tile_px, card.margin_px, card.stride
    h, w = canvas.shape[:2]
    cells = list(cells)
    boxes = [(i * stride, j * stride, min(w, (i + 1) * stride), min(h, (j + 1) * stride)) for i, j in cells]
    blocks: dict[str, list[np.ndarray]] = {name: [] for name in FINE_OUTPUT_NAMES}
    for start in range(0, len(cells), batch):
        chunk = cells[start : start + batch]
        tiles = np.stack([_window(canvas, i * stride - m, j * stride - m, t) for i, j in chunk])
        out = run(np.ascontiguousarray(tiles.transpose(0, 3, 1, 2)))
        for n, (x0, y0, x1, y1) in enumerate(boxes[start : start + batch]):
            for name in FINE_OUTPUT_NAMES:
                blocks[name].append(out[name][n, 0, m : m + y1 - y0, m : m + x1 - x0].astype(np.float32))
    maps = {name: tiled((h, w), np.float32, boxes, blocks[name]) for name in FINE_OUTPUT_NAMES}
    covered = [np.ones((y1 - y0, x1 - x0), bool) for x0, y0, x1, y1 in boxes]
    return {**maps, "covered": tiled((h, w), bool, boxes, covered)}


def fine_pass(
    outputs: Mapping[str, np.ndarray],
    lb: Letterbox,
    input_size: int,
    source,
    original_size: tuple[int, int],
    stage: FineStage,
    whole: Callable[[], tuple[np.ndarray, float]] | None = None,
    skip: Collection[Zone] = (),
    view: View | None = None,
) -> FineMaps | None:
    """One photo's fine pass after its coarse passes (`outputs` in the frame `lb`/`input_size`), from
    the encoded photo `source`; None when no device was found or the photo shows it too coarsely.
    `whole`: the photo decoded at full scale, started early (`model.inference.infer`): used where the
    canvas needs the full scale, which is what the pass would decode. `skip`: surfaces not to read (a
    lit display's screen, `model.display`): no tile goes there, and the coarse pass's findings stand.
    `view`: the photo's view as the caller says it (None: the network's), which sets the side its
    scale is measured against and whether the rim is read."""
    card = stage.card
    view = view if view is not None else network_view(outputs)
    zone_probs = outputs["zone_probs"]
    mask = device_mask(zone_probs)
    if mask.sum() < MIN_DEVICE_CELLS:
        return None
    share = view_share(view, stage.kind, stage.model_name)  # a phone's top edge shows its width
    scale = estimate_scale(zone_probs, lb, input_size, stage.length_mm, share)
    native = scale.per_px  # mm per original pixel
    if native > card.coarsest_mm:
        return None
    # The device's box with a millimetre of margin (frame chips sit on the outline).
    x0, y0, x1, y1 = mask_box(mask, lb, input_size)
    pad = 1.0 / native
    w, h = original_size
    box = (max(0.0, x0 - pad), max(0.0, y0 - pad), min(float(w), x1 + pad), min(float(h), y1 + pad))
    res = max(card.fine_mm, native)
    canvas, clb = _decode_box(source, box, native, res, original_size, whole)
    gray = cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY)
    fallback = False
    zones = canvas_zones(outputs["zone_probs"], lb, input_size, clb, canvas.shape[:2])
    # The rim is read on the finest canvas, before any fallback: its scratches are as fine as any. It
    # needs the canvas and its zone map, nothing the tile scoring or the tiles give, so it runs beside
    # both (`beside`): the scoring is single-threaded, which leaves the other core to the rim. Its
    # arguments are bound now: the fallback below rebinds the canvas's names.
    read_rim = partial(_frame_lines, view, gray, zones, res, clb, card)
    if stage.cores_free():
        frame = beside(read_rim, "refurbgrade-rim")
    else:  # the cores are busy with other gradings: a thread more would only add switching
        lines = read_rim()
        frame = lambda: lines  # noqa: E731
    scores, zones, surf = _scores(outputs, lb, input_size, canvas, clb, res, card, gray, zones, skip)
    if choose_cells(*scores, None, card.line_min_mm).proposed > card.max_tiles and res < card.fallback_mm:
        canvas, clb = _rescaled(canvas, clb, res / card.fallback_mm)
        res, fallback = card.fallback_mm, True
        scores, zones, surf = _scores(outputs, lb, input_size, canvas, clb, res, card, skip=skip)
    net, line, crit = scores
    plan = choose_cells(net, line, crit if card.fill_critical else {}, card.max_tiles, card.line_min_mm)
    maps = run_tiles(canvas, plan.cells, card, stage.run)  # no cells (only the rim): maps that read zero
    frame = frame()
    if not plan.cells and not frame:
        return None
    return FineMaps(
        heat=maps["heat"],
        width_px=maps["width_px"],
        contrast=maps["contrast"],
        covered=maps["covered"].masked(surf),
        zones=zones,
        card=card,
        letterbox=clb,
        mm_per_px=res,
        tiles=maps["covered"].boxes,  # the tiles' kept parts, as `run_tiles` cut them
        proposed=plan.proposed,
        fallback=fallback,
        frame=frame,
        skipped=tuple(z for z in SURFACE_ZONES if z in skip),
    )


def beside(work: Callable[[], T], name: str = "refurbgrade-beside") -> Callable[[], T]:
    """`work` started on a thread of its own; call the result to wait for it (its exception, if any,
    is raised there). The rim read (`model.frame_read`: OpenCV and numpy, which let go of the GIL) and
    the tiles (ONNX Runtime, likewise) then share the cores: on 2 cores a 12 MP photo's fine pass
    takes about 30 ms less when it is graded alone (and its full-scale decode beside the coarse
    passes, `model.inference`, about 20 ms more). Under load it gains nothing and costs 3-5% more CPU
    a grading, so the service does it only for a grading alone (`FineStage.spare_cores`). A thread per
    photo, not a shared pool: a pool's queue would make one photo's work wait for another's."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the caller, never lost on the thread
            box["error"] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()

    def result() -> T:
        thread.join()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]  # type: ignore[return-value]

    return result


# Views whose photo shows the frame as a rim around the glass (a side view is mostly frame: not read).
FRAME_VIEWS = (View.FRONT, View.BACK)


def _frame_lines(view: View, gray, zones, res, clb: Letterbox, card: FineCard) -> tuple[FrameLine, ...]:
    """The rim's lines (`model.frame_read`) of a front or back `view`, in the original photo's pixels;
    none where the card does not read the frame."""
    if card.frame_z is None or view not in FRAME_VIEWS:
        return ()
    z_low = card.frame_z if card.frame_z_low is None else min(card.frame_z_low, card.frame_z)
    per_canvas_px = clb.draft_factor / clb.scale  # original pixels a canvas pixel
    return tuple(
        replace(
            line,
            centre=clb.to_original(line.centre),
            polygon=clb.to_original(line.polygon),
            length_px=line.length_px * per_canvas_px,
            width_px=line.width_px * per_canvas_px,
        )
        for line in read_frame(gray, zones, res, z_low, z_low)
    )


def _scores(
    outputs, lb, input_size, canvas, clb, res, card, gray=None, zones=None, skip: Collection[Zone] = ()
) -> tuple[Scores, np.ndarray, np.ndarray]:
    """The cells' scores, the canvas's zone map and the surface mask they were scored on (its zones less
    `skip`). `gray` and `zones`: the canvas in grey and its zone map, where the caller has them."""
    if zones is None:
        zones = canvas_zones(outputs["zone_probs"], lb, input_size, clb, canvas.shape[:2])
    surf = surface(zones, res, skip)
    cands = _candidate_points(outputs, lb, input_size, clb, card.candidate_cut)
    h, w = canvas.shape[:2]
    cands = cands[(cands[:, 0] >= 0) & (cands[:, 1] >= 0) & (cands[:, 0] < w) & (cands[:, 1] < h)]
    on = surf[cands[:, 1].astype(int), cands[:, 0].astype(int)]
    return tile_scores(canvas, zones, surf, cands[on], res, card, gray), zones, surf
