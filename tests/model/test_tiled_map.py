"""`model.tiled_map.TiledMap`: a map kept as its tiles reads exactly as the dense map it stands for."""

from __future__ import annotations

import numpy as np
import pytest

from model.tiled_map import TiledMap, tiled


def _random_map(rng, shape=(70, 90), stride=16):
    """A tiled map of random disjoint grid cells (some clipped at the map's edge) and its dense twin."""
    h, w = shape
    cells = {(int(i), int(j)) for i, j in rng.integers(0, [-(-w // stride), -(-h // stride)], (8, 2))}
    boxes = [(i * stride, j * stride, min(w, (i + 1) * stride), min(h, (j + 1) * stride)) for i, j in cells]
    blocks = [rng.random((y1 - y0, x1 - x0)).astype(np.float32) for x0, y0, x1, y1 in boxes]
    dense = np.zeros(shape, np.float32)
    for (x0, y0, x1, y1), b in zip(boxes, blocks, strict=True):
        dense[y0:y1, x0:x1] = b
    return tiled(shape, np.float32, boxes, blocks), dense


def test_a_tiled_map_reads_as_its_dense_map_by_box_pixel_and_whole():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m, dense = _random_map(rng)
        np.testing.assert_array_equal(np.asarray(m), dense)
        assert m.shape == dense.shape and m.any() == dense.any()
        for _ in range(30):
            y0, x0 = rng.integers(-10, 80), rng.integers(-10, 100)
            y1, x1 = y0 + rng.integers(0, 40), x0 + rng.integers(0, 40)
            here = (slice(max(0, y0), y1), slice(max(0, x0), x1))  # off the edges as numpy clips them
            np.testing.assert_array_equal(m[here], dense[here])
            y, x = int(rng.integers(-70, 70)), int(rng.integers(-90, 90))
            assert m[y, x] == dense[y, x]


def test_a_bool_tiled_map_masked_is_the_dense_and():
    rng = np.random.default_rng(1)
    m, dense = _random_map(rng)
    covered = tiled(m.shape, bool, m.boxes, [np.ones_like(b, bool) for b in m.blocks])
    mask = rng.random(m.shape) > 0.5
    np.testing.assert_array_equal(np.asarray(covered.masked(mask)), (dense > 0) & mask)


def test_an_empty_tiled_map_reads_zero_and_bad_input_is_refused():
    empty = tiled((5, 6), np.float32, [], [])
    assert not empty.any() and empty[2, 3] == 0 and empty[1:4, :].shape == (3, 6)
    assert not np.asarray(empty).any()
    with pytest.raises(ValueError, match="does not fill"):
        tiled((5, 6), np.float32, [(0, 0, 2, 2)], [np.zeros((3, 2), np.float32)])
    with pytest.raises(ValueError, match="outside"):
        tiled((5, 6), np.float32, [(4, 0, 8, 2)], [np.zeros((2, 4), np.float32)])
    with pytest.raises(IndexError):
        empty[5, 0]
    with pytest.raises(TypeError):
        empty[::2, :]
    with pytest.raises(TypeError):
        empty[1]
    assert isinstance(empty, TiledMap)
