"""Model benchmarks that print comparable figures (not timed tests).

python benchmarks/bench_model.py latency models/default.onnx [models/default.int8.onnx ...]
    ONNX Runtime per-photo latency at batch 1 on `--threads` intra-op threads (default 2, the
    target machine): warm-up, then median / p90 over `--runs` runs of real letterboxed photos. A model
    whose card asks for crop-to-device is timed for both of its passes per photo.
python benchmarks/bench_model.py oracle --manifest datasets/generated/synth_test/manifest.jsonl
    The resolution study behind the choice of input size and mask stride: for each (size, stride)
    a *perfect* network's masks (the ground truth's coverage of each mask cell, exactly the training
    target) go through serving's post-processing; it prints the share of scratches that survive
    and the median scratch-length error, and the Back Market grade accuracy with serving's stroke
    split of touching lines (`model.strokes`) against the same maps measured one instance per
    component, in the same run. That is the floor no training can beat at that setting.
    With `--line-heat` (and `--cut 0.5`) the scratch maps are a candidate target instead of coverage:
    1 - distance / stride to the nearest scratch pixel, and lengths lose the one cell that adds.
    With `--latency`, it also exports an untrained network at each setting and times it; with
    `--crop`, each photo is first cropped to its true device box, as the crop-to-device pass does.
python benchmarks/bench_model.py observable --manifest datasets/generated/synth_val/manifest.jsonl
    How much of the synthetic grade truth a photo can show at all: the rules engine on the *true*
    instances (100% by construction), then with every width set to 0, then without the defects
    shorter than 1, 2, 3 photo pixels. Widths far below a pixel only matter if they decide grades.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _photos(size: int, n: int = 8) -> np.ndarray:
    from skimage import data

    from model.preprocess import letterbox, to_nchw

    base = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    return to_nchw(np.stack([letterbox(base[i % len(base)], size)[0] for i in range(n)]))


def time_onnx(path: str | Path, threads: int = 2, runs: int = 50) -> dict[str, float]:
    from model.export import _session, read_card
    from model.outputs import INPUT_NAME

    card = read_card(path)
    sess = _session(path, threads)
    photos = _photos(card.input_size)
    # A card with crop_to_device runs the network twice per photo with a device (model.crop): whole
    # photo, then its device crop at the same input size. That pair is what a photo costs.
    passes = 2 if card.crop_to_device else 1
    for i in range(5):
        sess.run(None, {INPUT_NAME: photos[i % len(photos) : i % len(photos) + 1]})
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        for k in range(passes):
            j = (i + k) % len(photos)
            sess.run(None, {INPUT_NAME: photos[j : j + 1]})
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "passes": passes,
        "median_ms": statistics.median(times),
        "p90_ms": times[int(0.9 * len(times)) - 1],
        "min_ms": times[0],
    }


def latency(paths: list[str], threads: int, runs: int) -> None:
    from training.machine import cpu_line  # the machine these times are of

    print(cpu_line())
    results = {}
    for p in paths:
        results[p] = time_onnx(p, threads, runs)
        r = results[p]
        print(
            f"{p}: median {r['median_ms']:.1f} ms, p90 {r['p90_ms']:.1f} ms, min {r['min_ms']:.1f} ms "
            f"per photo ({r['passes']} pass{'es' if r['passes'] > 1 else ''}, batch 1, {threads} threads, "
            f"{runs} runs)"
        )
    if len(paths) >= 2:
        a, b = results[paths[0]]["median_ms"], results[paths[1]]["median_ms"]
        print(f"speed-up of {paths[1]} over {paths[0]}: {a / b:.2f}x (medians)")


def oracle(
    manifest: str,
    sizes: list[int],
    strides: list[int],
    limit: int,
    with_latency: bool,
    cut: float,
    crop: bool = False,
    gallery: str | None = None,
    line_heat: bool = False,
) -> None:
    from model.card import Thresholds
    from model.inference import Frame, Inferred
    from model.manifest import resolve
    from model.outputs import DEFECT_CHANNELS, ZONE_CHANNELS
    from model.postprocess import extract_instances
    from model.preprocess import prepare
    from model.rules import grade
    from training.dataset import build_targets, load_items, true_crop_box
    from training.metrics import (
        gt_instances,
        instance_mask,
        length_errors,
        match_instances,
        photo_scale,
        true_grades,
    )
    from training.predict import Prediction

    # Every photo with a grade (clean ones too: a false defect costs a grade as much as a missed one).
    items = [it for it in load_items(manifest, ["train", "val", "test"]) if it.record.grades][:limit]
    thresholds = Thresholds(defect_pixel={n: cut for n in DEFECT_CHANNELS}, min_instance_confidence=0.0)
    print(
        f"{len(items)} graded photos from {manifest}" + (", cropped to the true device box" if crop else "")
    )
    print(
        "size stride | scratches found | median length error | median |error| mm | BM grade acc "
        "(lines split; one per component; gain) | ORT ms (untrained)"
    )
    for size in sizes:
        for s in strides:
            pairs, n_true, n_found, graded_ok, whole_ok = [], 0, 0, [], []
            ms_split, ms_whole, changed = [], [], []
            for it in items:
                box = None
                if crop:  # as serving crops (model.crop), with the true device box for the zone map's
                    box = true_crop_box(it, prepare(resolve(it.manifest, it.record.image), size)[1])
                t = build_targets(it, size, box)
                g = size // s
                cells = t["defects"].reshape(g, s, g, s, -1).astype(np.float32)
                defect = cells.mean(axis=(1, 3)).transpose(2, 0, 1)  # coverage: the training target
                if line_heat:
                    defect[0] = _line_heat(t["defects"][..., 0], s)
                zone = t["zone"][s // 2 :: s, s // 2 :: s].astype(int)
                zone_probs = np.eye(len(ZONE_CHANNELS), dtype=np.float32)[np.clip(zone, 0, 4)].transpose(
                    2, 0, 1
                )
                _, lb = prepare(resolve(it.manifest, it.record.image), size, box)
                outputs = {"defect_probs": defect, "zone_probs": zone_probs}
                pred = Prediction(it, Inferred(Frame(t["image"], lb), outputs))
                scale, _ = photo_scale(pred, size, it.record.view)  # the oracle knows the view
                t0 = time.perf_counter()
                insts = extract_instances(defect, zone_probs, lb, thresholds, scale, size)
                ms_split.append((time.perf_counter() - t0) * 1e3)
                cell_mm = s * scale.per_px * lb.draft_factor / lb.scale  # one mask cell, in mm
                if line_heat:
                    insts = _trim_lines(insts, cell_mm)
                gts = gt_instances(pred, size)
                matches = match_instances(insts, [instance_mask(i, lb, size) for i in insts], gts, radius=s)
                n_true += sum(1 for x in gts if x.type == "scratch")
                n_found += sum(
                    1 for m in matches if m.type == "scratch" and m.pred is not None and m.gt is not None
                )
                pairs += length_errors(matches, ("scratch",))
                kind = it.record.device_kind or "phone"
                truth = true_grades(it.record)["backmarket"]
                graded_ok.append(grade(insts, "backmarket", device_kind=kind).grade == truth)
                # Baseline in the same run: each component one instance (no stroke split).
                t0 = time.perf_counter()
                whole = extract_instances(defect, zone_probs, lb, thresholds, scale, size, split_lines=False)
                ms_whole.append((time.perf_counter() - t0) * 1e3)
                if line_heat:
                    whole = _trim_lines(whole, cell_mm)
                g_whole = grade(whole, "backmarket", device_kind=kind).grade
                whole_ok.append(g_whole == truth)
                if gallery and graded_ok[-1] != whole_ok[-1] and len(changed) < GALLERY_MAX:
                    changed.append(_split_tile(t["image"], lb, insts, whole, truth, graded_ok[-1], g_whole))
            rel = [abs(m - t) / t for t, m in pairs]
            ms = ""
            if with_latency:
                ms = f"{_untrained_latency(size, s):.1f}"
            print(
                f"{size:4d} {s:6d} | {n_found}/{n_true} ({n_found / max(n_true, 1):.0%}) | "
                f"{statistics.median(rel) if rel else float('nan'):.3f} | "
                f"{statistics.median([abs(m - t) for t, m in pairs]) if pairs else float('nan'):.2f} | "
                f"{np.mean(graded_ok):.3f}; {np.mean(whole_ok):.3f}; "
                f"{np.mean(graded_ok) - np.mean(whole_ok):+.3f} | {ms}"
            )
            if gallery and changed:
                out = Path(gallery)
                out = (
                    out.with_name(f"{out.stem}_{size}_{s}{out.suffix}")
                    if len(sizes) * len(strides) > 1
                    else out
                )
                _save_gallery(changed, out)
                print(f"    {len(changed)} photos whose grade the split changed: {out}")
            print(
                f"    post-processing per photo, median / max ms: split {np.median(ms_split):.1f} / "
                f"{max(ms_split):.1f}, one per component {np.median(ms_whole):.1f} / {max(ms_whole):.1f}"
            )


GALLERY_MAX = 12


def _line_heat(mask: np.ndarray, stride: int) -> np.ndarray:
    """A candidate scratch target (not what training uses): 1 - d / stride at each cell centre, d the
    distance to the nearest scratch pixel. Unlike coverage, a hairline's band is as strong as a gouge's
    and does not fade into pieces; at a 0.5 cut it reaches half a cell past each end."""
    import cv2

    g = mask.shape[0] // stride
    if not mask.any():  # no zero-distance pixel: OpenCV's transform would not be a distance
        return np.zeros((g, g), np.float32)
    d = cv2.distanceTransform((mask == 0).astype(np.uint8), cv2.DIST_L2, 5)
    return np.clip(1 - d / stride, 0, 1)[stride // 2 :: stride, stride // 2 :: stride]


def _trim_lines(insts, cell_mm: float):
    """Scratch lengths less the one cell a 0.5 cut of `_line_heat` adds (half a cell at each end)."""
    out = []
    for i in insts:
        if i.type.value == "scratch":
            m = i.measurement
            i = i.model_copy(
                update={
                    "measurement": m.model_copy(update={"length": max(m.length - cell_mm, 0.3 * m.length)})
                }
            )
        out.append(i)
    return out


def _split_tile(image, lb, split, whole, truth: str, split_right: bool, whole_grade: str) -> np.ndarray:
    """The model-input photo twice: scratches one per component (left), split into strokes (right),
    each instance outlined in its own colour; captions give the grades."""
    import cv2

    rng = np.random.default_rng(0)
    panels = []
    for insts, caption in (
        (whole, f"per component: {whole_grade}"),
        (split, f"split: {'right' if split_right else 'wrong'} (truth {truth})"),
    ):
        img = np.ascontiguousarray(image.copy())
        for inst in insts:
            if inst.type.value != "scratch" or len(inst.polygon) < 2:
                continue
            colour = tuple(int(c) for c in rng.integers(80, 256, 3))
            pts = np.round(lb.to_model(np.asarray(inst.polygon))).astype(np.int32)
            cv2.polylines(img, [pts], True, colour, 1)
        cv2.putText(img, caption, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1)
        panels.append(img)
    return np.concatenate(panels, axis=1)


def _save_gallery(tiles: list[np.ndarray], path: Path) -> None:
    from PIL import Image

    rows = [np.concatenate(tiles[i : i + 2], axis=1) for i in range(0, len(tiles), 2)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def true_instances(record, width_mm=lambda inst: inst.width_mm or 0.0, keep=lambda inst: True) -> list:
    """A record's labelled instances as the rules take them, with their true mm sizes (`width_mm`: the
    width each is given), those `keep` selects."""
    from model.instances import DefectInstance, Measurement
    from model.taxonomy import Zone

    return [
        DefectInstance(
            type=i.type,
            zone=i.zone or Zone.BODY,
            photo_index=0,
            box=(0, 0, 1, 1),
            polygon=[(0, 0), (1, 0), (1, 1)],
            confidence=1.0,
            measurement=Measurement(
                units="mm", length=i.length_mm or 0.0, width=width_mm(i), area=i.area_mm2 or 0.0
            ),
        )
        for i in record.instances
        if keep(i)
    ]


def observable(manifest: str) -> None:
    from model.manifest import read_manifest
    from model.rules import grade
    from training.metrics import true_grades

    recs = [r for r in read_manifest(manifest) if r.grades.get("backmarket") and r.mm_per_px]

    def accuracy(min_px: float, keep_width: bool) -> float:
        ok = []
        for r in recs:
            insts = true_instances(
                r,
                width_mm=lambda inst: (inst.width_mm or 0.0) if keep_width else 0.0,
                keep=lambda inst, r=r: (inst.length_mm or 0.0) / r.mm_per_px >= min_px,
            )
            ok.append(
                grade(insts, "backmarket", device_kind=r.device_kind or "phone").grade
                == true_grades(r)["backmarket"]
            )
        return float(np.mean(ok))

    print(f"{len(recs)} graded photos from {manifest}; Back Market accuracy of the rules on the truth:")
    print(f"  true instances: {accuracy(0, True):.3f}")
    print(f"  widths set to 0: {accuracy(0, False):.3f}")
    for px in (1, 2, 3):
        print(f"  without defects shorter than {px} photo px: {accuracy(px, True):.3f}")


def _untrained_latency(size: int, stride: int) -> float:
    import torch

    from model.card import ModelCard, Thresholds
    from model.export import export_onnx
    from model.registry import create_model

    torch.manual_seed(0)
    net = create_model("lite0_fpn", input_size=size, mask_stride=stride, pretrained=False).eval()
    card = ModelCard(
        name="bench",
        version="0",
        architecture="lite0_fpn",
        input_size=size,
        mask_stride=stride,
        thresholds=Thresholds(defect_pixel={}),
        training_data_hash="-",
        git_commit="-",
    )
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.onnx"
        export_onnx(net, path, card, _photos(size, 2))
        return time_onnx(path, runs=20)["median_ms"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("latency")
    a.add_argument("models", nargs="+")
    a.add_argument("--threads", type=int, default=2)
    a.add_argument("--runs", type=int, default=50)
    o = sub.add_parser("oracle")
    o.add_argument("--manifest", required=True)
    o.add_argument("--sizes", type=int, nargs="+", default=[320, 384, 512])
    o.add_argument("--strides", type=int, nargs="+", default=[2, 4, 8])
    o.add_argument("--limit", type=int, default=150)
    o.add_argument("--latency", action="store_true")
    o.add_argument("--cut", type=float, default=0.15, help="pixel threshold on the coverage maps")
    o.add_argument("--crop", action="store_true", help="crop each photo to its true device box first")
    o.add_argument("--gallery", help="image of the photos whose grade the stroke split changed")
    o.add_argument(
        "--line-heat",
        action="store_true",
        help="scratch maps as distance-to-line heat instead of coverage (a candidate target; use --cut 0.5)",
    )
    v = sub.add_parser("observable")
    v.add_argument("--manifest", required=True)
    args = ap.parse_args()
    if args.cmd == "latency":
        latency(args.models, args.threads, args.runs)
    elif args.cmd == "observable":
        observable(args.manifest)
    else:
        oracle(
            args.manifest,
            args.sizes,
            args.strides,
            args.limit,
            args.latency,
            args.cut,
            args.crop,
            args.gallery,
            args.line_heat,
        )


if __name__ == "__main__":
    main()
