"""Fitting the zone-damage models (`training.damage`): which truth a photo gives, source weighting, and
a fit that separates cracked from intact screens where the features do."""

from __future__ import annotations

import numpy as np
import pytest

from model.instances import mm
from model.manifest import ManifestRecord
from model.taxonomy import Zone
from training.damage import ZoneSample, cross_fitted, fit_zone_damage, source_weights, zone_truth


def _record(**kw) -> ManifestRecord:
    device = kw.pop("device_id", "d")
    return ManifestRecord(image="x.png", device_id=device, split="train", source=kw.pop("source", "s"), **kw)


def test_truth_from_instances_image_labels_and_exclusive_sources():
    synth = _record(instances=[], instances_complete=True)
    assert zone_truth(synth) == {Zone.SCREEN: False, Zone.BODY: False}
    cracked = _record(image_labels={"crack": True}, view="front")
    assert zone_truth(cracked) == {Zone.SCREEN: True}
    assert zone_truth(_record(image_labels={"crack": True}, view="back")) == {Zone.BODY: True}
    assert zone_truth(_record(image_labels={"scratch": True}, source="msd")) == {Zone.SCREEN: False}
    # Elsewhere a scratch label says nothing about cracks.
    assert zone_truth(_record(image_labels={"scratch": True}, source="laptop_scratch")) == {}
    # A laptop's lid is not glass: known uncracked, it is still no sample of a back glass; its screen is.
    lid = dict(device_kind="laptop", view="back", source="laptop_scratch")
    assert zone_truth(_record(image_labels={"scratch": True, "crack": False}, **lid)) == {}
    assert zone_truth(_record(instances=[], instances_complete=True, device_kind="laptop")) == {
        Zone.SCREEN: False
    }
    assert zone_truth(_record(image_labels={"crack": False}, device_kind="laptop", view="front")) == {
        Zone.SCREEN: False
    }


def test_truth_of_a_labelled_crack_on_the_back():
    from model.manifest import LabelledInstance

    rec = _record(
        instances=[LabelledInstance(type="crack", zone="body", polygon=[(0, 0), (1, 0), (1, 1)])],
        instances_complete=True,
    )
    assert zone_truth(rec) == {Zone.SCREEN: False, Zone.BODY: True}


def test_each_source_and_each_class_within_a_source_weighs_the_same_in_the_fit():
    samples = [ZoneSample("big", np.zeros(4), False)] * 30 + [ZoneSample("small", np.zeros(4), True)] * 3
    w = source_weights(samples)
    assert w[:30].sum() == pytest.approx(w[30:].sum()) and w.sum() == pytest.approx(len(samples))
    skewed = [ZoneSample("web", np.zeros(4), True)] * 73 + [ZoneSample("web", np.zeros(4), False)] * 27
    w = source_weights(skewed)
    assert w[:73].sum() == pytest.approx(w[73:].sum())  # cracked and intact at even odds


def _samples(rng, n, source="real"):
    out = []
    for k in range(n):
        cracked = k % 2 == 0
        f = rng.normal(1.5 if cracked else -1.5, 1.0, size=4)
        out.append(ZoneSample(source, f, cracked))
    return out


def test_the_fit_separates_cracked_from_intact_and_is_chosen_on_other_photos():
    rng = np.random.default_rng(1)
    model, fig = fit_zone_damage(_samples(rng, 80), _samples(rng, 40))
    assert model is not None and fig["C"] in (0.01, 0.1, 1.0, 10.0)
    assert model.photos == 80 and model.positives == 40 and model.sources == {"real": 80}
    held_out = _samples(rng, 60)
    p = np.array([model.probability(s.features) for s in held_out])
    y = np.array([s.cracked for s in held_out])
    assert p[y].mean() > 0.8 and p[~y].mean() < 0.2


def test_no_model_from_too_few_photos_of_a_class():
    rng = np.random.default_rng(2)
    few = [s for s in _samples(rng, 40) if not s.cracked] + [ZoneSample("real", np.ones(4), True)] * 2
    model, fig = fit_zone_damage(few, few)
    assert model is None and fig["skipped"] == "too few of a class"


def test_real_photos_known_only_cracked_or_not_give_set_labels_for_the_grade_calibration():
    from types import SimpleNamespace

    from training.metrics import MAX_REAL_WEIGHT, grade_devices, is_right, real_weights

    def scored(device, labels, instances, source="phones_web"):
        record = _record(image_labels=labels, view="front", source=source).model_copy(
            update={"device_id": device}
        )
        return SimpleNamespace(pred=SimpleNamespace(item=SimpleNamespace(record=record)), instances=instances)

    crack = mm("crack", "screen", 30.0, 0.3)
    results = [
        scored("cracked-and-found", {"crack": True}, [crack]),
        scored("cracked-missed", {"crack": True}, []),
        scored("intact", {"crack": False}, []),
        scored("worn", {"scratch": True}, [], source="msd"),
        scored("unknown", {"scratch": True}, [], source="laptop_scratch"),
    ]
    assert grade_devices(results, ["backmarket"]) == []  # no grade truth: evaluation's rows are unchanged
    rows = {r["device"]: r for r in grade_devices(results, ["backmarket"], listability=True)}
    assert set(rows) == {"cracked-and-found", "cracked-missed", "intact", "worn"}
    assert rows["cracked-and-found"]["true"] == ("Unlistable",) and is_right(rows["cracked-and-found"])
    assert not is_right(rows["cracked-missed"])  # graded Premium
    assert rows["intact"]["true"] == ("Premium", "Excellent", "Good", "Fair") and is_right(rows["intact"])
    assert all(r["real"] for r in rows.values())
    synthetic = [{"real": False}] * 6
    w = real_weights(list(rows.values()) + synthetic)
    assert sum(w[:4]) == pytest.approx(sum(w[4:]))
    # A handful of real devices beside many synthetic ones: each weighs at most MAX_REAL_WEIGHT.
    w = real_weights(list(rows.values()) + [{"real": False}] * 100)
    assert w[:4] == [MAX_REAL_WEIGHT] * 4 and sum(w[:4]) < sum(w[4:])


def test_a_cracked_real_photo_may_have_the_grades_each_standard_gives_cracked_glass():
    """CTIA grades a cracked cover glass D and R2 cracked glass C6, both listable: a cracked phone graded
    so is right, and so is one graded worse; Back Market bars every crack."""
    from types import SimpleNamespace

    from training.metrics import cracked_grades, grade_devices, is_right, listable_grades

    record = _record(image_labels={"crack": True}, view="front", source="phones_web").model_copy(
        update={"device_id": "cracked"}
    )
    crack = SimpleNamespace(
        pred=SimpleNamespace(item=SimpleNamespace(record=record)),
        instances=[mm("crack", "screen", 30.0, 0.3)],
    )
    rows = {r["standard"]: r for r in grade_devices([crack], ["backmarket", "ctia", "r2"], listability=True)}
    assert {s: r["pred"] for s, r in rows.items()} == {"backmarket": "Unlistable", "ctia": "D", "r2": "C6"}
    assert all(is_right(r) for r in rows.values())
    assert cracked_grades("backmarket") == ("Unlistable",)
    assert cracked_grades("ctia") == ("D", "E")
    assert cracked_grades("r2") == ("C6", "C7")
    # A worn phone may have any listable grade (CTIA's D for long scratches or heavy dents too), not E.
    assert listable_grades("ctia") == ("A", "B", "C", "D")


def test_an_intact_real_photo_may_not_have_the_grades_of_cracked_glass():
    """An intact phone (crack known absent, nothing else labelled) graded CTIA D or R2 C6 is wrong: those
    are the grades of cracked glass; a worn one (MSD's scratched screen) may have them (a long scratch
    is D under CTIA)."""
    from types import SimpleNamespace

    from training.metrics import grade_devices, is_right, real_truth, truth_grades, uncracked_grades

    assert uncracked_grades("ctia") == ("A", "B", "C")
    assert uncracked_grades("r2") == ("C2", "C3", "C4", "C5")
    assert uncracked_grades("backmarket") == ("Premium", "Excellent", "Good", "Fair")
    intact = _record(image_labels={"crack": False}, view="front", source="phones_web")
    worn = _record(image_labels={"scratch": True}, view="front", source="msd")
    assert [real_truth(r) for r in (intact, worn)] == ["intact", "worn"]
    assert real_truth(_record(image_labels={"crack": True}, source="phones_web")) == "cracked"
    assert real_truth(_record(source="phones_web")) is None
    assert truth_grades("ctia", "worn") == ("A", "B", "C", "D")
    # Nothing a grade can be checked against: a photo of no device; a composite's drawn wear (its
    # sizes unknown: a large drawn stain is rightly Unlistable); a composite's drawn crack still is one.
    assert real_truth(_record(image_labels={"crack": False}, quality="no_device")) is None
    drawn = _record(image_labels={"crack": False, "stain": True}, view="front", source="composite")
    assert real_truth(drawn) is None
    assert real_truth(drawn.model_copy(update={"image_labels": {"crack": True}})) == "cracked"

    def graded(record, device):
        # a long screen scratch: CTIA D (over C's 7 mm), R2 worse than C5
        photo = SimpleNamespace(
            pred=SimpleNamespace(
                item=SimpleNamespace(record=record.model_copy(update={"device_id": device}))
            ),
            instances=[mm("scratch", "screen", 30.0, 0.3)],
        )
        return {r["standard"]: r for r in grade_devices([photo], ["ctia"], listability=True)}["ctia"]

    on_intact, on_worn = graded(intact, "intact"), graded(worn, "worn")
    with pytest.raises(KeyError):  # no row for the composite
        graded(drawn, "drawn")
    assert on_intact["pred"] == on_worn["pred"] == "D"
    assert on_intact["true"] == ("A", "B", "C") and not is_right(on_intact)
    assert is_right(on_worn)


def test_the_review_threshold_holds_for_synthetic_devices_and_real_photos_apart():
    from training.calibrate import review_thresholds

    # Real photos: right whenever their confidence is 0.5 or more; synthetic devices: only above 0.9.
    real = [{"confidence": c, "pred": "A", "true": ("A",), "real": True} for c in (0.5, 0.6, 0.7, 0.8)] * 5
    synth = [
        {"confidence": c, "pred": "A", "true": "A" if c > 0.9 else "B"} for c in (0.6, 0.8, 0.92, 0.96)
    ] * 5
    picked = review_thresholds(real + synth)
    assert picked["real"] <= 0.5 and 0.8 < picked["synthetic"] <= 0.92
    assert review_thresholds(synth) == {"synthetic": picked["synthetic"]}


def test_the_chosen_cut_becomes_the_rules_half_and_keeps_the_order():
    """Negatives that sit just above 0.5 (scratched screens) fall below it once the cut is chosen on
    held-apart photos; the ranking of the photos does not change."""
    from training.damage import choose_cut

    p = np.array([0.9, 0.8, 0.7, 0.58, 0.55, 0.1, 0.05])
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    cut, j = choose_cut(p, y, np.ones(len(p)))
    # every cut in 0.59-0.70 separates them: the middle of that run leaves both sides a margin
    assert cut == pytest.approx(0.64) and j == pytest.approx(1.0)
    rng = np.random.default_rng(3)
    fit = _samples(rng, 80)
    # Held-apart negatives shifted towards the positives: the cut rises above 0.5.
    choose = [
        ZoneSample("real", s.features + (0.0 if s.cracked else 1.2), s.cracked) for s in _samples(rng, 60)
    ]
    model, fig = fit_zone_damage(fit, choose)
    assert fig["cut"] > 0.5
    probs = np.array([model.probability(s.features) for s in choose])
    y = np.array([s.cracked for s in choose])
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, probs) > 0.8
    # The cut's photos are the counted ones: exactly those at or above the cut before the shift.
    unshifted = 1 / (1 + np.exp(-(np.log(probs / (1 - probs)) + np.log(fig["cut"] / (1 - fig["cut"])))))
    assert ((probs >= 0.5) == (unshifted >= fig["cut"] - 1e-9)).all()


def test_a_cut_between_tied_runs_takes_the_longest_runs_middle():
    """Two separate runs of cuts reach the best J: the longer run wins, and its middle is the cut."""
    from training.damage import choose_cut

    y = np.array([1, 1, 0, 0])
    # Cuts 0.11-0.30 keep both positives and the negative at 0.35 (J 1 - 0.5); 0.31-0.35 lose a
    # positive and keep that negative (J 0); 0.36-0.80 keep one positive and no negative (J 0.5).
    cut, j = choose_cut(np.array([0.8, 0.3, 0.35, 0.1]), y, np.ones(4))
    assert j == pytest.approx(0.5) and cut == pytest.approx(0.58)  # the middle of 0.36-0.80
    # The top positive at 0.5: 0.36-0.50 is now the shorter run, and 0.11-0.30's middle is the cut.
    cut, j = choose_cut(np.array([0.5, 0.3, 0.35, 0.1]), y, np.ones(4))
    assert j == pytest.approx(0.5) and cut == pytest.approx(0.20)


def test_real_photos_choose_the_cut_when_they_have_both_classes():
    from training.damage import choose_cut

    rng = np.random.default_rng(4)
    fit, real = _samples(rng, 80), _samples(rng, 40)
    # Synthetic negatives that look cracked would drag the cut up, if they were asked.
    synthetic = [
        ZoneSample("synthetic", s.features + (0.0 if s.cracked else 2.5), s.cracked, True)
        for s in _samples(rng, 40)
    ]
    model, fig = fit_zone_damage(fit, real + synthetic)
    assert fig["cut_chosen_on"] == {"real": 40}
    shifted = np.array([model.probability(s.features) for s in real])
    logit = np.log(fig["cut"] / (1 - fig["cut"]))
    unshifted = 1 / (1 + np.exp(-(np.log(shifted / (1 - shifted)) + logit)))
    y = np.array([s.cracked for s in real], dtype=float)
    assert choose_cut(unshifted, y, source_weights(real))[0] == fig["cut"]
    _, only_synth = fit_zone_damage(fit, synthetic)
    assert only_synth["cut_chosen_on"] == {"synthetic": 40}


def test_cross_fitted_judges_each_group_by_a_model_that_never_saw_it(monkeypatch):
    import training.damage as damage

    class Seen:  # a "model" that says 1.0 for a photo of a group it was fitted on, 0.0 otherwise
        def __init__(self, groups):
            self.groups = groups

        def probability(self, features):
            return float(int(features[0]) in self.groups)

    def fake_fit(fit, choose, kind):
        return Seen({int(s.features[0]) for s in fit}), {}

    monkeypatch.setattr(damage, "fit_zone_damage", fake_fit)
    # 30 groups of 3 photos each (an original and its copies share the group).
    samples = [
        ZoneSample("web", np.array([g, k]), g % 2 == 0, group=f"dev{g}") for g in range(30) for k in range(3)
    ]
    p = damage.cross_fitted(samples, [], folds=5)
    assert p.shape == (90,) and (p == 0.0).all()


def test_cross_fitted_probabilities_separate_held_out_groups():
    rng = np.random.default_rng(3)
    samples = [
        ZoneSample(s.source, s.features, s.cracked, group=f"dev{k // 2}")
        for k, s in enumerate(_samples(rng, 120))
    ]
    p = cross_fitted(samples, _samples(rng, 40), folds=4)
    y = np.array([s.cracked for s in samples])
    assert not np.isnan(p).any() and p[y].mean() > 0.8 and p[~y].mean() < 0.2
    # A fold with too few photos of a class gets no model: NaN, not a guess.
    lone = [ZoneSample("web", np.ones(4), True, group="a"), ZoneSample("web", -np.ones(4), False, group="a")]
    assert np.isnan(cross_fitted(lone, [], folds=2)).all()


def test_each_zone_takes_the_features_that_generalise_best_out_of_fold(monkeypatch):
    import training.damage as damage
    from model.damage import JOINT, JOINT_V2

    seen = []

    def fake_loss(fit, choose, kind):
        seen.append(kind)
        return {JOINT: 0.4, JOINT_V2: 0.3}[kind]

    monkeypatch.setattr(damage, "out_of_fold_log_loss", fake_loss)
    monkeypatch.setattr(damage, "feature_kinds", lambda preds: (JOINT, JOINT_V2))
    rng = np.random.default_rng(4)
    monkeypatch.setattr(
        damage,
        "sample_sets",
        lambda preds, kinds, zones=damage.GLASS_ZONES: {
            k: {z: _samples(rng, 40) for z in zones} for k in kinds
        },
    )
    models, figures = damage.fit_all_zones([object()], [object()])
    assert {m.features for m in models.values()} == {JOINT_V2}
    assert figures["screen"]["kind_out_of_fold_log_loss"] == {JOINT: 0.4, JOINT_V2: 0.3}
    assert seen.count(JOINT) == seen.count(JOINT_V2) == 2  # both kinds tried on both glass zones


def test_the_out_of_fold_log_loss_is_lower_for_features_that_separate():
    from training.damage import out_of_fold_log_loss

    rng = np.random.default_rng(5)
    good = [
        ZoneSample(s.source, s.features, s.cracked, group=f"d{k}") for k, s in enumerate(_samples(rng, 80))
    ]
    noise = [ZoneSample(s.source, rng.normal(size=4), s.cracked, s.synthetic, s.group) for s in good]
    choose = _samples(rng, 40)
    assert out_of_fold_log_loss(good, choose, "crack_map_v1") < out_of_fold_log_loss(
        noise, choose, "crack_map_v1"
    )


def test_real_photos_decide_the_kind_and_a_composites_drawn_crack_is_not_real():
    """The out-of-fold log-loss that picks a zone's features is taken over the real photos where they
    hold both classes (each source weighs the same in it: 16 composites must not weigh as much as 1150
    real photos), and over all photos where they do not."""
    from types import SimpleNamespace

    from training.damage import _log_loss, deciding, out_of_fold_log_loss, zone_samples

    rng = np.random.default_rng(6)
    real = [
        ZoneSample(s.source, s.features, s.cracked, group=f"r{k}") for k, s in enumerate(_samples(rng, 80))
    ]
    # Generated photos whose features say nothing of their truth.
    noise = [
        ZoneSample("synthetic", rng.normal(size=4), s.cracked, True, f"s{k}")
        for k, s in enumerate(_samples(rng, 40))
    ]
    choose = _samples(rng, 40)
    both = real + noise
    assert deciding(both).tolist() == [True] * 80 + [False] * 40
    assert deciding(noise).all()  # no real photos: all decide
    p = cross_fitted(both, choose)
    y = np.array([s.cracked for s in both], dtype=float)
    over_real = _log_loss(y[:80], p[:80], source_weights(real))
    assert out_of_fold_log_loss(both, choose, "crack_map_v1") == pytest.approx(over_real)
    assert over_real < _log_loss(y, p, source_weights(both))  # the noise would have counted half
    # A composite (a drawn crack on a real photo) has no complete labels, yet its truth is generated.
    rec = _record(source="composite", image_labels={"crack": True}, view="front")
    pred = SimpleNamespace(
        item=SimpleNamespace(record=rec),
        outputs={
            "zone_probs": np.stack([np.zeros((8, 8)), np.ones((8, 8)), *[np.zeros((8, 8))] * 3]),
            "defect_probs": np.zeros((6, 8, 8)),
        },
    )
    (sample,) = zone_samples([pred], Zone.SCREEN)
    assert sample.cracked and sample.synthetic


def test_the_imagenet_features_are_offered_only_where_the_file_gives_them():
    from types import SimpleNamespace

    from model.damage import CRACK_MAP, JOINT, JOINT_V2, JOINT_V3
    from training.damage import feature_kinds

    def pred(*names):
        return SimpleNamespace(outputs={"defect_probs": 0, "zone_probs": 0, **dict.fromkeys(names, 0)})

    assert feature_kinds([pred()]) == (CRACK_MAP,)
    assert feature_kinds([pred("encoder_s16")]) == (JOINT, JOINT_V2)
    assert feature_kinds([pred("encoder_s16", "imagenet_s32")]) == (JOINT, JOINT_V2, JOINT_V3)


def test_the_fit_photos_are_read_once_and_their_outputs_not_kept():
    """Calibration hands `fit_all_zones` the `predict` generator: thousands of photos' outputs held in a
    list took about a megabyte each. A one-shot iterator fits the same models as the list."""
    from types import SimpleNamespace

    from training.damage import fit_all_zones

    rng = np.random.default_rng(6)

    def pred(k: int):
        cracked = k % 2 == 0
        zone = np.zeros((5, 16, 16))
        zone[0] = 1
        zone[0, 2:14, 3:13], zone[1, 2:14, 3:13] = 0, 1  # a front photo's screen
        defect = np.zeros((6, 16, 16))
        defect[2, 2:14, 3:13] = rng.uniform(0.3, 0.9) if cracked else rng.uniform(0.0, 0.2)
        rec = _record(source="web", image_labels={"crack": cracked}, view="front", device_id=f"web:d{k}")
        return SimpleNamespace(
            item=SimpleNamespace(record=rec), outputs={"zone_probs": zone, "defect_probs": defect}
        )

    fit, choose = [pred(k) for k in range(60)], [pred(k) for k in range(60, 90)]
    consumed = []

    def once():
        for p in fit:
            consumed.append(p)
            yield p

    from_list, fig_list = fit_all_zones(fit, choose)
    from_generator, fig_generator = fit_all_zones(once(), choose)
    assert len(consumed) == len(fit)  # one pass
    assert set(from_list) == {"screen"} and from_generator == from_list and fig_generator == fig_list
