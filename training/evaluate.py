"""`refurbgrade evaluate`: a model (checkpoint or ONNX) on a manifest -> metrics.json, photos.jsonl, grades.json.

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

This module computes them: one accumulator per per-photo figure, fed photo by photo so a big test set
keeps memory flat, then the grade figures per standard from the device rows. The markdown report and
its plots are `training.report`'s.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from model.card import Thresholds
from model.outputs import DEFECT_CHANNELS, QUALITY_CLASSES, VIEW_CLASSES, ZONE_CHANNELS
from model.rules import list_standards, load_standard
from model.taxonomy import PhotoQuality
from training.dataset import IGNORE, build_targets, has_zone_truth, load_manifest_args
from training.machine import cpu_line
from training.metrics import (
    Match,
    ScoredPhoto,
    coverage_curve,
    ece,
    grade_devices,
    is_right,
    length_errors,
    photo_result,
    prf,
    selective_accuracy,
)
from training.predict import Prediction, load_predictor, predict
from training.report import headline, write_report


def _pool(mask: np.ndarray, s: int) -> np.ndarray:
    S = mask.shape[0]
    return mask.reshape(S // s, s, S // s, s, -1).astype(np.float32).mean(axis=(1, 3)).transpose(2, 0, 1)


LONG_LIST = 16


def _summarised(x):
    """`x` with every list of more than `LONG_LIST` numbers (a zone-damage model's or a photo probe's
    weights, means and scales: 1732 each) replaced by a note of its length: the report shows which
    thresholds were used, the card holds the fitted models whole."""
    if isinstance(x, dict):
        return {k: _summarised(v) for k, v in x.items()}
    if isinstance(x, list):
        if len(x) > LONG_LIST and all(isinstance(v, int | float) for v in x):
            return f"{len(x)} numbers (in the model card)"
        return [_summarised(v) for v in x]
    return x


def _nan_to_none(x):
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    if isinstance(x, float) and x != x:
        return None
    return x


def _mean(flags: list[bool]) -> float:
    return float(np.mean(flags)) if flags else float("nan")


class SoftPixelIoU:
    """Per defect type, sum of min / sum of max of probability and coverage target over the photos
    whose masks know that type (threshold-free, as trained)."""

    def __init__(self):
        self.inter = np.zeros(len(DEFECT_CHANNELS))
        self.union = np.zeros(len(DEFECT_CHANNELS))

    def add(self, probs: np.ndarray, target: np.ndarray, valid: np.ndarray) -> None:
        for d in np.flatnonzero(valid):
            self.inter[d] += np.minimum(probs[d], target[d]).sum()
            self.union[d] += np.maximum(probs[d], target[d]).sum()

    def result(self) -> dict[str, float]:
        seen = self.union > 0
        return {DEFECT_CHANNELS[d]: float(self.inter[d] / self.union[d]) for d in np.flatnonzero(seen)}


class ZoneIoU:
    """Per zone, IoU of the arg-max zone map with the known zone pixels, at mask cell centres."""

    def __init__(self):
        self.inter = np.zeros(len(ZONE_CHANNELS))
        self.union = np.zeros(len(ZONE_CHANNELS))

    def add(self, zone_probs: np.ndarray, zone: np.ndarray) -> None:
        known = zone != IGNORE
        if not known.any():
            return
        zp = zone_probs.argmax(axis=0)
        for c in range(len(ZONE_CHANNELS)):
            self.inter[c] += ((zp == c) & (zone == c) & known).sum()
            self.union[c] += (((zp == c) | (zone == c)) & known).sum()

    def result(self) -> dict[str, float]:
        return {
            ZONE_CHANNELS[c]: float(self.inter[c] / self.union[c])
            for c in range(len(ZONE_CHANNELS))
            if self.union[c]
        }

    def mean(self) -> float:
        return float(np.mean(list(self.result().values()))) if self.union.any() else float("nan")


class ImageAUROC:
    """Per (source, defect type), a score of the photo against its image-level truth: the peak pixel
    probability of the type, or (`graded_scores`) what the rules see of it."""

    def __init__(self):
        self.scores: dict[tuple[str, str], list[tuple[float, bool]]] = defaultdict(list)

    def add(self, source: str, labels: dict[str, bool], peak: np.ndarray) -> None:
        for name, present in labels.items():
            self.scores[(source, name)].append((float(peak[DEFECT_CHANNELS.index(name)]), bool(present)))

    def result(self) -> dict[str, dict]:
        from sklearn.metrics import roc_auc_score

        auroc = {}
        for (source, name), pairs in sorted(self.scores.items()):
            y = np.array([p for _, p in pairs])
            if y.all() or not y.any():  # one class only: AUROC is undefined
                continue
            auroc[f"{source}/{name}"] = {
                "auroc": float(roc_auc_score(y, [s for s, _ in pairs])),
                "n": len(y),
                "positives": int(y.sum()),
            }
        return auroc


def graded_scores(instances) -> np.ndarray:
    """Per defect channel, the highest confidence among the photo's defects of that type (0 without one):
    what the rules see, and how `benchmarks/bench_real.py` scores a photo too. The peak pixel is not what grades a
    glass zone: its crack is the zone-damage model's probability (`model.damage`), with the crack map's
    fragments as evidence. On phones_web's 128 validation photos the two rank cracked phones above
    intact ones with an AUROC of 0.82 and 0.99."""
    out = np.zeros(len(DEFECT_CHANNELS))  # float64: the confidences as given, no ties made by rounding
    for inst in instances:
        if inst.role == "defect":
            k = DEFECT_CHANNELS.index(inst.type.value)
            out[k] = max(out[k], inst.confidence)
    return out


def image_labels(pred: Prediction) -> dict[str, bool]:
    """Image-level truth per defect type: the record's own, plus every type's presence where the
    instance labels are complete (or there is no device, so no defect)."""
    rec = pred.item.record
    labels = {k.value: v for k, v in rec.image_labels.items()}
    if rec.instances_complete or rec.quality is PhotoQuality.NO_DEVICE:
        present = {i.type.value for i in rec.instances}
        labels = {name: name in present for name in DEFECT_CHANNELS} | labels
    return labels


def scratch_length_metrics(matches: list[Match]) -> dict:
    le = length_errors(matches, ("scratch",))
    rel = [abs(m - t) / t for t, m in le]
    return {
        "n": len(le),
        "median_rel_error": float(np.median(rel)) if rel else float("nan"),
        "median_abs_error_mm": float(np.median([abs(m - t) for t, m in le])) if le else float("nan"),
        "pairs": [[round(t, 3), round(m, 3)] for t, m in le],
    }


def without_review(rows: list[dict], thresholds: Thresholds) -> np.ndarray:
    """Which of `rows` the card grades without review: each device against its own kind's threshold
    (a device the fine pass read has its own, `Thresholds.grading`)."""
    below = {fine: thresholds.grading(fine)[1] for fine in (False, True)}
    conf = np.array([r["confidence"] for r in rows])
    return conf >= np.array([below[bool(r.get("fine"))] for r in rows])


def grade_metrics(rows: list[dict], thresholds: Thresholds) -> dict[str, dict]:
    """Per standard, from `grade_devices` rows: accuracy, kappa, calibration and what the card's
    needs-review threshold does."""
    from sklearn.metrics import cohen_kappa_score

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
        auto = without_review(sub, thresholds)
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
            "calibrated": std in thresholds.grade_calibration,
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
            # Devices the fine pass read: graded by the card's fine grading where it has one.
            "fine_share": float(np.mean([bool(r.get("fine")) for r in sub])),
        }
    return grades


def real_grade_metrics(rows: list[dict], thresholds: Thresholds, source_of: dict[str, str]) -> dict:
    """Per real source (and "all"), per standard, from `grade_devices` rows with set labels (real photos
    known only to be cracked, worn or intact: `training.metrics.truth_grades`): the devices, the share
    whose grade is one of its set, the mean probability given to the grade, and at the card's review
    threshold the share graded without review and how often those are right. The probability is the
    grade's, the share right its set's: where a set holds several grades (an intact phone may be CTIA A,
    B or C) a calibrated probability is below the share right, never above it."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[source_of[r["device"]]].append(r)
        groups["all"].append(r)
    out: dict[str, dict] = {}
    for src in sorted(groups, key=lambda s: (s == "all", s)):
        out[src] = {}
        for std in sorted({r["standard"] for r in groups[src]}):
            sub = [r for r in groups[src] if r["standard"] == std]
            right = np.array([is_right(r) for r in sub])
            conf = np.array([r["confidence"] for r in sub])
            auto = without_review(sub, thresholds)
            out[src][std] = {
                "devices": len(sub),
                "right": float(right.mean()),
                "mean_probability": float(conf.mean()),
                "auto_share": float(auto.mean()),
                "auto_right": float(right[auto].mean()) if auto.any() else float("nan"),
            }
    return out


def photo_row(pred: Prediction, res: ScoredPhoto, peak: np.ndarray) -> dict:
    """One photos.jsonl line, for error analysis."""
    rec = pred.item.record
    return {
        "image": str(pred.item.manifest.parent / rec.image),
        "manifest": str(pred.item.manifest),
        "device_id": rec.device_id,
        "source": rec.source,
        "instance_errors": sum(1 for m in res.matches if m.pred is None or m.gt is None),
        "n_pred": len(res.instances),
        "n_true": len(rec.instances),
        "peak": {n: float(peak[i]) for i, n in enumerate(DEFECT_CHANNELS)},
    }


def compute_metrics(
    model_path: str | Path, manifests: list[str], splits: tuple[str, ...], limit: int | None = None
):
    """All metrics, plus per-photo rows (for error analysis) and the device grade rows. `manifests`:
    `PATH` or `PATH@train,val` (`training.dataset.parse_manifest_arg`); `splits` is the default."""
    predictor = load_predictor(model_path)
    stride = predictor.mask_stride
    items = load_manifest_args(manifests, splits)
    if limit:
        items = items[:limit]
    if not items:
        raise ValueError(f"no records in splits {splits} of {manifests}")
    pixel_iou, zone_iou, auroc, auroc_graded = SoftPixelIoU(), ZoneIoU(), ImageAUROC(), ImageAUROC()
    view_ok, quality_ok = [], []
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
        probs = pred.outputs["defect_probs"]
        pixel_iou.add(probs, _pool(t["defects"], stride), t["pixel_valid"])  # coverage, as trained
        if has_zone_truth(rec):  # not a photo whose only known zone is the letterbox padding
            zone_iou.add(pred.outputs["zone_probs"], t["zone"][stride // 2 :: stride, stride // 2 :: stride])
        if rec.view:
            view_ok.append(VIEW_CLASSES[int(pred.outputs["view_probs"].argmax())] == rec.view.value)
        if rec.quality:
            quality_ok.append(
                QUALITY_CLASSES[int(pred.outputs["quality_probs"].argmax())] == rec.quality.value
            )
        peak = probs.reshape(len(DEFECT_CHANNELS), -1).max(axis=1)
        labels = image_labels(pred)
        auroc.add(rec.source, labels, peak)
        auroc_graded.add(rec.source, labels, graded_scores(res.instances))
        photos.append(photo_row(pred, res, peak))
        matches += res.matches
        res.pred = _Light(pred.item)  # drop arrays; grading needs only the record
        results.append(res)

    t = predictor.thresholds
    # Real photos known only to be cracked or not are graded too (set labels), and reported apart.
    rows = grade_devices(
        results,
        list_standards(),
        t.grading(False)[0],
        listability=True,
        fine_calibration=t.grading(True)[0],
    )
    real_rows, rows = [r for r in rows if r.get("real")], [r for r in rows if not r.get("real")]
    source_of = {r.pred.item.record.device_id: r.pred.item.record.source for r in results}
    metrics = {
        "n_photos": len(items),
        "model": str(model_path),
        "kind": predictor.kind,
        "scale_source": dict(scale_sources),
        "instances": prf(matches),
        "pixel_iou": pixel_iou.result(),
        "zone_iou": zone_iou.result(),
        "zone_miou": zone_iou.mean(),
        "view_accuracy": _mean(view_ok),
        "quality_accuracy": _mean(quality_ok),
        "scratch_length": scratch_length_metrics(matches),
        "image_auroc": auroc.result(),
        "image_auroc_graded": auroc_graded.result(),
        "grades": grade_metrics(rows, predictor.thresholds),
        "real_grades": real_grade_metrics(real_rows, predictor.thresholds, source_of),
        "ms_per_photo": float(np.median(predictor.seconds) * 1000) if predictor.seconds else float("nan"),
        "machine": cpu_line(),  # what ms_per_photo is of: the same file ran 3.5x slower on another CPU
        "thresholds": _summarised(predictor.thresholds.model_dump(mode="json")),
        "crop_to_device": predictor.crop_to_device,
        "crop_upright": predictor.crop_upright,
    }
    return metrics, photos, rows


class _Light:
    """Stands in for a Prediction after its arrays are dropped."""

    def __init__(self, item):
        self.item = item


def run_evaluation(
    model_path: str | Path,
    manifests: list[str],
    report_dir: str | Path,
    splits: tuple[str, ...] = ("test",),
    compare: str | Path | None = None,
    limit: int | None = None,
) -> dict:
    """Metrics of `model_path` (and `compare`, for its headline) written to `report_dir`: metrics.json,
    photos.jsonl, grades.json and the report (`training.report.write_report`)."""
    report_dir = Path(report_dir)
    metrics, photos, rows = compute_metrics(model_path, manifests, splits, limit)
    other = compute_metrics(compare, manifests, splits, limit)[0] if compare else None
    if other is not None:
        metrics["compared"] = {"model": str(compare), "headline": headline(other)}
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "metrics.json").write_text(json.dumps(_nan_to_none(metrics), indent=2))
    write_report(metrics, report_dir, Path(model_path).name, other)
    with (report_dir / "photos.jsonl").open("w") as fh:
        for p in photos:
            fh.write(json.dumps(p) + "\n")
    # The rules' full probability vectors stay out of the committed file: the confidences suffice.
    slim = [{k: v for k, v in r.items() if k != "rule_probabilities"} for r in rows]
    (report_dir / "grades.json").write_text(json.dumps(slim, indent=1))
    return metrics
