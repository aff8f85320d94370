"""Crop-to-device: letterboxing a crop maps back to the photo exactly, the device box, the output merge,
training targets of a crop that stay on the photo's defects."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from model.crop import (
    CROP_MARGIN,
    MAX_GAIN,
    UPRIGHT_RATIO,
    crop_input,
    device_box,
    merge_outputs,
    turned,
    turned_back,
    upright_turns,
)
from model.outputs import ZONE_CHANNELS
from model.preprocess import decode_for, letterbox
from training.dataset import (
    ManifestDataset,
    build_targets,
    load_items,
    read_mask,
    true_device_box,
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


def test_upright_turns_stands_only_a_device_lying_wide():
    assert upright_turns(_zone_map((2, 10, 30, 20))) == 1  # 28 x 10 cells: lying wide
    assert upright_turns(_zone_map((10, 2, 20, 30))) == 0  # standing
    side = 20
    assert upright_turns(_zone_map((0, 0, int(side * UPRIGHT_RATIO), side))) == 0  # not wider than the ratio
    assert upright_turns(_zone_map((0, 0, int(side * UPRIGHT_RATIO) + 1, side))) == 1
    assert upright_turns(_zone_map(None)) == 0  # no device


def test_turned_back_undoes_turned_on_every_map_and_leaves_verdicts():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    up = turned(image, 1)
    assert up.flags["C_CONTIGUOUS"] and np.array_equal(up[0, :], image[:, -1])  # counter-clockwise

    # Maps made from the turned input by block means (as a network's cells), turned back, are the
    # maps of the input as it lay.
    def maps(im):
        m = im[..., 0].astype(np.float32).reshape(CELLS, STRIDE, CELLS, STRIDE).mean(axis=(1, 3))
        return {"defect_probs": m[None], "view_probs": np.array([0.25, 0.75])}

    back = turned_back(maps(up), 1)
    assert np.array_equal(back["defect_probs"], maps(image)["defect_probs"])
    assert np.array_equal(back["view_probs"], [0.25, 0.75])
    unturned = maps(image)
    assert turned_back(unturned, 0) is unturned  # no turn: the outputs as they came
    assert turned(image, 0) is image
