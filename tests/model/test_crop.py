"""Crop-to-device: letterboxing a crop maps back to the photo exactly, the device box, the output merge,
training targets of a crop that stay on the photo's defects; the zoomed, tiled pass (windows, stitching,
its training draws)."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from model.crop import (
    CROP_MARGIN,
    MAX_GAIN,
    MAX_TILES,
    crop_input,
    device_box,
    merge_outputs,
    stitch,
    stitch_all,
    tiled_input,
    window_images,
)
from model.outputs import ZONE_CHANNELS
from model.preprocess import decode_for, letterbox
from training.dataset import (
    ManifestDataset,
    build_targets,
    load_items,
    read_mask,
    true_device_box,
    zoomed_window,
)
from training.toydata import write_toy_manifest

SIZE, STRIDE = 128, 4
CELLS = SIZE // STRIDE


def _zone_map(box_cells: tuple[int, int, int, int] | None) -> np.ndarray:
    """Background everywhere but a device (screen) in cells x0:x1, y0:y1."""
    z = np.zeros((len(ZONE_CHANNELS), CELLS, CELLS), np.float32)
    z[0] = 1
    if box_cells is not None:
        x0, y0, x1, y1 = box_cells
        z[0, y0:y1, x0:x1] = 0
        z[1, y0:y1, x0:x1] = 1
    return z


def test_a_crop_letterbox_maps_back_to_the_photo():
    photo = np.zeros((600, 800, 3), np.uint8)
    photo[248:253, 408:413] = (255, 0, 0)  # a red mark (the grey padding has no red excess)
    canvas, lb = letterbox(photo, SIZE, draft_factor=2.0, crop=(300, 100, 600, 500))
    assert lb.crop == (300, 100, 600, 500) and lb.region_size == (300, 400)
    assert (lb.width, lb.height) == (800, 600)  # the whole photo's size stays known
    red = canvas[..., 0].astype(int) - canvas[..., 1]
    y, x = np.unravel_index(red.argmax(), red.shape)
    # decoded (410, 250) is original (820, 500) at a draft factor of 2; within one input pixel's worth
    orig = lb.to_original(np.array([[x + 0.5, y + 0.5]]))[0]
    assert orig == pytest.approx((820, 500), abs=2 * 2 / lb.scale)
    assert lb.to_model(lb.to_original(np.array([[17.0, 33.0]]))) == pytest.approx(np.array([[17.0, 33.0]]))


def test_a_crop_outside_the_photo_is_refused():
    with pytest.raises(ValueError, match="not inside"):
        letterbox(np.zeros((100, 100, 3), np.uint8), SIZE, crop=(50, 50, 150, 90))


def test_device_box_frames_the_device_with_a_margin():
    photo = np.zeros((400, 400, 3), np.uint8)
    _, lb = letterbox(photo, SIZE)  # 400 px photo -> 128 px input: 3.125 photo px per input px
    box = device_box(_zone_map((8, 4, 20, 28)), lb, SIZE)  # cells -> input px 32..80 x 16..112
    assert box is not None
    x0, y0, x1, y1 = box
    px = 400 / SIZE
    w, h = 12 * STRIDE * px, 24 * STRIDE * px
    assert x0 == pytest.approx(32 * px - CROP_MARGIN * w, abs=1)
    assert y0 == pytest.approx(16 * px - CROP_MARGIN * h, abs=1)
    assert x1 == pytest.approx(80 * px + CROP_MARGIN * w, abs=1)
    assert y1 == pytest.approx(112 * px + CROP_MARGIN * h, abs=1)


def test_no_crop_without_a_device_or_when_it_fills_the_photo():
    _, lb = letterbox(np.zeros((400, 400, 3), np.uint8), SIZE)
    assert device_box(_zone_map(None), lb, SIZE) is None
    assert device_box(_zone_map((1, 1, 31, 31)), lb, SIZE) is None  # a crop would magnify < MIN_GAIN


def test_a_tiny_device_is_magnified_at_most_max_gain():
    _, lb = letterbox(np.zeros((400, 400, 3), np.uint8), SIZE)
    x0, y0, x1, y1 = device_box(_zone_map((14, 14, 18, 18)), lb, SIZE)
    assert max(x1 - x0, y1 - y0) == pytest.approx(400 / MAX_GAIN, abs=2)
    assert (x0 + x1) / 2 == pytest.approx(200, abs=2) and (y0 + y1) / 2 == pytest.approx(200, abs=2)


def test_crop_input_letterboxes_the_device_at_the_input_size():
    photo = np.full((400, 400, 3), 200, np.uint8)
    _, lb = letterbox(photo, SIZE)
    image, lb2 = crop_input(photo, lb, _zone_map((8, 4, 20, 28)), SIZE)
    assert image.shape == (SIZE, SIZE, 3) and lb2.crop is not None
    x0, y0, x1, y1 = lb2.crop
    assert lb2.scale == pytest.approx(SIZE / max(x1 - x0, y1 - y0))
    assert lb2.scale > 1.15 * lb.scale  # the device is magnified


def test_merge_takes_maps_from_the_crop_and_verdicts_from_the_whole_photo():
    whole = {k: np.zeros(2) for k in ("defect_probs", "zone_probs", "view_probs", "quality_probs")}
    crop = {k: np.ones(2) for k in whole}
    merged = merge_outputs(whole, crop)
    assert merged["defect_probs"][0] == 1 and merged["zone_probs"][0] == 1
    assert merged["view_probs"][0] == 0 and merged["quality_probs"][0] == 0


def test_crop_targets_stay_on_the_defects(tmp_path):
    """A crop's defect target, mapped back through its letterbox, lands on the photo's defect mask."""
    manifest = write_toy_manifest(tmp_path, n=4, size=160, seed=3)
    items = [it for it in load_items(manifest, ["train", "val", "test"]) if it.record.instances][:2]
    assert items
    for it in items:
        _, draft = decode_for(it.manifest.parent / it.record.image, SIZE)
        box = true_device_box(it, draft, 0.05)
        assert box is not None
        t = build_targets(it, SIZE, box)
        full = np.zeros(read_mask(it.manifest.parent / it.record.instances[0].mask).shape, bool)
        for inst in it.record.instances:
            full |= read_mask(it.manifest.parent / inst.mask) > 0
        _, lb = letterbox(np.zeros((*full.shape, 3), np.uint8), SIZE, crop=box)
        ys, xs = np.nonzero(t["defects"].max(axis=2))
        assert len(xs) > 0
        back = np.floor(lb.to_original(np.stack([xs + 0.5, ys + 0.5], axis=1))).astype(int)
        back = np.clip(back, 0, np.array(full.shape[::-1]) - 1)
        # Every target pixel lies on a true defect pixel of the photo, or within the pixel and a half
        # that downscaling thin defects adds ("any coverage counts", `letterbox_mask`).
        dist = cv2.distanceTransform((~full).astype(np.uint8), cv2.DIST_L2, 3)[back[:, 1], back[:, 0]]
        assert np.median(dist) == 0 and dist.max() <= 1.5


def test_device_crop_draws_crop_where_the_device_is_known(tmp_path):
    manifest = write_toy_manifest(tmp_path, n=4, size=160, seed=4)
    items = load_items(manifest, ["train", "val", "test"])[:2]
    whole = ManifestDataset(items, SIZE)
    cropped = ManifestDataset(items, SIZE, device_crop=1.0)
    for i in range(len(items)):
        a, b = whole[i], cropped[i]
        assert a["image"].shape == b["image"].shape and not np.array_equal(a["image"], b["image"])
        assert b["defects"].sum() >= a["defects"].sum()  # the same defects, magnified
    # Without a zone mask there is no true device box: the draw stays whole.
    no_zone = [replace(items[0], record=items[0].record.model_copy(update={"zone_mask": None}))]
    assert true_device_box(no_zone[0], 1.0, 0.05) is None
    fallback = ManifestDataset(no_zone, SIZE, device_crop=1.0)[0]["image"]
    assert fallback.shape == (3, SIZE, SIZE)
    assert np.array_equal(fallback, ManifestDataset(no_zone, SIZE)[0]["image"])


def _fake_network(image: np.ndarray) -> dict[str, np.ndarray]:
    """Maps that are the window's own pixels (red channel, sampled at cell centres): where a stitched
    map's value came from shows in it."""
    red = image[STRIDE // 2 :: STRIDE, STRIDE // 2 :: STRIDE, 0].astype(np.float32) / 255
    zone = np.stack([1 - red, red, *np.zeros((len(ZONE_CHANNELS) - 2, *red.shape), np.float32)])
    return {
        "defect_probs": red[None],
        "zone_probs": zone,
        "view_probs": np.ones(3),
        "quality_probs": np.ones(4),
    }


def test_a_long_device_gets_two_windows_at_full_zoom_a_square_one_one_window():
    photo = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    _, lb = letterbox(photo, SIZE)
    tall = tiled_input(photo, lb, _zone_map((10, 2, 22, 30)), SIZE, STRIDE, zoom=2.0)  # 1:2.3 box
    assert tall is not None and tall.size == 2 * SIZE and len(tall.windows) == MAX_TILES == 2
    (xa, ya), (xb, yb) = tall.windows
    assert xa == xb and ya == 0 and yb == SIZE  # one column, top and bottom of the canvas
    assert all(x % STRIDE == 0 and y % STRIDE == 0 for x, y in tall.windows)
    assert all(im.shape == (SIZE, SIZE, 3) for im in tall.images(SIZE))
    x0, y0, x1, y1 = tall.lb.crop
    assert tall.lb.scale == pytest.approx(
        2 * SIZE / max(x1 - x0, y1 - y0), rel=0.01
    )  # twice the plain crop's
    square = tiled_input(photo, lb, _zone_map((8, 8, 20, 20)), SIZE, STRIDE, zoom=2.0)
    assert square is not None and square.size == SIZE and len(square.windows) == 1  # no zoom: the plain crop
    assert tiled_input(photo, lb, _zone_map(None), SIZE, STRIDE, zoom=2.0) is None


def test_a_tilted_box_zooms_only_as_far_as_two_windows_cover_it():
    photo = np.zeros((400, 400, 3), np.uint8)
    _, lb = letterbox(photo, SIZE)
    t = tiled_input(photo, lb, _zone_map((6, 4, 26, 20)), SIZE, STRIDE, zoom=2.0)  # box 20 x 16 cells
    assert t is not None and len(t.windows) <= MAX_TILES
    assert SIZE < t.size < 2 * SIZE  # zoom = the box's aspect (1.25, with the margin), not 2


def test_stitching_puts_every_window_back_where_it_came_from():
    photo = np.random.default_rng(1).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    _, lb = letterbox(photo, SIZE)
    t = tiled_input(photo, lb, _zone_map((10, 2, 22, 30)), SIZE, STRIDE, zoom=1.75)
    assert t is not None and len(t.windows) == 2
    (_, ya), (_, yb) = t.windows
    assert yb - ya < SIZE  # the windows overlap
    maps = stitch(t, [_fake_network(im) for im in t.images(SIZE)], STRIDE)
    assert maps["defect_probs"].shape == (1, t.size // STRIDE, t.size // STRIDE)
    expected = t.canvas[STRIDE // 2 :: STRIDE, STRIDE // 2 :: STRIDE, 0].astype(np.float32) / 255
    covered = np.zeros(expected.shape, bool)
    for x, y in t.windows:
        covered[y // STRIDE : (y + SIZE) // STRIDE, x // STRIDE : (x + SIZE) // STRIDE] = True
    assert not covered.all()  # the canvas's side padding is never looked at
    np.testing.assert_allclose(maps["defect_probs"][0][covered], expected[covered], atol=1e-6)
    assert (maps["defect_probs"][0][~covered] == 0).all()
    assert (maps["zone_probs"][0][~covered] == 1).all()  # unseen: background
    np.testing.assert_allclose(maps["zone_probs"].sum(axis=0), 1.0, atol=1e-6)


def test_one_batch_of_windows_for_many_photos_is_stitched_back_photo_by_photo():
    rng = np.random.default_rng(2)
    photos = [rng.integers(0, 255, (400, 400, 3), dtype=np.uint8) for _ in range(2)]
    _, lb = letterbox(photos[0], SIZE)
    tiled = {
        3: tiled_input(photos[0], lb, _zone_map((10, 2, 22, 30)), SIZE, STRIDE, zoom=2.0),  # two windows
        7: tiled_input(photos[1], lb, _zone_map((8, 8, 20, 20)), SIZE, STRIDE, zoom=2.0),  # one
    }
    images = window_images(tiled, SIZE)
    assert len(images) == 3
    maps = stitch_all(tiled, [_fake_network(im) for im in images], STRIDE)
    for k, t in tiled.items():
        own = stitch(t, [_fake_network(im) for im in t.images(SIZE)], STRIDE)
        np.testing.assert_array_equal(maps[k]["defect_probs"], own["defect_probs"])
    with pytest.raises(ValueError, match="2 window outputs for 3 windows"):
        stitch_all(tiled, [_fake_network(im) for im in images[:2]], STRIDE)


def test_overlapping_windows_are_averaged():
    photo = np.zeros((400, 400, 3), np.uint8)
    _, lb = letterbox(photo, SIZE)
    t = tiled_input(photo, lb, _zone_map((10, 2, 22, 30)), SIZE, STRIDE, zoom=1.75)
    outs = [{"defect_probs": np.full((1, CELLS, CELLS), v, np.float32)} for v in (0.2, 0.6)]
    m = stitch(t, outs, STRIDE)["defect_probs"][0]
    (x, ya), (_, yb) = t.windows
    col = x // STRIDE + 1
    assert m[ya // STRIDE, col] == pytest.approx(0.2)
    assert m[(yb + SIZE) // STRIDE - 1, col] == pytest.approx(0.6)
    assert m[yb // STRIDE, col] == pytest.approx(0.4)  # both windows saw it


def test_zoomed_training_draws_are_input_sized_windows_with_their_own_labels(tmp_path):
    manifest = write_toy_manifest(tmp_path, n=6, size=160, seed=5)
    items = [it for it in load_items(manifest, ["train", "val", "test"]) if it.record.zone_mask][:3]
    assert items
    rng = np.random.RandomState(0)
    for it in items:
        t = zoomed_window(it, SIZE, 0.06, 2.0, rng)
        assert t["image"].shape == (SIZE, SIZE, 3) and t["defects"].shape[:2] == (SIZE, SIZE)
        assert t["zone"].shape == (SIZE, SIZE)
        known = t["pixel_valid"] > 0
        np.testing.assert_array_equal(
            t["image_label"][known], t["defects"].reshape(-1, t["defects"].shape[-1]).max(axis=0)[known]
        )
        whole = zoomed_window(it, SIZE, 0.06, 1.0, rng)  # zoom 1 is the plain device crop
        np.testing.assert_array_equal(whole["image"], build_targets(it, SIZE, device_margin=0.06)["image"])
    ds = ManifestDataset(items, SIZE, device_crop=1.0, device_zoom=1.0, max_zoom=2.0)
    assert ds[0]["image"].shape == (3, SIZE, SIZE)
