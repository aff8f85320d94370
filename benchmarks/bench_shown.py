"""Recall by what the photo shows: the true defects of synthetic photos made with `--measure-shown`
(each instance's `photo_step`, grey levels: the photo against the same device photographed without its
defects, `training.synth.shown`), found or missed through the one path (the bundled files, their card's
cuts, the fine pass where the photo is fine enough), per zone and per band of `photo_step`.

    .venv/bin/python benchmarks/bench_shown.py -m datasets/generated/fine/devices_val/manifest.jsonl@train,val,test \\
        [--model models/default.onnx] [--type scratch] [--json OUT]

Why: a label no camera shows cannot be found, and the frame's scratch recall (issue 19) blamed the
frame reader for lines the photo does not hold (docs/fine-pass.md, session 51). The bands: under 3 grey
levels is within a photo's noise; 3-8 is faint even to a person looking for it; "shown" is 8 or more.
A second table gives the same photos by the view they were taken from (front, back, side): Back Market
right per photo, scratches found / true / false, and the median length error of the found ones (a
side view is a narrow band of frame no fine tile reads: docs/fine-pass.md, session 52).
Photos without a `photo_step` on their instances are refused with the manifest named: make them again
with `refurbgrade synth --measure-shown` (`make fine-model` makes its fine validation sets with it,
but keeps a set that is already there: delete one made before 2026-12-06 to have it made again).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BANDS = ((0.0, 3.0), (3.0, 8.0), (8.0, 20.0), (20.0, float("inf")))
SHOWN_AT = 8.0  # grey levels: the bands at or above it are "shown"


def band_of(step: float) -> str:
    lo, hi = next(b for b in BANDS if b[0] <= step < b[1])
    return f">= {lo:g}" if hi == float("inf") else f"{lo:g}-{hi:g}"


def tally(matches, kind: str) -> dict[str, dict[str, list[int]]]:
    """Per zone (and "all") and per band (and "shown", "all"): [found, true] over the matches of `kind`
    whose truth has a photo_step. A match is found when a prediction is matched to it."""
    out: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for m in matches:
        if m.type != kind or m.gt is None or m.gt.photo_step is None:
            continue
        found = int(m.pred is not None)
        keys = [band_of(m.gt.photo_step), "all"] + (["shown"] if m.gt.photo_step >= SHOWN_AT else [])
        for zone in (m.gt.zone or "unknown", "all"):
            for key in keys:
                cell = out[zone][key]
                cell[0] += found
                cell[1] += 1
    return out


SIDE_VIEWS = ("left", "right", "top", "bottom")


def view_group(view) -> str:
    """front, back or side (any of the four edges), from a record's view; "unknown" without one."""
    if view is None:
        return "unknown"
    v = getattr(view, "value", view)
    return "side" if v in SIDE_VIEWS else v


def by_view(photos: list[dict]) -> dict[str, dict[str, float]]:
    """Per view group and "all": photos, Back Market right / graded, scratches found / true / false and
    the median relative length error of the found ones. Each photo: its "view" group, "right" (None:
    no Back Market truth), "found", "true", "false" and "errors" (|measured / true - 1| per found one)."""
    out: dict[str, dict[str, float]] = {}
    for group in [*sorted({p["view"] for p in photos}), "all"]:
        mine = [p for p in photos if group in ("all", p["view"])]
        graded = [p["right"] for p in mine if p["right"] is not None]
        errors = [e for p in mine for e in p["errors"]]
        out[group] = {
            "photos": len(mine),
            "right": sum(graded),
            "graded": len(graded),
            "found": sum(p["found"] for p in mine),
            "true": sum(p["true"] for p in mine),
            "false": sum(p["false"] for p in mine),
            "median_length_error": float(np.median(errors)) if errors else float("nan"),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--manifest", action="append", required=True, help="PATH[@splits]; repeatable")
    ap.add_argument("--model", type=Path, default=ROOT / "models/default.onnx")
    ap.add_argument("--type", default="scratch", help="defect type (default scratch)")
    ap.add_argument("--json", type=Path, help="also write the table here")
    args = ap.parse_args(argv)

    from tqdm import tqdm

    from model.rules import grade
    from training.dataset import load_manifest_args
    from training.metrics import length_errors, photo_result, true_grades
    from training.predict import load_predictor, predict

    items = load_manifest_args(args.manifest, ("val",))
    if not items:
        sys.exit(f"no photos in {args.manifest}")
    unmeasured = sorted(
        {str(it.manifest) for it in items if any(i.photo_step is None for i in it.record.instances)}
    )
    if unmeasured:
        sys.exit(
            f"{', '.join(unmeasured)}: instances without a photo_step; make the set again with "
            "`refurbgrade synth --measure-shown` (or benchmarks/bench_fine_oracle.py synth)"
        )
    predictor = load_predictor(args.model, fine=True)
    matches, fp, photos = [], 0, []
    for pred in tqdm(predict(items, predictor), total=len(items), desc="photos"):
        res = photo_result(pred, predictor.thresholds, predictor.mask_stride)
        matches += res.matches
        false = sum(m.type == args.type and m.gt is None for m in res.matches)
        fp += false
        rec = pred.item.record
        truth = true_grades(rec).get("backmarket")
        graded = grade(res.instances, "backmarket", device_kind=rec.device_kind or "phone").grade
        mine = [m for m in res.matches if m.type == args.type and m.gt is not None]
        photos.append(
            {
                "view": view_group(rec.view),
                "right": None if truth is None else graded == truth,
                "found": sum(m.pred is not None for m in mine),
                "true": len(mine),
                "false": false,
                "errors": [abs(p / t - 1) for t, p in length_errors(res.matches, (args.type,))],
            }
        )
    table = tally(matches, args.type)
    cols = [band_of(lo) for lo, _ in BANDS] + ["shown", "all"]
    print(f"{args.type}: found / true (recall) by photo_step, grey levels; {len(items)} photos, {fp} false")
    print("| zone | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for zone in sorted(table, key=lambda z: (z == "all", z)):
        cells = []
        for c in cols:
            f, n = table[zone].get(c, [0, 0])
            cells.append(f"{f} / {n} ({f / n:.2f})" if n else "-")
        print(f"| {zone} | " + " | ".join(cells) + " |")
    views = by_view(photos)
    print(f"\nby view: Back Market right per photo; {args.type}: found / true, false, median length error")
    print("| view | photos | Back Market | found / true | false | length error |")
    print("|---|---|---|---|---|---|")
    for group, v in views.items():
        bm = f"{v['right']} / {v['graded']}" if v["graded"] else "-"
        print(
            f"| {group} | {v['photos']} | {bm} | {v['found']} / {v['true']} | {v['false']} | "
            f"{'-' if np.isnan(v['median_length_error']) else format(v['median_length_error'], '.0%')} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"false": fp, "table": table, "by_view": views}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
