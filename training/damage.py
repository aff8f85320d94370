"""Fitting the zone-damage models (`model.damage`) on validation photos with "cracked or not" truth.

Truth per glass zone of a photo:
- a photo with complete instance labels (synthetic): the zone is cracked when a labelled crack lies on it;
- a photo with an image-level crack label (real sets: phones_web, cracked_screens, MSD's scratched,
  stained and oily screens as hard negatives): the label belongs to the glass its view shows (front:
  the screen; back: the back glass); without a view, the screen.

The fit is a logistic regression on `model.damage.zone_features` (standardised; the encoder's pooled
features where the model file exposes them, else the crack map's statistics), each source weighted to the same
total so that a large synthetic set cannot outvote the real photos, and within a source its cracked and
intact photos weighted to the same total: a set that is 73% cracked (phones_web) must not teach that
most screens are cracked, so the probability is the photo's evidence at even odds. `C` (the inverse
regularisation) is chosen by the log-loss on a second, held-apart set of photos. Never fit on a test
split.

The rules count a crack from probability 0.5 on (`model.rules.engine.PRESENT_AT`), and a fit at even
odds does not put its best decision there: MSD's scratched screens, never seen cracked, sit at 0.5-0.6.
So the held-apart real photos (all held-apart photos where the real ones lack a class) choose the cut
that best separates cracked from not (Youden's J, each source and class weighted as in the fit; where
several cuts in a row do, the middle one, so the nearest photo of either class is as far from it), and
the model's bias is shifted so that the cut is its 0.5: the order of the photos (AUROC) is unchanged,
the counted cracks are the ones real photos chose.

A real validation split is small (33 intact phones_web screens): `cross_fitted` judges every fit photo
by a model fitted the same way without its device group's fold, which `benchmarks/bench_damage_cv.py`
prints beside the validation figures.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, islice

import numpy as np

from model.damage import (
    CRACK_MAP,
    GLASS_ZONES,
    JOINT,
    JOINT_V2,
    JOINT_V3,
    NEEDS,
    ZoneDamageModel,
    crack_stats_slice,
    glass_zones,
    zone_features,
)
from model.taxonomy import DefectType, View, Zone
from training.dataset import device_group
from training.predict import Prediction

# Down to 0.001: with an encoder trained on the real train photos (the 2026-12-04 GPU recipe), their
# features separate the classes better than unseen photos' do, and validation prefers a flatter model.
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 1.0, 10.0)
CUTS = np.round(np.linspace(0.05, 0.95, 91), 2)  # candidate decision cuts on the fitted probability
# joint_s16_v3's crack-map statistics count as if each were repeated about ten times (3.16 ** 2): cross-
# fitted on the fit photos, 1 left synthetic cracked screens found at 56% (v2: 73%), 10 gave 78%, and
# kept the real intact and worn screens called cracked below v2's (docs/model-history.md, 2026-12-04).
CRACK_MAP_EMPHASIS = math.sqrt(10)
MIN_PER_CLASS = 5  # fewer cracked (or uncracked) photos of a zone: no model for it


# Sources whose image-level labels are exclusive (one defect class per photo, says their data card): a
# photo labelled scratched, stained or oily there is known not to be cracked, a hard negative.
EXCLUSIVE_LABEL_SOURCES = frozenset({"msd"})


def zone_truth(record) -> dict[Zone, bool]:
    """Which glass zones of the photo are known cracked (True) or known intact (False). Only zones that
    are glass on the device (`model.damage.glass_zones`): a laptop's lid is metal or plastic, and no
    zone model judges it in serving, so a lid known uncracked (laptop_scratch's, a synthetic laptop's
    back) is no sample of a back glass."""
    glass = glass_zones(record.device_kind)
    if record.instances_complete:
        return {z: any(i.type is DefectType.CRACK and i.zone is z for i in record.instances) for z in glass}
    label = record.image_labels.get(DefectType.CRACK)
    if label is None and record.source in EXCLUSIVE_LABEL_SOURCES and any(record.image_labels.values()):
        label = False
    if label is None:
        return {}
    zone = Zone.BODY if record.view is View.BACK else Zone.SCREEN
    return {zone: bool(label)} if zone in glass else {}


# Sources whose defects the generator drew: `composite` puts synthetic defects on real MSD screens and
# laptop lids (docs/data.md), so its crack truth is a drawn crack, not a real one, although its
# instance labels are not complete.
GENERATED_DEFECT_SOURCES = frozenset({"synthetic", "composite"})


@dataclass(frozen=True)
class ZoneSample:
    source: str
    features: np.ndarray
    cracked: bool
    synthetic: bool = False  # the truth is the generator's (complete instance labels, or composites)
    group: str = ""  # the device group (`training.dataset.device_group`): copies with their originals


def zone_samples(preds: Iterable[Prediction], zone: Zone, kind: str = CRACK_MAP) -> list[ZoneSample]:
    """The photos whose truth for `zone` is known and that show enough of it."""
    return sample_sets(preds, (kind,), (zone,))[kind][zone]


def sample_sets(
    preds: Iterable[Prediction], kinds: Sequence[str], zones: Sequence[Zone] = GLASS_ZONES
) -> dict[str, dict[Zone, list[ZoneSample]]]:
    """`zone_samples` of every kind and zone, in one pass over `preds`: a generator is read once and no
    photo's outputs are kept, only its features (a calibration's thousands of fit photos held as whole
    outputs took about 1.6 MB each)."""
    out: dict[str, dict[Zone, list[ZoneSample]]] = {k: {z: [] for z in zones} for k in kinds}
    for p in preds:
        rec = p.item.record
        truth = zone_truth(rec)
        generated = rec.instances_complete or rec.source in GENERATED_DEFECT_SOURCES
        group = device_group(rec)
        for zone in zones:
            if truth.get(zone) is None:
                continue
            for kind in kinds:
                f = zone_features(p.outputs, zone, kind)
                if f is not None:
                    out[kind][zone].append(ZoneSample(rec.source, f, truth[zone], generated, group))
    return out


def source_weights(samples: Sequence[ZoneSample]) -> np.ndarray:
    """Weights that make every source count the same in the fit, and within a source its cracked and
    intact photos (where it has both); they sum to the number of samples."""
    sources = Counter(s.source for s in samples)
    classes = Counter((s.source, s.cracked) for s in samples)
    w = np.array(
        [
            1.0 / (sources[s.source] * (classes[(s.source, s.cracked)] / sources[s.source]) * 2)
            if classes[(s.source, not s.cracked)]
            else 1.0 / sources[s.source]
            for s in samples
        ]
    )
    return w * len(samples) / w.sum()


def _log_loss(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-(w * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum() / w.sum())


def fit_zone_damage(
    fit: Sequence[ZoneSample], choose: Sequence[ZoneSample], kind: str = CRACK_MAP
) -> tuple[ZoneDamageModel | None, dict]:
    """The model for one zone, fitted on `fit` with the `C` whose log-loss on `choose` is lowest, and the
    figures behind the choice; None when `fit` has too few photos of either class."""
    from sklearn.linear_model import LogisticRegression

    y = np.array([s.cracked for s in fit], dtype=float)
    if min(y.sum(), len(y) - y.sum()) < MIN_PER_CLASS:
        return None, {"photos": len(fit), "positives": int(y.sum()), "skipped": "too few of a class"}
    raw = np.stack([s.features for s in fit])
    # Standardised features: one regularisation strength fits hundreds of encoder channels alike.
    mean, scale = raw.mean(axis=0), raw.std(axis=0) + 1e-6
    # The crack map's few statistics among hundreds of encoder ones: penalised as one of those, the
    # evidence of the crack head (what finds synthetic cracks) is shrunk away; scaled up, it is
    # penalised CRACK_MAP_EMPHASIS**2 times less (`crack_stats_slice`: v3 only).
    scale[crack_stats_slice(kind, raw.shape[1])] /= CRACK_MAP_EMPHASIS
    x, w = (raw - mean) / scale, source_weights(fit)
    yc = np.array([s.cracked for s in choose], dtype=float)
    xc = (np.stack([s.features for s in choose]) - mean) / scale if choose else None
    wc = source_weights(choose) if choose else None
    scores, best = {}, None
    for c in C_GRID:
        lr = LogisticRegression(C=c, max_iter=1000).fit(x, y, sample_weight=w)
        loss = _log_loss(yc, lr.predict_proba(xc)[:, 1], wc) if xc is not None else 0.0
        scores[str(c)] = loss
        if best is None or loss < best[0]:
            best = (loss, c, lr)
    _, c, lr = best
    bias, cut, youden, judged_on = float(lr.intercept_[0]), 0.5, None, None
    # Real photos decide the cut where they have both classes; else every held-apart photo.
    real = deciding(choose)
    if xc is not None and 0 < yc[real].sum() < real.sum():
        on = [s for s, r in zip(choose, real, strict=True) if r]
        cut, youden = choose_cut(lr.predict_proba(xc[real])[:, 1], yc[real], source_weights(on))
        bias -= math.log(cut / (1 - cut))
        judged_on = dict(Counter(s.source for s in on))
    model = ZoneDamageModel(
        features=kind,
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        weights=tuple(float(v) for v in lr.coef_[0]),
        bias=bias,
        photos=len(fit),
        positives=int(y.sum()),
        sources=dict(Counter(s.source for s in fit)),
    )
    figures = {"features": kind, "C": c, "choice_log_loss": scores, "photos": len(fit)}
    figures |= {"cut": float(cut), "choice_youden_j": youden, "cut_chosen_on": judged_on}
    return model, figures | {"choice_photos": len(choose)}


def deciding(samples: Sequence[ZoneSample]) -> np.ndarray:
    """Which samples decide a choice: the real photos where they hold both classes (the promise is made
    on real photos), else all of them (the back glass: synthetic photos only)."""
    real = np.array([not s.synthetic for s in samples], dtype=bool)
    y = np.array([s.cracked for s in samples], dtype=bool)
    return real if 0 < y[real].sum() < real.sum() else np.ones(len(samples), dtype=bool)


def choose_cut(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """The cut on `p` with the highest weighted Youden's J (true-positive minus false-positive rate),
    and that J. Where a run of cuts ties (no photo between them: a gap between the classes), its middle:
    the lowest would put the decision against the last negative (a scratched screen at 0.49 counted
    intact, at 0.51 cracked), the middle leaves both classes the same margin."""
    pos, neg = w * (y == 1), w * (y == 0)
    js = np.array([pos[p >= c].sum() / pos.sum() - neg[p >= c].sum() / neg.sum() for c in CUTS])
    best = js.max()
    top = np.flatnonzero(js >= best - 1e-12)
    # the longest run of consecutive best cuts (the first on ties), and its middle
    runs = np.split(top, np.flatnonzero(np.diff(top) > 1) + 1)
    run = max(runs, key=len)
    return float(CUTS[run[(len(run) - 1) // 2]]), float(best)


def cross_fitted(
    fit: Sequence[ZoneSample], choose: Sequence[ZoneSample], kind: str = CRACK_MAP, folds: int = 5
) -> np.ndarray:
    """Each `fit` photo's probability from a model fitted as `fit_zone_damage` (its C and cut chosen on
    `choose`) without the fold of its device group: an out-of-fold estimate of how the zone-damage fit
    generalises, over many more photos than a validation split holds. The folds are a fixed hash of
    the group, so copies go with their originals and every run splits alike. NaN where a fold's
    model could not be fitted (too few of a class)."""
    fold = np.array([zlib.crc32(s.group.encode()) % folds for s in fit])
    out = np.full(len(fit), np.nan)
    for k in range(folds):
        model, _ = fit_zone_damage([s for s, f in zip(fit, fold, strict=True) if f != k], choose, kind)
        if model is not None:
            for i in np.flatnonzero(fold == k):
                out[i] = model.probability(fit[i].features)
    return out


def feature_kinds(preds: Sequence[Prediction]) -> tuple[str, ...]:
    """The zone features a fit may read: every kind whose outputs the model file gives (`model.damage.
    NEEDS`) besides the crack map's alone, which is left for files that give none."""
    have = set(preds[0].outputs) if preds else set()
    kinds = tuple(k for k in (JOINT, JOINT_V2, JOINT_V3) if set(NEEDS[k]) <= have)
    return kinds or (CRACK_MAP,)


def out_of_fold_log_loss(fit: Sequence[ZoneSample], choose: Sequence[ZoneSample], kind: str) -> float:
    """The weighted log-loss of `cross_fitted` probabilities over the photos that decide (`deciding`:
    the real ones where they hold both classes) and whose fold got a model: how well a fit on these
    features generalises to device groups it did not see. Each source weighs the same in it, so over
    every photo 16 synthetic composites would weigh as much as 1150 real phones_web photos."""
    p = cross_fitted(fit, choose, kind)
    ok = ~np.isnan(p) & deciding(fit)
    if not ok.any():
        return math.inf
    y = np.array([s.cracked for s in fit], dtype=float)
    return _log_loss(y[ok], p[ok], source_weights([s for s, k in zip(fit, ok, strict=True) if k]))


def fit_all_zones(
    fit_preds: Iterable[Prediction], choose_preds: Sequence[Prediction]
) -> tuple[dict[str, ZoneDamageModel], dict]:
    """A model per glass zone that has enough labelled photos, and the figures of each fit. `fit_preds`
    may be a generator (`training.predict.predict`): it is read once, keeping features, not outputs.

    Where more than one kind of features is on offer (`feature_kinds`), each zone takes the one whose
    cross-fitted log-loss over its fit photos (the real ones where they hold both classes,
    `out_of_fold_log_loss`) is lowest: many more photos than the validation split (which still
    chooses C and the cut), and the choice is structural: four statistics a channel generalised better
    than two on the screen's real photos, and ImageNet's features with them better still; the back
    glass's 179 synthetic photos, too few for 452 features, once kept the two-way pooling
    (docs/model-history.md)."""
    models, figures = {}, defaultdict(dict)
    preds = iter(fit_preds)
    head = list(islice(preds, 1))  # the first photo says which outputs the file gives
    kinds = feature_kinds(head)
    fit = sample_sets(chain(head, preds), kinds)
    choose = sample_sets(choose_preds, kinds)
    for zone in GLASS_ZONES:
        samples = {k: (fit[k][zone], choose[k][zone]) for k in kinds}
        losses = {k: out_of_fold_log_loss(*samples[k], k) for k in kinds} if len(kinds) > 1 else {}
        kind = min(losses, key=losses.get) if losses else kinds[0]
        model, fig = fit_zone_damage(*samples[kind], kind)
        figures[zone.value] = fig | ({"kind_out_of_fold_log_loss": losses} if losses else {})
        if model is not None:
            models[zone.value] = model
    return models, dict(figures)
