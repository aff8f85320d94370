"""The white-display benchmark (benchmarks/bench_white_display.py) paints a screen as a display lit
white: inside the outline only, its rim left as it was, brighter at the top than at the foot, with a
line of dark script across it; a screen too small in the photo is left out."""

from __future__ import annotations

import numpy as np
import pytest

from tests.benchmarks import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_white_display")


def _phone() -> tuple[np.ndarray, np.ndarray]:
    """A dark phone screen on a grey table (600 x 400), and the screen's outline (x, y)."""
    rgb = np.full((600, 400, 3), 120, np.uint8)
    rgb[100:500, 120:280] = 15
    return rgb, np.array([(120, 100), (280, 100), (280, 500), (120, 500)], float)


def test_the_screen_inside_its_outline_is_lit_white_with_a_greeting(bench):
    rgb, outline = _phone()
    out = bench.painted(rgb, outline, 238)
    assert (out[:100] == rgb[:100]).all() and (out[:, :118] == rgb[:, :118]).all()  # the rest untouched
    assert (out[100:103, 150:250] == 15).all()  # the rim kept: the coarse outline's edge is not the screen's
    top, foot = out[120, 130].astype(int), out[480, 130].astype(int)
    assert top[0] == top[1] == top[2] and 236 <= top[0] <= 238 and 230 <= foot[0] < top[0]
    middle = out[250:350, 125:275, 0]
    assert middle.min() <= bench.TEXT_GREY + 20 and (middle < 200).mean() < 0.1  # thin dark script


def test_a_screen_too_small_in_the_photo_is_not_painted(bench):
    rgb, _ = _phone()
    tiny = np.array([(190, 290), (210, 290), (210, 310), (190, 310)], float)
    assert bench.painted(rgb, tiny, 255) is None


@pytest.mark.parametrize("levels", ["abc", "238,300"])
def test_levels_that_are_not_grey_levels_are_refused(bench, capsys, levels):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--levels", levels])
    assert exc.value.code == 2 and "--levels: grey levels 0-255" in capsys.readouterr().err
