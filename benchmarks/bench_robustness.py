"""Real photos graded again as another phone, light or upload would give them: do the decisions hold?

    .venv/bin/python benchmarks/bench_robustness.py [--model PATH] [--compare PATH] [--split val]
        [--transforms NAME,NAME] [--json OUT] [--no-kind]

A refurbisher's photo is not a dataset's: it may be turned a quarter (held the other way, or its EXIF
orientation lost on the way), taken in a dimmer or brighter room, resized or recompressed by an app. Each
real photo of the split (`bench_real.py`'s sets and truth) is graded through serving's pipeline as it is
and after each transform below, and `bench_real.py`'s figures are printed for each (all sources, then
per source for the measures that moved most), with the `--compare` model measured in the same run (and
then, every condition pooled, the photos only one of the two gets right: `bench_real.paired`):

- quarter turn, other quarter turn, half turn: the pixels turned clockwise, counter-clockwise or
  upside down (no EXIF tag): a phone held either way. The two quarter turns differ: MSD's worn screens
  come landscape, and the zone model read 5 of the 20 validation ones cracked turned clockwise, 16
  counter-clockwise (docs/model-history.md, session 55);
- EXIF turn: the pixels turned a quarter and the EXIF orientation tag saying to turn them back (what a
  phone writes): the decode must undo it, so this should read as "as is";
- -1 EV, +0.5 EV: the exposure halved, or raised by half a stop, in linear light (sRGB decoded, scaled,
  encoded; whites clip);
- half size: half the width and height (INTER_AREA);
- JPEG 40: recompressed at quality 40;
- warm light, cool light: a white balance the phone did not correct, in linear light (a tungsten room's
  orange: red x1.2, blue x0.75; a shade or fluorescent blue: red x0.85, blue x1.2);
- sensor noise: a dim room's grain at the photo's own pixels (luminance sd 6 levels, colour sd 3),
  drawn from the photo's bytes so two runs agree;
- soft focus: a Gaussian blur of sd 1/600 of the long side, two thirds of a pixel of what the network
  reads (a photo a person still grades, visibly soft);
- tilted: the phone leaning back from the camera: the top edge a fifth narrower than the bottom and the
  photo a tenth shorter (a perspective warp, `training.synth.jitter.tilt`; what it uncovers is the
  median colour of the photo's outer ring, the table).

With `--no-kind` every photo is graded as a user who names no device kind grades it (the kind read from
the photos, `bench_real.py --no-kind`), and the kind read right is printed too.

The transforms are fixed (no random draws), so two runs agree. `training.synth.jitter` draws the same
kinds of change for the zone-damage fit's copies; its ranges, not these points, were chosen there.
Choose on `--split val`; the test split is for the final report only.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_real  # noqa: E402  (a sibling script, not a package)

QUALITY = 92  # transformed photos are saved at this JPEG quality (but "JPEG 40")
NOISE_LUMA, NOISE_CHROMA = 6.0, 3.0  # "sensor noise": sd in sRGB levels, grey and per channel
BLUR_PER_SIDE = 600  # "soft focus": the blur's sd is the long side over this
TILT_NARROWING = 0.2  # "tilted": the top edge's share lost (the height loses half that)


def _decoded(data: bytes) -> np.ndarray:
    from model.preprocess import decode

    return decode(data)[0]


def _encoded(rgb: np.ndarray, quality: int = QUALITY) -> bytes:
    from training.synth.photography import encode_jpeg

    return encode_jpeg(np.ascontiguousarray(rgb), quality)


def _exposure(gain: float):
    def apply(data: bytes) -> bytes:
        from training.synth.jitter import exposure_lut

        return _encoded(cv2.LUT(_decoded(data), exposure_lut(gain)))

    return apply


def _exif_turn(data: bytes) -> bytes:
    """The photo's pixels turned a quarter counter-clockwise, tagged orientation 6 ("turn 90° clockwise
    to display"), as a phone held sideways writes it."""
    from PIL import Image

    turned = Image.fromarray(np.ascontiguousarray(np.rot90(_decoded(data), 1)))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    turned.save(buf, "JPEG", quality=QUALITY, exif=exif)
    return buf.getvalue()


def _white_balance(red: float, blue: float):
    def apply(data: bytes) -> bytes:
        from training.synth.jitter import exposure_lut

        rgb = _decoded(data).copy()
        for channel, gain in ((0, red), (2, blue)):
            rgb[..., channel] = cv2.LUT(rgb[..., channel], exposure_lut(gain))
        return _encoded(rgb)

    return apply


def _noise(data: bytes) -> bytes:
    rgb = _decoded(data).astype(np.float32)
    rng = np.random.default_rng(zlib.crc32(data))  # fixed per photo: two runs grade the same copy
    h, w = rgb.shape[:2]
    grain = rng.normal(0.0, NOISE_LUMA, (h, w, 1)) + rng.normal(0.0, NOISE_CHROMA, (h, w, 3))
    return _encoded(np.clip(rgb + grain, 0, 255).astype(np.uint8))


def _soft_focus(data: bytes) -> bytes:
    from training.synth.jitter import soften

    return _encoded(soften(_decoded(data), BLUR_PER_SIDE))


def _tilted(data: bytes) -> bytes:
    from training.synth.jitter import tilt

    return _encoded(tilt(_decoded(data), TILT_NARROWING))


TRANSFORMS = {
    "quarter turn": lambda d: _encoded(np.rot90(_decoded(d), -1)),
    "other quarter turn": lambda d: _encoded(np.rot90(_decoded(d), 1)),
    "half turn": lambda d: _encoded(np.rot90(_decoded(d), 2)),
    "EXIF turn": _exif_turn,
    "-1 EV": _exposure(0.5),
    "+0.5 EV": _exposure(2**0.5),
    "half size": lambda d: _encoded(
        cv2.resize(_decoded(d), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    ),
    "JPEG 40": lambda d: _encoded(_decoded(d), 40),
    "warm light": _white_balance(1.2, 0.75),
    "cool light": _white_balance(0.85, 1.2),
    "sensor noise": _noise,
    "soft focus": _soft_focus,
    "tilted": _tilted,
}
MEASURES = (
    "crack AUROC",
    "cracked graded Unlistable",
    "intact graded listable",
    "worn graded Unlistable",
    "graded without review",
    "of those, right on listable",
    "view accuracy",
    "kind read right",  # with --no-kind only (n/a rows are not printed)
)


def main(argv: list[str] | None = None) -> int:
    from training.dataset import load_items

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models/default.onnx")
    ap.add_argument("--compare", type=Path, help="a second model, measured in the same run")
    ap.add_argument("--split", default="val", help="val to choose; test only for the final report")
    ap.add_argument(
        "--transforms", default=",".join(TRANSFORMS), help="comma-separated, of: " + ", ".join(TRANSFORMS)
    )
    ap.add_argument("--json", type=Path, help="write the tables here")
    ap.add_argument("--no-kind", action="store_true", help="grade with no device kind: the photos decide")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.transforms.split(",") if n.strip()]
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown:
        ap.error(f"unknown transform(s) {', '.join(unknown)}; choose from {', '.join(TRANSFORMS)}")
    manifests = [m for m in bench_real.DEFAULT_MANIFESTS if m.is_file()]
    items = [it for m in manifests for it in load_items(m, (args.split,)) if bench_real.truth_of(it.record)]
    models = [args.model] + ([args.compare] if args.compare else [])
    print(f"{len(items)} real photos of split {args.split!r}; models: {', '.join(str(m) for m in models)}")
    tables: dict[str, dict[str, dict]] = {}
    pooled: dict[Path, list] = {m: [] for m in models}  # every condition's gradings, for the paired count
    for name in ["as is", *names]:
        transform = TRANSFORMS.get(name)
        graded = {m: bench_real.grade_photos(m, items, transform, not args.no_kind) for m in models}
        for m in models:
            pooled[m] += graded[m]
        tables[name] = {str(m): bench_real.table(graded[m]) for m in models}
        print(f"\n{name}" + "".join(f" | {m.name}" for m in models))
        first = tables[name][str(args.model)]
        for source in first:
            for measure in MEASURES:
                cells = " | ".join(bench_real._fmt(tables[name][str(m)][source][measure]) for m in models)
                if not cells.startswith("n/a"):
                    print(f"  {source:<16} {measure:<30} {cells}")
        sys.stdout.flush()
    if args.compare:
        # One photo's copies are not independent of each other: read p as a guide, not a test.
        print(
            f"\npaired, every condition pooled: photos only {args.model.name} / only {args.compare.name} right"
        )
        for measure, (a, b, p) in bench_real.paired(pooled[args.model], pooled[args.compare]).items():
            print(f"  {measure:<30} {a} / {b} (exact McNemar p {p:.2f}, copies of one photo counted apart)")
    if args.json:
        args.json.write_text(json.dumps(tables, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
