"""A trained fine network -> the fine file serving runs beside the coarse model (`NAME.fine.onnx`).

`package_fine` picks the heat cut on validation patches (never the test seed): the cut whose
centreline F1 at a 1-pixel tolerance (`training.fine_metrics.Tally`) is highest, then exports the
network with its `model.fine_pass.FineCard` (cut, tile geometry, the validation figures) and verifies
the file against PyTorch (`model.export.export_fine_onnx`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from skimage.morphology import skeletonize
from tqdm import tqdm

from model.export import export_fine_onnx
from model.fine_pass import FineCard
from training.fine_metrics import Tally, true_lines
from training.fine_train import FinePatchDataset, load_fine_net
from training.packaging import git_commit

CUTS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995)


def heat_cut_scores(
    net, sets: list[FinePatchDataset], cuts=CUTS, limit: int | None = None
) -> dict[float, dict]:
    """Per cut: centreline precision, recall and F1 (1 px) over the patches of `sets` (negative patches,
    without scratches, count only through the false pixels they draw)."""
    tallies = {c: Tally() for c in cuts}
    for ds in sets:
        n = len(ds) if limit is None else min(limit, len(ds))
        for start in tqdm(range(0, n, 8), desc="heat cut", leave=False):
            idx = list(range(start, min(n, start + 8)))
            images = [ds.load(i)[0] for i in idx]
            with torch.no_grad():
                x = torch.from_numpy(np.stack([im.transpose(2, 0, 1) for im in images]))
                heat = net(x).heat[:, 0].numpy()
            for k, i in enumerate(idx):
                rec = ds.records[i]
                lines = true_lines(rec)
                for c, t in tallies.items():
                    t.add_lines(rec, lines, skeletonize(heat[k] >= c))
    out = {}
    for c, t in tallies.items():
        s = t.summary()
        # No centreline pixel predicted at a cut: precision is undefined; count it as 0 (F1 0).
        p, r = (0.0 if v != v else v for v in (s["precision"], s["recall all"]))
        out[c] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}
    return out


def package_fine(
    checkpoint: str | Path,
    val: str | Path | list,
    out: str | Path,
    version: str,
    max_tiles: int = 8,
    limit: int | None = None,
    heat_low: float | None = None,
    fill_critical: bool = False,
) -> FineCard:
    """Export `checkpoint` to `out` with the heat cut chosen on `val` (one fine-patch folder or several:
    rendered patches and negatives); returns the card written. `fill_critical`: tiles left over go to
    the grade-critical zones (`FineCard.fill_critical`; off since card 2026.12.06.1)."""
    net = load_fine_net(checkpoint)
    folders = [val] if isinstance(val, str | Path) else list(val)
    sets = [FinePatchDataset(v) for v in folders]
    ds = sets[0]
    scores = heat_cut_scores(net, sets, limit=limit)
    cut = max(scores, key=lambda c: (scores[c]["f1"], -c))
    best = scores[cut]
    card = FineCard(
        name="refurbgrade-fine",
        version=version,
        git_commit=git_commit(),
        max_tiles=max_tiles,
        fill_critical=fill_critical,
        heat_cut=cut,
        heat_low=heat_low if heat_low is not None and heat_low < cut else None,
        metrics={
            "val_centreline_precision": round(best["precision"], 4),
            "val_centreline_recall": round(best["recall"], 4),
            "val_centreline_f1": round(best["f1"], 4),
        },
        notes=f"heat cut chosen on {', '.join(Path(v).name for v in folders)} "
        f"({sum(len(d) if limit is None else min(limit, len(d)) for d in sets)} patches): "
        + ", ".join(f"{c}: F1 {s['f1']:.3f}" for c, s in scores.items()),
    )
    tiles = np.stack([ds.load(i)[0].transpose(2, 0, 1) for i in range(min(4, len(ds)))])
    export_fine_onnx(net, out, card, np.ascontiguousarray(tiles))
    return card
