"""Recall by what the photo shows: the true defects of synthetic photos made with `--measure-shown`
(each instance's `photo_step`, grey levels: the photo against the same device photographed without its
defects, `training.synth.shown`), found or missed through the one path (the bundled files, their card's
cuts, the fine pass where the photo is fine enough), per zone and per band of `photo_step`.

    .venv/bin/python benchmarks/bench_shown.py -m datasets/generated/fine/devices_val/manifest.jsonl@train,val,test \\
        [--model models/default.onnx] [--type scratch] [--json OUT]

Why: a label no camera shows cannot be found, and the frame's scratch recall (issue 19) blamed the
frame reader for lines the photo does not hold (docs/fine-pass.md, session 51). The bands: under 3 grey
levels is within a photo's noise; 3-8 is faint even to a person looking for it; "shown" is 8 or more.
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--manifest", action="append", required=True, help="PATH[@splits]; repeatable")
    ap.add_argument("--model", type=Path, default=ROOT / "models/default.onnx")
    ap.add_argument("--type", default="scratch", help="defect type (default scratch)")
    ap.add_argument("--json", type=Path, help="also write the table here")
    args = ap.parse_args(argv)

    from tqdm import tqdm

    from training.dataset import load_manifest_args
    from training.metrics import photo_result
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
    matches, fp = [], 0
    for pred in tqdm(predict(items, predictor), total=len(items), desc="photos"):
        res = photo_result(pred, predictor.thresholds, predictor.mask_stride)
        matches += res.matches
        fp += sum(m.type == args.type and m.gt is None for m in res.matches)
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
    if args.json:
        args.json.write_text(json.dumps({"false": fp, "table": table}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
