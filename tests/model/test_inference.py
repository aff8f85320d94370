"""The one inference path (`model.inference`) with a numpy stand-in for the network: which photos get
the crop pass, what the merged outputs hold, where the maps are framed, batching, the CPU slot."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from model.card import Thresholds
from model.inference import Frame, batched, infer
from model.outputs import ZONE_CHANNELS
from model.preprocess import letterbox

SIZE, STRIDE = 128, 4
NO_PROBES = Thresholds(defect_pixel={})


def _photo(device: bool) -> np.ndarray:
    """A light table with (or without) a dark device in x 300..500, y 100..500 of an 800 x 600 photo."""
    img = np.full((600, 800, 3), 240, np.uint8)
    if device:
        img[100:500, 300:500] = 20
    return img


class FakeNet:
    """Zones from darkness (dark = screen), one defect map that is the darkness itself, a view that
    says which call it was: every call is recorded with its batch and whether the CPU slot was held."""

    def __init__(self, slot=None):
        self.calls: list[int] = []
        self.slot = slot

    def __call__(self, images):
        assert self.slot is None or not self.slot.held, "the network ran while the CPU slot was held"
        self.calls.append(len(images))
        out = []
        for im in images:
            dark = (im[STRIDE // 2 :: STRIDE, STRIDE // 2 :: STRIDE].mean(axis=2) < 100).astype(np.float32)
            zone = np.zeros((len(ZONE_CHANNELS), *dark.shape), np.float32)
            zone[0], zone[1] = 1 - dark, dark
            out.append(
                {
                    "defect_probs": dark[None],
                    "zone_probs": zone,
                    "view_probs": np.array([len(self.calls), 0.0]),
                    "quality_probs": np.array([1.0, 0.0]),
                }
            )
        return out


class Slot:
    def __init__(self):
        self.held, self.entered = False, 0

    def __enter__(self):
        self.held, self.entered = True, self.entered + 1

    def __exit__(self, *exc):
        self.held = False


def _frames(*devices: bool) -> list[Frame]:
    out = []
    for d in devices:
        rgb = _photo(d)
        image, lb = letterbox(rgb, SIZE)
        out.append(Frame(image, lb, rgb))
    return out


def test_one_pass_when_the_card_asks_for_no_crop():
    net = FakeNet()
    frames = _frames(True, False)
    done = infer(frames, SimpleNamespace(input_size=SIZE, crop_to_device=False, thresholds=NO_PROBES), net)
    assert net.calls == [2]
    assert [d.frame for d in done] == frames


def test_the_crop_pass_runs_on_photos_with_a_device_and_keeps_the_first_pass_verdicts():
    slot = Slot()
    net = FakeNet(slot)
    frames = _frames(True, False, True)
    done = infer(
        frames,
        SimpleNamespace(input_size=SIZE, crop_to_device=True, crop_upright=False, thresholds=NO_PROBES),
        net,
        slot,
    )
    assert net.calls == [3, 2]  # all photos, then the two with a device
    assert slot.entered == 1  # the crop step, not the network
    assert done[1].frame is frames[1]  # no device: the whole photo's frame and outputs
    for d in (done[0], done[2]):
        assert d.frame.decoded is None and d.letterbox.crop is not None
        assert d.outputs["view_probs"][0] == 1  # photo-level verdicts: from the first call
        # The maps are the crop's: the device fills more of them than it did in the whole photo.
        assert d.outputs["defect_probs"].mean() > 2 * done[1].outputs["defect_probs"].mean() + 0.2
        # ... and they map back to the device's place in the photo.
        ys, xs = np.nonzero(d.outputs["defect_probs"][0] > 0.5)
        corners = np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]], float) * STRIDE
        (x0, y0), (x1, y1) = d.letterbox.to_original(corners)
        assert abs(x0 - 300) < 12 and abs(x1 - 500) < 12 and abs(y0 - 100) < 12 and abs(y1 - 500) < 12


class PoolNet:
    """Maps that turn with their input, as a network's should: zones and a defect map from the darkness
    of each 4 x 4 block, a "feature" map at stride 16 that is the block's mean red, and a view that
    says how the input lay (its top half darker than its left half: 1). Every input is kept."""

    def __init__(self):
        self.seen: list[np.ndarray] = []

    def __call__(self, images):
        out = []
        for im in images:
            self.seen.append(im)
            grey = im.mean(axis=2)
            dark = grey.reshape(SIZE // STRIDE, STRIDE, SIZE // STRIDE, STRIDE).mean(axis=(1, 3)) < 100
            dark = dark.astype(np.float32)
            zone = np.zeros((len(ZONE_CHANNELS), *dark.shape), np.float32)
            zone[0], zone[1] = 1 - dark, dark
            red = im[..., 0].reshape(SIZE // 16, 16, SIZE // 16, 16).mean(axis=(1, 3))[None]
            tall = float(grey[: SIZE // 2].mean() < grey[:, : SIZE // 2].mean())
            out.append(
                {
                    "defect_probs": dark[None],
                    "zone_probs": zone,
                    "encoder_s16": red.astype(np.float32),
                    "view_probs": np.array([tall, 1 - tall]),
                }
            )
        return out


def _wide_photo() -> np.ndarray:
    """A device lying wide (500 x 200 px) in an 800 x 600 photo, its left end lighter than its right:
    a network that sees it turned upright finds it taller than wide."""
    img = np.full((600, 800, 3), 240, np.uint8)
    img[200:400, 150:650] = 20
    img[200:400, 150:250] = (90, 10, 10)
    return img


def _spec(upright: bool) -> SimpleNamespace:
    return SimpleNamespace(input_size=SIZE, crop_to_device=True, crop_upright=upright, thresholds=NO_PROBES)


def test_a_device_lying_wide_is_turned_upright_for_the_crop_pass_and_its_maps_turned_back():
    rgb = _wide_photo()
    frame = Frame(*letterbox(rgb, SIZE), rgb)
    plain, up = PoolNet(), PoolNet()
    (as_is,) = infer([frame], _spec(False), plain)
    (turned,) = infer([frame], _spec(True), up)
    # The crop pass saw the device long side up: the same crop, turned a quarter counter-clockwise.
    crop_seen = up.seen[1]
    assert np.array_equal(crop_seen, np.rot90(plain.seen[1]))
    ys, xs = np.nonzero(crop_seen.mean(axis=2) < 100)
    assert np.ptp(ys) > 1.5 * np.ptp(xs)
    # Its maps and features came back in the crop's frame, cell for cell (this net turns with its
    # input): what post-processing reads is what it read without the turn.
    assert turned.letterbox == as_is.letterbox and np.array_equal(turned.frame.image, as_is.frame.image)
    for name in ("defect_probs", "zone_probs", "encoder_s16"):
        assert np.array_equal(turned.outputs[name], as_is.outputs[name]), name
    # The photo-level verdict is still the whole photo's, never the turned crop's.
    assert np.array_equal(turned.outputs["view_probs"], as_is.outputs["view_probs"])


def test_a_device_standing_upright_is_not_turned():
    net = PoolNet()
    frames = _frames(True)  # 200 x 400 px: taller than wide
    infer(frames, _spec(True), net)
    assert len(net.seen) == 2
    plain = PoolNet()
    infer(frames, _spec(False), plain)
    assert np.array_equal(net.seen[1], plain.seen[1])


def test_a_network_that_loses_photos_is_an_error():
    with pytest.raises(ValueError, match="1 outputs for 2 photos"):
        infer(
            _frames(True, True),
            SimpleNamespace(input_size=SIZE, crop_to_device=False, thresholds=NO_PROBES),
            lambda ims: [{}],
        )


def test_batched_runs_chunks_in_nchw_and_splits_them_per_photo():
    seen = []

    def run_nchw(batch):
        seen.append(batch.shape)
        assert batch.flags["C_CONTIGUOUS"] and batch.dtype == np.uint8
        return {"mean": batch.reshape(len(batch), -1).mean(axis=1)}

    images = [np.full((8, 8, 3), v, np.uint8) for v in range(5)]
    out = batched(run_nchw, max_batch=2)(images)
    assert seen == [(2, 3, 8, 8), (2, 3, 8, 8), (1, 3, 8, 8)]
    assert [float(o["mean"]) for o in out] == [0, 1, 2, 3, 4]
