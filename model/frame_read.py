"""The frame reader: scratches on the metal rim around a front or back view's glass. Torch-free.

A front (or back) photo shows the frame as a rim 0.6-1.6 mm wide around the glass, running along the
device's outline. On the validation photos of seed 708 it holds half of all the true scratches (137 of
279), and neither pass sees them: the coarse pass's cells are as wide as the rim, and the fine network
learnt that a line along an outline is an edge, not a scratch (`model.fine_pass.EDGE_MM`). A scratch on
the rim runs along it (a key, a pocket's grit), so in a strip unwrapped along the outline it is a
segment of a row, where the rim's edges are whole rows. `read_frame` does, on the fine pass's canvas:

1. **The outline, roughly**: the convex hull of the coarse zone map's device, smoothed (`HULL_SMOOTH_MM`);
   it lies within a few mm of the outline (a coarse cell is about 2 mm on a phone).
2. **Unwrap and follow an edge** (`_unwrap`, `_seam`): a strip `SEARCH_MM` either side of the hull, its
   strongest edge followed by dynamic programming (a seam across the columns, `SEAM_STEP` rows a
   block at most, each row moved costing `SEAM_PENALTY`); then a second strip `STRIP_MM` either side
   of that edge, at the canvas's pixels, followed again, so the strip's rows follow the device's
   edges to about a pixel.
3. **The rim**: in each column, the edge the seam follows and the strongest other edge `RIM_MM` from it
   (at least `RIM_EDGE_SHARE` as strong) bound the rim; the rows between them, less `RIM_MARGIN_MM`,
   are read. Where the rim's two edges are not found, nothing is read.
4. **What changes along the rim**: each row less its running median along the strip (`BACKGROUND_MM`),
   averaged over `MATCH_MM` along it (a matched filter for a line along the row), over its own running
   noise (`NOISE_MM`): a z-score. The rim's edges, its colour, its shading, lighting gradients: all are
   constant along a row over centimetres, and drop out.
5. **Lines**: connected pixels with |z| over the fine card's `frame_z_low`, at least `MIN_LENGTH_MM`
   long, whose peak reaches its `frame_z` and which cover at most `MAX_HEIGHT_SHARE` of the rim's
   height (a scratch is thin across the rim; a change of the background just outside, or a
   reflection, spans it), where the rim has at least `MIN_RIM_ROWS` rows to read. Not at the corners,
   where the strip turns more than `CORNER_TURN_DEG` in `CORNER_MM` (the running median does not hold
   around a bend).

Each line is measured in the strip: its length along its centre row (less the matched filter's
spread), its width across (an equivalent width: the residual's sum across it over its peak) and its
contrast (the peak residual over the rim's own level), and mapped back to the canvas. `model.fine_instances` makes them scratches on the frame.

The numbers were chosen on the validation photos (seed 708), not on the held-out ones;
docs/fine-pass.md ("The frame") has the measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import gaussian_filter1d, uniform_filter1d

# 1. The outline, roughly.
HULL_RES_MM = 0.25  # the zone map is drawn on the canvas from coarse cells: finer adds nothing
HULL_SMOOTH_MM = 3.0
# 2. Unwrapping.
SEARCH_MM = 4.0  # the first strip, either side of the hull (a coarse cell is about 2 mm)
SEARCH_STEP_PX = 2  # the first strip's pixel, in canvas pixels (it only finds the edge)
STRIP_MM = 2.0  # the second strip, either side of the first seam (the rim is at most 1.8 mm wide)
SEAM_SMOOTH_MM = 0.5  # the second strip's centre line: the first seam, smoothed this much
SEAM_BLOCK_MM = (1.0, 1.0)  # the seam moves once a block of columns: first strip, second strip
SEAM_STEP = (6, 4)  # rows a block at most (the first strip's rows are SEARCH_STEP_PX apart)
SEAM_PENALTY = 0.3  # a row moved costs this much of a strong edge's gradient (normalised to 1)
# 3. The rim.
RIM_MM = (0.4, 1.8)  # the rim's width: the generator draws 0.6-1.6 mm; a tilted view narrows one side
RIM_NEAR_MM = 0.3  # the rim's first edge: the strongest within this of the seam
RIM_EDGE_SHARE = 0.25  # the second edge is at least this share of the first's gradient
RIM_MARGIN_MM = 0.05  # rows this close to either edge are not read (the edges themselves)
# 4. What changes along the rim.
PROFILE_BLOCK_MM = 2.0  # running statistics are taken over blocks of this many mm of columns
BACKGROUND_MM = 30.0  # running median along the rim: longer than the scratches it should keep
NOISE_MM = 30.0
MATCH_MM = 1.0
NOISE_FLOOR = 0.5  # grey levels: a flawless synthetic rim has no noise to divide by
# 5. Lines (the z cuts are the fine card's: `FineCard.frame_z_low`, `FineCard.frame_z`).
MIN_LENGTH_MM = 1.0  # as the fine card's `min_length_mm`
MAX_HEIGHT_SHARE = 0.5
# A line is read only where the rim has at least this many rows between its edges: in fewer, a line
# cannot be told from the edges moving. A real phone's glass edge at 0.11 mm per pixel (MSD) is a
# chamfer 3-4 rows wide whose highlight wobbles along it; read, it gave one false line on 9 of the 20
# MSD validation photos. No synthetic line at z 15 sat on a rim this narrow (docs/fine-pass.md).
MIN_RIM_ROWS = 5
CORNER_MM = 1.5
CORNER_TURN_DEG = 8.0


@dataclass(frozen=True)
class FrameLine:
    """A line found on the rim, in the canvas's pixels."""

    centre: np.ndarray  # N x 2 float, the line's centre row mapped to the canvas, along its length
    polygon: np.ndarray  # M x 2 float, its outline (the rows it covers, both sides)
    length_px: float  # along `centre`
    width_px: float  # across the rim: its residual's sum across over its peak
    contrast: float  # its peak residual over the rim's level, 0..1
    z: float  # its peak z-score (what its confidence is read from)


def read_frame(
    gray: np.ndarray, zones: np.ndarray, res_mm: float, z_low: float, z_high: float
) -> list[FrameLine]:
    """Lines on the rim of the device in `gray` (the fine pass's canvas in grey, H x W uint8, at
    `res_mm` per pixel), whose coarse zone map on the canvas is `zones` (0 = background): connected
    pixels at |z| >= `z_low` whose peak reaches `z_high`."""
    hull = _hull(zones, res_mm)
    if hull is None:
        return []
    strip = _follow(gray, hull, res_mm)
    if strip is None:
        return []
    values, xs, ys, ref = strip
    block = max(2, round(PROFILE_BLOCK_MM / res_mm))
    level = _running_median(values, block, round(BACKGROUND_MM / PROFILE_BLOCK_MM))
    inside, height = _rim_rows(level, ref, res_mm)
    inside &= ~_corners(xs[ref], ys[ref], res_mm)[None, :]
    if not inside.any():
        return []
    z, smooth = _z_scores(values, level, res_mm)
    z = np.where(inside, z, 0.0)
    return _lines(z, smooth, level, height, inside.sum(axis=0), xs, ys, res_mm, z_low, z_high)


def _hull(zones: np.ndarray, res_mm: float) -> np.ndarray | None:
    """The convex hull of the largest device region of `zones`, in canvas pixels (None without one)."""
    f = min(1.0, res_mm / HULL_RES_MM)
    # Nearest-neighbour first, then the test: the same pixels as testing the whole canvas, a 25th of the work.
    small = (cv2.resize(zones, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST) > 0).astype(np.uint8)
    contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    biggest = max(contours, key=cv2.contourArea)
    if cv2.contourArea(biggest) * (res_mm / f) ** 2 < 100.0:  # under 1 cm²: no device to follow
        return None
    return (cv2.convexHull(biggest)[:, 0, :].astype(np.float64) + 0.5) / f - 0.5


def _resample(poly: np.ndarray, step: float) -> np.ndarray:
    """A closed polygon's points every `step` pixels along it."""
    closed = np.vstack([poly, poly[:1]])
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(closed, axis=0).T))])
    t = np.arange(0.0, cum[-1], step)
    return np.stack([np.interp(t, cum, closed[:, 0]), np.interp(t, cum, closed[:, 1])], 1)


def _smoothed_normals(points: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """A closed curve smoothed (Gaussian, `sigma` points) and its unit normals, pointing inwards."""
    smooth = np.stack([gaussian_filter1d(points[:, i], sigma, mode="wrap") for i in (0, 1)], 1)
    tangent = np.roll(smooth, -1, axis=0) - np.roll(smooth, 1, axis=0)
    tangent /= np.maximum(np.hypot(*tangent.T), 1e-9)[:, None]
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)
    if np.mean(np.sum((smooth.mean(axis=0) - smooth) * normal, axis=1)) < 0:
        normal = -normal
    return smooth, normal


def _unwrap(gray, points, normals, offsets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The strip: row i, column j is `gray` at points[j] + offsets[i, j] * normals[j] (bilinear);
    `offsets` is rows x columns, or rows x 1 for the same offsets in every column."""
    xs, ys = (_along(points[:, i], offsets, normals[:, i]) for i in (0, 1))
    return cv2.remap(gray, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), xs, ys


def _along(start: np.ndarray, offsets: np.ndarray, step: np.ndarray) -> np.ndarray:
    """start + offsets * step (columns x, rows x columns), computed in float64 and given as remap's
    float32, with one temporary: a strip is 0.5 M pixels, and each pass over it counts."""
    out = np.multiply(offsets, step[None, :])
    out += start[None, :]
    return out.astype(np.float32)


def _seam(strip: np.ndarray, block: int, max_step: int) -> np.ndarray:
    """The row of the strongest edge in each column, following it across the strip: dynamic
    programming over blocks of `block` columns (at most `max_step` rows a block, `SEAM_PENALTY` a row
    moved), interpolated to every column."""
    v, u = strip.shape
    grad = np.abs(
        cv2.Sobel(cv2.GaussianBlur(strip.astype(np.float32), (0, 0), 1.0), cv2.CV_32F, 0, 1, ksize=3)
    )
    nb = max(1, u // block)
    g = grad[:, : nb * block].reshape(v, nb, block).mean(axis=2)
    g /= float(np.percentile(g, 99)) + 1e-6
    steps = np.arange(-max_step, max_step + 1)
    cost = SEAM_PENALTY * np.abs(steps)
    rows = np.arange(v)
    # The scores live inside a buffer padded with -inf, so each row's candidate predecessors are a
    # sliding window over it (no copy): cand[r, t] = score[r - steps[t]] - cost[t], -inf off the strip.
    padded = np.full(v + 2 * max_step, -np.inf)
    score = padded[max_step : max_step + v]
    score[:] = g[:, 0]
    window = sliding_window_view(padded, 2 * max_step + 1)[:, ::-1]
    back = np.empty((nb, v), np.int8)
    back[0] = 0
    for j in range(1, nb):
        cand = window - cost
        k = cand.argmax(axis=1)  # the first best step, as steps run from -max_step up
        back[j] = k
        score[:] = cand[rows, k] + g[:, j]
    path = np.empty(nb)
    r = int(score.argmax())
    for j in range(nb - 1, -1, -1):
        path[j] = r
        r -= int(steps[back[j, r]])
    centres = (np.arange(nb) + 0.5) * block
    return gaussian_filter1d(np.interp(np.arange(u), centres, path), block, mode="nearest")


def _follow(gray: np.ndarray, hull: np.ndarray, res: float):
    """The strip whose centre row `ref` follows the edge the seam finds (two passes, see the module
    docstring) -> (strip values, its canvas x and y maps, ref); None when the outline is too short."""
    step = SEARCH_STEP_PX
    points, normals = _smoothed_normals(_resample(hull, step), HULL_SMOOTH_MM / res / step)
    if len(points) < 16:
        return None
    half = SEARCH_MM / res
    offsets = np.arange(-half, half + 1e-9, step)
    first, _, _ = _unwrap(gray, points, normals, offsets[:, None])
    rows = _seam(first, max(2, round(SEAM_BLOCK_MM[0] / res / step)), SEAM_STEP[0])
    edge = points + (offsets[0] + rows * step)[:, None] * normals
    points, normals = _smoothed_normals(_resample(edge, 1.0), SEAM_SMOOTH_MM / res)
    half = STRIP_MM / res
    offsets = np.arange(-round(half), round(half) + 1, 1.0)
    second, _, _ = _unwrap(gray, points, normals, offsets[:, None])
    rows = _seam(second, max(2, round(SEAM_BLOCK_MM[1] / res)), SEAM_STEP[1])
    ref = len(offsets) // 2
    # The strip again, each column moved so the seam sits on row `ref`.
    shift = offsets[0] + np.arange(len(offsets))[:, None] + (rows - ref)[None, :]
    values, xs, ys = _unwrap(gray, points, normals, shift)
    return values.astype(np.float32), xs, ys, ref


def _running_median(values: np.ndarray, block: int, window: int) -> np.ndarray:
    """Each row's running median along the strip (over `window` blocks of `block` columns, the strip
    wrapping around: it is closed), interpolated back to every column."""
    v, u = values.shape
    nb = max(1, u // block)
    means = values[:, : nb * block].reshape(v, nb, block).mean(axis=2)
    # The median of each row's wrapped window of block means (an odd count: an element, exactly what
    # scipy's median_filter gives). That element by a partition: `np.median` partitions too, but its
    # checks and copies took 4x as long on a strip's 70 x 200 windows.
    size = min(window, nb) | 1
    wrapped = np.pad(means, ((0, 0), (size // 2, size // 2)), mode="wrap")
    windows = sliding_window_view(wrapped, size, axis=1)
    med = np.partition(windows, size // 2, axis=-1)[..., size // 2].astype(np.float32)
    # Linear between block centres (OpenCV's resize puts block j's value at column (j + 0.5) * block).
    full = cv2.resize(med, (nb * block, v), interpolation=cv2.INTER_LINEAR)
    return np.pad(full, ((0, 0), (0, u - nb * block)), mode="edge")


def _rim_rows(profile: np.ndarray, ref: int, res: float) -> tuple[np.ndarray, np.ndarray]:
    """Which strip pixels lie on the rim (bool, rows x columns) and the rim's height in rows per column,
    from the strip's running level `profile` (its edges are the rim's, without the scratches)."""
    v, u = profile.shape
    grad = np.abs(np.gradient(cv2.GaussianBlur(profile, (0, 0), sigmaX=0.1, sigmaY=1.0), axis=0))
    rows = np.arange(v)[:, None]
    cols = np.arange(u)
    near = np.abs(rows - ref) <= RIM_NEAR_MM / res
    first = np.argmax(np.where(near, grad, -1.0), axis=0)
    g1 = grad[first, cols]
    # Rows RIM_MM from the first edge, as whole rows: the same rows as testing |row - first| x res
    # against the millimetres, without a float array the strip's size (2-3 ms of it).
    lo_rows, hi_rows = _rows_within(RIM_MM, res, v)
    dist = np.abs(rows.astype(np.int32) - first.astype(np.int32)[None, :])
    other = np.where((dist >= lo_rows) & (dist <= hi_rows), grad, -1.0)
    second = np.argmax(other, axis=0)
    found = other[second, cols] >= RIM_EDGE_SHARE * g1
    margin = round(RIM_MARGIN_MM / res) + 1
    lo = np.minimum(first, second) + margin
    hi = np.maximum(first, second) - margin
    inside = (rows >= lo[None, :]) & (rows <= hi[None, :]) & found[None, :]
    return inside, np.abs(second - first).astype(np.float64)


def _rows_within(span_mm: tuple[float, float], res: float, rows: int) -> tuple[int, int]:
    """The least and the most whole rows d (0 <= d <= rows) whose d x res lies in `span_mm`, tested in
    that very expression so that the rounding is the same as testing each row's distance."""
    ds = [d for d in range(rows + 1) if span_mm[0] <= d * res <= span_mm[1]]
    return (ds[0], ds[-1]) if ds else (rows + 1, -1)


def _corners(xs: np.ndarray, ys: np.ndarray, res: float) -> np.ndarray:
    """Columns where the strip's centre line turns more than `CORNER_TURN_DEG` within `CORNER_MM`."""
    w = max(2, round(CORNER_MM / res))
    angle = np.unwrap(np.arctan2(np.roll(ys, -w) - np.roll(ys, w), np.roll(xs, -w) - np.roll(xs, w)))
    turn = np.abs(np.roll(angle, -w) - np.roll(angle, w))
    return np.degrees(turn) > CORNER_TURN_DEG


def _z_scores(values: np.ndarray, level: np.ndarray, res: float) -> tuple[np.ndarray, np.ndarray]:
    """The z-score of each strip pixel against its row's running `level` (see the module docstring),
    and its residual averaged along the row (the matched filter's output)."""
    block = max(2, round(PROFILE_BLOCK_MM / res))
    residual = values - level
    match = uniform_filter1d(residual, max(3, round(MATCH_MM / res)), axis=1, mode="wrap")
    # Each row's noise: the running median of |match|'s block means (robust to the line itself).
    noise = _running_median(np.abs(match), block, round(NOISE_MM / PROFILE_BLOCK_MM)) + NOISE_FLOOR
    return match / noise, match


def _lines(z, smooth, level, height, rows_read, xs, ys, res, z_low, z_high) -> list[FrameLine]:
    """Connected runs of |z| over `z_low` (each sign apart) that pass the line tests, measured;
    `rows_read` is the rim's rows read in each column."""
    found: list[FrameLine] = []
    close = np.ones((1, max(3, round(0.5 / res))), np.uint8)  # bridge gaps of half a mm along a row
    match = max(3, round(MATCH_MM / res))  # the matched filter's length (`_z_scores`)
    for sign in (1.0, -1.0):
        hit = cv2.morphologyEx((sign * z >= z_low).astype(np.uint8), cv2.MORPH_CLOSE, close)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(hit, connectivity=8)
        for k in range(1, n):
            x, y, w, h = (int(s) for s in stats[k, :4])
            if (w - match + 1) * res < MIN_LENGTH_MM:  # the filter adds `match - 1` columns
                continue
            mine = labels[y : y + h, x : x + w] == k
            zk = np.where(mine, sign * z[y : y + h, x : x + w], -np.inf)
            peak = float(zk.max())
            if peak < z_high or h > MAX_HEIGHT_SHARE * max(1.0, float(height[x + w // 2])):
                continue
            pc = int(np.argmax(zk)) % w  # the peak's column
            if rows_read[x + pc] < MIN_RIM_ROWS:  # at its peak: too narrow a rim to read
                continue
            found.append(_measure(mine, zk, sign, smooth, level, xs, ys, x, y, peak, match))
    return _one_per_line(found, res)


def _measure(mine, zk, sign, smooth, level, xs, ys, x, y, peak, match) -> FrameLine:
    """A component's centre line (the row of its peak z in each column), outline and measurements. The
    matched filter (`match` columns) spreads a line by half its length at each end: its length is the
    component's less that."""
    h, w = mine.shape
    cols = np.arange(w)
    has = mine.any(axis=0)
    rows = np.where(has, zk.argmax(axis=0), 0).astype(np.float64)
    # Smoothed along the line: the peak's row jitters by a pixel, which would lengthen the polyline.
    rows = gaussian_filter1d(np.interp(cols, cols[has], rows[has]), match / 2, mode="nearest") + y
    centre = _at(xs, ys, rows, x + cols)
    along = float(np.sum(np.hypot(*np.diff(centre, axis=0).T)))
    length = max(1.0, along * (1.0 - (match - 1) / max(w - 1, 1)))
    # Outline: the top and bottom rows of the component in each column, mapped to the canvas.
    top = np.where(has, mine.argmax(axis=0), 0) + y
    bottom = np.where(has, h - 1 - mine[::-1].argmax(axis=0), 0) + y
    top = np.interp(cols, cols[has], top[has]).round().astype(int)
    bottom = np.interp(cols, cols[has], bottom[has]).round().astype(int)
    upper = np.stack([xs[top, x + cols], ys[top, x + cols]], 1)
    lower = np.stack([xs[bottom, x + cols], ys[bottom, x + cols]], 1)[::-1]
    polygon = np.vstack([upper, lower]).astype(np.float64)
    # Width and contrast across the line at its peak, from the residual averaged along it (a single
    # column is noisy): the profile's rows at half the peak or more (within the component's rows and a
    # pixel beyond); the width is their sum over the peak (an equivalent width: a thin line's blur widens
    # it and lowers its peak, and keeps their product, what its visibility goes by), the contrast the peak
    # over the rim's level.
    pr, pc = np.unravel_index(int(np.argmax(zk)), zk.shape)
    profile = sign * smooth[:, x + pc]
    top_value = float(profile[y + pr])
    first, last = max(0, y - 1), min(len(profile) - 1, y + h)
    lo = hi = y + pr
    while lo > first and profile[lo - 1] >= 0.5 * top_value:
        lo -= 1
    while hi < last and profile[hi + 1] >= 0.5 * top_value:
        hi += 1
    width = float(profile[lo : hi + 1].sum()) / max(top_value, 1e-6)
    contrast = top_value / max(float(level[y + pr, x + pc]), 8.0)
    return FrameLine(
        centre=centre,
        polygon=polygon,
        length_px=length,
        width_px=width,
        contrast=float(min(contrast, 1.0)),
        z=peak,
    )


def _at(xs: np.ndarray, ys: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Canvas points of strip positions at fractional `rows` in `cols` (linear between rows)."""
    lo = np.clip(np.floor(rows).astype(int), 0, xs.shape[0] - 2)
    t = np.clip(rows - lo, 0.0, 1.0)
    x = xs[lo, cols] * (1 - t) + xs[lo + 1, cols] * t
    y = ys[lo, cols] * (1 - t) + ys[lo + 1, cols] * t
    return np.stack([x, y], 1).astype(np.float64)


def _one_per_line(lines: list[FrameLine], res: float) -> list[FrameLine]:
    """A bright line's residual has dark shoulders (and the other way round): of lines lying along
    each other within 1 mm, keep the strongest."""
    kept: list[FrameLine] = []
    near = 1.0 / res
    for line in sorted(lines, key=lambda f: -f.z):
        if not any(_alongside(line, other, near) for other in kept):
            kept.append(line)
    return kept


def _alongside(a: FrameLine, b: FrameLine, near: float) -> bool:
    """Whether most of `a`'s centre lies within `near` pixels of `b`'s."""
    d = np.hypot(*(a.centre[:, None, :] - b.centre[None, ::4, :]).transpose(2, 0, 1)).min(axis=1)
    return bool(np.mean(d <= near) > 0.5)
