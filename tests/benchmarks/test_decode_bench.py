"""The decode benchmark (benchmarks/bench_decode.py) times the decoders it compares on the same pixels:
every row of its table says so for a turned JPEG at both scales."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from tests.benchmarks import load_bench


def test_every_decoder_in_the_table_gives_the_same_pixels(capsys):
    bench = load_bench("bench_decode")
    rng = np.random.default_rng(3)
    arr = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (5, 5), 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # turned: the service's decoders and Pillow must agree on which way is up
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    bench.bench(buf.getvalue(), "turned", input_size=96, repeats=1)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("reduced", "full"))]
    assert len(rows) == 7  # Pillow, OpenCV, decode at each scale, and decode_part at full scale
    assert all(row.endswith("yes") for row in rows), rows
