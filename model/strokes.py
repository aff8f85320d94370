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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.morphology import skeletonize

# Two branches meeting at a junction are one line when their directions bend by at most this much.
MAX_TURN_DEG = 20.0
# How far along a branch its direction at a junction is read, in pixels: far enough to average out
# the skeleton's staircase, short enough to follow a curve.
DIRECTION_SPAN_PX = 8
_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


@dataclass
class Stroke:
    """One line found in a component: its skeleton points (x, y, in the component mask's pixels) and
    its length in pixels."""

    points: np.ndarray  # (N, 2) float, x and y
    length: float


@dataclass
class _Branch:
    pixels: list[tuple[int, int]]  # ordered (y, x)
    nodes: list[int | None]  # junction cluster at the start and the end (None: a free end)
    length: float = 0.0


def _arc(pixels: list[tuple[int, int]]) -> float:
    """Arc length of an ordered pixel chain, smoothed: a digital line's staircase of 4-steps would
    otherwise count |dx| + |dy| instead of its length."""
    if len(pixels) < 2:
        return 0.0
    p = cv2.approxPolyDP(np.asarray(pixels, dtype=np.int32)[:, None, :], 0.8, False)[:, 0, :]
    return float(np.hypot(*np.diff(p.astype(float), axis=0).T).sum())


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


def split_strokes(comp: np.ndarray, spur_px: float = 0.0) -> list[Stroke]:
    """The strokes of one component mask (2-D, non-zero = inside). `spur_px`: branches with a free end
    shorter than this (plus the local half-width) are thinning artefacts and dropped."""
    mask = np.pad(comp.astype(bool), 1)
    skel = skeletonize(mask)
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
    for i, b in enumerate(branches):
        a, c = b.nodes
        if a is not None and c is not None and a != c:
            y, x = b.pixels[len(b.pixels) // 2]
            if _arc(b.pixels) + 2 <= 2 * half_width[y, x] + spur_px:
                node_parent[_root(node_parent, a)] = _root(node_parent, c)
                bridges.add(i)
    branches = [b for i, b in enumerate(branches) if i not in bridges]
    for b in branches:
        b.nodes = [None if n is None else _root(node_parent, n) for n in b.nodes]
    node_groups: dict[int, list[int]] = {}
    for n in range(1, n_nodes):
        node_groups.setdefault(_root(node_parent, n), []).append(n)
    node_root = np.zeros_like(node_of)  # each junction pixel labelled with its merged node
    for r, ns in node_groups.items():
        node_root[np.isin(node_of, ns)] = r
    node_centre = {r: np.argwhere(node_root == r).mean(axis=0) for r in node_groups}
    for b in branches:  # arc length, running on to the junction centres
        b.length = _arc(b.pixels) + sum(
            float(np.hypot(*(np.asarray(e, float) - node_centre[n])))
            for e, n in zip((b.pixels[0], b.pixels[-1]), b.nodes, strict=True)
            if n is not None
        )
    if not branches:  # only junction pixels: a small blob
        pts = np.argwhere(skel)[:, ::-1].astype(float) - 1
        (_, _), (rw, rh), _ = cv2.minAreaRect(pts.astype(np.float32))
        return [Stroke(pts, float(max(rw, rh)) + 1.0)]

    # Spurs: a free end, a junction at the other end, and shorter than the blob is wide there.
    def is_spur(b: _Branch) -> bool:
        free = [n is None for n in b.nodes]
        if sum(free) != 1:
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
            if n is not None:
                at_node.setdefault(n, []).append((i, end == 0))
    cos_max = math.cos(math.radians(MAX_TURN_DEG))
    for ends in at_node.values():
        dirs = [_direction(kept[i], s) for i, s in ends]
        pairs = sorted(
            (
                (-float(dirs[a] @ dirs[b]), a, b)
                for a in range(len(ends))
                for b in range(a + 1, len(ends))
                if ends[a][0] != ends[b][0]
            ),
            reverse=True,
        )
        used: set[int] = set()
        for straight, a, b in pairs:
            if straight < cos_max or a in used or b in used:
                continue
            ia, ib = ends[a][0], ends[b][0]
            if _root(parent, ia) == _root(parent, ib):  # would close a loop
                continue
            used |= {a, b}
            parent[_root(parent, ia)] = _root(parent, ib)
    strokes: dict[int, list[int]] = {}
    for i in range(len(kept)):
        strokes.setdefault(_root(parent, i), []).append(i)
    out = []
    for members in strokes.values():
        # Branch lengths run to the junction centres, so a joined junction's crossing is counted.
        length = sum(kept[i].length for i in members)
        for i in members:  # thinning stops a half-width short of each free end
            b = kept[i]
            for end, n in zip((b.pixels[0], b.pixels[-1]), b.nodes, strict=True):
                if n is None:
                    length += float(half_width[end])
        # The junctions a stroke passes through or ends at are part of it (and of the others there).
        nodes = {n for i in members for n in kept[i].nodes if n is not None}
        pixels = [p for i in members for p in kept[i].pixels]
        if nodes:
            pixels += [tuple(p) for p in np.argwhere(np.isin(node_root, list(nodes)))]
        pts = np.asarray(pixels, dtype=float)[:, ::-1] - 1
        out.append(Stroke(pts, length))
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
