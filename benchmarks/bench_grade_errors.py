"""Why each wrong Back Market grade is wrong: the synthetic photos' grades through the one path (the
bundled files, their card's cuts, the fine pass where the photo is fine enough), each wrong one traced
to the defects that decide it.

    .venv/bin/python benchmarks/bench_grade_errors.py -m datasets/generated/fine/devices_val/manifest.jsonl@train,val,test \\
        [-m ...] [--model models/default.onnx] [--json OUT] [--list]

A photo graded worse than its truth (stricter) is traced to the counted instances each of which, taken
away alone, gives a better grade: "false <type> on <zone>" when no true defect is matched to it,
"over-measured ..." when one is. A photo graded better than its truth (more lenient) is traced to the
true defects each of which alone, at its true size, reaches the true grade: "missed <type> on <zone>",
"shown" or "hidden" by its `photo_step` (8 grey levels or more is shown, as `bench_shown.py` counts it;
"step unknown" for a set made without `--measure-shown`), or "under-measured ..." when a prediction is
matched to it. Where no single instance decides, the photo is "several together". A photo counts once
for each cause it has, so the causes add up to more than the wrong photos.

Why: the Back Market accuracy of issue 19 is one number; which defects cost it says where the next
change should go (docs/fine-pass.md, session 53: of seeds 708, 710 and 711's 174 photos at 12 MP, 65
are graded too leniently, 33 of them for a frame scratch, 17 for a chip and 11 for a crack, and 36 too
strictly, 11 of them for a false crack). `--list` prints each wrong photo with its causes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHOWN_AT = 8.0  # grey levels: as bench_shown.py
STANDARD = "backmarket"


def _where(type_: str, zone: str | None) -> str:
    return f"{type_} on {zone or 'an unknown zone'}"


def stricter_causes(instances, matched: dict[int, bool], kind: str, graded: str, order) -> list[str]:
    """The counted instances (`model.rules.engine.counted`) each of which, taken away alone, gives a
    better grade than `graded`: "false ..." where `matched[id(instance)]` is False, else "over-measured
    ..."; ["several together"] when none alone does."""
    from model.rules import grade
    from model.rules.engine import counted

    out = []
    for inst in instances:
        if not counted(inst):
            continue
        rest = [i for i in instances if i is not inst]
        if order.index(grade(rest, STANDARD, device_kind=kind).grade) < order.index(graded):
            what = "over-measured" if matched.get(id(inst), False) else "false"
            out.append(f"{what} {_where(inst.type.value, inst.zone.value if inst.zone else None)}")
    return sorted(set(out)) or ["several together"]


def lenient_causes(record, found: dict[int, bool], kind: str, truth: str, order) -> list[str]:
    """The record's true defects each of which alone, at its true size, reaches the true grade `truth`:
    where a prediction was matched to it (`found`: its index -> whether a matched one is counted),
    "under-measured ..." when one counts and "found, not counted ..." when none does (a glass's crack
    fragments are evidence, `model.damage`, and a candidate under its cut is listed only), else
    "missed ..., shown / hidden / step unknown"; ["several together"] when none alone does."""
    from model.instances import mm
    from model.rules import grade

    out = []
    for k, inst in enumerate(record.instances):
        if inst.length_mm is None or inst.zone is None:
            continue
        alone = mm(inst.type, inst.zone, inst.length_mm, inst.width_mm or 0.0, inst.area_mm2)
        if order.index(grade([alone], STANDARD, device_kind=kind).grade) < order.index(truth):
            continue
        where = _where(inst.type.value, inst.zone.value)
        if k in found:
            out.append(f"{'under-measured' if found[k] else 'found, not counted'} {where}")
        elif inst.photo_step is None:
            out.append(f"missed {where}, step unknown")
        else:
            out.append(f"missed {where}, {'shown' if inst.photo_step >= SHOWN_AT else 'hidden'}")
    return sorted(set(out)) or ["several together"]


def census(rows: list[dict]) -> dict:
    """Photos right / stricter / more lenient, and per direction the photos of each cause."""
    out = {"photos": len(rows), "right": sum(r["direction"] == "right" for r in rows)}
    for direction in ("stricter", "lenient"):
        mine = [r for r in rows if r["direction"] == direction]
        out[direction] = {"photos": len(mine), "causes": dict(Counter(c for r in mine for c in r["causes"]))}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--manifest", action="append", required=True, help="PATH[@splits]; repeatable")
    ap.add_argument("--model", type=Path, default=ROOT / "models/default.onnx")
    ap.add_argument("--json", type=Path, help="also write the census and each photo's causes here")
    ap.add_argument("--list", action="store_true", help="print each wrong photo with its causes")
    args = ap.parse_args(argv)

    from tqdm import tqdm

    from model.rules import grade, load_standard
    from model.rules.engine import counted
    from training.dataset import load_manifest_args
    from training.metrics import photo_result, true_grades
    from training.predict import load_predictor, predict

    items = [it for it in load_manifest_args(args.manifest, ("val",)) if it.record.instances_complete]
    if not items:
        sys.exit(f"no synthetic photos (complete instance labels) in {args.manifest}")
    order = list(load_standard(STANDARD).grade_names)
    predictor = load_predictor(args.model, fine=True)
    rows = []
    for pred in tqdm(predict(items, predictor), total=len(items), desc="photos"):
        rec = pred.item.record
        truth = true_grades(rec).get(STANDARD)
        if truth is None:
            continue
        kind = rec.device_kind or "phone"
        res = photo_result(pred, predictor.thresholds, predictor.mask_stride)
        graded = grade(res.instances, STANDARD, device_kind=kind).grade
        matched = {id(m.pred): m.gt is not None for m in res.matches if m.pred is not None}
        found: dict[int, bool] = {}
        for m in res.matches:
            if m.pred is not None and m.gt is not None:
                found[m.gt.index] = found.get(m.gt.index, False) or counted(m.pred)
        if graded not in order:  # ungradable: no defect decides it
            direction, causes = "ungradable", []
        elif graded == truth:
            direction, causes = "right", []
        elif order.index(graded) > order.index(truth):
            direction, causes = "stricter", stricter_causes(res.instances, matched, kind, graded, order)
        else:
            direction, causes = "lenient", lenient_causes(rec, found, kind, truth, order)
        rows.append(
            {
                "image": str(rec.image),
                "manifest": str(pred.item.manifest),
                "truth": truth,
                "graded": graded,
                "direction": direction,
                "causes": causes,
            }
        )
    table = census(rows)
    print(f"Back Market per photo: {table['right']} of {table['photos']} right")
    for direction, words in (("stricter", "graded worse than the truth"), ("lenient", "graded better")):
        part = table[direction]
        print(f"\n{part['photos']} {words}; photos per cause (a photo counts for each of its causes):")
        for cause, n in sorted(part["causes"].items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {n:4d}  {cause}")
    if args.list:
        print()
        for r in rows:
            if r["direction"] in ("stricter", "lenient"):
                print(
                    f"{r['manifest']} {r['image']}: truth {r['truth']}, graded {r['graded']}: "
                    + "; ".join(r["causes"])
                )
    if args.json:
        args.json.write_text(json.dumps({"census": table, "photos": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
