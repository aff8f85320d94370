"""Intact real phones photographed with the display lit white: do they keep their grades?

    .venv/bin/python benchmarks/bench_white_display.py [--model PATH] [--compare PATH] [--split val]
        [--levels 238,255] [--outline-model PATH] [--save DIR] [--json OUT]

A refurbisher often photographs a phone switched on: a reset iPhone greets with a white "hello", and
setup and settings pages are white. The real sets hold few such photos (phones_web's train and
validation splits: four phones with a white display, one of them cracked, beside white line
drawings), so each intact real photo of the split whose screen the network finds is painted as one:
the screen (the convex hull of
the zone map's screen on `--outline-model`'s crop pass, the bundled network by default, less two cells
at its edge, drawn on the photo less 1% of its height at the rim) filled white at each level of
`--levels` (238: bright, 255: clipped, as a display at full brightness in a dim room), 8 grey levels
darker at its foot than at its top, showing a greeting in script and six rows of a settings page. The
painted photos are the same for every model measured. Printed per level beside the same photos as they
are: the Back Market grades, and `bench_real.py`'s measures of intact photos (`--save`: the painted
photos, to look at).

What it cannot show: the screen's outline is the coarse zone map's, so a sliver of the old screen may
show at its rim; a real white display has the panel's own texture and the room's reflections on it.
docs/model-history.md (session 60) has what it measured. Choose on `--split val`; the test split is for
the final report only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_real  # noqa: E402  (a sibling script, not a package)

MIN_SCREEN_SHARE = 0.03  # of the photo: less screen found, the photo is left out
RIM_SHARE = 0.01  # of the photo's height, left unpainted inside the outline
FALL = 8  # grey levels darker at the screen's foot than at its top
TEXT_GREY = 60
INSET_PX = 8  # the coarse zone map's screen less this (frame pixels; a cell is 4): its edge is the bezel's
ROWS = ("Wi-Fi", "Bluetooth", "Mobile Data", "Notifications", "Sounds", "General")
QUALITY = 92
MEASURES = (
    "intact graded listable",
    "  of them ungradable",
    "graded without review",
    "of those, right on listable",
)


def screen_outline(model, data: bytes) -> np.ndarray | None:
    """The screen's outline on the photo (N x 2, full-size pixels, EXIF applied): the convex hull of the
    zone map's screen on `model`'s crop pass, less `INSET_PX` of the frame at its edge (the coarse map
    runs onto the bezel); None where it finds no screen."""
    from model.inference import infer
    from model.outputs import ZONE_CHANNELS
    from serving.pipeline import prepare_photos, run_direct

    inferred = infer(
        prepare_photos([data], model.input_size), model.card, lambda ims: run_direct(model, ims)
    )[0]
    labels = inferred.outputs["zone_probs"].argmax(axis=0)
    screen = (labels == ZONE_CHANNELS.index("screen")).astype(np.uint8)
    size = inferred.frame.size
    screen = cv2.resize(screen, (size, size), interpolation=cv2.INTER_NEAREST)
    screen = cv2.erode(screen, np.ones((2 * INSET_PX + 1,) * 2, np.uint8))
    if not screen.any():
        return None
    contours, _ = cv2.findContours(screen, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(max(contours, key=cv2.contourArea)).reshape(-1, 2).astype(float)
    return inferred.letterbox.to_original(hull)


def painted(rgb: np.ndarray, outline: np.ndarray, level: int) -> np.ndarray | None:
    """`rgb` with the screen inside `outline` lit white at `level`, showing a greeting and a few rows of
    a settings page; None where the screen is under `MIN_SCREEN_SHARE` of the photo."""
    h, w = rgb.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], 1)
    rim = max(3, round(RIM_SHARE * h))
    mask = cv2.erode(mask, np.ones((rim, rim), np.uint8)) > 0
    if mask.mean() < MIN_SCREEN_SHARE:
        return None
    ys, xs = np.nonzero(mask)
    out = rgb.copy()
    top, foot = ys.min(), ys.max()
    grey = level - FALL * (ys - top) / max(1, foot - top)
    out[ys, xs] = np.clip(np.round(grey), 0, 255).astype(np.uint8)[:, None]
    x0, width, height = xs.min(), xs.max() - xs.min(), foot - top
    ink = (TEXT_GREY,) * 3
    page = out.copy()  # the text is drawn here, and only the screen's pixels of it kept
    # The greeting: script across 40% of the screen's width, a third of the way down.
    font = cv2.FONT_HERSHEY_SCRIPT_SIMPLEX
    scale = 0.4 * width / cv2.getTextSize("hello", font, 1.0, 1)[0][0]
    (tw, _), _ = cv2.getTextSize("hello", font, scale, 1)
    at = (int(x0 + (width - tw) / 2), int(top + height / 3))
    cv2.putText(page, "hello", at, font, scale, ink, max(1, round(scale)), cv2.LINE_AA)
    # A settings page's rows: short words 2.5% of the screen's height, left-aligned, below it.
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = 0.025 * height / cv2.getTextSize("Wi-Fi", font, 1.0, 1)[0][1]
    for k, word in enumerate(ROWS):
        at = (int(x0 + 0.1 * width), int(top + (0.5 + 0.07 * k) * height))
        cv2.putText(page, word, at, font, scale, ink, 1, cv2.LINE_AA)
    out[mask] = page[mask]
    return out


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from model.manifest import resolve
    from model.preprocess import decode
    from serving.predictor import load_model
    from training.dataset import load_items
    from training.synth.photography import encode_jpeg

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models/default.onnx")
    ap.add_argument("--compare", type=Path, help="a second model, measured on the same painted photos")
    ap.add_argument("--outline-model", type=Path, default=ROOT / "models/default.onnx")
    ap.add_argument("--split", default="val", help="val to choose; test only for the final report")
    ap.add_argument("--levels", default="238,255", help="the white's grey levels, comma-separated")
    ap.add_argument("--save", type=Path, help="write the painted photos here")
    ap.add_argument("--json", type=Path, help="write the tables here")
    args = ap.parse_args(argv)
    try:
        levels = [int(v) for v in args.levels.split(",")]
    except ValueError:
        ap.error(f"--levels: grey levels 0-255, comma-separated, not {args.levels!r}")
    if not all(0 <= v <= 255 for v in levels):
        ap.error(f"--levels: grey levels 0-255, comma-separated, not {args.levels!r}")
    manifests = [m for m in bench_real.DEFAULT_MANIFESTS if m.is_file()]
    items = [
        it
        for m in manifests
        for it in load_items(m, (args.split,))
        if bench_real.truth_of(it.record) == "intact"
    ]

    outliner = load_model(args.outline_model, intra_op_threads=2, fine=False)
    copies: dict[int, dict[str, bytes]] = {lv: {} for lv in levels}  # level -> original's digest -> painted
    kept = []
    for it in tqdm(items, desc="painting", leave=False):
        data = resolve(it.manifest, it.record.image).read_bytes()
        outline = screen_outline(outliner, data)
        if outline is None:
            continue
        rgb = decode(data)[0]
        paints = {lv: painted(rgb, outline, lv) for lv in levels}
        if any(p is None for p in paints.values()):
            continue
        kept.append(it)
        digest = hashlib.sha256(data).hexdigest()
        for lv, p in paints.items():
            copies[lv][digest] = encode_jpeg(p, QUALITY)
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                (args.save / f"{lv}_{Path(it.record.image).stem}.jpg").write_bytes(copies[lv][digest])
    print(
        f"{len(kept)} of {len(items)} intact real photos of split {args.split!r} with a screen found, painted"
    )

    models = [args.model] + ([args.compare] if args.compare else [])
    tables: dict[str, dict[str, dict]] = {}
    for name in ["as is", *(f"lit white {lv}" for lv in levels)]:
        lv = None if name == "as is" else int(name.rsplit(" ", 1)[1])

        def paint(data: bytes, lv=lv) -> bytes:
            return copies[lv][hashlib.sha256(data).hexdigest()]

        print(f"\n{name}" + "".join(f" | {m.name}" for m in models))
        tables[name] = {}
        for m in models:
            rows = bench_real.grade_photos(m, kept, None if lv is None else paint)
            grades = [r.grade for r in rows]
            table = bench_real.table(rows)["all"]
            tables[name][str(m)] = {k: table[k] for k in MEASURES} | {"grades": dict(Counter(grades))}
            counts = ", ".join(f"{g} {n}" for g, n in Counter(grades).most_common())
            print(f"  {m.name}: {counts}")
            for measure in MEASURES:
                print(f"    {measure:<30} {bench_real._fmt(table[measure], interval=True)}")
        sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(tables, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
