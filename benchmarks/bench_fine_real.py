"""The fine pass on real photos: MSD's scratched, stained and oily screens, the laptop lids and
phones_web's intact and cracked phones (the fine pass runs on the few fine enough for it), graded
through serving's pipeline with and without the fine network beside the model, in the same run.

    .venv/bin/python benchmarks/bench_fine_real.py [--model models/default.onnx] [--split val]
        [--gallery docs/fine_pass_real.jpg --show Scr_0003.jpg ...]

Per source, for each side: photos fine enough for the fine pass (the device at `FineCard.coarsest_mm`
or finer, from its length in the photo as the pipeline measured it);
MSD: scratched screens with at least one counted screen scratch (image-level recall: MSD labels the
photo, not the scratch), stained/oily screens with one (false scratches), the Back Market grade
mix, the views the photos were taken for and the Unlistable grades not sent to review (which the review
flag promises are right); laptop lids: their labelled scratch polygons matched by a counted scratch
whose box overlaps the polygon's (recall on the laptop polygons); milliseconds per photo. The fine side is the model file with
its `NAME.fine.onnx` sibling, the other the same file loaded with `fine=False`.

`--gallery`: the named photos drawn with the fine pass's tiles (cyan), its scratches (red, labelled
width in mm and contrast) and the coarse pass's counted instances (yellow).
Choose on `--split val`; the test split is for the final report only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.detail import device_mm_per_px  # noqa: E402
from model.inference import frame_photo, infer  # noqa: E402
from model.manifest import resolve  # noqa: E402
from model.rules.engine import counted  # noqa: E402
from serving.pipeline import analyse_photo, fine_stage, grade_device, resolve_device, run_direct  # noqa: E402
from serving.predictor import load_model  # noqa: E402

MANIFESTS = [
    ROOT / "datasets/real/msd.jsonl",
    ROOT / "datasets/real/laptop_scratch.jsonl",
    ROOT / "datasets/real/phones_web.jsonl",
]
STANDARD = "backmarket"


def _records(split: str, manifests=None):
    for m in manifests or MANIFESTS:
        for line in m.read_text().splitlines():
            rec = json.loads(line)
            if rec["split"] == split:
                yield m, rec


def _kind(rec) -> str:
    if rec["device_kind"] == "laptop":
        return "lid"
    labels = rec.get("image_labels") or {}
    for k in ("scratch", "stain", "smudge", "crack"):
        if labels.get(k):
            return k
    return "intact" if "crack" in labels else "other"


def _overlaps(box, poly) -> bool:
    xs, ys = np.asarray(poly, float).T
    return not (box[2] < xs.min() or box[0] > xs.max() or box[3] < ys.min() or box[1] > ys.max())


def measure(model, split: str, manifests=None) -> dict:
    rows = defaultdict(Counter)
    ms = defaultdict(list)
    for manifest, rec in _records(split, manifests):
        data = resolve(manifest, rec["image"]).read_bytes()
        device = resolve_device(None, rec["device_kind"])
        t0 = time.perf_counter()
        g = grade_device(run_direct, model, [data], device=device, standards=[STANDARD])
        source = Path(manifest).stem
        ms[source].append((time.perf_counter() - t0) * 1000)
        kind = _kind(rec)
        r = rows[f"{source} {kind}"]
        r["photos"] += 1
        photo = g.photos[0]
        # The fine pass's own condition (`FineCard.coarsest_mm`) on the device as the pipeline measured it.
        r["fine enough for the pass"] += (
            model.fine is not None
            and photo.device_found
            and device_mm_per_px(photo.device_length_px, device.length_mm, device.kind)[0]
            <= model.fine.card.coarsest_mm
        )
        scratches = [i for i in photo.instances if i.type.value == "scratch" and counted(i)]
        r["counted screen scratch"] += any(i.zone.value == "screen" for i in scratches)
        r[f"grade {g.grades[STANDARD].grade}"] += 1
        r[f"view {photo.view.value}"] += 1
        r["unlistable, not sent to review"] += not g.grades[STANDARD].listable and not g.needs_review
        if kind == "lid":
            for gt in rec.get("instances", []):
                if gt["type"] != "scratch" or not gt.get("polygon"):
                    continue
                r["lid scratch polygons"] += 1
                r["lid polygons found"] += any(_overlaps(i.box, gt["polygon"]) for i in scratches)
    return {
        "rows": {k: dict(v) for k, v in rows.items()},
        "ms": {k: float(np.median(v)) for k, v in ms.items()},
    }


def gallery(model, names: list[str], out: Path) -> None:
    panels = []
    for manifest in MANIFESTS:
        for line in manifest.read_text().splitlines():
            rec = json.loads(line)
            if Path(rec["image"]).name not in names:
                continue
            data = resolve(manifest, rec["image"]).read_bytes()
            device = resolve_device(None, rec["device_kind"])
            frames = [frame_photo(data, model.input_size)]
            (inf,) = infer(
                frames, model.card, lambda im: run_direct(model, im), None, fine_stage(model, device)
            )
            photo = analyse_photo(inf, model.card, device, 0, None)
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if inf.fine is not None:
                for x0, y0, x1, y1 in inf.fine.tiles:
                    (a, b), (c, d) = inf.fine.letterbox.to_original(np.array([[x0, y0], [x1, y1]], float))
                    cv2.rectangle(img, (int(a), int(b)), (int(c), int(d)), (255, 255, 0), 2)
            for i in photo.instances:
                if not counted(i):
                    continue
                fine = i.measurement.contrast is not None
                colour = (0, 0, 255) if fine else (0, 255, 255)
                cv2.polylines(img, [np.asarray(i.polygon, np.int32)], True, colour, 2)
                if fine:
                    m = i.measurement
                    # Without a device model sizes are relative: only the contrast reads on its own.
                    label = f"{m.width:.2f} mm c{m.contrast:.2f}" if m.units == "mm" else f"c{m.contrast:.2f}"
                    cv2.putText(img, label, (int(i.box[0]), max(12, int(i.box[1]) - 4)), 0, 0.5, colour, 1)
            why = "fine pass ran" if inf.fine is not None else "too coarse: no fine pass"
            cv2.putText(img, f"{Path(rec['image']).name[:12]}: {why}", (10, 24), 0, 0.7, (255, 255, 255), 2)
            s = 900 / max(img.shape[:2])
            panels.append(cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA))
    h = max(p.shape[0] for p in panels)
    row = np.concatenate(
        [cv2.copyMakeBorder(p, 0, h - p.shape[0], 0, 8, cv2.BORDER_CONSTANT) for p in panels], 1
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), row, [cv2.IMWRITE_JPEG_QUALITY, 85])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models/default.onnx"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--gallery", type=Path)
    ap.add_argument("--show", nargs="*", default=[])
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "-m", "--manifest", type=Path, action="append", help="only these manifests (default: all three)"
    )
    args = ap.parse_args(argv)
    fine = load_model(args.model, intra_op_threads=2)
    if fine.fine is None:
        sys.exit(f"{args.model}: no fine network beside it (NAME.fine.onnx)")
    if args.gallery:
        gallery(fine, args.show, args.gallery)
        print(f"gallery: {args.gallery}")
        return {}
    plain = load_model(args.model, intra_op_threads=2, fine=False)
    result = {
        "fine": measure(fine, args.split, args.manifest),
        "coarse": measure(plain, args.split, args.manifest),
    }
    keys = sorted(set(result["fine"]["rows"]) | set(result["coarse"]["rows"]))
    for k in keys:
        a, b = result["fine"]["rows"].get(k, {}), result["coarse"]["rows"].get(k, {})
        print(f"{k}:")
        for m in sorted(set(a) | set(b)):
            print(f"  {m:28s} fine {a.get(m, 0):4d}   coarse only {b.get(m, 0):4d}")
    for k in result["fine"]["ms"]:
        print(f"{k}: median {result['fine']['ms'][k]:.0f} ms a photo with the fine pass, "
              f"{result['coarse']['ms'][k]:.0f} ms without")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
