"""`refurbgrade evaluate`: a model (checkpoint or ONNX) on a manifest -> metrics.json + a markdown report with plots.

Everything goes through serving's path: `model.preprocess.prepare`, the model's probabilities,
`model.postprocess` (scale from the device outline and catalogue, instances with mm sizes), then the
rules engine per standard on all photos of a device. Metrics (definitions in `training.metrics`):

- per defect type: instance precision / recall / F1 (dilated-mask IoU matching) and soft pixel IoU at
  mask resolution (sum of min / sum of max of probability and coverage target, as trained);
- zone mIoU, view accuracy, photo-quality accuracy;
- scratch length error (synthetic photos, where the true length is known);
- per standard: grade accuracy, confusion matrix, quadratic weighted kappa, reliability diagram and
  ECE of the top-grade probability, and the coverage/accuracy curve of the needs-review threshold;
- image-level AUROC per defect type and source, where image-level truth exists (real sets; score =
  the photo's highest pixel probability for that type);
- inference time per photo as measured during the run.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from model.outputs import DEFECT_CHANNELS, QUALITY_CLASSES, VIEW_CLASSES, ZONE_CHANNELS
from model.rules import list_standards, load_standard
from model.taxonomy import PhotoQuality
from training.dataset import IGNORE, build_targets, load_items
from training.metrics import (
    coverage_curve,
    ece,
    grade_devices,
    length_errors,
    photo_result,
    prf,
    selective_accuracy,
)
from training.predict import load_predictor, predict

HEADLINE_STANDARD = "backmarket"


def _pool(mask: np.ndarray, s: int) -> np.ndarray:
    S = mask.shape[0]
    return mask.reshape(S // s, s, S // s, s, -1).astype(np.float32).mean(axis=(1, 3)).transpose(2, 0, 1)


def _nan_to_none(x):
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    if isinstance(x, float) and x != x:
        return None
    return x


def compute_metrics(
    model_path: str | Path, manifests: list[str], splits: tuple[str, ...], limit: int | None = None
):
    """All metrics, plus per-photo rows (for error analysis) and the device grade rows."""
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    predictor = load_predictor(model_path)
    stride = predictor.mask_stride
    items = []
    for m in manifests:
        # "PATH@train,val,test" picks splits per manifest (a held-out synthetic seed is test as a whole).
        path, _, own = m.partition("@")
        items += load_items(path, tuple(own.split(",")) if own else splits)
    if limit:
        items = items[:limit]
    if not items:
        raise ValueError(f"no records in splits {splits} of {manifests}")
    inter, union = np.zeros(len(DEFECT_CHANNELS)), np.zeros(len(DEFECT_CHANNELS))
    zi, zu = np.zeros(len(ZONE_CHANNELS)), np.zeros(len(ZONE_CHANNELS))
    view_ok, quality_ok = [], []
    image_scores: dict[tuple[str, str], list[tuple[float, bool]]] = defaultdict(list)
    matches, results, photos = [], [], []
    scale_sources: dict[str, int] = defaultdict(int)
    for pred in predict(items, predictor):
        rec = pred.item.record
        res = photo_result(pred, predictor.thresholds, stride)
        for m in res.matches:
            if m.gt is not None:
                m.gt.mask = None  # keep memory flat on big test sets
        scale_sources[res.scale_source] += 1
        t = build_targets(pred.item, pred.size, pred.lb.crop)  # the frame the outputs are in
        target = _pool(t["defects"], stride)  # coverage, as trained
        probs = pred.outputs["defect_probs"]
        for d in np.flatnonzero(t["pixel_valid"]):
            inter[d] += np.minimum(probs[d], target[d]).sum()
            union[d] += np.maximum(probs[d], target[d]).sum()
        zone = t["zone"][stride // 2 :: stride, stride // 2 :: stride]
        known = zone != IGNORE
        if known.any():
            zp = pred.outputs["zone_probs"].argmax(axis=0)
            for c in range(len(ZONE_CHANNELS)):
                zi[c] += ((zp == c) & (zone == c) & known).sum()
                zu[c] += (((zp == c) | (zone == c)) & known).sum()
        if rec.view:
            view_ok.append(VIEW_CLASSES[int(pred.outputs["view_probs"].argmax())] == rec.view.value)
        if rec.quality:
            quality_ok.append(
                QUALITY_CLASSES[int(pred.outputs["quality_probs"].argmax())] == rec.quality.value
            )
        labels = {k.value: v for k, v in rec.image_labels.items()}
        if rec.instances_complete or rec.quality is PhotoQuality.NO_DEVICE:  # no device: no defect
            present = {i.type.value for i in rec.instances}
            labels = {name: name in present for name in DEFECT_CHANNELS} | labels
        peak = probs.reshape(len(DEFECT_CHANNELS), -1).max(axis=1)
        for name, present in labels.items():
            image_scores[(rec.source, name)].append((float(peak[DEFECT_CHANNELS.index(name)]), bool(present)))
        errors = sum(1 for m in res.matches if m.pred is None or m.gt is None)
        photos.append(
            {
                "image": str(pred.item.manifest.parent / rec.image),
                "manifest": str(pred.item.manifest),
                "device_id": rec.device_id,
                "source": rec.source,
                "instance_errors": errors,
                "n_pred": len(res.instances),
                "n_true": len(rec.instances),
                "peak": {n: float(peak[i]) for i, n in enumerate(DEFECT_CHANNELS)},
            }
        )
        matches += res.matches
        res.pred = _Light(pred.item)  # drop arrays; grading needs only the record
        results.append(res)

    metrics: dict = {"n_photos": len(items), "model": str(model_path), "kind": predictor.kind}
    metrics["scale_source"] = dict(scale_sources)
    metrics["instances"] = prf(matches)
    seen = union > 0
    metrics["pixel_iou"] = {DEFECT_CHANNELS[d]: float(inter[d] / union[d]) for d in np.flatnonzero(seen)}
    metrics["zone_iou"] = {ZONE_CHANNELS[c]: float(zi[c] / zu[c]) for c in range(len(ZONE_CHANNELS)) if zu[c]}
    metrics["zone_miou"] = float(np.mean(list(metrics["zone_iou"].values()))) if zu.any() else float("nan")
    metrics["view_accuracy"] = float(np.mean(view_ok)) if view_ok else float("nan")
    metrics["quality_accuracy"] = float(np.mean(quality_ok)) if quality_ok else float("nan")
    le = length_errors(matches, ("scratch",))
    rel = [abs(m - t) / t for t, m in le]
    metrics["scratch_length"] = {
        "n": len(le),
        "median_rel_error": float(np.median(rel)) if rel else float("nan"),
        "median_abs_error_mm": float(np.median([abs(m - t) for t, m in le])) if le else float("nan"),
        "pairs": [[round(t, 3), round(m, 3)] for t, m in le],
    }
    auroc = {}
    for (source, name), pairs in sorted(image_scores.items()):
        y = np.array([p for _, p in pairs])
        if y.all() or not y.any():
            continue
        auroc[f"{source}/{name}"] = {
            "auroc": float(roc_auc_score(y, [s for s, _ in pairs])),
            "n": len(y),
            "positives": int(y.sum()),
        }
    metrics["image_auroc"] = auroc
    rows = grade_devices(results, list_standards(), predictor.thresholds.grade_calibration)
    grades = {}
    for std in sorted({r["standard"] for r in rows}):
        names = load_standard(std).grade_names
        sub = [r for r in rows if r["standard"] == std]
        t_idx = [names.index(r["true"]) for r in sub]
        p_idx = [names.index(r["pred"]) for r in sub]
        cm = np.zeros((len(names), len(names)), int)
        for a, b in zip(t_idx, p_idx, strict=True):
            cm[a, b] += 1
        conf = np.array([r["confidence"] for r in sub])
        correct = np.array(t_idx) == np.array(p_idx)
        e, bins = ece(conf, correct.astype(float))
        auto = conf >= predictor.thresholds.needs_review_below
        rule_conf = np.array([r["rule_confidence"] for r in sub])
        rule_ece, rule_bins = ece(rule_conf, correct.astype(float))
        with warnings.catch_warnings():  # one grade only on both sides: kappa is undefined (nan, reported)
            warnings.simplefilter("ignore")
            qwk = cohen_kappa_score(t_idx, p_idx, weights="quadratic", labels=list(range(len(names))))
        grades[std] = {
            "devices": len(sub),
            "accuracy": float(correct.mean()),
            "qwk": float(qwk) if qwk == qwk else float("nan"),
            "ece": e,
            # The rules' probabilities before the card's grade calibration (the same as `ece`
            # without one): what the calibration corrected.
            "rule_ece": rule_ece,
            "rule_reliability": rule_bins,
            "calibrated": std in predictor.thresholds.grade_calibration,
            "labels": list(names),
            "confusion": cm.tolist(),
            "reliability": bins,
            "coverage": coverage_curve(conf, correct.astype(float)),
            # How well each probability ranks the devices a person need not check.
            "selective_accuracy": selective_accuracy(conf, correct),
            "rule_selective_accuracy": selective_accuracy(rule_conf, correct),
            # What the needs-review flag does at the card's threshold: the share graded without a
            # person, and how often those grades are right.
            "auto_share": float(auto.mean()),
            "auto_accuracy": float(correct[auto].mean()) if auto.any() else float("nan"),
        }
    metrics["grades"] = grades
    metrics["ms_per_photo"] = (
        float(np.median(predictor.seconds) * 1000) if predictor.seconds else float("nan")
    )
    metrics["thresholds"] = predictor.thresholds.model_dump(mode="json")
    metrics["crop_to_device"] = predictor.crop_to_device
    return metrics, photos, rows


class _Light:
    """Stands in for a Prediction after its arrays are dropped."""

    def __init__(self, item):
        self.item = item


def headline(metrics: dict) -> dict[str, float]:
    """The few numbers that go into the model card and the README."""
    out = {}
    g = metrics["grades"].get(HEADLINE_STANDARD)
    if g:
        out["bm_grade_accuracy"] = g["accuracy"]
        out["bm_qwk"] = g["qwk"]
        out["bm_ece"] = g["ece"]
        out["bm_rule_ece"] = g["rule_ece"]
        out["bm_auto_share"] = g["auto_share"]
        out["bm_auto_accuracy"] = g["auto_accuracy"]
    for key, v in metrics["image_auroc"].items():
        out[f"auroc_{key.replace('/', '_')}"] = v["auroc"]
    if metrics["scratch_length"]["n"]:
        out["scratch_length_median_rel_error"] = metrics["scratch_length"]["median_rel_error"]
    for k in ("zone_miou", "view_accuracy", "quality_accuracy", "ms_per_photo"):
        if metrics[k] == metrics[k]:
            out[k] = metrics[k]
    return out


def _fmt(x) -> str:
    if isinstance(x, float):
        return "n/a" if x != x else f"{x:.3f}"
    return str(x)


def _passes(metrics: dict) -> str:
    if not metrics.get("crop_to_device"):
        return "."
    return ", both passes: whole photo, then the device crop."


def write_report(metrics: dict, report_dir: Path, title: str, compare: dict | None = None) -> Path:
    from training import plots

    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "metrics.json").write_text(json.dumps(_nan_to_none(metrics), indent=2))
    lines = [
        f"# Evaluation: {title}",
        "",
        f"Model `{metrics['model']}` ({metrics['kind']}), "
        f"{metrics['n_photos']} photos. Scale source per photo: {metrics['scale_source']}.",
        "",
    ]
    lines += ["## Headline", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in headline(metrics).items()]
    if compare is not None:
        a, b = headline(metrics), headline(compare)
        lines += [
            "",
            f"## Compared with `{compare['model']}` ({compare['kind']})",
            "",
            "| metric | this model | compared | difference |",
            "| --- | --- | --- | --- |",
        ]
        for k in a:
            if k in b:
                lines.append(f"| {k} | {_fmt(a[k])} | {_fmt(b[k])} | {_fmt(a[k] - b[k])} |")
    inst = metrics["instances"]
    if inst:
        lines += [
            "",
            "## Defect instances (matched by dilated-mask IoU >= 0.2) and soft pixel IoU",
            "",
            "| type | precision | recall | F1 | TP | FP | FN | pixel IoU |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for t, v in inst.items():
            lines.append(
                f"| {t} | {_fmt(v['precision'])} | {_fmt(v['recall'])} | {_fmt(v['f1'])} | {v['tp']} | "
                f"{v['fp']} | {v['fn']} | {_fmt(metrics['pixel_iou'].get(t, float('nan')))} |"
            )
        plots.plot_bars(
            {t: {k: v[k] for k in ("precision", "recall", "f1")} for t, v in inst.items()},
            "instances per defect type",
            report_dir / "instances.png",
        )
        lines += ["", "![instances](instances.png)"]
    lines += [
        "",
        "## Zones, view, photo quality",
        "",
        f"Zone mIoU {_fmt(metrics['zone_miou'])} ({', '.join(f'{k} {v:.3f}' for k, v in metrics['zone_iou'].items())}); "
        f"view accuracy {_fmt(metrics['view_accuracy'])}; quality accuracy {_fmt(metrics['quality_accuracy'])}.",
    ]
    sl = metrics["scratch_length"]
    lines += [
        "",
        "## Scratch length (synthetic photos, true length known)",
        "",
        f"{sl['n']} matched scratches: median relative error {_fmt(sl['median_rel_error'])}, "
        f"median absolute error {_fmt(sl['median_abs_error_mm'])} mm.",
    ]
    if sl["n"]:
        # The target is a 15% median error: the band shows which scratches meet it.
        plots.plot_measured_vs_true(sl["pairs"], 0.15, "scratch length", report_dir / "length_error.png")
        lines += ["", "![length error](length_error.png)"]
    if metrics["image_auroc"]:
        lines += [
            "",
            "## Image-level AUROC (score = highest pixel probability of the type)",
            "",
            "| source / type | AUROC | photos | positives |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {k} | {_fmt(v['auroc'])} | {v['n']} | {v['positives']} |"
            for k, v in metrics["image_auroc"].items()
        ]
    for std, g in metrics["grades"].items():
        lines += [
            "",
            f"## Grades: {std} ({g['devices']} devices)",
            "",
            f"Accuracy {_fmt(g['accuracy'])}, quadratic weighted kappa {_fmt(g['qwk'])}, ECE {_fmt(g['ece'])}"
            + (
                f" (grade probabilities calibrated on validation devices; the rules' own: ECE {_fmt(g['rule_ece'])})."
                if g.get("calibrated")
                else " (the rules' probabilities; the card has no grade calibration for this standard)."
            ),
            "",
            f"At the card's needs-review threshold ({metrics['thresholds'].get('needs_review_below')}): "
            f"{_fmt(g['auto_share'])} of devices graded without review, {_fmt(g['auto_accuracy'])} of those right. "
            "Accuracy of the most confident 10% / 25% / 50% of devices: "
            + " / ".join(_fmt(v) for v in g["selective_accuracy"].values())
            + (
                " (ranked by the rules' own probability: "
                + " / ".join(_fmt(v) for v in g["rule_selective_accuracy"].values())
                + ")."
                if g.get("calibrated")
                else "."
            ),
        ]
        plots.plot_confusion(
            np.array(g["confusion"]),
            g["labels"],
            f"{std}: true vs predicted",
            report_dir / f"confusion_{std}.png",
        )
        plots.plot_reliability(
            g["reliability"],
            g["ece"],
            f"{std}: reliability",
            report_dir / f"reliability_{std}.png",
            (g["rule_reliability"], g["rule_ece"]) if g.get("calibrated") else None,
        )
        chosen = metrics["thresholds"].get("needs_review_below")
        plots.plot_coverage(g["coverage"], chosen, report_dir / f"coverage_{std}.png")
        lines += [
            "",
            f"![confusion](confusion_{std}.png) ![reliability](reliability_{std}.png) ![coverage](coverage_{std}.png)",
        ]
    lines += [
        "",
        "## Thresholds used (from the model card / checkpoint calibration)",
        "",
        "```json",
        json.dumps(metrics["thresholds"], indent=2),
        "```",
        "",
        f"Inference: median {_fmt(metrics['ms_per_photo'])} ms per photo in batches of 8 during this run "
        "(see benchmarks/bench_model.py for controlled timings)" + _passes(metrics),
    ]
    path = report_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_evaluation(
    model_path: str | Path,
    manifests: list[str],
    report_dir: str | Path,
    splits: tuple[str, ...] = ("test",),
    compare: str | Path | None = None,
    limit: int | None = None,
) -> dict:
    report_dir = Path(report_dir)
    metrics, photos, rows = compute_metrics(model_path, manifests, splits, limit)
    other = compute_metrics(compare, manifests, splits, limit)[0] if compare else None
    if other is not None:
        metrics["compared"] = {"model": str(compare), "headline": headline(other)}
    write_report(metrics, report_dir, Path(model_path).name, other)
    report_dir.mkdir(parents=True, exist_ok=True)
    with (report_dir / "photos.jsonl").open("w") as fh:
        for p in photos:
            fh.write(json.dumps(p) + "\n")
    # The rules' full probability vectors stay out of the committed file: the confidences suffice.
    slim = [{k: v for k, v in r.items() if k != "rule_probabilities"} for r in rows]
    (report_dir / "grades.json").write_text(json.dumps(slim, indent=1))
    return metrics
