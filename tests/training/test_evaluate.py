"""Evaluation and calibration: metric definitions on hand-made cases, then the report on a toy model."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from model.instances import mm
from model.postprocess import instance_confidence
from training.calibrate import (
    MIN_CALIBRATION_DEVICES,
    calibrate_grades,
    fine_grading_summary,
    fit_confidence,
    fit_confidences,
    fit_gradings,
    grade_accuracy,
    pixel_thresholds,
    refine_for_grades,
)
from training.metrics import (
    GtInstance,
    calibrated_rows,
    coverage_curve,
    ece,
    judged,
    match_instances,
    pick_review_threshold,
    prf,
    selective_accuracy,
)


def _line_mask(x0, x1, y=20, size=64):
    m = np.zeros((size, size), bool)
    m[y, x0:x1] = True
    return m


def test_matching_counts_tp_fp_fn_per_type():
    gts = [
        GtInstance("scratch", _line_mask(5, 30), 10.0),
        GtInstance("scratch", _line_mask(40, 60, y=50), 5.0),
    ]
    preds = [mm("scratch", "screen", 9.0), mm("crack", "screen", 3.0)]
    pred_masks = [_line_mask(6, 29, y=21), _line_mask(40, 60, y=50)]  # the crack sits on the 2nd scratch
    matches = match_instances(preds, pred_masks, gts, radius=2)
    table = prf(matches)
    assert table["scratch"]["tp"] == 1 and table["scratch"]["fn"] == 1 and table["scratch"]["fp"] == 0
    assert table["crack"]["fp"] == 1 and table["crack"]["precision"] == 0.0
    pair = next(m for m in matches if m.pred is not None and m.gt is not None)
    assert pair.gt.length_mm == 10.0 and pair.pred.measurement.length == 9.0


def test_with_incomplete_labels_only_annotated_or_ruled_out_types_can_be_wrong():
    """A lid photo with a scratch polygon: a stain found is not known to be wrong (nobody annotated
    stains there), a crack found is, where the photo is known uncracked (laptop_scratch)."""
    from model.manifest import ManifestRecord

    gts = [GtInstance("scratch", _line_mask(5, 30), None)]
    preds = [mm("scratch", "body", 9.0), mm("stain", "body", 3.0), mm("crack", "body", 3.0)]
    masks = [_line_mask(6, 29, y=21), _line_mask(40, 60, y=50), _line_mask(40, 60, y=10)]
    matches = match_instances(preds, masks, gts, radius=2)
    base = dict(image="a.jpg", device_id="d", split="val", source="laptop_scratch")
    unknown = ManifestRecord(**base, image_labels={"scratch": True})
    uncracked = ManifestRecord(**base, image_labels={"scratch": True, "crack": False})
    assert {m.type for m in judged(matches, gts, unknown)} == {"scratch"}
    assert prf(judged(matches, gts, uncracked))["crack"]["fp"] == 1
    assert "stain" not in prf(judged(matches, gts, uncracked))
    complete = ManifestRecord(**base, instances_complete=True)
    assert len(judged(matches, gts, complete)) == 3  # complete labels: every unmatched one is wrong


def test_ece_and_coverage_curve():
    conf = np.array([0.9] * 10 + [0.6] * 10)
    correct = np.array([1] * 9 + [0] + [1] * 6 + [0] * 4, dtype=float)
    e, _bins = ece(conf, correct)
    assert e == pytest.approx(0.0, abs=1e-9)  # 90% right at 0.9, 60% right at 0.6: perfectly calibrated
    overconfident, _ = ece(np.full(10, 0.95), np.r_[np.ones(5), np.zeros(5)])
    assert overconfident == pytest.approx(0.45)
    curve = coverage_curve(conf, correct)
    at_07 = next(c for c in curve if c["threshold"] == 0.7)
    assert at_07["coverage"] == 0.5 and at_07["accuracy"] == 0.9
    assert pick_review_threshold(curve, 0.85) == 0.62  # lowest cut whose accepted devices are >= 85% right
    assert pick_review_threshold(curve, 0.95) == 1.0  # none reaches 95%: every grading to review


def test_confidence_fit_softens_overconfident_instances():
    rng = np.random.default_rng(0)
    z = np.full(400, 4.0)  # every instance far above its pixel threshold...
    real = (rng.random(400) < 0.7).astype(float)  # ...yet only 70% are real
    T, b = fit_confidence(z, real)
    peak = 1 / (1 + np.exp(-4.0))  # z = 4 against a 0.5 pixel cut
    assert instance_confidence(peak, 0.5) > 0.98  # uncalibrated: overconfident
    assert instance_confidence(peak, 0.5, T, b) == pytest.approx(real.mean(), abs=0.03)


def test_confidence_fit_lifts_faint_but_real_instances():
    """A hairline's coverage peak sits just above a low pixel cut (z small): if such instances are
    nearly all real, calibration must make them count in grading (confidence above 0.5)."""
    rng = np.random.default_rng(1)
    z = rng.uniform(0.05, 0.6, 300)
    real = (rng.random(300) < 0.9).astype(float)
    T, b = fit_confidence(z, real)
    faint = 1 / (1 + np.exp(-(0.3 / T + b)))
    assert faint > 0.8
    # and faint instances that are mostly noise are pushed below 0.5
    noise = (rng.random(300) < 0.2).astype(float)
    T2, b2 = fit_confidence(z, noise)
    assert 1 / (1 + np.exp(-(0.3 / T2 + b2))) < 0.35


def _perfect_preds(tmp_path):
    """Toy photos with a perfect network's output: each mask cell's true defect coverage."""
    from model.inference import Frame, Inferred
    from model.manifest import resolve
    from model.preprocess import prepare
    from training.dataset import build_targets, load_items
    from training.predict import Prediction
    from training.toydata import write_toy_manifest

    path = write_toy_manifest(tmp_path, n=10, size=64, real_like=False)
    preds = []
    for item in [it for it in load_items(path, ["train", "val", "test"]) if it.record.instances]:
        t = build_targets(item, 64)
        cover = t["defects"].reshape(16, 4, 16, 4, 6).astype(np.float32).mean(axis=(1, 3)).transpose(2, 0, 1)
        zone = np.eye(5, dtype=np.float32)[t["zone"][2::4, 2::4].clip(0, 4)].transpose(2, 0, 1)
        _, lb = prepare(resolve(item.manifest, item.record.image), 64)
        outputs = {"defect_probs": cover, "zone_probs": zone}
        preds.append(Prediction(item, Inferred(Frame(t["image"], lb), outputs)))
    return preds


def test_pixel_thresholds_pick_the_cut_whose_instances_match_best(tmp_path):
    preds = _perfect_preds(tmp_path)
    cut, figures = pixel_thresholds(preds, 4)
    present = {i.type.value for p in preds for i in p.item.record.instances}
    assert present and set(figures) == present
    for name in present:  # a perfect coverage map: instances are found almost exactly
        assert figures[name]["instance_f1"] >= 0.75, (name, figures[name])
        assert 0.03 <= cut[name] <= 0.6
    absent = set(cut) - present
    assert all(cut[n] == float(np.median([cut[p] for p in present])) for n in absent)


@pytest.mark.slow
def test_evaluate_report_on_a_toy_model(tmp_path):
    from model.manifest import read_manifest, write_manifest
    from training.config import load_config
    from training.evaluate import run_evaluation
    from training.report import headline, write_report
    from training.toydata import write_toy_manifest
    from training.train import run_training

    toy = write_toy_manifest(tmp_path / "toy", n=20, size=64, seed=3)
    cfg = load_config(
        None,
        [
            f"data.train=[{{manifest: {toy}}}]",
            f"data.val=[{{manifest: {toy}, splits: [val]}}]",
            "model.name=tiny",
            "optim.epochs=1",
            f"run_dir={tmp_path / 'run'}",
            "progress=false",
        ],
    )
    best = run_training(cfg)
    m = run_evaluation(best, [str(toy)], tmp_path / "rep", splits=("test",))
    report = (tmp_path / "rep" / "report.md").read_text()
    for section in (
        "## Headline",
        "## Grades: backmarket",
        "## Zones",
        "## Scratch length",
        "Image-level AUROC",
    ):
        assert section in report
    g = m["grades"]["backmarket"]
    assert sum(map(sum, g["confusion"])) == g["devices"] > 0
    assert 0 <= g["accuracy"] <= 1 and -1 <= g["qwk"] <= 1
    assert (tmp_path / "rep" / "confusion_backmarket.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert saved["n_photos"] == m["n_photos"] and (tmp_path / "rep" / "photos.jsonl").exists()
    # The toy set's "real" photos (image labels only) are graded against their set labels, apart.
    real = m["real_grades"]
    assert set(real) == {"toy_real", "all"} and real["all"]["backmarket"]["devices"] > 0
    assert "## Grades on real photos, per source" in report and "| toy_real | backmarket |" in report
    real = {"phones_web": {"ctia": {"devices": 3, "right": 2 / 3, "mean_probability": 0.75,
                                    "auto_share": 1 / 3, "auto_right": 1.0}}}  # fmt: skip
    again = write_report({**m, "real_grades": real}, tmp_path / "rep2", "toy").read_text()
    assert "| phones_web | ctia | 3 | 0.667 | 0.750 | 0.333 | 1.000 |" in again
    # The inference time says which machine it is of.
    assert m["machine"].startswith("cpu: ") and "\nMachine: " in report
    # Each photo scored twice: by its peak pixel, and by what the rules see (the same photos and labels).
    assert set(m["image_auroc_graded"]) == set(m["image_auroc"]) and "as graded" in report
    # Zones are scored only where they are known: the synthetic photos here; a set of real photos
    # labelled only cracked or not has no zone truth, so no zone mIoU (its letterbox padding gave 0.5).
    assert m["zone_miou"] == m["zone_miou"] and "zone_miou" in headline(m)
    only_real = toy.parent / "real_only.jsonl"  # beside the toy's images, which its paths name
    labels_only = [r for r in read_manifest(toy) if r.source == "toy_real" and not r.screen_polygons]
    assert labels_only and all(r.zone_mask is None for r in labels_only)
    wide = []  # made wider than tall, as most photos are, so that the letterbox pads them
    for r in labels_only:
        img = cv2.imread(str(toy.parent / r.image))
        name = r.image.replace(".jpg", "_wide.jpg")
        cv2.imwrite(str(toy.parent / name), img[: img.shape[0] * 2 // 3])
        wide.append(r.model_copy(update={"image": name, "height": img.shape[0] * 2 // 3}))
    write_manifest(only_real, wide)
    r = run_evaluation(best, [str(only_real)], tmp_path / "rep3", splits=("train", "val", "test"))
    assert r["zone_miou"] != r["zone_miou"] and not r["zone_iou"] and "zone_miou" not in headline(r)
    assert "Zone mIoU n/a" in (tmp_path / "rep3" / "report.md").read_text()


def test_real_photos_are_reported_per_source_against_their_set_labels(tmp_path):
    """Rows of real photos known only to be cracked or intact: right when the grade is in the set, the
    probability the grade's own, and the review threshold each row's kind's (the fine one for a device
    the fine pass read)."""
    from model.card import FineGrading
    from training.evaluate import real_grade_metrics
    from training.predict import default_thresholds

    def row(device, pred, true, confidence, fine=False):
        return {"device": device, "standard": "ctia", "pred": pred, "true": true,
                "confidence": confidence, "real": True, "fine": fine}  # fmt: skip

    fine = FineGrading(grade_calibration={}, needs_review_below=1.0, devices=1)
    thresholds = default_thresholds().model_copy(update={"needs_review_below": 0.9, "fine_grading": fine})
    rows = [
        row("w1", "D", ("D", "E"), 0.95),  # cracked, sure: without review, right
        row("w2", "A", ("D", "E"), 0.5),  # a crack missed: reviewed
        row("w3", "A", ("A", "B", "C"), 0.8),  # intact: right, reviewed (0.8 < 0.9)
        row("m1", "D", ("A", "B", "C", "D"), 0.97, fine=True),  # worn, read finely: the fine threshold 1.0
    ]
    source_of = {"w1": "phones_web", "w2": "phones_web", "w3": "phones_web", "m1": "msd"}
    out = real_grade_metrics(rows, thresholds, source_of)
    assert list(out) == ["msd", "phones_web", "all"]
    web = out["phones_web"]["ctia"]
    assert web["devices"] == 3 and web["right"] == pytest.approx(2 / 3)
    assert web["mean_probability"] == pytest.approx((0.95 + 0.5 + 0.8) / 3)
    assert web["auto_share"] == pytest.approx(1 / 3) and web["auto_right"] == 1.0
    msd = out["msd"]["ctia"]
    assert msd["right"] == 1.0 and msd["auto_share"] == 0.0 and msd["auto_right"] != msd["auto_right"]
    assert out["all"]["ctia"]["devices"] == 4


def test_grade_refinement_moves_a_bad_cut_and_never_loses_accuracy(tmp_path):
    preds = _perfect_preds(tmp_path)
    good, _ = pixel_thresholds(preds, 4)
    bad = {**good, "scratch": 0.6}  # a cut too high for a coverage map: hairlines break up or vanish
    acc = {
        name: grade_accuracy(preds, fit_confidences(preds, cuts, 4)[0], 4)
        for name, cuts in (("good", good), ("bad", bad))
    }
    assert acc["bad"] < acc["good"]
    refined, fig = refine_for_grades(preds, bad, 4, ["scratch"])
    assert refined["scratch"] < 0.6 and set(refined) == set(bad)
    assert (
        fig["val_grade_accuracy_after"] >= acc["good"] - 1e-9 > acc["bad"] == fig["val_grade_accuracy_before"]
    )
    assert {t["type"] for t in fig["tried"]} == {"scratch"}


def _overconfident_rows(n, standard="ctia", seed=0):
    """Device rows as `grade_devices` gives them: the rules always certain, right 60% of the time."""
    from model.rules import load_standard

    names = load_standard(standard).grade_names
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        pred = names[i % len(names)]
        true = pred if rng.random() < 0.6 else names[(names.index(pred) + 1) % len(names)]
        probs = {g: float(g == pred) for g in names}
        rows.append(
            {
                "standard": standard,
                "true": true,
                "pred": pred,
                "rule_confidence": 1.0,
                "rule_probabilities": probs,
            }
        )
    return rows


def test_grade_calibration_corrects_overconfident_rules_and_needs_enough_devices():
    cal, fig = calibrate_grades(_overconfident_rows(200))
    assert fig["ctia"]["val_ece_rules"] == pytest.approx(0.4, abs=0.06)
    assert fig["ctia"]["val_ece_calibrated"] < 0.1
    held_out = _overconfident_rows(400, seed=1)
    conf = np.array([r["confidence"] for r in calibrated_rows(held_out, cal)])
    correct = np.array([r["true"] == r["pred"] for r in held_out], dtype=float)
    assert ece(conf, correct)[0] < 0.1  # calibrated on one draw, right on another
    few, fig = calibrate_grades(_overconfident_rows(MIN_CALIBRATION_DEVICES - 1))
    assert few == {} and "fewer than" in fig["ctia"]["skipped"]


def _certain_rows(n, right, standard="ctia", seed=0, **extra):
    """Rows whose rules are always certain and right a share `right` of the time."""
    rows = _overconfident_rows(n, standard, seed)
    rng = np.random.default_rng(seed + 100)
    for r in rows:
        r["true"] = (
            r["pred"] if rng.random() < right else next(g for g in r["rule_probabilities"] if g != r["pred"])
        )
        r.update(extra)
    return rows


def test_devices_the_fine_pass_read_get_a_grading_of_their_own():
    from model.card import Thresholds

    coarse = [{**r, "device": f"c{i}"} for i, r in enumerate(_certain_rows(200, 0.99, fine=False))]
    fine = [{**r, "device": f"f{i}"} for i, r in enumerate(_certain_rows(80, 0.5, seed=3, fine=True))]
    t = Thresholds(defect_pixel={"scratch": 0.5})
    grade_fig, review_fig, fine_fig = fit_gradings(t, coarse + fine)
    # Each calibration is fitted on its own devices only, and says how far to trust their grades.
    assert t.grade_calibration["ctia"].devices == 200 and grade_fig["ctia"]["devices"] == 200
    assert t.fine_grading is not None and t.fine_grading.devices == 80
    assert t.fine_grading.grade_calibration["ctia"].devices == 80
    diag = lambda cal: np.mean(np.diag(np.array(cal.matrix)))  # noqa: E731
    assert diag(t.grade_calibration["ctia"]) > 0.9 > 0.6 > diag(t.fine_grading.grade_calibration["ctia"])
    assert review_fig["devices"] == 200 and fine_fig["review"]["devices"] == 80
    # Half right whatever the confidence: no threshold reaches 95% on them, so every one of their
    # gradings goes to review (1.0); the others are nearly always right, so theirs is lower.
    assert t.fine_grading.needs_review_below == 1.0 > t.needs_review_below
    cal, threshold = t.grading(fine=True)
    assert cal["ctia"] == t.fine_grading.grade_calibration["ctia"] and threshold == 1.0
    assert t.grading(fine=False) == (t.grade_calibration, t.needs_review_below)
    # Scored as serving scores them: a fine row by the fine calibration, another by the coarse one.
    scored = calibrated_rows([coarse[0], fine[0]], t.grade_calibration, t.fine_grading.grade_calibration)
    assert scored[0]["confidence"] > 0.9 > 0.7 > scored[1]["confidence"]
    lines = fine_grading_summary(
        {"thresholds": t.model_dump(mode="json"), "figures": {"fine_grading": fine_fig}}
    )
    assert "80 validation devices" in lines[0] and "needs_review_below 1" in lines[0]


def test_too_few_fine_read_devices_are_graded_with_the_others():
    from model.card import Thresholds

    rows = _certain_rows(200, 0.9) + _certain_rows(MIN_CALIBRATION_DEVICES - 1, 0.5, seed=3, fine=True)
    rows = [{**r, "device": f"d{i}"} for i, r in enumerate(rows)]
    t = Thresholds(defect_pixel={"scratch": 0.5})
    _, _, fine_fig = fit_gradings(t, rows)
    assert t.fine_grading is None and fine_fig == {}
    assert t.grade_calibration["ctia"].devices == 200 + MIN_CALIBRATION_DEVICES - 1
    assert t.grading(fine=True) == t.grading(fine=False)


def test_selective_accuracy_ranks_by_confidence_and_gains_nothing_from_ties():
    conf = np.array([0.9, 0.1, 0.8, 0.2])
    correct = np.array([1.0, 0.0, 1.0, 0.0])
    assert selective_accuracy(conf, correct, (0.5, 1.0)) == {"0.5": 1.0, "1.0": 0.5}
    tied = selective_accuracy(np.ones(4), np.array([0.0, 1.0, 1.0, 1.0]), (0.25,))
    assert tied == {"0.25": 0.0}  # the first device in order, not the best one


def test_the_reports_thresholds_note_long_weight_vectors_instead_of_listing_them():
    from training.evaluate import _summarised

    card_like = {
        "needs_review_below": 0.86,
        "defect_pixel": {"crack": 0.25},
        "zone_damage": {"screen": {"features": "joint_s16_v3", "weights": [0.1] * 1732, "bias": -0.3}},
        "probes": {"view": {"weights": [[0.5] * 40, [0.2] * 40], "classes": ["front", "back"]}},
        "cuts": [0.1, 0.2],
    }
    out = _summarised(card_like)
    assert out["zone_damage"]["screen"] == {
        "features": "joint_s16_v3",
        "weights": "1732 numbers (in the model card)",
        "bias": -0.3,
    }
    assert out["probes"]["view"]["weights"] == ["40 numbers (in the model card)"] * 2
    assert (
        out["needs_review_below"] == 0.86
        and out["cuts"] == [0.1, 0.2]
        and out["defect_pixel"] == {"crack": 0.25}
    )


def test_evaluation_measures_a_side_view_against_the_side_it_shows():
    """`photo_scale` (evaluation's) as serving's: a phone's top edge is its width."""
    from types import SimpleNamespace

    from model.catalogue import lookup_device
    from model.preprocess import Letterbox
    from model.taxonomy import View, Zone
    from training.metrics import photo_scale

    size = 128
    zones = np.zeros((1 + len(Zone), size // 4, size // 4), np.float32)
    zones[0] = 1.0
    zones[0, 14:18, 2:30] = 0.0
    zones[1 + list(Zone).index(Zone.FRAME), 14:18, 2:30] = 1.0
    record = SimpleNamespace(device_model="iPhone 15", device_kind="phone", mm_per_px=None)
    pred = SimpleNamespace(
        item=SimpleNamespace(record=record),
        outputs={"zone_probs": zones},
        lb=Letterbox(scale=1.0, pad_x=0, pad_y=0, width=size, height=size),
    )
    phone = lookup_device("iPhone 15")
    left, source = photo_scale(pred, size, View.LEFT)
    top, _ = photo_scale(pred, size, View.TOP)
    assert source == "catalogue"
    assert top.per_px / left.per_px == pytest.approx(phone.width / phone.length)
    assert photo_scale(pred, size)[0].per_px == left.per_px  # no view: the front's


def test_a_photo_is_scored_as_graded_by_its_strongest_defect_of_each_type_not_its_evidence():
    from model.outputs import DEFECT_CHANNELS
    from training.evaluate import graded_scores

    scores = graded_scores(
        [
            mm("crack", "screen", 20, confidence=0.3),
            mm("crack", "screen", 60, confidence=0.8),  # the zone's crack: the rules see this one
            mm("crack", "screen", 5, confidence=0.99, role="evidence"),  # a fragment of it: not graded on
            mm("scratch", "screen", 9, confidence=0.4),
        ]
    )
    got = dict(zip(DEFECT_CHANNELS, scores.tolist(), strict=True))
    assert got["crack"] == pytest.approx(0.8) and got["scratch"] == pytest.approx(0.4)
    assert got["chip"] == 0.0 and got["stain"] == 0.0
