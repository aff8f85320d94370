"""JPEG decode benchmark: `model.preprocess`'s decoders against Pillow's and OpenCV's, on one photo.

    .venv/bin/python benchmarks/bench_decode.py [--photo PATH ...] [--repeats 9]

A grading decodes each photo twice: reduced (the coarse pass's `decode(data, input_size * DETAIL)`) and,
when the device is shown finely enough, the device's box at full scale (the fine pass's `decode_part`).
For each photo (default: `bench_serving.py`'s drawn 4000 x 3000 phone, JPEG quality 90) this prints the
median milliseconds of

- Pillow: `Image.open`, `draft`, `exif_transpose`, `np.asarray(convert("RGB"))`, what `decode` did
  before simplejpeg (the baseline of the ratios);
- OpenCV: `cv2.imdecode` at the same scale and `cvtColor` to RGB, what the fine pass did before;
- `decode` and `decode_part` (the middle 60% of the photo), as the service runs them;

with each one's ratio to Pillow's, and checks the arrays are the same pixels. One thread: the service
decodes each request's photos on one core.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.preprocess import DETAIL, _draft_box, decode, decode_part  # noqa: E402

# OpenCV's reduced-scale reads, by the DCT scale `decode` chose.
_CV2_SCALE = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def pillow(data: bytes, target: int | None) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    if target is not None:
        img.draft("RGB", _draft_box(*img.size, target))
    return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def opencv(data: bytes, factor: int) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _CV2_SCALE[factor])
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def bench(data: bytes, name: str, input_size: int, repeats: int) -> None:
    w, h = Image.open(io.BytesIO(data)).size
    box = (0.2 * w, 0.2 * h, 0.8 * w, 0.8 * h)
    print(f"\n{name}: {w} x {h}, {len(data) / 1e6:.1f} MB")
    print(f"{'read':<40}{'ms':>8}{'x Pillow':>10}  same pixels")
    for label, target in ((f"reduced (target {input_size * DETAIL})", input_size * DETAIL), ("full", None)):
        ref, factor = decode(data, target)
        rows = [
            ("Pillow", lambda t=target: pillow(data, t), None),
            ("OpenCV + cvtColor", lambda f=round(factor): opencv(data, f), None),
            ("decode", lambda t=target: decode(data, t)[0], None),
        ]
        if target is None:
            rows.append(("decode_part (middle 60%)", lambda: decode_part(data, None, box).rgb, "part"))
        base = None
        for what, fn, kind in rows:
            ms = median_ms(fn, repeats)
            base = base or ms
            out = fn()
            if kind == "part":
                p = decode_part(data, None, box)
                x0, y0, x1, y1 = p.crop
                same = np.array_equal(out, ref[y0:y1, x0:x1])
            else:
                same = out.shape == ref.shape and np.array_equal(out, ref)
            print(f"{label + ', ' + what:<40}{ms:8.1f}{base / ms:9.2f}x  {'yes' if same else 'NO'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", type=Path, action="append", default=[])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--input-size", type=int, default=384, help="the coarse network's input size")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    if args.photo:
        photos = [(p.name, p.read_bytes()) for p in args.photo]
    else:
        from benchmarks.bench_serving import make_photo

        photos = [("bench_serving's drawn phone", make_photo())]
    for name, data in photos:
        bench(data, name, args.input_size, args.repeats)


if __name__ == "__main__":
    main()
