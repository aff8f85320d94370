"""Scoring the fine network's maps against a fine manifest's truth (`training.synth.fine_patches`):
centreline recall and precision at a 1-pixel tolerance, and per-scratch width and contrast errors, by
width class. Shared by `benchmarks/bench_fine_net.py` and the fine network's packaging
(`training.fine_package`, which picks the heat cut on validation patches with it)."""

from __future__ import annotations

import statistics

import cv2
import numpy as np

from training.synth.fine_patches import FinePatchRecord
from training.synth.geometry import SHIFT, to_cv

NEAR = np.ones((3, 3), np.uint8)  # 1 px tolerance (8-neighbours)
CLASSES = ("all", "< 1 px", ">= 1 px")


def true_lines(rec: FinePatchRecord) -> list[np.ndarray]:
    """Each scratch's centreline pixels (bool masks), drawn as the generator draws its targets."""
    out = []
    for s in rec.scratches:
        line = np.zeros((rec.size, rec.size), np.uint8)
        cv2.polylines(line, [to_cv(np.asarray(s.polyline, np.float64))], False, 255, 1, cv2.LINE_8, SHIFT)
        out.append(line > 0)
    return out


class Tally:
    """Pixel counts for recall and precision, and per-scratch errors, by width class."""

    def __init__(self) -> None:
        self.found = dict.fromkeys(CLASSES, 0)
        self.true = dict.fromkeys(CLASSES, 0)
        self.scr_found = {c: [] for c in CLASSES}
        self.pred_ok = 0
        self.pred = 0
        self.err = {k: {c: [] for c in CLASSES} for k in ("width_px", "width_mm", "width_rel", "contrast")}

    def add_lines(self, rec: FinePatchRecord, lines: list[np.ndarray], skel: np.ndarray) -> None:
        near_pred = cv2.dilate(skel.astype(np.uint8), NEAR) > 0
        any_true = np.zeros_like(skel)
        for s, line in zip(rec.scratches, lines, strict=True):
            any_true |= line
            n, hit = int(line.sum()), int((line & near_pred).sum())
            for c in ("all", "< 1 px" if s.width_px < 1 else ">= 1 px"):
                self.true[c] += n
                self.found[c] += hit
                if n:
                    self.scr_found[c].append(hit / n >= 0.5)
        near_true = cv2.dilate(any_true.astype(np.uint8), NEAR) > 0
        self.pred += int(skel.sum())
        self.pred_ok += int((skel & near_true).sum())

    def add_values(self, rec: FinePatchRecord, lines: list[np.ndarray], width_px, contrast) -> None:
        for s, line in zip(rec.scratches, lines, strict=True):
            if not line.any():
                continue
            w = float(np.median(width_px[line])) if isinstance(width_px, np.ndarray) else float(width_px)
            k = float(np.median(contrast[line])) if isinstance(contrast, np.ndarray) else float(contrast)
            for c in ("all", "< 1 px" if s.width_px < 1 else ">= 1 px"):
                self.err["width_px"][c].append(abs(w - s.width_px))
                self.err["width_mm"][c].append(abs(w - s.width_px) * rec.mm_per_px)
                self.err["width_rel"][c].append(abs(w - s.width_px) / s.width_px)
                self.err["contrast"][c].append(abs(k - s.contrast))

    def summary(self) -> dict:
        out: dict = {"precision": self.pred_ok / self.pred if self.pred else float("nan")}
        for c in CLASSES:
            out[f"recall {c}"] = self.found[c] / self.true[c] if self.true[c] else float("nan")
            out[f"found {c}"] = float(np.mean(self.scr_found[c])) if self.scr_found[c] else float("nan")
            out[f"n {c}"] = len(self.scr_found[c])
            for k, v in self.err.items():
                out[f"{k} {c}"] = statistics.median(v[c]) if v[c] else float("nan")
        return out
