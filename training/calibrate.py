"""Threshold calibration on validation data (never test data): what goes into the model card's `Thresholds`.

1. Defect pixel threshold per type: the probability cut whose instances best match the truth (F1,
   serving's post-processing, validation photos with instance labels).
2. Confidence per type (Platt scaling): serving's instances at those thresholds are matched to the
   truth; a temperature and an offset on each instance's peak logit, measured from the pixel
   threshold's logit, are fitted by grid search to minimise the log-loss of "this instance is real"
   (1 and 0, i.e. "above the threshold is a coin toss or better", where there are too few instances).
2b. The cuts of the most frequent types are then refined for validation grade accuracy (coordinate
   ascent, confidences refitted for each candidate; `refine_for_grades`).
3. Grade calibration per standard (`model.rules.calibration`): how often each grade is right given
   the rules' probabilities, fitted on the validation devices' grades (at least
   `MIN_CALIBRATION_DEVICES` of them), so a grade's probability means what it says.
4. needs_review_below: the lowest (calibrated) top-grade probability at which the devices graded
   without review reach `TARGET_ACCURACY` on validation devices (0.8 without graded validation devices).
5. Steps 3 and 4 apart for the devices the fine pass read (`model.card.FineGrading`): the fine pass
   finds hairlines the coarse pass cannot, so its gradings err differently. Fitted on the validation
   photos it read and on high-resolution validation devices (`fine_items`, config `data.fine_val`)
   that take part in nothing else: the pixel cuts stay those of the photos serving mostly sees.

`calibrate` returns the thresholds and the figures behind them; `calibrate_model_file` (re)calibrates
a model file and stores the result where that kind of file keeps it: inside a checkpoint, or in an
ONNX file's card and its INT8 sibling's (`store_calibration`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from model.card import FineGrading, Thresholds
from model.outputs import DEFECT_CHANNELS
from model.rules import fit_grade_calibration, list_standards, load_standard
from training.checkpoint import attach_calibration, load_checkpoint
from training.config import SourceConfig, TrainConfig
from training.dataset import Item
from training.metrics import (
    calibrated_rows,
    coverage_curve,
    ece,
    grade_devices,
    is_right,
    photo_result,
    pick_review_threshold,
    prf,
    real_weights,
)
from training.predict import (
    Prediction,
    Predictor,
    default_thresholds,
    load_predictor,
    predict,
    torch_predictor,
)

TARGET_ACCURACY = 0.95
# Low cuts too: a hairline covers a small share of its mask cell, so its coverage map is faint.
GRID = np.round(np.r_[0.03, 0.05, 0.075, np.arange(0.1, 0.61, 0.05)], 3)
# Wide enough that no fit sits on an edge: the 2026-12-02 model's crack offset (-4.0) and chip/dent
# temperature (10) did on the earlier (-4..4, 0.25..10) grid. Rare, unreliable types want a low,
# nearly flat confidence: a large temperature with a strongly negative offset.
TEMPERATURES = np.exp(np.linspace(math.log(0.25), math.log(40.0), 61))
OFFSETS = np.linspace(-7.0, 4.0, 89)
MIN_GRADE_GAIN = 0.01  # a cut moves for at least one more point of validation grade accuracy
# Fewer graded validation devices than this and a standard's probabilities stay the rules' own: the
# 5x5 (or 6x6) transition matrix would be mostly prior.
MIN_CALIBRATION_DEVICES = 30


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def pixel_thresholds(preds: list[Prediction], stride: int) -> tuple[dict[str, float], dict]:
    """Per type, the probability cut whose instances (after serving's post-processing) best match the
    truth by F1. Coverage maps make the cut also decide where a defect ends, so instance F1 -- what
    grading consumes -- is the criterion rather than pixel F1. Types without validation instances get
    the median cut of the others."""
    f1 = {name: [] for name in DEFECT_CHANNELS}
    for t in GRID:
        th = Thresholds(defect_pixel={n: float(t) for n in DEFECT_CHANNELS}, min_instance_confidence=0.0)
        table = prf([m for p in preds for m in photo_result(p, th, stride).matches])
        for name in DEFECT_CHANNELS:
            v = table.get(name)
            f1[name].append(v["f1"] if v and v["tp"] + v["fn"] > 0 else float("nan"))
    out, figures = {}, {}
    for name, scores in f1.items():
        arr = np.array(scores)
        if np.isnan(arr).all():
            continue
        k = int(np.nanargmax(arr))
        out[name] = float(GRID[k])
        figures[name] = {
            "instance_f1": float(arr[k]),
            "instance_f1_by_threshold": dict(zip(map(float, GRID), map(float, arr), strict=True)),
        }
    fallback = float(np.median(list(out.values()))) if out else 0.5
    return {name: out.get(name, fallback) for name in DEFECT_CHANNELS}, figures


def fit_confidence(z: np.ndarray, real: np.ndarray) -> tuple[float, float]:
    """(temperature, offset) minimising the log-loss of `real` given each instance's uncalibrated
    score z = logit(peak) - logit(pixel threshold) (`model.postprocess.instance_confidence`); the grid
    keeps the temperature positive, so a higher peak never means a lower confidence."""
    q = 1 / (1 + np.exp(-(z[None, None, :] / TEMPERATURES[:, None, None] + OFFSETS[None, :, None])))
    q = np.clip(q, 1e-6, 1 - 1e-6)
    nll = -np.mean(real * np.log(q) + (1 - real) * np.log(1 - q), axis=-1)
    i, j = np.unravel_index(int(np.argmin(nll)), nll.shape)
    return float(TEMPERATURES[i]), float(OFFSETS[j])


def fit_confidences(preds: list[Prediction], pixel: dict[str, float], stride: int):
    """Per type (temperature, offset) from validation instances matched to the truth at these cuts."""
    raw = Thresholds(defect_pixel=pixel, min_instance_confidence=0.0)
    results = [photo_result(p, raw, stride) for p in preds]
    temps, offsets, fig = {}, {}, {}
    for name in DEFECT_CHANNELS:
        # Uncalibrated, an instance's confidence is sigmoid(z): its logit is the score to fit on.
        pairs = [
            (_logit(m.pred.confidence), m.gt is not None)
            for r in results
            for m in r.matches
            if m.type == name and m.pred is not None
        ]
        if len(pairs) >= 5:
            z, real = np.array(pairs, dtype=float).T
            T, b = fit_confidence(z, real)
            temps[name], offsets[name] = round(T, 3), round(b, 3)
            fig[name] = {"instances": len(pairs), "precision": float(real.mean())}
    th = Thresholds(defect_pixel=pixel, confidence_temperature=temps, confidence_offset=offsets)
    return th, fig


def grade_accuracy(preds: list[Prediction], thresholds: Thresholds, stride: int) -> float:
    """Share of (device, standard) pairs graded right on validation devices (nan without grades)."""
    rows = grade_devices([photo_result(p, thresholds, stride) for p in preds], list_standards())
    return float(np.mean([r["true"] == r["pred"] for r in rows])) if rows else float("nan")


def refine_for_grades(
    preds: list[Prediction], pixel: dict[str, float], stride: int, types: list[str], progress=None
) -> tuple[dict[str, float], dict]:
    """Coordinate ascent on the pixel cuts of `types` for validation grade accuracy, refitting the
    confidences for every candidate. Instance F1 is the right start but not the goal: a cut also
    decides where a defect ends (its length) and whether one scratch breaks into two (the count), and
    the grade rules are limits on exactly those. A cut moves only when it gains at least
    `MIN_GRADE_GAIN` of validation accuracy, so noise does not move it."""
    best_acc = grade_accuracy(preds, fit_confidences(preds, pixel, stride)[0], stride)
    start, trace = best_acc, []
    if best_acc != best_acc:  # no graded validation devices
        return pixel, {}
    for name in types:
        for cut in GRID:
            if float(cut) == pixel[name]:
                continue
            cand = {**pixel, name: float(cut)}
            acc = grade_accuracy(preds, fit_confidences(preds, cand, stride)[0], stride)
            trace.append({"type": name, "cut": float(cut), "val_grade_accuracy": acc})
            if progress is not None:
                progress()
            if acc >= best_acc + MIN_GRADE_GAIN:
                best_acc, pixel = acc, cand
    return pixel, {"val_grade_accuracy_before": start, "val_grade_accuracy_after": best_acc, "tried": trace}


def calibrate_grades(rows: list[dict]) -> tuple[dict, dict]:
    """Per standard, the grade calibration fitted on validation device rows (`grade_devices` without
    one), and its figures: validation ECE of the top grade before and after (in-sample, so the
    "after" is optimistic; evaluate reports it on test)."""
    out, fig = {}, {}
    for std in sorted({r["standard"] for r in rows}):
        sub = [r for r in rows if r["standard"] == std]
        if len(sub) < MIN_CALIBRATION_DEVICES:
            fig[std] = {"devices": len(sub), "skipped": f"fewer than {MIN_CALIBRATION_DEVICES} devices"}
            continue
        standard = load_standard(std)
        cal = fit_grade_calibration(
            standard.grade_names,
            standard.version,
            [(r["rule_probabilities"], r["true"]) for r in sub],
            weights=real_weights(sub),
        )
        out[std] = cal
        correct = np.array([is_right(r) for r in sub], dtype=float)
        before = np.array([r["rule_confidence"] for r in sub])
        after = np.array([r["confidence"] for r in calibrated_rows(sub, {std: cal})])
        fig[std] = {
            "devices": len(sub),
            "val_ece_rules": ece(before, correct)[0],
            "val_ece_calibrated": ece(after, correct)[0],
        }
    return out, fig


def review_thresholds(rows: list[dict], target: float = TARGET_ACCURACY) -> dict[str, float]:
    """`needs_review_below` picked on the synthetic devices' rows and on the real photos' rows apart:
    the promise (a grading not sent to review is right) holds for each kind on its own, so real photos
    must not buy synthetic devices a lower bar, or the other way round; calibration takes the higher."""
    conf = np.array([r["confidence"] for r in rows])
    correct = np.array([is_right(r) for r in rows], dtype=float)
    real = np.array([bool(r.get("real")) for r in rows])
    return {
        name: pick_review_threshold(coverage_curve(conf[m], correct[m]), target)
        for name, m in (("synthetic", ~real), ("real", real))
        if m.any()
    }


def fine_read_rows(preds, thresholds: Thresholds, stride: int, probes=None) -> list[dict]:
    """`grade_devices` rows (with listability) of the photos in `preds` that the fine pass read, each
    device prefixed with its manifest so that two sets' device ids never merge. `probes`: photo probes
    to apply first (where `predict` has not)."""
    results = [photo_result(with_probes(p, probes) if probes else p, thresholds, stride) for p in preds]
    rows = []
    for manifest in sorted({str(r.pred.item.manifest) for r in results}):
        mine = [r for r in results if str(r.pred.item.manifest) == manifest]
        rows += [
            {**row, "device": f"{manifest}:{row['device']}"}
            for row in grade_devices(mine, list_standards(), listability=True)
            if row["fine"]
        ]
    return rows


def grading_rows(preds, fine_preds, thresholds: Thresholds, stride: int, probes=None) -> list[dict]:
    """The validation rows steps 3-5 are fitted on (`fit_gradings`): every device of `preds`, real photos
    known only to be cracked or not too (set labels, as much as the synthetic devices), and those of
    `fine_preds` (high-resolution validation devices) that the fine pass read (`fine_read_rows`, with
    `probes` applied first where `predict` has not)."""
    rows = grade_devices(
        [photo_result(p, thresholds, stride) for p in preds], list_standards(), listability=True
    )
    return rows + fine_read_rows(fine_preds, thresholds, stride, probes)


def fit_gradings(thresholds: Thresholds, rows: list[dict]) -> tuple[dict, dict, dict]:
    """Steps 3-5 on validation `rows` (`grade_devices`, listability), into `thresholds`: the grade
    calibration and review threshold of the devices the fine pass read (`fine_grading`, where at least
    `MIN_CALIBRATION_DEVICES` of them have a standard's grade), then those of every other device.
    Returns the figures of the coarse grade calibration, its review threshold and the fine grading."""
    thresholds.fine_grading, fine_fig = fit_fine_grading([r for r in rows if r.get("fine")])
    if thresholds.fine_grading is not None:
        rows = [r for r in rows if not r.get("fine")]
    thresholds.grade_calibration, grade_fig = calibrate_grades(rows)
    rows = calibrated_rows(rows, thresholds.grade_calibration)
    review_fig = {}
    if rows:
        picked = review_thresholds(rows)
        thresholds.needs_review_below = max(picked.values())
        review_fig = _review_figures(rows, picked)
    return grade_fig, review_fig, fine_fig


def fit_fine_grading(rows: list[dict]) -> tuple[FineGrading | None, dict]:
    """The grading of the devices the fine pass read, from their validation `rows`, and its figures;
    None (and no figures) where no standard has `MIN_CALIBRATION_DEVICES` of them."""
    cal, grade_fig = calibrate_grades(rows) if rows else ({}, {})
    if not cal:
        return None, {}
    rows = calibrated_rows(rows, {}, cal)
    picked = review_thresholds(rows)
    devices = len({r["device"] for r in rows})
    grading = FineGrading(grade_calibration=cal, needs_review_below=max(picked.values()), devices=devices)
    return grading, {"grades": grade_fig, "review": _review_figures(rows, picked)}


def _review_figures(rows: list[dict], picked: dict[str, float]) -> dict:
    correct = np.array([is_right(r) for r in rows], dtype=float)
    return {
        "threshold_by_kind": picked,
        "devices": len({r["device"] for r in rows}),
        "real_photos": len({r["device"] for r in rows if r.get("real")}),
        "val_grade_accuracy": float(correct.mean()),
    }


def calibrate(
    model,
    val_items: list[Item],
    batch_size: int = 8,
    refine_types: int = 2,
    crop_to_device: bool = False,
    damage_items: list[Item] | None = None,
    probe_items: list[Item] | None = None,
    fine_items: list[Item] | None = None,
    crop_upright: bool | None = None,
) -> dict:
    """Calibrated thresholds (as a dict for the card) and the figures behind them. `model`: a torch
    network, or a `Predictor` (an exported ONNX file, say), whose own thresholds are ignored.
    `refine_types`: how many defect types (the most frequent in validation) get their cut refined for
    grade accuracy. `crop_to_device`: calibrate on the crop-to-device second pass (`model.inference`).
    `damage_items`: photos to fit the zone-damage models on (`training.damage`), `probe_items` the photo
    probes (`training.probes`); the regularisation of both is chosen on `val_items`, and the grade
    calibration is then fitted on the grades they lead to. `fine_items`: high-resolution validation
    devices for the fine pass's grade calibration only (`fit_gradings`). `crop_upright`: the crop pass
    turns a device lying wide upright (`model.crop`); None keeps the `Predictor`'s (a torch network's:
    no)."""
    if isinstance(model, Predictor):
        upright = model.crop_upright if crop_upright is None else crop_upright
        predictor = replace(
            model, thresholds=default_thresholds(), crop_to_device=crop_to_device, crop_upright=upright
        )
    else:
        predictor = torch_predictor(
            model, default_thresholds(), crop_to_device=crop_to_device, crop_upright=bool(crop_upright)
        )
    stride = predictor.mask_stride
    preds = list(predict(val_items, predictor, batch_size))
    pixel, pixel_fig = pixel_thresholds(preds, stride)
    counts = {n: sum(1 for p in preds for i in p.item.record.instances if i.type.value == n) for n in pixel}
    types = [n for n in sorted(counts, key=counts.get, reverse=True) if counts[n] > 0][:refine_types]
    refine_fig = {}
    if types:
        from tqdm import tqdm

        with tqdm(total=len(types) * (len(GRID) - 1), desc="refining cuts for grades", leave=False) as bar:
            pixel, refine_fig = refine_for_grades(preds, pixel, stride, types, bar.update)
    thresholds, temp_fig = fit_confidences(preds, pixel, stride)
    damage_fig, probe_fig = {}, {}
    if damage_items:
        from training.damage import fit_all_zones

        # Streamed: the fit keeps each photo's features, not its outputs (1.6 MB a photo held whole).
        damage_preds = predict(damage_items, predictor, batch_size)
        thresholds.zone_damage, damage_fig = fit_all_zones(damage_preds, preds)
    if probe_items:
        from training.probes import fit_probes

        thresholds.photo_probes, probe_fig = fit_probes(predict(probe_items, predictor, batch_size), preds)
        # What follows grades as serving will: with the probes' views and quality verdicts.
        preds = [with_probes(p, thresholds.photo_probes) for p in preds]
    fine_preds = predict(fine_items, predictor, batch_size) if fine_items else ()
    rows = grading_rows(preds, fine_preds, thresholds, stride, thresholds.photo_probes)
    grade_fig, review_fig, fine_fig = fit_gradings(thresholds, rows)
    return {
        "thresholds": thresholds.model_dump(mode="json"),
        "figures": {
            "pixel": pixel_fig,
            "refine": refine_fig,
            "temperature": temp_fig,
            "zone_damage": damage_fig,
            "photo_probes": probe_fig,
            "grades": grade_fig,
            "review": review_fig,
            "fine_grading": fine_fig,
        },
        "n_photos": len(preds),
        "crop_to_device": predictor.crop_to_device,
        "crop_upright": predictor.crop_upright,
    }


def with_probes(pred: Prediction, probes) -> Prediction:
    """`pred` as `model.inference.infer` gives it for a card with `probes`."""
    from model import inference

    return replace(pred, inferred=inference.with_probes(pred.inferred, probes))


class QuantizedModelError(ValueError):
    """An INT8 file is not calibrated itself: it shares its FP32 file's thresholds."""


@dataclass
class ModelFile:
    """A checkpoint or an exported FP32 .onnx file, opened for (re)calibration."""

    path: Path
    model: object  # the torch network, or the ONNX file's `Predictor`
    crop_to_device: bool  # the crop pass as the run's config (checkpoint) or the card (ONNX) says
    val_sources: list[SourceConfig]  # the run's validation sources; an ONNX file knows none
    damage_sources: list[SourceConfig] = field(default_factory=list)  # the run's zone-damage photos
    probe_sources: list[SourceConfig] = field(default_factory=list)  # the run's photo-probe photos
    fine_sources: list[SourceConfig] = field(default_factory=list)  # the run's data.fine_val
    alone: bool = False  # an INT8 file calibrated on its own outputs (`store_calibration`)
    damage_holdout: float = 0.0  # the run's data.damage_holdout (training.dataset.damage_fit_items)
    crop_upright: bool = False  # the crop pass turns a device lying wide upright, as the run or card says


def open_model_file(path: str | Path, alone: bool = False) -> ModelFile:
    """A model file for (re)calibration. An INT8 file only `alone`: on its own outputs, for its own card
    (by default it shares its FP32 file's thresholds, which calibrating the FP32 file writes to both)."""
    path = Path(path)
    if path.suffix == ".onnx":
        from model.export import read_card

        card = read_card(path)
        if card.quantized and not alone:
            raise QuantizedModelError(
                f"{path}: calibrate the FP32 file (its INT8 sibling follows), or this one --alone"
            )
        if alone and not card.quantized:
            raise QuantizedModelError(f"{path}: --alone is for an INT8 file; this one is FP32")
        return ModelFile(
            path,
            load_predictor(path),
            card.crop_to_device,
            [],
            [],
            [],
            [],
            alone,
            crop_upright=card.crop_upright,
        )
    net, ckpt = load_checkpoint(path)
    run = TrainConfig.model_validate(ckpt["config"])
    data = run.data
    return ModelFile(
        path,
        net,
        run.crop_to_device,
        data.val,
        data.damage,
        data.probes,
        data.fine_val,
        damage_holdout=data.damage_holdout,
        crop_upright=run.crop_upright,
    )


def calibrate_model_file(
    model_file: ModelFile | str | Path,
    items: list[Item],
    crop_to_device: bool | None = None,
    damage_items: list[Item] | None = None,
    probe_items: list[Item] | None = None,
    fine_items: list[Item] | None = None,
    crop_upright: bool | None = None,
) -> tuple[dict, list[Path]]:
    """`calibrate` a model file on `items` and store the result (`store_calibration`). `crop_to_device`,
    `crop_upright`: None keeps the file's own setting. Returns the calibration and the ONNX files whose
    card changed."""
    if not isinstance(model_file, ModelFile):
        model_file = open_model_file(model_file)
    wants_features = damage_items or probe_items
    if wants_features and model_file.path.suffix == ".onnx" and expose_features(model_file.path):
        model_file = open_model_file(model_file.path, model_file.alone)  # now with the encoder's features
    crop = model_file.crop_to_device if crop_to_device is None else crop_to_device
    cal = calibrate(
        model_file.model,
        items,
        crop_to_device=crop,
        damage_items=damage_items,
        probe_items=probe_items,
        fine_items=fine_items,
        crop_upright=model_file.crop_upright if crop_upright is None else crop_upright,
    )
    return cal, store_calibration(model_file.path, cal, model_file.alone)


def calibrate_gradings(
    path: str | Path,
    items: list[Item],
    fine_items: list[Item],
    batch_size: int = 8,
    fine_only: bool = False,
) -> tuple[dict, list[Path]]:
    """Fit only the card's gradings (steps 3-5: each standard's grade calibration, `needs_review_below`
    and the fine pass's `fine_grading`) for an exported, calibrated ONNX file, its other thresholds (cuts,
    confidences, zone damage, probes) as they are; with `fine_only`, only `fine_grading` (step 5). The
    photos of `items` (validation) and `fine_items` (high-resolution validation devices, which count
    only for the fine grading) are graded as serving grades them with this card: what a change of the
    rules or of the truth the gradings are fitted on needs, in minutes rather than a whole calibration.
    Stores the result in the card (and its INT8 sibling's where that shares the thresholds) and in the
    calibration JSON beside; returns the calibration and the files whose card changed. Refused
    (ValueError) for `fine_only` on a file without a fine network beside it, or too few devices read."""
    from model.export import read_card, update_card

    path = Path(path)
    predictor = open_model_file(path).model  # the card's thresholds, probes and crop pass: as serving
    if fine_only and predictor.fine_card is None:
        raise ValueError(f"{path}: no fine network beside it, so no grading is read by the fine pass")
    thresholds = predictor.thresholds.model_copy(deep=True)
    stride = predictor.mask_stride
    fine_items = fine_items if predictor.fine_card is not None else []
    if fine_only:
        rows = fine_read_rows(predict([*items, *fine_items], predictor, batch_size), thresholds, stride)
        thresholds.fine_grading, fine_fig = fit_fine_grading(rows)
        if thresholds.fine_grading is None:
            raise ValueError(
                f"{path}: the fine pass read {len({r['device'] for r in rows})} validation devices; a grade "
                f"calibration needs {MIN_CALIBRATION_DEVICES} of a standard's"
            )
        figures = {"fine_grading": fine_fig}
    else:  # as `calibrate` does once its thresholds are fitted (`predict` applied the card's probes)
        fine_preds = predict(fine_items, predictor, batch_size) if fine_items else ()
        rows = grading_rows(predict(items, predictor, batch_size), fine_preds, thresholds, stride)
        grade_fig, review_fig, fine_fig = fit_gradings(thresholds, rows)
        figures = {"grades": grade_fig, "review": review_fig, "fine_grading": fine_fig}
    # The INT8 sibling follows where it shares the FP32 thresholds (not one calibrated on its own).
    sibling = path.with_suffix(".int8.onnx")
    shares = sibling.is_file() and read_card(sibling).thresholds == predictor.thresholds
    cards = [path, sibling] if shares else [path]
    for card_file in cards:
        update_card(card_file, thresholds=thresholds.model_dump(mode="json"))
    cal = {"thresholds": thresholds.model_dump(mode="json"), "figures": figures}
    beside = calibration_json(path)
    if beside.is_file():  # the last calibration's other figures stay, with this step's beside them
        whole = json.loads(beside.read_text())
        whole["thresholds"] = cal["thresholds"]
        whole.setdefault("figures", {}).update(figures)
        cal = whole
    beside.write_text(json.dumps(cal, indent=2))
    return cal, cards


def expose_features(path: Path) -> bool:
    """Give an ONNX file and its INT8 sibling the encoder's features that zone damage reads best
    (`model.export.expose_encoder_features`); False for a graph that has none to give (its zone damage
    is then fitted on the crack map)."""
    from model.export import expose_encoder_features

    try:
        for p in (path, path.with_suffix(".int8.onnx")):
            if p.is_file():
                expose_encoder_features(p)
    except ValueError:
        return False
    return True


def calibration_json(path: str | Path) -> Path:
    """Where `store_calibration` writes the whole result for the model file at `path`."""
    path = Path(path)
    return (
        path.with_suffix(".calibration.json")
        if path.suffix == ".onnx"
        else path.with_name("calibration.json")
    )


def summary(cal: dict) -> list[str]:
    """`calibrate`'s result in a few lines a person reads: the cuts, the review threshold and the picks
    behind it, what the zone-damage models, the photo probes and the grade calibration were fitted on.
    The weights stay in the card and the JSON beside it (thousands of numbers)."""
    t, fig = cal["thresholds"], cal.get("figures", {})
    cuts = ", ".join(
        f"{n} {cut:g} (T {t['confidence_temperature'].get(n, 1.0):g}, offset {t['confidence_offset'].get(n, 0.0):g})"
        for n, cut in t["defect_pixel"].items()
    )
    lines = [f"defect cuts: {cuts}"]
    picks = fig.get("review", {}).get("threshold_by_kind", {})
    by_kind = ", ".join(f"{k} {v:g}" for k, v in picks.items())
    lines.append(
        f"needs_review_below {t['needs_review_below']:g}"
        + (f" (the higher of: {by_kind})" if by_kind else "")
    )
    for zone, m in (t.get("zone_damage") or {}).items():
        lines.append(
            f"zone damage, {zone}: {m['features']}, fitted on {m['photos']} photos, {m['positives']} cracked"
        )
    for name, m in (t.get("photo_probes") or {}).items():
        lines.append(f"photo probe, {name}: fitted on {m['photos']} photos")
    for std, c in (t.get("grade_calibration") or {}).items():
        lines.append(f"grade calibration, {std} {c['standard_version']}: {c['devices']} validation devices")
    return lines + fine_grading_summary(cal)


def fine_grading_summary(cal: dict) -> list[str]:
    """The lines of `summary` about the grading of the devices the fine pass read."""
    fine = cal["thresholds"].get("fine_grading")
    if not fine:
        return ["devices the fine pass reads: graded as the others (no fine grading fitted)"]
    picks = cal.get("figures", {}).get("fine_grading", {}).get("review", {}).get("threshold_by_kind", {})
    by_kind = ", ".join(f"{k} {v:g}" for k, v in picks.items())
    lines = [
        f"devices the fine pass reads: {fine['devices']} validation devices, needs_review_below "
        f"{fine['needs_review_below']:g}" + (f" (the higher of: {by_kind})" if by_kind else "")
    ]
    for std, c in fine["grade_calibration"].items():
        lines.append(f"  grade calibration, {std}: {c['devices']} validation devices the fine pass read")
    return lines


def store_calibration(path: str | Path, cal: dict, alone: bool = False) -> list[Path]:
    """Keep `calibrate`'s result with the model it calibrated: a checkpoint holds it inside
    (`training.checkpoint.attach_calibration`) with calibration.json beside; an .onnx file gets the
    thresholds and the crop pass in its card, and so does its .int8.onnx sibling (INT8 shares the
    FP32 thresholds), with NAME.calibration.json beside; an INT8 file calibrated `alone` only its own
    card, marked `calibrated_alone`. Returns the ONNX files whose card changed."""
    path = Path(path)
    text = json.dumps(cal, indent=2)
    if path.suffix != ".onnx":
        attach_calibration(path, cal)
        calibration_json(path).write_text(text)
        return []
    from model.export import update_card

    changes = {
        "thresholds": cal["thresholds"],
        "crop_to_device": cal["crop_to_device"],
        "crop_upright": cal.get("crop_upright", False),
        "calibrated_alone": alone,
    }
    cards = [path] if alone else [p for p in (path, path.with_suffix(".int8.onnx")) if p.is_file()]
    for card_file in cards:
        update_card(card_file, **changes)
    calibration_json(path).write_text(text)
    return cards
