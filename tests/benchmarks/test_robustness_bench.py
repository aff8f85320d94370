"""The robustness benchmark's transforms (benchmarks/bench_robustness.py) change a photo as their names
say: a turn turns it, the EXIF turn decodes to the photo as it was, an exposure change darkens or
brightens it in linear light, half size halves it, a light's colour tints it, noise is grain drawn the
same each run, soft focus softens edges, a tilt narrows the top and uncovers the table; and its main
refuses a transform it does not know."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.benchmarks import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_robustness")


def _photo() -> tuple[np.ndarray, bytes]:
    rgb = np.full((240, 320, 3), 128, np.uint8)
    rgb[:40] = 230  # a bright band along the top shows where the top went
    rgb = cv2.GaussianBlur(rgb, (5, 5), 0)
    return rgb, cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[
        1
    ].tobytes()


def test_each_transform_does_what_its_name_says(bench):
    from model.preprocess import decode

    rgb, data = _photo()
    out = {name: decode(f(data))[0] for name, f in bench.TRANSFORMS.items()}
    assert (
        out["quarter turn"].shape == (320, 240, 3) and out["quarter turn"][:, -20:].mean() > 200
    )  # top -> right
    other = out["other quarter turn"]
    assert other.shape == (320, 240, 3) and other[:, :20].mean() > 200  # top -> left
    assert out["half turn"].shape == rgb.shape and out["half turn"][-20:].mean() > 200
    # The EXIF turn is undone by the decode: the photo as it was, less a JPEG generation.
    assert out["EXIF turn"].shape == rgb.shape and np.abs(out["EXIF turn"].astype(int) - rgb).mean() < 3
    assert out["half size"].shape == (120, 160, 3)
    grey = float(rgb[120:].mean())
    assert (
        85 < out["-1 EV"][120:].mean() < 100 < grey < out["+0.5 EV"][120:].mean()
    )  # sRGB 128 is 93 at half the light
    assert np.abs(out["JPEG 40"].astype(int) - rgb).mean() < 6


def test_the_light_noise_focus_and_tilt_transforms(bench):
    from model.preprocess import decode

    rgb, data = _photo()
    out = {name: decode(f(data))[0].astype(float) for name, f in bench.TRANSFORMS.items()}
    warm, cool = out["warm light"][120:].mean(axis=(0, 1)), out["cool light"][120:].mean(axis=(0, 1))
    assert warm[0] > warm[1] + 10 > warm[2] + 20 and cool[2] > cool[1] + 10 > cool[0] + 15
    # Grain on the flat grey, its level unchanged, and the same grain on a second run.
    noisy = out["sensor noise"]
    assert noisy[120:].std() > 4 > rgb[120:].std() and abs(noisy[120:].mean() - rgb[120:].mean()) < 2
    assert bench.TRANSFORMS["sensor noise"](data) == bench.TRANSFORMS["sensor noise"](data)

    # Soft focus, on a photo with a hard edge (its blur scales with the long side): the step spreads.
    sharp = np.full((600, 800, 3), 128, np.uint8)
    sharp[:, 400:] = 230
    soft = decode(bench.TRANSFORMS["soft focus"](cv2.imencode(".png", sharp)[1].tobytes()))[0].astype(float)
    assert np.abs(np.diff(soft[300, :, 1])).max() < 0.5 * 102
    tilted = out["tilted"]
    assert tilted.shape == rgb.shape
    # The top tenth is the table (the ring's median colour, grey), the bright band moved down under it,
    # and at the band's height the top edge's corners are table too: the top edge narrowed.
    assert tilted[:18, 160].mean() < 150 and tilted[30:45, 160].mean() > 200
    assert tilted[30:40, :15].mean() < 150 and tilted[30:40, -15:].mean() < 150


def test_an_unknown_transform_is_refused(bench, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--transforms", "sideways"])
    assert exc.value.code == 2 and "unknown transform(s) sideways" in capsys.readouterr().err
