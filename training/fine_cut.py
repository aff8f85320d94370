"""The fine file's heat cut chosen on whole validation photos, through the one inference path.

`refurbgrade export-fine` chooses the heat cut on patches: the centreline F1 of single pixels. A grade
sees something else: the scratches the pass reports on whole photos, after tile proposal, the cracks it
leaves to the coarse pass and the merge with the coarse scratches (`model.fine_instances`). Those differ:
on 60 high-resolution synthetic validation photos the patch choice (0.99) cut off device scratches
the network marked at 0.95-0.98.

`cut_table` runs the model and its fine file once over validation manifests, keeps each photo's fine
maps, and reads them again at every (cut, low) pair: scratch instance precision, recall and F1 by
`training.metrics` (the evaluation's matching) on the instance-labelled photos, Back Market accuracy on
the graded ones, and per source the share of photos graded unlistable (a guard for real screens:
MSD's scratched screens are Fair, never unlistable). `choose` takes the best F1. `refurbgrade fine-cut`
prints the table and, with `--write`, puts the choice into the fine card (`model.export.update_fine_card`).

With `frame_zs`, each (cut, low) is also read with the frame reader's lines (`model.frame_read`) kept
from each z (None: without them): the pass runs once with the lowest, and `choose_frame` takes the z
whose Back Market accuracy is best at the chosen cut (ties: the higher z, fewer false lines), and only
if it grades at least as well as without the frame and finds scratches at least as well (F1).
Choose on validation manifests only; report on a held-out seed.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from model.rules import grade
from training.dataset import load_manifest_args
from training.metrics import photo_result, true_grades
from training.predict import load_predictor, predict

CUTS = (0.8, 0.9, 0.95, 0.97, 0.98, 0.99)
LOWS: tuple[float | None, ...] = (None, 0.5)
STANDARD = "backmarket"
# The frame reader's hysteresis low when the card has none: a line is grown from this z.
FRAME_Z_LOW = 4.0


def _at(pred, cut: float | None, low: float | None, frame_z: float | None = None):
    """`pred` with its fine maps read at (cut, low) and its frame lines kept from `frame_z` (None:
    without them); cut None: without its fine maps (the coarse pass)."""
    fine = pred.inferred.fine
    if fine is None:
        return pred
    if cut is None:
        return dataclasses.replace(pred, inferred=dataclasses.replace(pred.inferred, fine=None))
    # frame_z None: the card reads no frame lines (`model.fine_instances.frame_lines`).
    card = fine.card.model_copy(update={"heat_cut": cut, "heat_low": low, "frame_z": frame_z})
    return dataclasses.replace(
        pred, inferred=dataclasses.replace(pred.inferred, fine=dataclasses.replace(fine, card=card))
    )


def cut_table(
    model_path: str | Path,
    manifests: Sequence[str],
    cuts: Sequence[float] = CUTS,
    lows: Sequence[float | None] = LOWS,
    splits: Sequence[str] = ("val",),
    frame_zs: Sequence[float | None] = (None,),
) -> list[dict]:
    """One row per (cut, low, frame z) with low below cut: the figures above over the photos of
    `manifests`; the first row (cut None) is the coarse pass alone on the same photos, the baseline."""
    predictor = load_predictor(model_path, fine=True)
    if predictor.fine_card is None:
        raise FileNotFoundError(f"{model_path}: no fine file beside it")
    zs = [z for z in frame_zs if z is not None]
    if zs:  # the pass keeps the lines from the lowest z asked for
        card = predictor.fine_card
        low = min(min(zs), card.frame_z_low if card.frame_z_low is not None else FRAME_Z_LOW)
        predictor = dataclasses.replace(
            predictor, fine_card=card.model_copy(update={"frame_z": min(zs), "frame_z_low": low})
        )
    items = load_manifest_args(manifests, splits)
    if not items:
        raise ValueError(f"no photos in splits {tuple(splits)} of {list(manifests)}")
    preds = list(tqdm(predict(items, predictor), total=len(items), desc="photos"))
    pairs = [(None, None, None)] + [
        (c, v, z) for c in cuts for v in lows if v is None or v < c for z in frame_zs
    ]
    rows = []
    for cut, low, frame_z in tqdm(pairs, desc="cuts"):
        tp = fp = fn = right = graded = 0
        unlistable: Counter = Counter()
        photos: Counter = Counter()
        for pred in preds:
            res = photo_result(_at(pred, cut, low, frame_z), predictor.thresholds, predictor.mask_stride)
            for m in res.matches:
                if m.type == "scratch":
                    tp += m.pred is not None and m.gt is not None
                    fp += m.gt is None
                    fn += m.pred is None
            rec = pred.item.record
            g = grade(res.instances, STANDARD, device_kind=rec.device_kind or "phone")
            photos[rec.source] += 1
            unlistable[rec.source] += not g.listable
            truth = true_grades(rec)
            if STANDARD in truth:
                graded += 1
                right += g.grade == truth[STANDARD]
        p, r = tp / max(1, tp + fp), tp / max(1, tp + fn)
        rows.append(
            {
                "heat_cut": cut,
                "heat_low": low,
                "frame_z": frame_z,
                "frame_z_low": predictor.fine_card.frame_z_low if frame_z is not None else None,
                "scratch_tp": tp,
                "scratch_fp": fp,
                "scratch_fn": fn,
                "scratch_precision": p,
                "scratch_recall": r,
                "scratch_f1": 2 * p * r / (p + r) if p + r else 0.0,
                "backmarket_accuracy": right / graded if graded else float("nan"),
                "graded": graded,
                "unlistable_share": {s: unlistable[s] / n for s, n in photos.items()},
            }
        )
    return rows


def choose(rows: list[dict]) -> dict:
    """The fine row without frame lines with the best scratch F1 (ties: the higher cut, the fewer false
    scratches)."""
    return max(
        (r for r in rows if r["heat_cut"] is not None and r.get("frame_z") is None),
        key=lambda r: (round(r["scratch_f1"], 4), r["heat_cut"]),
    )


def choose_frame(rows: list[dict], best: dict) -> float | None:
    """The frame z at `best`'s (cut, low) with the best Back Market accuracy (ties: the higher z), if
    it grades and finds scratches at least as well as `best` (without frame lines); else None."""
    here = [
        r
        for r in rows
        if r["heat_cut"] == best["heat_cut"] and r["heat_low"] == best["heat_low"] and r.get("frame_z")
    ]
    ok = [
        r
        for r in here
        if r["backmarket_accuracy"] >= best["backmarket_accuracy"] and r["scratch_f1"] >= best["scratch_f1"]
    ]
    if not ok:
        return None
    return max(ok, key=lambda r: (round(r["backmarket_accuracy"], 4), r["frame_z"]))["frame_z"]


def format_table(rows: list[dict]) -> str:
    sources = sorted({s for r in rows for s in r["unlistable_share"]})
    head = "| cut | low | frame z | scratch P | R | F1 | TP / FP / FN | BM acc. | " + " | ".join(
        f"unlistable, {s}" for s in sources
    )
    lines = [head + " |", "|" + "---|" * (8 + len(sources))]
    for r in rows:
        share = " | ".join(f"{r['unlistable_share'].get(s, float('nan')):.0%}" for s in sources)
        lines.append(
            f"| {'coarse only' if r['heat_cut'] is None else r['heat_cut']} | "
            f"{r['heat_low'] if r['heat_low'] is not None else '-'} | "
            f"{r['frame_z'] if r.get('frame_z') is not None else '-'} | "
            f"{r['scratch_precision']:.3f} | {r['scratch_recall']:.3f} | {r['scratch_f1']:.3f} | "
            f"{r['scratch_tp']} / {r['scratch_fp']} / {r['scratch_fn']} | "
            f"{r['backmarket_accuracy']:.3f} ({r['graded']}) | {share} |"
        )
    return "\n".join(lines)
