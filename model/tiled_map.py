"""`TiledMap`: a canvas-sized map that is zero outside a few tiles, kept as its tiles. Torch-free.

The fine pass (`model.fine_pass`) runs its network on at most a dozen tiles of the device's canvas, which
cover 4-8% of it. Stitched into dense canvas-sized maps, a 12 MP phone's canvas (about 3000 x 1600 at
0.05 mm a pixel) took three float32 maps and a mask, about 60 MB to allocate and zero a photo: 12-25 ms
of a grading, more in the service, where the allocator hands back used memory that `np.zeros` must
clear. Its readers only ever read a group of touching tiles' box, or one pixel (`model.fine_instances`),
so a map is kept as its tiles, and a read builds the dense box it asks for.

A `TiledMap` is read like the dense array it stands for: `shape`, indexing by two slices (a dense copy of
that box, zero outside the tiles) or by two integers (one value), `any()`, and `np.asarray(m)` for the
whole dense map (tests, galleries).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in the map's pixels, x1/y1 exclusive


@dataclass(frozen=True)
class TiledMap:
    """A `shape` map that is zero but in `boxes` (disjoint), where it is `blocks` (one per box, each
    (y1 - y0) x (x1 - x0) of `dtype`)."""

    shape: tuple[int, int]
    dtype: np.dtype
    boxes: tuple[Box, ...] = ()
    blocks: tuple[np.ndarray, ...] = ()

    def __post_init__(self) -> None:
        if len(self.boxes) != len(self.blocks):
            raise ValueError("a TiledMap needs one block per box")
        for (x0, y0, x1, y1), block in zip(self.boxes, self.blocks, strict=True):
            if block.shape != (y1 - y0, x1 - x0):
                raise ValueError(f"block {block.shape} does not fill its box {(x0, y0, x1, y1)}")
            if not (0 <= x0 < x1 <= self.shape[1] and 0 <= y0 < y1 <= self.shape[0]):
                raise ValueError(f"box {(x0, y0, x1, y1)} lies outside the map {self.shape}")

    def __getitem__(self, key) -> np.ndarray | np.generic:
        if not isinstance(key, tuple) or len(key) != 2:
            raise TypeError("a TiledMap is indexed by (rows, columns)")
        rows, cols = key
        if isinstance(rows, int | np.integer) and isinstance(cols, int | np.integer):
            y, x = _index(int(rows), self.shape[0]), _index(int(cols), self.shape[1])
            for (x0, y0, x1, y1), block in zip(self.boxes, self.blocks, strict=True):
                if x0 <= x < x1 and y0 <= y < y1:
                    return block[y - y0, x - x0]
            return self.dtype.type(0)
        if isinstance(rows, slice) and isinstance(cols, slice):
            return self.region(*_span(rows, self.shape[0]), *_span(cols, self.shape[1]))
        raise TypeError("a TiledMap is indexed by two slices or two integers")

    def region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The dense map's rows y0:y1 and columns x0:x1 (a new array)."""
        out = np.zeros((max(0, y1 - y0), max(0, x1 - x0)), self.dtype)
        for (bx0, by0, bx1, by1), block in zip(self.boxes, self.blocks, strict=True):
            ix0, iy0, ix1, iy1 = max(x0, bx0), max(y0, by0), min(x1, bx1), min(y1, by1)
            if ix0 < ix1 and iy0 < iy1:
                out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = block[
                    iy0 - by0 : iy1 - by0, ix0 - bx0 : ix1 - bx0
                ]
        return out

    def any(self) -> bool:
        return any(bool(block.any()) for block in self.blocks)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        dense = self.region(0, self.shape[0], 0, self.shape[1])
        return dense if dtype is None else dense.astype(dtype)

    def masked(self, mask: np.ndarray) -> TiledMap:
        """This map & a dense bool `mask` of its shape (for a bool map)."""
        if mask.shape != self.shape:
            raise ValueError(f"mask {mask.shape} is not the map's {self.shape}")
        blocks = tuple(
            block & mask[y0:y1, x0:x1]
            for (x0, y0, x1, y1), block in zip(self.boxes, self.blocks, strict=True)
        )
        return TiledMap(self.shape, self.dtype, self.boxes, blocks)


def tiled(shape: tuple[int, int], dtype, boxes: Sequence[Box], blocks: Sequence[np.ndarray]) -> TiledMap:
    """A `TiledMap` of `blocks` in `boxes`."""
    return TiledMap((int(shape[0]), int(shape[1])), np.dtype(dtype), tuple(boxes), tuple(blocks))


def _index(i: int, n: int) -> int:
    j = i + n if i < 0 else i
    if not 0 <= j < n:
        raise IndexError(f"index {i} is out of bounds for size {n}")
    return j


def _span(s: slice, n: int) -> tuple[int, int]:
    start, stop, step = s.indices(n)
    if step != 1:
        raise TypeError("a TiledMap is read by contiguous slices")
    return start, max(start, stop)
