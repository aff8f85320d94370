"""Stroke decomposition, torch-free: one connected blob of a line defect -> the separate lines in it.

Scratches cross and touch: a tuft of scratches from one point, or a long scratch through a cluster,
is one connected component of the thresholded map, and measured as one it is one scratch as long as
the whole tangle (the resolution study in the README: merged components were most of what perfect
coverage maps still got wrong). This module splits such a component the way a grader reads it:

1. thin it to a one-pixel skeleton (scikit-image's `skeletonize`);
2. cut the skeleton at its junctions into branches, and drop spurs (short branches with a free end,
   which thinning grows from the corners of a blob rather than from a line);
3. at every junction, join the branches that continue each other in a straight line (good
   continuation, most nearly opposite directions first, within `MAX_TURN_DEG`); the others end there;
4. each chain of joined branches is a stroke: its length is the skeleton's arc length, plus at a free
   end the half-width that thinning took off, plus the way through the junctions it crosses.

`model.postprocess` keeps its own measurement for components that come out as one stroke (a simple
ribbon measures better from its outline) and uses the strokes for the rest.

At native resolution (the fine pass: a pixel no wider than the line, `ends="tip"` or `"centre"`) the
ends are measured instead of assumed: from each free end of the skeleton a ray along the stroke's
direction runs to the mask's edge (the visible tip; thinning stops short of it by a distance that
depends on the cap's shape, and the distance transform at the end pixel over-counts a one-pixel line
by half a pixel), and `"centre"` takes half the stroke's width off each tip: the length of the
centreline of a round-capped stroke, which is what `training.synth` records as a scratch's length
(it draws the centreline with round caps). Two more options there, both off by default: a tighter
join angle (`max_turn_deg`) and an orientation map (a fine network's per-pixel line orientation, or
the truth's in the oracle) that a join must also agree with, and at whose jumps a branch is cut: two
near-collinear scratches that touch meet at a few degrees, which the skeleton's own direction cannot
tell from one scratch's curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from skimage.morphology import skeletonize, thin

# Two branches meeting at a junction are one line when their directions bend by at most this much.
MAX_TURN_DEG = 20.0
# How far along a branch its direction at a junction is read, in pixels: far enough to average out
# the skeleton's staircase, short enough to follow a curve.
DIRECTION_SPAN_PX = 8
# With an orientation map: two branches join only when the map's orientations on them, read just off
# the junction, agree within this; a branch is cut where the map turns by more than this within
# `ORIENTATION_SPAN_PX` pixels (one scratch's curve turns far less over so short a way).
ORIENTATION_TOL_DEG = 4.0
ORIENTATION_SPAN_PX = 4
Ends = Literal["half_width", "tip", "centre"]
CUT = -1  # node of a branch end cut at an orientation turn (`_cut_at_turns`)
_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


@dataclass
class Stroke:
    """One line found in a component: its skeleton points (x, y, in the component mask's pixels) and
    its length in pixels. `segments` and `signs`: the length as straight pieces (M, 2, 2: each piece's
    two ends, x and y, same pixels) counted with their signs (+1, or -1 where an end's correction is
    negative: "centre" on a tip shorter than the half width), so that the sum of signed piece lengths
    is `length` (before its clamp at 0). A measurement through a homography (`model.plane`) maps the
    pieces instead of multiplying `length` by one scale."""

    points: np.ndarray  # (N, 2) float, x and y
    length: float
    segments: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 2)))
    signs: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass
class _Branch:
    pixels: list[tuple[int, int]]  # ordered (y, x)
    nodes: list[int | None]  # junction cluster at the start and the end (None: a free end)
    length: float = 0.0
    pieces: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 2)))  # what `length` sums


def _arc_points(pixels: list[tuple[int, int]]) -> np.ndarray:
    """The smoothed polyline (K, 2: y, x) of an ordered pixel chain whose length `_arc` is."""
    if len(pixels) < 2:
        return np.zeros((0, 2))
    return cv2.approxPolyDP(np.asarray(pixels, dtype=np.int32)[:, None, :], 0.8, False)[:, 0, :].astype(float)


def _arc(pixels: list[tuple[int, int]]) -> float:
    """Arc length of an ordered pixel chain, smoothed: a digital line's staircase of 4-steps would
    otherwise count |dx| + |dy| instead of its length."""
    p = _arc_points(pixels)
    return float(np.hypot(*np.diff(p, axis=0).T).sum()) if len(p) else 0.0


def _pieces_of(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Consecutive (y, x) points a -> b as straight pieces (M, 2, 2) of x, y in the unpadded mask."""
    return np.stack([a, b], axis=1)[:, :, ::-1] - 1.0


def _end_piece(start: np.ndarray, outward: np.ndarray, by: float) -> np.ndarray:
    """An end's correction to a stroke's length (`by` pixels, negative to shorten it) as a straight
    piece from `start` (y, x, padded) along `outward`: (1, 2, 2), x and y in the unpadded mask."""
    n = np.hypot(*outward)
    u = outward / n if n > 0 else np.array([0.0, 1.0])  # no direction: any, the piece's length is |by|
    return _pieces_of(np.asarray([start], float), np.asarray([start + u * by], float))


def _order(pixels: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """The pixels of one branch (8-connected, no junctions) in walking order, from an end."""

    def nbrs(p):
        return [(p[0] + dy, p[1] + dx) for dy, dx in _NEIGHBOURS if (p[0] + dy, p[1] + dx) in pixels]

    start = min(pixels, key=lambda p: (len(nbrs(p)), p))  # an end (one neighbour) when there is one
    order, seen = [start], {start}
    while True:
        nxt = [q for q in nbrs(order[-1]) if q not in seen]
        if not nxt:
            return order
        # Prefer the 4-neighbour: the staircase of a thin skeleton has both, and the diagonal skips one.
        q = min(nxt, key=lambda q: abs(q[0] - order[-1][0]) + abs(q[1] - order[-1][1]))
        order.append(q)
        seen.add(q)


def _root(parent: list[int], i: int) -> int:
    """Union-find root of `i` (with path halving); junction merging and branch joining both use it."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _direction(branch: _Branch, at_start: bool) -> np.ndarray:
    """Unit vector (y, x) pointing from the junction end of a branch into the branch."""
    px = branch.pixels if at_start else branch.pixels[::-1]
    a = np.asarray(px[0], dtype=float)
    b = np.asarray(px[min(len(px) - 1, DIRECTION_SPAN_PX)], dtype=float)
    v = b - a
    n = np.hypot(*v)
    return v / n if n > 0 else v


def _axis_diff(a: float, b: float) -> float:
    """Angle between two line orientations (radians, modulo pi), in [0, pi/2]."""
    d = abs(a - b) % math.pi
    return min(d, math.pi - d)


def _axis_mean(theta: np.ndarray) -> float:
    """Mean of line orientations (radians, modulo pi; NaN ignored): the doubled-angle mean. NaN if none."""
    t = theta[np.isfinite(theta)]
    if not len(t):
        return math.nan
    return (math.atan2(np.sin(2 * t).mean(), np.cos(2 * t).mean()) / 2) % math.pi


def _reading(branch: _Branch, at_start: bool, orient: np.ndarray) -> float:
    """The orientation map's reading on a branch just off its end (the junction's own pixels are shared
    by the lines that meet there, so skip the first two)."""
    px = branch.pixels if at_start else branch.pixels[::-1]
    sel = px[2 : 2 + DIRECTION_SPAN_PX] or px
    return _axis_mean(np.array([orient[y, x] for y, x in sel], float))


def _cut_at_turns(branch: _Branch, orient: np.ndarray, tol: float) -> list[_Branch]:
    """A branch cut where the orientation map jumps by more than `tol` (radians) within
    `ORIENTATION_SPAN_PX`, over what the branch's own curve turns there: two lines that touch end to end
    without a junction. The cut ends get the node `CUT` (never joined, no tip added)."""
    theta = np.array([orient[y, x] for y, x in branch.pixels], float)
    n, k = len(theta), ORIENTATION_SPAN_PX
    # Not within 2k pixels of a free end: a line's cap turns the map there (the map of a round end).
    lo = 2 * k if branch.nodes[0] is None else k
    hi = n - (2 * k if branch.nodes[1] is None else k)
    if hi <= lo or np.isfinite(theta).sum() < 2 * k:
        return [branch]
    # Readings on either side of each pixel over k valid pixels (gaps where lines overlap are skipped),
    # and over the k beyond those: a curve turns the outer pair 3k/(k+1) times as much as the inner
    # pair, a jump turns both alike, so the inner turn less the curve's share is the jump.
    valid = np.flatnonzero(np.isfinite(theta))
    best, at = tol, None
    for i in range(lo, hi):
        before, after = valid[valid < i], valid[valid > i]
        if len(before) < 2 * k or len(after) < 2 * k:
            continue
        inner = _axis_diff(_axis_mean(theta[before[-k:]]), _axis_mean(theta[after[:k]]))
        outer = _axis_diff(_axis_mean(theta[before[-2 * k : -k]]), _axis_mean(theta[after[k : 2 * k]]))
        jump = inner - max(outer - inner, 0.0) * (k + 1) / (2 * k - 1)
        if jump > best:
            best, at = jump, i
    if at is None:
        return [branch]
    if not np.isfinite(theta[at]):  # in a gap (two lines overlap): cut in its middle
        gap = np.flatnonzero(~np.isfinite(theta))
        run = gap[(gap >= valid[valid < at][-1]) & (gap <= valid[valid > at][0])]
        at = int(run[len(run) // 2])
    head = _Branch(branch.pixels[: at + 1], [branch.nodes[0], CUT])
    tail = _Branch(branch.pixels[at + 1 :], [CUT, branch.nodes[1]])
    return _cut_at_turns(head, orient, tol) + _cut_at_turns(tail, orient, tol)


def _tip(mask: np.ndarray, start: np.ndarray, direction: np.ndarray) -> float:
    """Distance (pixels) from `start` (y, x) along `direction` to the edge of `mask`: the first point of
    the ray, in steps of a tenth of a pixel, whose pixel is outside (a pixel's edge is half a pixel
    from its centre, which is what that rounding finds)."""
    n = np.hypot(*direction)
    if n == 0:
        return 0.0
    u = direction / n
    h, w = mask.shape
    t = np.arange(0.0, math.hypot(h, w) + 1.0, 0.1)
    yy = np.rint(start[0] + t * u[0]).astype(int)
    xx = np.rint(start[1] + t * u[1]).astype(int)
    ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    inside = np.zeros(len(t), bool)
    inside[ok] = mask[yy[ok], xx[ok]]
    out = np.flatnonzero(~inside)
    return float(t[out[0]]) if len(out) else float(t[-1])


def split_strokes(
    comp: np.ndarray,
    spur_px: float = 0.0,
    *,
    ends: Ends = "half_width",
    max_turn_deg: float = MAX_TURN_DEG,
    orientation: np.ndarray | None = None,
    orientation_tol_deg: float = ORIENTATION_TOL_DEG,
) -> list[Stroke]:
    """The strokes of one component mask (2-D, non-zero = inside). `spur_px`: branches with a free end
    shorter than this (plus the local half-width) are thinning artefacts and dropped.

    `ends`: what a free end adds to the skeleton's arc length: "half_width" (the distance transform at
    the end pixel: coarse maps, where a line is a band of interpolated cells), "tip" (a ray along the
    stroke to the mask's edge: the visible length) or "centre" ("tip" less half the stroke's width on
    each end: the centreline of a round-capped stroke). With "tip" and "centre" a junction left with
    one branch once spurs are dropped (thinning forks at a thick line's cap) is an end too.
    `max_turn_deg`: the join angle. `orientation`: per pixel of `comp`, a line orientation in radians
    modulo pi (NaN: unknown, e.g. where two lines overlap); joins must agree with it within
    `orientation_tol_deg`, and branches are cut where it turns by more (see the module docstring)."""
    mask = np.pad(comp.astype(bool), 1)
    orient = None if orientation is None else np.pad(orientation.astype(float), 1, constant_values=np.nan)
    tol = math.radians(orientation_tol_deg)
    skel = skeletonize(mask)
    if ends != "half_width":
        # Zhang's thinning (`skeletonize`) erases some diagonal bands whole (a 45 degree line two pixels
        # thick thins to one pixel); `thin` keeps them. Where it kept far more, it is the skeleton.
        other = thin(mask)
        if other.sum() > 1.5 * skel.sum() + 2:
            skel = other
    if not skel.any():
        return []
    half_width = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    count = cv2.filter2D(
        skel.astype(np.uint8), -1, np.ones((3, 3), np.float32), borderType=cv2.BORDER_CONSTANT
    )
    nbr = count.astype(int) - 1  # neighbours of each skeleton pixel
    junction = skel & (nbr >= 3)
    n_nodes, node_of = cv2.connectedComponents(junction.astype(np.uint8), connectivity=8)
    n_br, br_of = cv2.connectedComponents((skel & ~junction).astype(np.uint8), connectivity=8)
    branches: list[_Branch] = []
    for k in range(1, n_br):
        pixels = _order({(int(y), int(x)) for y, x in np.argwhere(br_of == k)})
        nodes: list[int | None] = []
        for i, (y, x) in enumerate((pixels[0], pixels[-1])):
            touching = sorted(
                {int(node_of[y + dy, x + dx]) for dy, dx in _NEIGHBOURS if node_of[y + dy, x + dx] > 0}
            )
            # A one-pixel branch between two junctions touches both from its only pixel.
            nodes.append(touching[min(i, len(touching) - 1)] if touching else None)
        branches.append(_Branch(pixels, nodes))
    # Two lines crossing at an angle thin to two junctions and a short bridge between them: a bridge no
    # longer than the blob is wide there is part of one crossing, so its junctions become one node.
    node_parent = list(range(n_nodes))
    bridges = set()
    # With an orientation map, so is a bridge the map calls shared (no reading on most of it): two lines
    # crossing at a shallow angle overlap over a long way.
    for i, b in enumerate(branches):
        a, c = b.nodes
        if a is not None and c is not None and a != c:
            y, x = b.pixels[len(b.pixels) // 2]
            shared = orient is not None and np.mean([not np.isfinite(orient[p]) for p in b.pixels]) >= 0.5
            if shared or _arc(b.pixels) + 2 <= 2 * half_width[y, x] + spur_px:
                node_parent[_root(node_parent, a)] = _root(node_parent, c)
                bridges.add(i)
    branches = [b for i, b in enumerate(branches) if i not in bridges]
    for b in branches:
        b.nodes = [None if n is None else _root(node_parent, n) for n in b.nodes]
    if orient is not None:
        branches = [piece for b in branches for piece in _cut_at_turns(b, orient, tol)]
    node_groups: dict[int, list[int]] = {}
    for n in range(1, n_nodes):
        node_groups.setdefault(_root(node_parent, n), []).append(n)
    node_root = np.zeros_like(node_of)  # each junction pixel labelled with its merged node
    for r, ns in node_groups.items():
        node_root[np.isin(node_of, ns)] = r
    node_centre = {r: np.argwhere(node_root == r).mean(axis=0) for r in node_groups}
    for b in branches:  # arc length, running on to the junction centres
        arc = _arc_points(b.pixels)
        pieces = [_pieces_of(arc[:-1], arc[1:])] if len(arc) > 1 else []
        for e, n in zip((b.pixels[0], b.pixels[-1]), b.nodes, strict=True):
            if n is not None and n != CUT:
                pieces.append(_pieces_of(np.asarray([e], float), node_centre[n][None]))
        b.pieces = np.concatenate(pieces) if pieces else np.zeros((0, 2, 2))
        b.length = _arc(b.pixels) + sum(
            float(np.hypot(*(np.asarray(e, float) - node_centre[n])))
            for e, n in zip((b.pixels[0], b.pixels[-1]), b.nodes, strict=True)
            if n is not None and n != CUT
        )
    if not branches:  # only junction pixels: a small blob
        pts = np.argwhere(skel)[:, ::-1].astype(float) - 1
        (cx, cy), (rw, rh), angle = cv2.minAreaRect(pts.astype(np.float32))
        box = cv2.boxPoints(((cx, cy), (rw, rh), angle)).astype(float)
        along = max((box[1] - box[0], box[2] - box[1]), key=lambda v: float(np.hypot(*v)))
        u = along / np.hypot(*along) if np.hypot(*along) > 0 else np.array([1.0, 0.0])
        length = float(max(rw, rh)) + 1.0
        piece = np.array([[[cx, cy] - u * length / 2, [cx, cy] + u * length / 2]])
        return [Stroke(pts, length, piece, np.ones(1))]

    # Spurs: a free end, a junction at the other end, and shorter than the blob is wide there.
    def is_spur(b: _Branch) -> bool:
        free = [n is None for n in b.nodes]
        if sum(free) != 1 or CUT in b.nodes:
            return False
        junction_at = b.nodes[0] if b.nodes[0] is not None else b.nodes[1]
        cy, cx = np.round(node_centre[junction_at]).astype(int)
        return b.length < half_width[cy, cx] + spur_px

    kept = [b for b in branches if not is_spur(b)] or [max(branches, key=lambda b: b.length)]

    # Join through junctions: straightest pairs first.
    parent = list(range(len(kept)))
    at_node: dict[int, list[tuple[int, bool]]] = {}
    for i, b in enumerate(kept):
        for end, n in enumerate(b.nodes):
            if n is not None and n != CUT:
                at_node.setdefault(n, []).append((i, end == 0))
    cos_max = math.cos(math.radians(max_turn_deg))
    for ends_here in at_node.values():
        dirs = [_direction(kept[i], s) for i, s in ends_here]
        reads = [_reading(kept[i], s, orient) for i, s in ends_here] if orient is not None else None
        pairs = sorted(
            (
                (-float(dirs[a] @ dirs[b]), a, b)
                for a in range(len(ends_here))
                for b in range(a + 1, len(ends_here))
                if ends_here[a][0] != ends_here[b][0]
            ),
            reverse=True,
        )
        used: set[int] = set()
        for straight, a, b in pairs:
            if straight < cos_max or a in used or b in used:
                continue
            if reads is not None and _axis_diff(reads[a], reads[b]) > tol:  # NaN (no reading): no veto
                continue
            ia, ib = ends_here[a][0], ends_here[b][0]
            if _root(parent, ia) == _root(parent, ib):  # would close a loop
                continue
            used |= {a, b}
            parent[_root(parent, ia)] = _root(parent, ib)
    strokes: dict[int, list[int]] = {}
    for i in range(len(kept)):
        strokes.setdefault(_root(parent, i), []).append(i)
    measured = ends != "half_width"
    if measured:
        precise = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        degree: dict[int, int] = {}
        for b in kept:
            for n in b.nodes:
                if n is not None and n != CUT:
                    degree[n] = degree.get(n, 0) + 1
    out = []
    for members in strokes.values():
        # Branch lengths run to the junction centres, so a joined junction's crossing is counted.
        length = sum(kept[i].length for i in members)
        pieces = [kept[i].pieces for i in members]
        signs = [np.ones(len(kept[i].pieces)) for i in members]
        if measured:
            own = [p for i in members for p in kept[i].pixels]
            width = max(2.0 * float(np.median([precise[p] for p in own])) - 1.0, 1.0)
            for i in members:
                b = kept[i]
                for at_start, n in ((True, b.nodes[0]), (False, b.nodes[1])):
                    if n == CUT or (n is not None and degree.get(n, 0) > 1):
                        continue
                    end = np.asarray(b.pixels[0] if at_start else b.pixels[-1], float)
                    start = end if n is None else node_centre[n]
                    outward = -_direction(b, at_start)
                    tip = _tip(mask, start, outward)
                    by = tip - (width / 2 if ends == "centre" else 0.0)
                    length += by
                    pieces.append(_end_piece(start, outward, by))
                    signs.append(np.array([1.0 if by >= 0 else -1.0]))
        else:
            for i in members:  # thinning stops a half-width short of each free end
                b = kept[i]
                for at_start, n in ((True, b.nodes[0]), (False, b.nodes[1])):
                    if n is None:
                        end = b.pixels[0] if at_start else b.pixels[-1]
                        by = float(half_width[end])
                        length += by
                        pieces.append(_end_piece(np.asarray(end, float), -_direction(b, at_start), by))
                        signs.append(np.ones(1))
        # The junctions a stroke passes through or ends at are part of it (and of the others there).
        nodes = {n for i in members for n in kept[i].nodes if n is not None and n != CUT}
        pixels = [p for i in members for p in kept[i].pixels]
        if nodes:
            pixels += [tuple(p) for p in np.argwhere(np.isin(node_root, list(nodes)))]
        pts = np.asarray(pixels, dtype=float)[:, ::-1] - 1
        out.append(Stroke(pts, max(length, 0.0), np.concatenate(pieces), np.concatenate(signs)))
    return out


def stroke_masks(comp: np.ndarray, strokes: list[Stroke], slack: float = 1.0) -> list[np.ndarray]:
    """The pixels of `comp` that belong to each stroke: those no more than `slack` pixels farther from
    it than from the nearest stroke. A crossing's pixels, which its strokes share, go to each of them,
    so every stroke's region stays in one piece."""
    h, w = comp.shape
    dists = []
    for s in strokes:
        canvas = np.ones((h, w), np.uint8)
        xy = np.round(s.points).astype(int)
        canvas[np.clip(xy[:, 1], 0, h - 1), np.clip(xy[:, 0], 0, w - 1)] = 0
        dists.append(cv2.distanceTransform(canvas, cv2.DIST_L2, 3))
    best = np.min(dists, axis=0)
    inside = comp > 0
    return [inside & (d <= best + slack) for d in dists]
