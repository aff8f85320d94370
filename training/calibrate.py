"""Threshold calibration on validation data (never test data): what goes into the model card's `Thresholds`.

1. Defect pixel threshold per type: the probability cut that maximises pixel F1 at mask resolution on
   validation photos whose pixels are labelled for that type (0.5 where validation has no positives).
2. Confidence temperature per type: serving's instances at those thresholds are matched to the truth;
   a temperature on each instance's peak logit is fitted by grid search to minimise the log-loss of
   "this instance is real" (1.0 where there are no instances to fit on).
3. needs_review_below: the lowest top-grade probability at which the devices graded without review
   reach `TARGET_ACCURACY` on validation devices (0.8 without graded validation devices).
"""

from __future__ import annotations

import math

import numpy as np

from model.card import Thresholds
from model.outputs import DEFECT_CHANNELS
from model.rules import list_standards
from training.dataset import Item, build_targets
from training.metrics import coverage_curve, grade_devices, photo_result, pick_review_threshold
from training.predict import Prediction, default_thresholds, predict, torch_predictor

TARGET_ACCURACY = 0.95
GRID = np.round(np.arange(0.1, 0.91, 0.05), 2)
TEMPERATURES = np.exp(np.linspace(math.log(0.25), math.log(10.0), 61))


def _pool(mask: np.ndarray, s: int) -> np.ndarray:
    """(S, S, D) 0/1 -> (D, S/s, S/s) max over s x s cells (the training target)."""
    S = mask.shape[0]
    return mask.reshape(S // s, s, S // s, s, -1).max(axis=(1, 3)).transpose(2, 0, 1)


def pixel_thresholds(preds: list[Prediction], size: int, stride: int) -> tuple[dict[str, float], dict]:
    tp = np.zeros((len(DEFECT_CHANNELS), len(GRID)))
    fp = np.zeros_like(tp)
    fn = np.zeros_like(tp)
    for p in preds:
        t = build_targets(p.item, size)
        target = _pool(t["defects"], stride).astype(bool)
        probs = p.outputs["defect_probs"]
        for d in np.flatnonzero(t["pixel_valid"]):
            pos = probs[d][None] >= GRID[:, None, None]
            tp[d] += (pos & target[d]).sum(axis=(1, 2))
            fp[d] += (pos & ~target[d]).sum(axis=(1, 2))
            fn[d] += (~pos & target[d]).sum(axis=(1, 2))
    out, figures = {}, {}
    for d, name in enumerate(DEFECT_CHANNELS):
        if tp[d].sum() + fn[d].sum() == 0:
            out[name] = 0.5
            continue
        f1 = 2 * tp[d] / np.maximum(2 * tp[d] + fp[d] + fn[d], 1)
        k = int(f1.argmax())
        out[name] = float(GRID[k])
        figures[name] = {
            "pixel_f1": float(f1[k]),
            "pixel_f1_at_0.5": float(f1[int(np.argmin(abs(GRID - 0.5)))]),
        }
    return out, figures


def fit_temperature(peaks: np.ndarray, real: np.ndarray) -> float:
    p = np.clip(peaks, 1e-6, 1 - 1e-6)
    logit = np.log(p / (1 - p))
    best, best_nll = 1.0, float("inf")
    for T in TEMPERATURES:
        q = np.clip(1 / (1 + np.exp(-logit / T)), 1e-6, 1 - 1e-6)
        nll = -np.mean(real * np.log(q) + (1 - real) * np.log(1 - q))
        if nll < best_nll:
            best, best_nll = float(T), nll
    return best


def calibrate(net, val_items: list[Item], batch_size: int = 8) -> dict:
    """Calibrated thresholds (as a dict for the card) and the figures behind them."""
    predictor = torch_predictor(net, default_thresholds())
    size, stride = predictor.input_size, predictor.mask_stride
    preds = list(predict(val_items, predictor, batch_size))
    pixel, pixel_fig = pixel_thresholds(preds, size, stride)
    raw = Thresholds(defect_pixel=pixel, min_instance_confidence=0.0)
    results = [photo_result(p, raw, size, stride) for p in preds]
    temps, temp_fig = {}, {}
    for name in DEFECT_CHANNELS:
        pairs = [
            (m.pred.confidence, m.gt is not None)
            for r in results
            for m in r.matches
            if m.type == name and m.pred is not None
        ]
        if len(pairs) >= 5:
            peaks, real = np.array(pairs, dtype=float).T
            temps[name] = round(fit_temperature(peaks, real), 3)
            temp_fig[name] = {"instances": len(pairs), "precision": float(real.mean())}
    thresholds = Thresholds(defect_pixel=pixel, confidence_temperature=temps)
    results = [photo_result(p, thresholds, size, stride) for p in preds]
    rows = grade_devices(results, list_standards())
    review_fig = {}
    if rows:
        conf = np.array([r["confidence"] for r in rows])
        correct = np.array([r["true"] == r["pred"] for r in rows], dtype=float)
        curve = coverage_curve(conf, correct)
        thresholds.needs_review_below = pick_review_threshold(curve, TARGET_ACCURACY)
        review_fig = {
            "devices": len({r["device"] for r in rows}),
            "val_grade_accuracy": float(correct.mean()),
        }
    return {
        "thresholds": thresholds.model_dump(mode="json"),
        "figures": {"pixel": pixel_fig, "temperature": temp_fig, "review": review_fig},
        "n_photos": len(preds),
    }
