"""Real-photo benchmark: what a refurbisher sees when each real photo is graded as one device.

    .venv/bin/python benchmarks/bench_real.py [--model PATH] [--compare PATH] [--split val]
        [-m MANIFEST ...] [--json OUT] [--shortcut] [--no-kind]

Every photo of the real sets' chosen split goes through serving's pipeline as `refurbgrade grade` runs
it (`serving.pipeline.grade_device`, no device model given, the kind its manifest gives: a laptop is
graded as a laptop, as `--device-kind laptop` grades it; with `--no-kind`, as a user who names no kind
grades it: the kind read from the photos, `model.device_kind`), as a device of its own. Truth is the photo's
image-level crack label (phones_web, cracked_screens) or "worn, not cracked": MSD's scratched / stained
/ oily screens (one defect class per photo, its data card says) and laptop_scratch's lids and bottom
covers (scratches and stains, none cracked, says its data card; a photo with nothing annotated is worn
or intact, listable either way). Printed per source and for all sources, for each model side by side
(the `--compare` model is measured in the same run, and then the two compared photo by photo: the
photos only one of them gets right, with the exact McNemar p-value); each share with its 95% Wilson
interval, since a split holds a few dozen photos of a kind:

- crack AUROC: the photo's crack score (its most confident crack defect, zone-level or not) for
  cracked against intact and worn photos;
- cracked graded Unlistable, intact graded listable, worn graded Unlistable (Back Market); intact
  graded listable again without phones_web's product renders (its `render?` note: a refurbisher
  uploads photos, and a third of the intact set is renders on white), and the share of intact photos
  graded `ungradable` (no usable photo: not listable for want of evidence, not for a defect);
- graded without review (the grading's `needs_review` is off) and, of those, right on listable or not;
- view accuracy where the manifest states the view (phones_web's "front" is its folder's default: the
  photos' own views are not labelled one by one);
- with `--no-kind`, the kind read right where the manifest states it (laptop_scratch's lids and
  cracked_screens' laptop displays: laptops; the rest phones);
- every standard, as the API and the CLI grade by default: each one's grade right (a cracked photo
  may have the grades that standard gives cracked glass, CTIA's D and E say; a worn one its listable
  grades; an intact one those better than cracked glass, CTIA's A to C: `training.metrics.
  truth_grades`), the mean probability it gave its grade (a
  calibrated grade's mean probability is near its share right), and the share that standard does not
  send to review; and the share of photos graded without review by all standards together.

With `--shortcut`, phones_web's photos are graded again made 244 px and black-barred (the "less
damaged" folder's format, which nearly only cracked photos have: docs/data.md); a crack score that
rises on barred intact photos means the model learnt the format.

Choose on `--split val`; the test split is for the final report only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_MANIFESTS = [
    ROOT / "datasets/real/phones_web.jsonl",
    ROOT / "datasets/real/cracked_screens.jsonl",
    ROOT / "datasets/real/msd.jsonl",
    ROOT / "datasets/real/laptop_scratch.jsonl",
]
STANDARD = "backmarket"  # the grade the Back Market measures read


@dataclass
class Graded:
    source: str
    truth: str  # "cracked", "intact" or "worn"
    crack_score: float
    listable: bool | None  # None: ungradable
    reviewed: bool  # sent to a person
    view_ok: bool | None
    render: bool = False  # a product render, not a photo (phones_web's `render?` note)
    # Per standard: (grade right, the probability given to the grade, sent to review by that standard).
    standards: dict[str, tuple[bool, float, bool]] = field(default_factory=dict)
    reviewed_by_any: bool = True  # sent to a person by any standard (the default grading)
    kind_ok: bool | None = None  # the kind read from the photos is the manifest's (`--no-kind` only)
    grade: str = ""  # the Back Market grade given


def truth_of(record) -> str | None:
    """ "cracked", "worn" or "intact" (`training.metrics.real_truth`)."""
    from training.metrics import real_truth

    return real_truth(record)


def _barred(data: bytes) -> bytes:
    """The photo in phones_web's "less damaged" format: 244 px, black-barred square (the shortcut)."""
    import cv2

    from model.preprocess import decode
    from training.dataset import small_black_barred

    rgb, _ = decode(data)
    _, buf = cv2.imencode(".jpg", cv2.cvtColor(small_black_barred(rgb), cv2.COLOR_RGB2BGR))
    return buf.tobytes()


def grade_photos(
    model_path: Path, items, transform: Callable[[bytes], bytes] | None = None, given_kind: bool = True
) -> list[Graded]:
    """Each item's photo graded as one device (`transform`: the photo's bytes changed first), as the kind
    its manifest gives, or without `given_kind` as the kind its photo shows."""
    from tqdm import tqdm

    from model.manifest import resolve
    from model.outputs import DEFECT_CHANNELS
    from model.rules import list_standards
    from serving.pipeline import Device, grade_device, resolve_device, run_direct
    from serving.predictor import load_model
    from training.evaluate import graded_scores
    from training.metrics import truth_grades

    crack = DEFECT_CHANNELS.index("crack")

    model = load_model(model_path, intra_op_threads=2)
    standards = list_standards()  # the API's and the CLI's default: every bundled standard
    out = []
    for it in tqdm(items, desc=model_path.name, leave=False):
        rec = it.record
        data = resolve(it.manifest, rec.image).read_bytes()
        if transform is not None:
            data = transform(data)
        if given_kind:
            device = Device(kind=rec.device_kind) if rec.device_kind else Device()
        else:
            device = resolve_device(None, None)
        g = grade_device(run_direct, model, [data], device=device, standards=standards)
        grade = g.grades[STANDARD]
        listable = None if grade.grade == "ungradable" else bool(grade.listable)
        view_ok = None if rec.view is None else g.photos[0].view == rec.view
        render = rec.meta.get("note") == "render?"
        truth = truth_of(rec)
        per_standard = {
            s: (
                r.grade in truth_grades(s, truth),
                r.probabilities.get(r.grade, 0.0),
                r.needs_review,
            )
            for s, r in g.grades.items()
        }
        out.append(
            Graded(
                rec.source,
                truth,
                float(graded_scores(g.instances)[crack]),  # what the rules see, as `evaluate` scores it
                listable,
                grade.needs_review,  # Back Market's own flag: what the measures above were set for
                view_ok,
                render,
                per_standard,
                g.needs_review,
                None if given_kind or rec.device_kind is None else g.device.kind.value == rec.device_kind,
                grade.grade,
            )
        )
    return out


def _share(xs) -> tuple[float, int]:
    xs = [x for x in xs if x is not None]
    return (float(np.mean(xs)) if xs else float("nan")), len(xs)


def _right_on_listable(r: Graded) -> bool:
    """Listable for an intact or worn photo, not listable for a cracked one; `ungradable` is wrong."""
    return r.listable is not None and r.listable == (r.truth != "cracked")


def table(rows: list[Graded]) -> dict[str, dict[str, tuple[float, int]]]:
    """Per source and for all: each measure as (value, photos it was measured on)."""
    from sklearn.metrics import roc_auc_score

    groups = defaultdict(list)
    for r in rows:
        groups[r.source].append(r)
        groups["all"].append(r)
    out = {}
    for name, rs in groups.items():
        y = [r.truth == "cracked" for r in rs]
        s = [r.crack_score for r in rs]
        auroc = (float(roc_auc_score(y, s)), len(y)) if 0 < sum(y) < len(y) else (float("nan"), len(y))
        auto = [r for r in rs if not r.reviewed]
        out[name] = {
            "crack AUROC": auroc,
            "cracked graded Unlistable": _share(r.listable is False for r in rs if r.truth == "cracked"),
            "intact graded listable": _share(r.listable is True for r in rs if r.truth == "intact"),
            # What a refurbisher uploads is a photo: renders apart (a third of phones_web's intact set).
            "  of them photos, not renders": _share(
                r.listable is True for r in rs if r.truth == "intact" and not r.render
            ),
            # Why an intact phone was not listable: no usable photo (`ungradable`), not a defect seen.
            "  of them ungradable": _share(r.listable is None for r in rs if r.truth == "intact"),
            "worn graded Unlistable": _share(r.listable is False for r in rs if r.truth == "worn"),
            "graded without review": _share(not r.reviewed for r in rs),
            "of those, right on listable": _share(
                _right_on_listable(r) for r in auto if r.listable is not None
            ),
            "view accuracy": _share(r.view_ok for r in rs),
            "kind read right": _share(r.kind_ok for r in rs),
        }
        for std in sorted({s for r in rs for s in r.standards}):
            out[name] |= {
                f"{std}: grade right": _share(r.standards[std][0] for r in rs),
                f"{std}: mean probability": _share(r.standards[std][1] for r in rs),
                f"{std}: not sent to review": _share(not r.standards[std][2] for r in rs),
            }
        out[name]["without review, all standards"] = _share(not r.reviewed_by_any for r in rs)
    return out


# Per-photo measures for the paired comparison: whether each photo came out right.
PAIRED: dict[str, Callable[[Graded], bool]] = {
    "right on listable": _right_on_listable,
    f"{STANDARD} grade right": lambda r: r.standards[STANDARD][0] if STANDARD in r.standards else False,
    "right without review": lambda r: not r.reviewed and _right_on_listable(r),
}


def paired(rows: list[Graded], other: list[Graded]) -> dict[str, tuple[int, int, float]]:
    """Two models on the same photos (in the same order): per measure, the photos only the first gets
    right, those only the second gets right, and the exact McNemar p-value (two-sided binomial test
    on the photos they disagree on). Whether a change is material is read here: a few photos either
    way on a few hundred are within chance."""
    from scipy.stats import binomtest

    if [(r.source, r.truth) for r in rows] != [(r.source, r.truth) for r in other]:
        raise ValueError("paired: the two lists are not the same photos in the same order")
    out = {}
    for name, right in PAIRED.items():
        first, second = [right(r) for r in rows], [right(r) for r in other]
        only_first = sum(a and not b for a, b in zip(first, second, strict=True))
        only_second = sum(b and not a for a, b in zip(first, second, strict=True))
        n = only_first + only_second
        out[name] = (only_first, only_second, float(binomtest(only_first, n).pvalue) if n else 1.0)
    return out


def shortcut_table(model_path: Path, items, rows: list[Graded]) -> dict[str, dict[str, float]]:
    """The format-shortcut check (docs/data.md): phones_web photos as they were graded (`rows`, in the
    order of `items`) and again made 244 px and black-barred. A crack score that rises on barred intact
    photos is the shortcut."""
    web = [it for it in items if it.record.source == "phones_web"]
    as_they_are = [r for r in rows if r.source == "phones_web"]
    out = {}
    for label, graded in (("as they are", as_they_are), ("barred", grade_photos(model_path, web, _barred))):
        for truth in ("intact", "cracked"):
            scores = np.array([r.crack_score for r in graded if r.truth == truth])
            out[f"{truth}, {label}"] = {
                "photos": len(scores),
                "mean crack score": float(scores.mean()) if len(scores) else float("nan"),
                "share above 0.5": float((scores > 0.5).mean()) if len(scores) else float("nan"),
                "graded Unlistable": _share(r.listable is False for r in graded if r.truth == truth)[0],
            }
    return out


def wilson(share: float, n: int) -> tuple[float, float]:
    """The 95% Wilson interval of a share measured on `n` photos: the real splits are small (34
    intact phones_web validation photos), and a target such as 0.97 is a point the interval of a
    few dozen photos cannot tell from 0.90."""
    from scipy.stats import binomtest

    ci = binomtest(round(share * n), n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def _fmt(v: tuple[float, int], interval: bool = False) -> str:
    x, n = v
    if x != x:
        return f"n/a ({n})"
    if not interval:
        return f"{x:.3f} ({n})"
    low, high = wilson(x, n)
    return f"{x:.3f} ({n}; {low:.2f}-{high:.2f})"


def is_share(measure: str) -> bool:
    """Whether a measure of `table` is a share of photos (an interval applies), not an AUROC or a mean
    probability."""
    return measure != "crack AUROC" and not measure.endswith("mean probability")


def main(argv: list[str] | None = None) -> int:
    from training.dataset import load_items

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models/default.onnx")
    ap.add_argument("--compare", type=Path, help="a second model, measured in the same run")
    ap.add_argument("--split", default="val", help="val to choose; test only for the final report")
    ap.add_argument("-m", "--manifest", type=Path, action="append", help="default: the real sets")
    ap.add_argument("--json", type=Path, help="write the tables here")
    ap.add_argument(
        "--shortcut",
        action="store_true",
        help="also grade phones_web's photos made 244 px and black-barred (the format shortcut)",
    )
    ap.add_argument(
        "--no-kind",
        action="store_true",
        help="grade without the manifest's device kind, as a user who names none (the photos decide)",
    )
    args = ap.parse_args(argv)
    manifests = args.manifest or [m for m in DEFAULT_MANIFESTS if m.is_file()]
    items = [it for m in manifests for it in load_items(m, (args.split,)) if truth_of(it.record)]
    models = [args.model] + ([args.compare] if args.compare else [])
    graded = {m: grade_photos(m, items, given_kind=not args.no_kind) for m in models}
    tables = {str(m): table(rows) for m, rows in graded.items()}
    print(f"{len(items)} real photos of split {args.split!r} from {', '.join(m.name for m in manifests)}")
    print("each figure: value (photos; 95% Wilson interval where it is a share of photos)")
    for source in tables[str(args.model)]:
        print(f"\n{source}" + "".join(f" | {m.name}" for m in models))
        for measure in tables[str(args.model)][source]:
            cells = " | ".join(
                _fmt(tables[str(m)][source][measure], interval=is_share(measure)) for m in models
            )
            print(f"  {measure:<30} {cells}")
    if args.compare:
        print(f"\npaired, all sources: photos only {args.model.name} / only {args.compare.name} gets right")
        for measure, (a, b, p) in paired(graded[args.model], graded[args.compare]).items():
            print(f"  {measure:<30} {a} / {b} (exact McNemar p {p:.2f})")
    if args.shortcut:
        for m in models:
            print(f"\nformat shortcut, phones_web, {m.name}: crack score of photos as they are vs barred")
            for row, v in shortcut_table(m, items, graded[m]).items():
                cells = ", ".join(
                    f"{k} {x:.3f}" if isinstance(x, float) else f"{k} {x}" for k, x in v.items()
                )
                print(f"  {row:<20} {cells}")
    if args.json:
        args.json.write_text(json.dumps(tables, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
