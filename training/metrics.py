"""Evaluation metrics, numpy/sklearn only: instance matching, measurement error, grades, calibration.

Shared by calibration (thresholds on validation data) and the evaluation report, so both judge the
model on the same definitions:

- instances: serving's instances (`model.postprocess.extract_instances`) are rasterised back into the
  model frame and matched greedily, per defect type, to ground-truth instances by mask IoU after both
  are dilated by the mask stride (a stride-s mask cannot place an edge better than s pixels, and a
  hairline's true mask is thinner than one cell); a match needs IoU >= `MATCH_IOU`;
- scale: from the device outline and the catalogue length when the device model is known (what serving
  does); otherwise from the record's true mm per pixel (flagged in the report);
- grades: all photos of a device pooled, graded by `model.rules.grade`, compared to the manifest's grades.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

import cv2
import numpy as np

from model.damage import glass_zones
from model.display import is_lit, lit_share
from model.fine_instances import photo_instances
from model.instances import DefectInstance
from model.manifest import resolve
from model.outputs import network_view
from model.plane import view_share
from model.postprocess import Scale, estimate_scale
from model.preprocess import Letterbox
from model.rules.calibration import GradeCalibration
from model.taxonomy import DefectType, View
from training.dataset import catalogue_length, letterbox_mask, polygon_to_model, read_mask

MATCH_IOU = 0.2


@dataclass
class GtInstance:
    type: str
    mask: np.ndarray  # bool, model-input frame
    length_mm: float | None
    zone: str | None = None
    photo_step: float | None = None  # how much the photo shows it (`training.synth.shown`), if measured
    index: int | None = None  # its place in the record's instances


def gt_instances(pred, size: int) -> list[GtInstance]:
    out = []
    for k, inst in enumerate(pred.item.record.instances):
        if inst.mask is not None:
            m = (read_mask(resolve(pred.item.manifest, inst.mask)) > 0).astype(np.uint8)
            mask = letterbox_mask(m, pred.lb, size).astype(bool)
        else:
            layer = np.zeros((size, size), np.uint8)
            cv2.fillPoly(layer, [polygon_to_model(inst.polygon, pred.lb)], 1)
            mask = layer.astype(bool)
        if mask.any():
            zone = inst.zone.value if inst.zone is not None else None
            out.append(GtInstance(inst.type.value, mask, inst.length_mm, zone, inst.photo_step, k))
    return out


def instance_mask(inst: DefectInstance, lb: Letterbox, size: int) -> np.ndarray:
    layer = np.zeros((size, size), np.uint8)
    pts = polygon_to_model(inst.polygon, lb)
    cv2.fillPoly(layer, [pts], 1)
    cv2.polylines(layer, [pts], True, 1)  # thin outlines have no interior
    return layer.astype(bool)


def photo_scale(pred, size: int, view: View | None = None) -> tuple[Scale, str]:
    """The photo's scale as serving measures it for the device its record names, against the side
    `view` shows (`model.plane.view_share`; the network's view, as `photo_result` grades it)."""
    rec = pred.item.record
    length = catalogue_length(rec)
    kind = rec.device_kind or "phone"
    if length is not None:
        share = view_share(view, kind, rec.device_model)
        return estimate_scale(pred.outputs["zone_probs"], pred.lb, size, length, share), "catalogue"
    if rec.mm_per_px:
        return Scale("mm", rec.mm_per_px, True), "true"
    share = view_share(view, kind)
    return estimate_scale(pred.outputs["zone_probs"], pred.lb, size, None, share), "relative"


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)


@dataclass
class Match:
    type: str
    pred: DefectInstance | None
    gt: GtInstance | None


def match_instances(
    preds: list[DefectInstance], pred_masks: list[np.ndarray], gts: list[GtInstance], radius: int
) -> list[Match]:
    """Greedy per-type matching by dilated-mask IoU; unmatched preds are FPs, unmatched GTs FNs."""
    out: list[Match] = []
    types = {p.type.value for p in preds} | {g.type for g in gts}
    for t in types:
        pi = [i for i, p in enumerate(preds) if p.type.value == t]
        gi = [j for j, g in enumerate(gts) if g.type == t]
        pd = {i: dilate(pred_masks[i], radius) for i in pi}
        gd = {j: dilate(gts[j].mask, radius) for j in gi}
        pairs = []
        for i in pi:
            for j in gi:
                inter = (pd[i] & gd[j]).sum()
                if inter:
                    pairs.append((inter / (pd[i] | gd[j]).sum(), i, j))
        used_p, used_g = set(), set()
        for iou, i, j in sorted(pairs, reverse=True):
            if iou < MATCH_IOU or i in used_p or j in used_g:
                continue
            used_p.add(i)
            used_g.add(j)
            out.append(Match(t, preds[i], gts[j]))
        out += [Match(t, preds[i], None) for i in pi if i not in used_p]
        out += [Match(t, None, gts[j]) for j in gi if j not in used_g]
    return out


@dataclass
class ScoredPhoto:
    """One photo judged against its labels: serving's instances from the network's outputs, and their
    matches to the true instances (none where the photo has no instance labels). Not serving's
    `PhotoResult`, which is what a grading request returns for a photo."""

    pred: object  # the `training.predict.Prediction` (evaluation swaps in a light stand-in)
    instances: list[DefectInstance]
    matches: list[Match] = field(default_factory=list)
    scale_source: str = ""
    fine: bool = False  # the fine pass read the photo (`Thresholds.fine_grading` then grades its device)


def _lit(pred) -> float | None:
    """The photo's screen lit share, as the fine pass's step measured it where it did (evaluation's
    light stand-in for a prediction keeps no `Inferred`)."""
    inferred = getattr(pred, "inferred", None)
    lit = getattr(inferred, "lit", None)
    return lit if lit is not None else lit_share(pred.image, pred.outputs["zone_probs"])


def photo_result(pred, thresholds, stride: int, photo_index: int = 0) -> ScoredPhoto:
    """`pred` through serving's post-processing at `thresholds`, matched to its true instances. The
    view is the network's, as serving takes it when the caller names none (zones follow the view)."""
    size = pred.size  # the frame the outputs are in
    view = network_view(pred.outputs)
    scale, source = photo_scale(pred, size, view)
    fine = getattr(pred.inferred, "fine", None)
    insts = photo_instances(
        pred.outputs,
        pred.lb,
        size,
        thresholds,
        scale,
        photo_index,
        view,
        fine=fine,
        glass=glass_zones(pred.item.record.device_kind),
        lit=view is View.FRONT and is_lit(_lit(pred)),
    )
    res = ScoredPhoto(pred, insts, scale_source=source, fine=fine is not None)
    rec = pred.item.record
    # Only photos with instance labels are matched: a photo with image labels alone (MSD, phones_web)
    # would add false instances of the types it lacks and none of those it shows.
    if rec.instances_complete or rec.instances:
        gts = gt_instances(pred, size)
        masks = [instance_mask(i, pred.lb, size) for i in insts]
        res.matches = judged(match_instances(insts, masks, gts, radius=stride), gts, rec)
    return res


def judged(matches: list[Match], gts: list[GtInstance], record) -> list[Match]:
    """The matches of a photo that say something. With incomplete labels an unmatched prediction of a
    type nobody annotated on the photo is not known to be wrong, and is left out; of a type the photo is
    known not to show (its image label False: laptop_scratch's lids are not cracked), it is wrong."""
    if record.instances_complete:
        return matches
    annotated = {g.type for g in gts} | {t.value for t, present in record.image_labels.items() if not present}
    return [m for m in matches if m.gt is not None or m.type in annotated]


def prf(matches: list[Match]) -> dict[str, dict[str, float]]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # tp, fp, fn
    for m in matches:
        c = counts[m.type]
        if m.pred is not None and m.gt is not None:
            c[0] += 1
        elif m.pred is not None:
            c[1] += 1
        else:
            c[2] += 1
    out = {}
    for t, (tp, fp, fn) in sorted(counts.items()):
        p = tp / (tp + fp) if tp + fp else float("nan")
        r = tp / (tp + fn) if tp + fn else float("nan")
        f = 2 * p * r / (p + r) if tp else 0.0
        out[t] = {"precision": p, "recall": r, "f1": f, "tp": tp, "fp": fp, "fn": fn}
    return out


def length_errors(matches: list[Match], types=("scratch",)) -> list[tuple[float, float]]:
    """(true mm, measured mm) of matched instances of `types` whose true length is known."""
    return [
        (m.gt.length_mm, m.pred.measurement.length)
        for m in matches
        if m.pred is not None
        and m.gt is not None
        and m.type in types
        and m.gt.length_mm
        and m.pred.measurement.units == "mm"
    ]


def ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> tuple[float, list[dict]]:
    bins = []
    total = 0.0
    edges = np.linspace(0, 1, n_bins + 1)
    for lo, hi in itertools.pairwise(edges):
        sel = (confidence > lo) & (confidence <= hi) if lo > 0 else (confidence >= lo) & (confidence <= hi)
        n = int(sel.sum())
        if n:
            acc, conf = float(correct[sel].mean()), float(confidence[sel].mean())
            total += n / len(confidence) * abs(acc - conf)
        else:
            acc = conf = float("nan")
        bins.append({"lo": float(lo), "hi": float(hi), "n": n, "accuracy": acc, "confidence": conf})
    return float(total), bins


def coverage_curve(confidence: np.ndarray, correct: np.ndarray) -> list[dict]:
    """Graded-without-review share and its accuracy, for each needs-review threshold."""
    out = []
    for t in np.round(np.arange(0.3, 1.0001, 0.02), 2):
        keep = confidence >= t
        out.append(
            {
                "threshold": float(t),
                "coverage": float(keep.mean()) if len(keep) else 0.0,
                "accuracy": float(correct[keep].mean()) if keep.any() else float("nan"),
            }
        )
    return out


def selective_accuracy(confidence: np.ndarray, correct: np.ndarray, shares=(0.1, 0.25, 0.5)) -> dict:
    """Accuracy of the most confident `share` of devices, for each share: how well a confidence ranks
    the grades a person need not check. Ties keep the devices' order (a stable sort), so a
    confidence that is 1.0 for many devices gains nothing from the tie."""
    order = np.argsort(-np.asarray(confidence), kind="stable")
    out = {}
    for share in shares:
        n = max(int(share * len(order)), 1)
        out[str(share)] = float(np.asarray(correct)[order[:n]].mean()) if len(order) else float("nan")
    return out


def pick_review_threshold(curve: list[dict], target_accuracy: float = 0.95) -> float:
    """Lowest threshold (most coverage) whose accepted photos reach `target_accuracy`; where none
    does, 1.0: every grading goes to review, since no threshold keeps the promise on validation (it
    was 0.95, which let through the gradings above it however often they were wrong)."""
    ok = [c for c in curve if c["accuracy"] == c["accuracy"] and c["accuracy"] >= target_accuracy]
    return min(c["threshold"] for c in ok) if ok else 1.0


def true_grades(record) -> dict[str, str]:
    """A record's true grade per standard, under the rules as they are now. A generated photo stores
    the grades the rules of its day gave its defects; every one of its defects is labelled with its
    true size (`instances_complete`, each with `length_mm`), so its grades are those defects graded
    again, exactly as the generator graded them (`training.synth.generator.grade_all`): a change of
    the rules (Back Market 2026.12.2 let Fair have body scratches of any length) then needs no new
    sets. Any other record (composites, real photos) keeps the grades it stores."""
    if not record.grades or not record.instances_complete:
        return dict(record.grades)
    if any(i.length_mm is None or i.zone is None for i in record.instances):
        return dict(record.grades)
    from model.instances import mm
    from model.rules import grade

    insts = [mm(i.type, i.zone, i.length_mm, i.width_mm or 0.0, i.area_mm2) for i in record.instances]
    kind = record.device_kind or "phone"
    return {std: grade(insts, std, device_kind=kind).grade for std in record.grades}


# A crack across a phone's screen: long enough that no limit on length lets it pass as a lesser defect.
ONE_CRACK_MM = 40.0


@cache
def listable_grades(standard: str) -> tuple[str, ...]:
    """The grades a worn device known not to be cracked may have: the listable ones (CTIA's D and R2's C6
    too, which their standards give long scratches, heavy dents and chips as well as cracked glass)."""
    from model.rules import load_standard

    return tuple(g.name for g in load_standard(standard).grades if g.listable)


@cache
def uncracked_grades(standard: str) -> tuple[str, ...]:
    """The grades a device known to be intact (no cracked glass, no wear labelled) may have: those better
    than `cracked_grades`. Not the listable grades: CTIA's D and R2's C6 are listable, but on a photo
    that shows neither a crack nor wear they are wrong, and counting them right let the grade
    calibration move a real intact phone's A towards D (0.8 of its mass, fitted on the real photos
    alone): the likelihood of a set label cannot tell A from D, so nothing held the split."""
    from model.rules import load_standard

    std = load_standard(standard)
    return std.grade_names[: std.index(cracked_grades(standard)[0])]


# Real sets whose every photo shows a worn surface and no cracked glass (their data cards say so).
WORN_SOURCES = frozenset({"laptop_scratch"})


def real_truth(record) -> str | None:
    """What a real photo's labels say of its device: "cracked"; "worn" (crack known absent, a scratch,
    stain or smudge labelled: MSD's screens; every photo of a `WORN_SOURCES` set); "intact" (crack known
    absent, nothing else labelled); None where they say nothing a grade can be checked against: no crack
    label; a photo of no device (a generated one, `quality` no_device); or a composite's drawn wear (real
    screens and lids with generated stains and scratches, `GENERATED_DEFECT_SOURCES`), whose sizes the
    labels do not give: a drawn stain over 25 mm² on a screen is rightly Unlistable under Back Market's
    Fair, so "listable" would count those gradings wrong."""
    from model.taxonomy import PhotoQuality
    from training.damage import EXCLUSIVE_LABEL_SOURCES, GENERATED_DEFECT_SOURCES

    crack = record.image_labels.get(DefectType.CRACK)
    worn = any(v for k, v in record.image_labels.items() if k is not DefectType.CRACK)
    if record.quality is PhotoQuality.NO_DEVICE:
        return None
    if crack:
        return "cracked"
    if record.source in GENERATED_DEFECT_SOURCES:
        return None
    if record.source in WORN_SOURCES:
        return "worn"
    if crack is False or (record.source in EXCLUSIVE_LABEL_SOURCES and worn):
        return "worn" if worn else "intact"
    return None


def truth_grades(standard: str, truth: str) -> tuple[str, ...]:
    """The grades `standard` may give a real device whose labels say `truth` (`real_truth`)."""
    if truth == "cracked":
        return cracked_grades(standard)
    return listable_grades(standard) if truth == "worn" else uncracked_grades(standard)


@cache  # calibration asks once per real device and standard; the bundled standards do not change
def cracked_grades(standard: str) -> tuple[str, ...]:
    """The grades a device known only to have cracked glass may have: the best grade one crack across
    the screen leaves, and every worse one. Not simply the unlistable grades: Back Market bars any crack
    (Unlistable), but CTIA grades a cracked cover glass D and R2 grades cracked glass C6, both listable
    (E and C7 are a shattered screen). Taking the unlistable grades for CTIA and R2 counted every cracked
    phone graded D or C6 wrong, and the grade calibration learnt that those grades were right a
    quarter of the time or less."""
    from model.instances import mm
    from model.rules import grade, load_standard
    from model.taxonomy import Zone

    std = load_standard(standard)
    one_crack = grade([mm(DefectType.CRACK, Zone.SCREEN, ONE_CRACK_MM, 0.2)], std).grade
    return std.grade_names[std.index(one_crack) :]


def grade_devices(
    results: list[ScoredPhoto],
    standards: list[str],
    calibration: Mapping[str, GradeCalibration] | None = None,
    listability: bool = False,
    fine_calibration: Mapping[str, GradeCalibration] | None = None,
) -> list[dict]:
    """One row per device with true grades, per standard: the predicted grade and its probability
    (calibrated where `calibration`, the card's, has the standard, or `fine_calibration` for a device
    the fine pass read, `"fine": True`; see `calibrated_rows`) and the rules' own probabilities
    (`rule_probabilities`, what a calibration is fitted on).

    `listability`: also a row for each device known only to be cracked or not (real photos with an
    image-level crack label, `training.damage.zone_truth`), whose `true` is then the set of the
    standard's grades it may have (`truth_grades`: cracked, worn or intact), with `"real": True`; none
    for a device whose labels give nothing to check a grade against (`real_truth` None)."""
    from model.rules import grade
    from training.damage import zone_truth

    by_device: dict[str, list[ScoredPhoto]] = defaultdict(list)
    for r in results:
        by_device[r.pred.item.record.device_id].append(r)
    rows = []
    for device, photos in by_device.items():
        truth = {}
        for p in photos:
            truth.update(true_grades(p.pred.item.record))
        cracked = [t for p in photos for t in zone_truth(p.pred.item.record).values()]
        real = not truth and listability and bool(cracked)
        if real:
            # Cracked if any photo is; else no row where a photo's labels give nothing a grade can be
            # checked against (`real_truth`: no device, a composite's drawn wear); else worn if any
            # photo shows wear; else intact.
            labels = {real_truth(p.pred.item.record) for p in photos}
            if "cracked" in labels:
                kind_of = "cracked"
            elif None in labels:
                continue
            else:
                kind_of = "worn" if "worn" in labels else "intact"
            for std in standards:
                truth[std] = truth_grades(std, kind_of)
        if not truth:
            continue
        kind = next(
            (p.pred.item.record.device_kind for p in photos if p.pred.item.record.device_kind), "phone"
        )
        insts = [i.model_copy(update={"photo_index": k}) for k, p in enumerate(photos) for i in p.instances]
        for std in standards:
            if std not in truth:
                continue
            g = grade(insts, std, device_kind=kind)
            rows.append(
                {
                    "device": device,
                    "standard": std,
                    "true": truth[std],
                    "pred": g.grade,
                    "confidence": g.probabilities[g.grade],
                    "rule_confidence": g.probabilities[g.grade],
                    "rule_probabilities": g.probabilities,
                    "fine": any(getattr(p, "fine", False) for p in photos),
                    **({"real": True} if real else {}),
                }
            )
    return calibrated_rows(rows, calibration or {}, fine_calibration)


def is_right(row: dict) -> bool:
    """Whether a `grade_devices` row's grade is right: its true grade, or one of its set."""
    return row["pred"] == row["true"] if isinstance(row["true"], str) else row["pred"] in row["true"]


# The most one real device may weigh against a synthetic one. The devices the fine pass read on
# validation hold 3 real ones beside 126 synthetic: at equal totals each would count 42 times, three
# devices deciding for a hundred (one of them MSD's scratched phone, its 20 photos graded as one device
# and wrongly Unlistable). Capped, the fine grading fitted without seed 710 describes 710's fine-read
# devices better (ECE Back Market 0.129 -> 0.113, CTIA 0.158 -> 0.151, R2 0.212 -> 0.136; docs/fine-pass.md,
# session 47). The coarse calibration's real devices are about as many as its synthetic ones, under it.
MAX_REAL_WEIGHT = 5.0


def real_weights(rows: list[dict]) -> list[float]:
    """Weights that give a standard's real-photo rows (set labels) the same total as its other rows,
    so that real photos count as much as the synthetic devices however many of each there are, up to
    `MAX_REAL_WEIGHT` each: a handful of real devices must not decide for a hundred."""
    n_real = sum(1 for r in rows if r.get("real"))
    n_other = len(rows) - n_real
    if not n_real or not n_other:
        return [1.0] * len(rows)
    w = min(n_other / n_real, MAX_REAL_WEIGHT)
    return [w if r.get("real") else 1.0 for r in rows]


def calibrated_rows(
    rows: list[dict],
    calibration: Mapping[str, GradeCalibration],
    fine_calibration: Mapping[str, GradeCalibration] | None = None,
) -> list[dict]:
    """`grade_devices` rows with `confidence` the calibrated probability of the predicted grade where
    `calibration` has the standard (else the rules' own): no device is graded again. A row the fine
    pass read (`"fine"`) takes `fine_calibration` instead where one is given: a card's is
    `model.card.Thresholds.grading(fine=True)`, which falls back to the others standard by standard."""
    out = []
    for r in rows:
        by_standard = fine_calibration if r.get("fine") and fine_calibration is not None else calibration
        cal = by_standard.get(r["standard"])
        conf = cal.apply(r["rule_probabilities"])[r["pred"]] if cal is not None else r["rule_confidence"]
        out.append({**r, "confidence": conf})
    return out


def is_graded_type(t: str) -> bool:
    return DefectType(t) is not DefectType.SMUDGE
