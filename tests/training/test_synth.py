"""The synthetic generator's ground truth: exact mm sizes, masks that match them, zones, grades, determinism."""

from __future__ import annotations

import math
from collections import Counter

import cv2
import numpy as np
import pytest

from model.catalogue import lookup_device
from model.instances import mm
from model.manifest import read_manifest, resolve
from model.postprocess import measure_component
from model.rules import grade, list_standards
from model.taxonomy import DefectType, PhotoQuality, View, Zone
from training.synth import SynthConfig, generate, make_sample
from training.synth.defects import Placer, plan_blob, plan_scratch

# No real backgrounds in unit tests: they must not depend on the shared data folder.
BASE = {"p_real_background": 0.0}


def _one_scratch(length_mm: float, width_mm: float):
    def planner(flat, rng):
        plan = plan_scratch(Placer(flat, rng), Zone.BODY, length_mm, width_mm, tries=200)
        assert plan is not None
        return [plan]

    return planner


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scratch_of_known_length_measures_back_within_2_percent(seed):
    spec = lookup_device("iPhone 15")
    cfg = SynthConfig(seed=seed, size=1024, **BASE)
    s = make_sample(
        cfg,
        0,
        spec=spec,
        view=View.BACK,
        quality=PhotoQuality.USABLE,
        planner=_one_scratch(40.0, 0.15),
        flat_pose=True,
    )
    (plan,) = s.plans
    assert plan.length_mm == pytest.approx(40.0, rel=1e-9)  # the drawn polyline has exactly that arc length
    # The mask, measured by the product's own post-processing and the recorded scale, gives the length back.
    length_px, _, _, _ = measure_component(s.masks[0].astype(np.uint8), linear=True)
    assert length_px * s.mm_per_px == pytest.approx(40.0, rel=0.02)
    # One connected stroke: a thin curved scratch must not fall apart into dots.
    n, _ = cv2.connectedComponents(s.masks[0], connectivity=8)
    assert n == 2


def test_mm_per_px_matches_the_catalogue_size_of_the_device():
    spec = lookup_device("iPad mini 6")
    for seed in range(3):
        s = make_sample(
            SynthConfig(seed=seed, size=768, **BASE),
            0,
            spec=spec,
            view=View.FRONT,
            quality=PhotoQuality.USABLE,
            planner=lambda f, r: [],
            flat_pose=True,
        )
        pts = np.argwhere(s.zone > 0)[:, ::-1].astype(np.float32)
        (_, _), (w, h), _ = cv2.minAreaRect(pts)
        assert (max(w, h) + 1) * s.mm_per_px == pytest.approx(spec.length, rel=0.02)
        assert (min(w, h) + 1) * s.mm_per_px == pytest.approx(spec.width, rel=0.02)


def test_mild_perspective_keeps_sizes_within_a_few_percent():
    spec = lookup_device("Pixel 8")
    errs = []
    for seed in range(6):
        s = make_sample(
            SynthConfig(seed=seed, size=1024, **BASE),
            0,
            spec=spec,
            view=View.BACK,
            quality=PhotoQuality.USABLE,
            planner=_one_scratch(30.0, 0.15),
        )
        length_px, _, _, _ = measure_component(s.masks[0].astype(np.uint8), linear=True)
        errs.append(length_px * s.mm_per_px / 30.0 - 1)
    assert max(abs(e) for e in errs) < 0.10
    assert abs(float(np.mean(errs))) < 0.04


def test_blob_area_in_mm2_matches_its_mask():
    spec = lookup_device("MacBook Air M2")
    area = []

    def planner(flat, rng):
        p = plan_blob(Placer(flat, rng), DefectType.STAIN, Zone.BODY, 20.0, tries=200)
        assert p is not None
        area.append(p.area_mm2)
        return [p]

    s = make_sample(
        SynthConfig(seed=4, size=768, **BASE),
        0,
        spec=spec,
        view=View.BACK,
        quality=PhotoQuality.USABLE,
        planner=planner,
        flat_pose=True,
    )
    assert s.masks[0].sum() * s.mm_per_px**2 == pytest.approx(area[0], rel=0.03)
    # and the mask sits on the zone it is labelled with
    assert np.all(s.zone[s.masks[0] > 0] == list(Zone).index(Zone.BODY) + 1)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(seed=11, size=160, **BASE)
    return cfg, generate(cfg, 30, out, workers=1, progress=False)


def test_every_device_record_carries_the_rules_engine_grade_of_its_true_instances(small_run):
    _, manifest = small_run
    records = read_manifest(manifest)
    assert len(records) == 30
    with_device = [r for r in records if r.quality is not PhotoQuality.NO_DEVICE]
    assert with_device
    for r in with_device:
        assert set(r.grades) == set(list_standards())
        insts = [mm(i.type, i.zone, i.length_mm, i.width_mm, i.area_mm2) for i in r.instances]
        for std, g in r.grades.items():
            assert grade(insts, std, device_kind=r.device_kind).grade == g
        assert r.mm_per_px and r.device_model and r.view and r.instances_complete


def test_files_masks_and_zones_are_consistent(small_run):
    _, manifest = small_run
    for r in read_manifest(manifest):
        img = cv2.imread(str(resolve(manifest, r.image)))
        assert img.shape[:2] == (r.height, r.width)
        zone = cv2.imread(str(resolve(manifest, r.zone_mask)), cv2.IMREAD_UNCHANGED)
        assert zone.shape == (r.height, r.width) and zone.max() <= len(Zone)
        if r.quality is PhotoQuality.NO_DEVICE:
            assert not zone.any() and not r.instances and r.device_model is None
            continue
        assert zone.any()
        for inst in r.instances:
            m = cv2.imread(str(resolve(manifest, inst.mask)), cv2.IMREAD_UNCHANGED)
            assert m.shape == zone.shape and m.any()
            # defects lie on the device
            assert (zone[m > 0] > 0).mean() > 0.9


def test_two_runs_with_one_seed_write_identical_files_whatever_the_workers(tmp_path):
    cfg = SynthConfig(seed=5, size=128, **BASE)
    a = generate(cfg, 8, tmp_path / "a", workers=1, progress=False).parent
    b = generate(cfg, 8, tmp_path / "b", workers=2, progress=False).parent
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) > 8 * 2
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    c = generate(SynthConfig(seed=6, size=128, **BASE), 8, tmp_path / "c", progress=False).parent
    assert (c / "manifest.jsonl").read_bytes() != (a / "manifest.jsonl").read_bytes()


def test_grade_mix_is_honoured_and_the_default_is_not_mostly_pristine():
    only_fair = SynthConfig(
        seed=3, size=128, grade_mix={"Fair": 1.0}, quality_mix={PhotoQuality.USABLE: 1}, **BASE
    )
    got = Counter(make_sample(only_fair, i).grades["backmarket"] for i in range(12))
    assert got["Fair"] >= 9, got
    default = SynthConfig(seed=3, size=128, quality_mix={PhotoQuality.USABLE: 1}, **BASE)
    got = Counter(make_sample(default, i).grades["backmarket"] for i in range(40))
    assert got["Premium"] <= 16 and len(got) >= 4, got


def test_unknown_grade_in_the_mix_is_an_error():
    with pytest.raises(ValueError, match="unknown grades"):
        SynthConfig(grade_mix={"Mint": 1.0}).grades_and_weights()


def test_quality_classes_are_produced_and_look_their_part():
    cfg = SynthConfig(seed=2, size=192, **BASE)
    sharp = make_sample(cfg, 0, quality=PhotoQuality.USABLE, spec=lookup_device("iPhone 15"), view=View.FRONT)
    blurry = make_sample(
        cfg, 0, quality=PhotoQuality.BLURRY, spec=lookup_device("iPhone 15"), view=View.FRONT
    )

    def sharpness(img):  # edge energy after a light denoise (sensor noise would dominate otherwise)
        grey = cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (0, 0), 1.0)
        return cv2.Laplacian(grey, cv2.CV_64F).var()

    assert sharpness(blurry.image) < 0.5 * sharpness(sharp.image)
    none = make_sample(cfg, 1, quality=PhotoQuality.NO_DEVICE)
    assert none.spec is None and not none.zone.any() and not none.masks
    assert math.isclose(sum(SynthConfig().quality_mix.values()), 1.0)
