"""Zone-damage fit, cross-fitted: how the screen's (and back glass's) crack model generalises, measured
over every photo it is fitted on rather than over the validation split alone.

    .venv/bin/python benchmarks/bench_damage_cv.py [--model models/default.onnx]
        [--config training/configs/default.yaml] [--folds 5] [--json OUT]

The zone-damage model (`model.damage`) is fitted at calibration on the config's `data.damage` photos
(with its `data.damage_holdout`) and its regularisation and cut are chosen on `data.val`. The real
validation split holds about 170 screens, 33 of them intact phones_web photos: too few to see a 10%
false-crack rate. Here the fit photos are split into folds by device group (copies with their
originals), each fold judged by a model fitted exactly as calibration fits one (`training.damage.
cross_fitted`, on the features the card's model reads) on the other folds; the full fit judges the
validation photos. Printed per zone, source and truth, originals and format copies apart (`refurbgrade reformat`): the photos judged cracked
(probability >= 0.5, where the rules count a crack), out of fold and on validation, and the AUROC of
each source that has both classes.

Caveat, printed with the table: out-of-fold figures are honest only for photos the network itself did
not train on. The bundled network (docs/model-history.md) never trained on phones_web but did on
cracked_screens' and MSD's train splits, so their out-of-fold figures are optimistic; with
`data.damage_holdout` (a GPU-trained network) every real fit photo is one the network never saw.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def samples_of(preds, zone, kind):
    """The zone's samples (`training.damage.zone_samples`) and, for each, whether its photo is a derived
    copy (`training.dataset.COPY_SUFFIXES`: a format copy of another fit photo)."""
    from training.damage import zone_samples
    from training.dataset import COPY_SUFFIXES

    out, copies = [], []
    for p in preds:
        for s in zone_samples([p], zone, kind):
            out.append(s)
            copies.append(p.item.record.device_id.endswith(COPY_SUFFIXES))
    return out, copies


def rates(fit, fit_copies, p_fit, choose, p_choose) -> dict[str, dict[str, tuple[float, int]]]:
    """Per "source / truth / original or copy": the share judged cracked (p >= 0.5) and the photos, out of
    fold and on validation; per "source AUROC": the AUROC and the photos (sources with both classes)."""
    from sklearn.metrics import roc_auc_score

    cells: dict[str, dict] = defaultdict(dict)
    sides = (("out of fold", fit, fit_copies, p_fit), ("validation", choose, [False] * len(choose), p_choose))
    for name, samples, copies, p in sides:
        kept = [(s, c, v) for s, c, v in zip(samples, copies, p, strict=True) if not np.isnan(v)]
        groups = defaultdict(list)
        for s, c, v in kept:
            groups[
                f"{s.source} / {'cracked' if s.cracked else 'not cracked'} / {'copy' if c else 'original'}"
            ].append(v)
        for key, vs in groups.items():
            cells[key][name] = (float(np.mean(np.array(vs) >= 0.5)), len(vs))
        for src in sorted({s.source for s, _, _ in kept}):
            ys = [s.cracked for s, c, _ in kept if s.source == src and not c]
            vs = [v for s, c, v in kept if s.source == src and not c]
            if 0 < sum(ys) < len(ys):
                cells[f"{src} AUROC (originals)"][name] = (float(roc_auc_score(ys, vs)), len(ys))
    return dict(sorted(cells.items()))


def _fmt(cell: tuple[float, int] | None) -> str:
    return "—" if cell is None else f"{cell[0]:.3f} ({cell[1]})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models/default.onnx")
    ap.add_argument("--config", type=Path, default=ROOT / "training/configs/default.yaml")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    from model.damage import GLASS_ZONES
    from model.export import read_card
    from model.outputs import ENCODER_S16
    from training.cli.models import load_cli_config
    from training.damage import cross_fitted, fit_zone_damage
    from training.dataset import damage_fit_items, load_sources
    from training.predict import default_thresholds, load_predictor, predict

    card = read_card(args.model)
    if ENCODER_S16 not in card.feature_outputs:
        sys.exit(
            f"{args.model}: its graph does not expose {ENCODER_S16}; run `refurbgrade calibrate` on it first"
        )
    data = load_cli_config(args.config).data
    val = load_sources(data.val)
    damage = damage_fit_items(load_sources(data.damage), data.damage_holdout)
    predictor = replace(
        load_predictor(args.model), thresholds=default_thresholds(), crop_to_device=card.crop_to_device
    )
    fit_preds, val_preds = list(predict(damage, predictor)), list(predict(val, predictor))
    report = {}
    for zone in GLASS_ZONES:
        kind = (
            card.thresholds.zone_damage[zone.value].features
            if zone.value in card.thresholds.zone_damage
            else None
        )
        if kind is None:
            print(f"{zone.value}: the card has no zone-damage model")
            continue
        (fit, fit_copies), (choose, _) = samples_of(fit_preds, zone, kind), samples_of(val_preds, zone, kind)
        p_fit = cross_fitted(fit, choose, kind, args.folds)
        model, _ = fit_zone_damage(fit, choose, kind)
        if model is None:
            print(f"{zone.value}: too few photos of a class to fit")
            continue
        p_choose = np.array([model.probability(s.features) for s in choose])
        report[zone.value] = table = rates(fit, fit_copies, p_fit, choose, p_choose)
        print(f"\n{zone.value} ({kind}, {args.folds} folds by device group): judged cracked, share (photos)")
        print(f"{'':48s} {'out of fold':>16s} {'validation':>16s}")
        for key, cell in table.items():
            print(f"{key:48s} {_fmt(cell.get('out of fold')):>16s} {_fmt(cell.get('validation')):>16s}")
    print(
        f"\nout-of-fold figures are honest only for photos the network did not train on "
        f"(data.damage_holdout {data.damage_holdout}; docs/model-history.md says which sets the bundled one saw)"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
