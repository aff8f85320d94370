"""Fitting the photo probes (`model.probes`): the view, the quality and the device-kind verdict from the
encoder's features.

Truth per photo:
- view: the record's view (synthetic photos: the generator's; real sets: their manifest's, phones_web
  and MSD "front", which the phones_web audit found true for 60 of 60 photos looked at, laptop_scratch
  "back": its 18 laptops, each looked at, are closed lids and bottom covers, none opened);
- quality: the record's quality where it has one (synthetic photos, and the faulty copies of real
  photos made by `training.synth.degrade`); a real photo without one is usable: each was labelled by
  what a person could see on it;
- kind: "laptop" or not ("phone") from the record's device kind (synthetic photos: the generator's; real
  sets: their manifest's, laptop_scratch's lids and covers and cracked_screens' laptop displays
  laptops, the rest phones). A tablet counts as "phone": serving asks only whether the device is a
  laptop (`model.device_kind`), a tablet's glass is judged as a phone's, and a three-way fit spent its
  regularisation on telling synthetic tablets from phones (validation: a flatter laptop probability,
  10 of the 15 real lids at 9 to 1 against 14 of 15 for the two-way fit). A photo without a kind (a
  synthetic frame with no device) is left out.

The photos with synthetic truth (the generator's) and the real ones weigh half each in the fit, and
within each half every source the same (a faulty copy's source is its own, `phones_web_degraded`): the
real photos are nearly all front views, and must not teach that every photo is one, nor may the synthetic
photos outvote the real ones. `C` is chosen by the weighted log-loss on a second, held-apart set of
photos (the validation sources). Never fit on a test split. The view probe leaves the choice between
the side views to the network's head (`PhotoProbe.head_split`): no real photo shows a side.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from model.probes import VERDICTS, PhotoProbe, pooled_features
from model.taxonomy import DeviceKind, PhotoQuality, View
from training.predict import Prediction

C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
MIN_PHOTOS = 20  # fewer labelled photos: no probe
HEAD_SPLIT = {"view": tuple(v.value for v in View if v not in (View.FRONT, View.BACK))}


@dataclass(frozen=True)
class Sample:
    source: str
    features: np.ndarray
    label: str
    synthetic: bool  # the truth is the generator's
    head: np.ndarray | None  # the network's own distribution over the verdict's classes (no head: None)


def truth(record, verdict: str) -> str | None:
    """The photo's true class for `verdict` ("view", "quality" or "kind"), None where unknown."""
    if verdict == "view":
        return None if record.view is None else record.view.value
    if verdict == "kind":
        if record.device_kind is None:
            return None
        laptop = DeviceKind(record.device_kind) is DeviceKind.LAPTOP
        return (DeviceKind.LAPTOP if laptop else DeviceKind.PHONE).value
    if record.quality is not None:
        return record.quality.value
    return None if record.source == "synthetic" else PhotoQuality.USABLE.value


def samples(preds: Iterable[Prediction], verdict: str) -> list[Sample]:
    return sample_sets(preds)[verdict]


def sample_sets(preds: Iterable[Prediction]) -> dict[str, list[Sample]]:
    """`samples` of every verdict, in one pass over `preds`: a generator is read once and no photo's
    outputs are kept, only its pooled features (held whole, a prediction is about 1.6 MB)."""
    out: dict[str, list[Sample]] = {v: [] for v in VERDICTS}
    for p in preds:
        rec = p.item.record
        labels = {v: truth(rec, v) for v in VERDICTS}
        if all(label is None for label in labels.values()):
            continue
        f = pooled_features(p.outputs)
        if f is None:
            continue
        for verdict, label in labels.items():
            if label is not None:
                head = p.outputs.get(VERDICTS[verdict][0])  # the kind has no head: its probe adds it
                out[verdict].append(Sample(rec.source, f, label, rec.instances_complete, head))
    return out


def source_weights(samples: Sequence[Sample]) -> np.ndarray:
    """Synthetic and real photos half the total weight each (all of it where one kind is missing),
    every source the same within its half; the weights sum to the number of samples."""
    n = Counter(s.source for s in samples)
    sources = {kind: len({s.source for s in samples if s.synthetic is kind}) for kind in (True, False)}
    w = np.array([1.0 / (n[s.source] * sources[s.synthetic]) for s in samples])
    return w * len(samples) / w.sum()


def _log_loss(labels: Sequence[str], proba: np.ndarray, classes: Sequence[str], w: np.ndarray) -> float:
    idx = [list(classes).index(y) if y in classes else -1 for y in labels]
    p = np.array([proba[i, k] if k >= 0 else 0.0 for i, k in enumerate(idx)])
    return float(-(w * np.log(np.clip(p, 1e-6, 1.0))).sum() / w.sum())


def fit_probe(
    fit: Sequence[Sample], choose: Sequence[Sample], verdict: str
) -> tuple[PhotoProbe | None, dict]:
    """The probe of `verdict` fitted on `fit`, with the `C` whose log-loss on `choose` is lowest, and the
    figures behind the choice (with its accuracy on `choose` per source, the head's split applied);
    None with too few photos or classes."""
    from sklearn.linear_model import LogisticRegression

    labels = [s.label for s in fit]
    if len(fit) < MIN_PHOTOS or len(set(labels)) < 2:
        return None, {"photos": len(fit), "skipped": "too few photos or classes"}
    raw = np.stack([s.features for s in fit])
    # Standardised: one regularisation strength fits hundreds of encoder channels alike.
    mean, scale = raw.mean(axis=0), raw.std(axis=0) + 1e-6
    x, w = (raw - mean) / scale, source_weights(fit)
    xc = (np.stack([s.features for s in choose]) - mean) / scale if choose else None
    wc = source_weights(choose) if choose else None
    scores, best = {}, None
    for c in C_GRID:
        lr = LogisticRegression(C=c, max_iter=2000).fit(x, labels, sample_weight=w)
        loss = _log_loss([s.label for s in choose], lr.predict_proba(xc), lr.classes_, wc) if choose else 0.0
        scores[str(c)] = loss
        if best is None or loss < best[0]:
            best = (loss, c, lr)
    _, c, lr = best
    coef, intercept = lr.coef_, lr.intercept_
    if len(lr.classes_) == 2:  # one row for the second class's log-odds: as a softmax, (0, that)
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, intercept]
    probe = PhotoProbe(
        classes=tuple(str(k) for k in lr.classes_),
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        weights=tuple(tuple(float(v) for v in row) for row in coef),
        bias=tuple(float(v) for v in intercept),
        head_split=tuple(c for c in HEAD_SPLIT.get(verdict, ()) if c in lr.classes_),
        photos=len(fit),
        sources=dict(Counter(s.source for s in fit)),
    )
    accuracy = {}
    if choose:
        classes = VERDICTS[verdict][1]
        picked = [classes[int(np.argmax(probe.distribution(s.features, classes, s.head)))] for s in choose]
        hit = np.array(picked) == np.array([s.label for s in choose])
        for src in sorted({s.source for s in choose}):
            m = np.array([s.source == src for s in choose])
            accuracy[src] = round(float(hit[m].mean()), 4)
    figures = {"C": c, "choice_log_loss": scores, "photos": len(fit), "choice_photos": len(choose)}
    return probe, figures | {"choice_accuracy": accuracy}


def fit_probes(
    fit_preds: Iterable[Prediction], choose_preds: Sequence[Prediction]
) -> tuple[dict[str, PhotoProbe], dict]:
    """A probe per verdict (`model.probes.VERDICTS`) that has enough labelled photos, and the figures of
    each fit; none when the model file does not expose the encoder's features. `fit_preds` may be a
    generator (`training.predict.predict`): it is read once."""
    probes, figures = {}, {}
    fit, choose = sample_sets(fit_preds), sample_sets(choose_preds)
    for verdict in VERDICTS:
        probe, fig = fit_probe(fit[verdict], choose[verdict], verdict)
        figures[verdict] = fig
        if probe is not None:
            probes[verdict] = probe
    return probes, figures
