"""A real shattered screen graded as a user grades it (`refurbgrade grade --overlays`, the bundled model):
the overlay shows the crack where the glass is cracked, not a box round the one line the crack map traced.

Needs the real photos beside the repository (`../shared/data/real`), as the other real-photo tests do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving.overlays import COLOURS

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ROOT.parent / "shared/data/real/phones_web/images/android_samsung/android_samsung103.jpg"


@pytest.mark.slow
@pytest.mark.skipif(not PHOTO.is_file(), reason="needs ../shared/data/real beside the repository")
def test_a_real_shattered_screens_overlay_outlines_the_screen(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFURBGRADE_")}
    env.update(PYTHONPATH=str(ROOT), REFURBGRADE_DATA_DIR=str(tmp_path / "data"))
    r = subprocess.run(
        [sys.executable, "-m", "refurbgrade", "grade", str(PHOTO), "--overlays", str(tmp_path / "ov")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout.splitlines()[0])
    assert body["grades"]["backmarket"] == "Unlistable"
    counted = [d for d in body["defects"] if d["counted"]]
    (crack,) = counted
    assert crack["type"] == "crack" and crack["zone"] == "screen"
    # The crack map traced one short line by the home button of a screen cracked edge to edge: it stays
    # listed as evidence, and the crack is drawn as the screen's outline.
    traced = [d for d in body["defects"] if d["type"] == "crack" and d["role"] == "evidence"]
    assert traced
    w, h = Image.open(PHOTO).size
    x0, y0, x1, y1 = crack["box"]
    assert x1 - x0 > 0.5 * w and y1 - y0 > 0.6 * h
    assert all(
        x0 <= t["box"][0] and t["box"][2] <= x1 and y0 <= t["box"][1] and t["box"][3] <= y1 for t in traced
    )

    overlay = np.asarray(Image.open(tmp_path / "ov" / "android_samsung103.png").convert("RGB")).astype(int)
    scale = overlay.shape[1] / w
    left = np.array(crack["polygon"])[:, 0].min() * scale
    band = overlay[round(0.3 * h * scale) : round(0.7 * h * scale), max(round(left) - 4, 0) : round(left) + 5]
    red = np.abs(band - np.array(COLOURS["crack"])).sum(axis=-1) < 60
    assert red.any(axis=1).mean() > 0.9  # the outline runs down the screen's left edge
