"""Fitting the photo probes (`training.probes`) and the faulty copies of real photos they learn from
(`training.synth.degrade`, `refurbgrade degrade`)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from model.manifest import ManifestRecord, read_manifest, write_manifest
from model.outputs import ENCODER_S16, QUALITY_CLASSES, VIEW_CLASSES
from model.probes import apply_probes
from model.taxonomy import DefectType
from training.probes import fit_probes, source_weights, truth


def _record(**kw) -> ManifestRecord:
    kw = {"image": "x.png", "device_id": "d", "split": "train", "source": "s"} | kw
    return ManifestRecord(**kw)


def test_truth_of_each_verdict():
    synth = _record(source="synthetic", view="back", quality="blurry", instances_complete=True)
    assert truth(synth, "view") == "back" and truth(synth, "quality") == "blurry"
    real = _record(source="phones_web", view="front")
    assert truth(real, "view") == "front" and truth(real, "quality") == "usable"  # labelled by sight
    assert truth(_record(source="synthetic"), "quality") is None and truth(_record(), "view") is None
    assert truth(_record(source="laptop_scratch", device_kind="laptop"), "kind") == "laptop"
    assert truth(_record(source="synthetic", device_kind="tablet"), "kind") == "phone"  # not a laptop
    assert truth(_record(source="synthetic"), "kind") is None  # a frame without a device


def _pred(source, view, quality, rng, synthetic):
    """A photo whose first encoder channel tells front from back and second tells a blurred photo."""
    enc = rng.normal(0, 0.3, (4, 4, 4)).astype(np.float32)
    enc[0] += 2.0 if view == "front" else -2.0
    enc[1] += 2.0 if quality == "blurry" else 0.0
    outputs = {
        ENCODER_S16: enc,
        "view_probs": np.full(len(VIEW_CLASSES), 1 / len(VIEW_CLASSES), np.float32),
        "quality_probs": np.full(len(QUALITY_CLASSES), 1 / len(QUALITY_CLASSES), np.float32),
    }
    rec = _record(source=source, view=view, quality=quality, instances_complete=synthetic)
    return SimpleNamespace(item=SimpleNamespace(record=rec), outputs=outputs)


def _preds(rng, n):
    out = []
    for k in range(n):
        view = ("front", "back")[k % 2]
        out.append(_pred("synthetic", view, ("usable", "blurry")[k // 2 % 2], rng, True))
        out.append(_pred("phones_web", "front", None, rng, False))
        out.append(_pred("phones_web_degraded", "front", "blurry", rng, False))
    return out


def test_synthetic_and_real_photos_weigh_half_each_and_each_source_alike_within():
    rng = np.random.default_rng(0)
    from training.probes import samples

    s = samples(_preds(rng, 20) + [_pred("msd", "front", None, rng, False)] * 5, "view")
    w = source_weights(s)
    synth = np.array([x.synthetic for x in s])
    assert w[synth].sum() == pytest.approx(w[~synth].sum()) and w.sum() == pytest.approx(len(s))
    msd = np.array([x.source == "msd" for x in s])
    web = np.array([x.source == "phones_web" for x in s])
    assert w[msd].sum() == pytest.approx(w[web].sum())


def test_the_probe_photos_are_read_once_and_fit_as_from_a_list():
    """Calibration hands `fit_probes` the `predict` generator (a held prediction is about 1.6 MB)."""
    rng = np.random.default_rng(3)
    fit, choose = _preds(rng, 30), _preds(rng, 15)
    consumed = []

    def once():
        for p in fit:
            consumed.append(p)
            yield p

    from_list = fit_probes(fit, choose)
    from_generator = fit_probes(once(), choose)
    assert len(consumed) == len(fit) and set(from_list[0]) == {"view", "quality"}
    assert from_generator == from_list


def test_fitted_probes_tell_the_view_and_a_faulty_photo_on_other_photos():
    rng = np.random.default_rng(1)
    probes, figures = fit_probes(_preds(rng, 40), _preds(rng, 20))
    assert set(probes) == {"view", "quality"}
    assert figures["view"]["choice_accuracy"]["synthetic"] > 0.9
    assert figures["quality"]["choice_accuracy"]["phones_web_degraded"] > 0.9
    assert probes["view"].head_split == ()  # no side view among these photos
    held_out = _preds(rng, 10)
    for p in held_out:
        out = apply_probes(p.outputs, probes)
        rec = p.item.record
        assert VIEW_CLASSES[int(out["view_probs"].argmax())] == rec.view.value
        assert QUALITY_CLASSES[int(out["quality_probs"].argmax())] == truth(rec, "quality")


def _kind_pred(source, kind, rng, synthetic):
    """A photo whose third encoder channel tells a laptop from a phone."""
    p = _pred(source, "back", None, rng, synthetic)
    p.outputs[ENCODER_S16][2] += 2.0 if kind == "laptop" else -2.0
    p.item.record = p.item.record.model_copy(update={"device_kind": kind})
    return p


def test_the_kind_probe_adds_the_kind_the_photos_show_and_leaves_the_heads():
    from model.device_kind import guess_kind
    from model.probes import KIND_OUTPUT

    rng = np.random.default_rng(2)

    def preds(n):
        return [
            _kind_pred(src, kind, rng, src == "synthetic")
            for _ in range(n)
            for src, kind in (("synthetic", "phone"), ("synthetic", "laptop"), ("phones_web", "phone"))
        ] + [_kind_pred("laptop_scratch", "laptop", rng, False) for _ in range(n)]

    probes, figures = fit_probes(preds(15), preds(5))
    assert "kind" in probes and figures["kind"]["choice_accuracy"]["laptop_scratch"] == 1.0
    lid, phone = _kind_pred("x", "laptop", rng, False), _kind_pred("x", "phone", rng, False)
    out = apply_probes(lid.outputs, {"kind": probes["kind"]})
    assert set(out) == set(lid.outputs) | {KIND_OUTPUT}
    assert all(out[k] is lid.outputs[k] for k in lid.outputs)  # the heads are the network's still
    assert guess_kind([out]).kind.value == "laptop"
    assert guess_kind([apply_probes(phone.outputs, {"kind": probes["kind"]})]).kind.value == "phone"


def test_degrade_makes_one_faulty_copy_per_photo_reproducibly(tmp_path):
    from training.dataset import load_items
    from training.synth.degrade import degrade_items

    rng = np.random.default_rng(0)
    recs = []
    for k in range(6):
        Image.fromarray(rng.integers(60, 200, (48, 64, 3), dtype=np.uint8)).save(tmp_path / f"{k}.png")
        recs.append(
            _record(source="web", view="front", split=("train", "val")[k % 2]).model_copy(
                update={"image": f"{k}.png", "device_id": f"d{k}", "image_labels": {DefectType.CRACK: True}}
            )
        )
    write_manifest(tmp_path / "m.jsonl", recs)
    items = load_items(tmp_path / "m.jsonl", ("train", "val"))
    a = read_manifest(degrade_items(items, tmp_path / "a", seed=5))
    b = read_manifest(degrade_items(items, tmp_path / "b", seed=5))
    assert [r.model_dump() for r in a] == [r.model_dump() for r in b]
    assert len(a) == 6 and {r.quality.value for r in a} <= {"bad_exposure", "blurry"}
    for src, copy in zip(recs, a, strict=True):
        assert copy.source == "web_degraded" and copy.split == src.split and copy.view == src.view
        assert copy.image_labels == {}  # a fault hides what the photo showed
    assert (tmp_path / "a" / a[0].image).read_bytes() == (tmp_path / "b" / b[0].image).read_bytes()


def test_degrade_command_refuses_test_photos(tmp_path):
    from typer.testing import CliRunner

    from refurbgrade.cli import build

    app = build()

    (tmp_path / "m.jsonl").write_text(json.dumps(_record(split="test").model_dump(mode="json")) + "\n")
    res = CliRunner().invoke(app, ["degrade", f"{tmp_path / 'm.jsonl'}@test", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "final report only" in res.output
    res = CliRunner().invoke(app, ["degrade", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no such manifest" in res.output
