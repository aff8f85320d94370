"""The synthetic generator's ground truth: exact mm sizes, masks that match them, zones, grades, determinism."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.catalogue import lookup_device
from model.instances import mm
from model.manifest import LabelledInstance, ManifestRecord, read_manifest, resolve
from model.postprocess import measure_component
from model.rules import grade, list_standards
from model.taxonomy import DefectType, PhotoQuality, View, Zone
from training.metrics import true_grades
from training.synth import SynthConfig, generate, make_sample
from training.synth.defects import Placer, plan_blob, plan_scratch

# No real backgrounds in unit tests: they must not depend on the shared data folder.
BASE = {"p_real_background": 0.0, "p_composite": 0.0}
REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"


def skeleton_length(mask: np.ndarray) -> float:
    """Length in pixels of a thin, unbranched stroke: its skeleton walked end to end, the pixel staircase
    smoothed (a 5-point moving average), plus one pixel for the two half-pixel ends."""
    from skimage.morphology import skeletonize

    ys, xs = np.nonzero(skeletonize(mask.astype(bool)))
    pts = set(zip(ys.tolist(), xs.tolist(), strict=True))

    def nbrs(p):
        return [
            (p[0] + dy, p[1] + dx)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if (dy or dx) and (p[0] + dy, p[1] + dx) in pts
        ]

    cur = next(p for p in pts if len(nbrs(p)) == 1)
    path, seen = [cur], {cur}
    while nxt := sorted(
        (q for q in nbrs(cur) if q not in seen), key=lambda q: abs(q[0] - cur[0]) + abs(q[1] - cur[1])
    ):
        cur = nxt[0]
        path.append(cur)
        seen.add(cur)
    assert len(seen) >= 0.95 * len(pts)  # one stroke, walked almost entirely
    arr = np.array(path, float)
    k = 5
    smooth = np.stack(
        [np.convolve(np.pad(arr[:, i], k // 2, mode="edge"), np.ones(k) / k, mode="valid") for i in (0, 1)], 1
    )
    return float(np.sum(np.hypot(*np.diff(smooth, axis=0).T))) + 1.0


def _one_scratch(length_mm: float, width_mm: float):
    def planner(flat, rng):
        plan = plan_scratch(Placer(flat, rng), Zone.BODY, length_mm, width_mm, tries=200)
        assert plan is not None
        return [plan]

    return planner


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
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
    # The mask's skeleton length times the recorded scale gives the length back.
    assert skeleton_length(s.masks[0]) * s.mm_per_px == pytest.approx(40.0, rel=0.02)
    # and so does the product's post-processing (its ribbon estimate reads about 1% long on 1 px strokes)
    length_px, _, _, _ = measure_component(s.masks[0].astype(np.uint8), linear=True)
    assert length_px * s.mm_per_px == pytest.approx(40.0, rel=0.04)
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
    with_device = [r for r in records if r.quality is not PhotoQuality.NO_DEVICE and r.source == "synthetic"]
    assert with_device
    for r in with_device:
        assert set(r.grades) == set(list_standards())
        insts = [mm(i.type, i.zone, i.length_mm, i.width_mm, i.area_mm2) for i in r.instances]
        for std, g in r.grades.items():
            assert grade(insts, std, device_kind=r.device_kind).grade == g
        assert r.mm_per_px and r.device_model and r.view and r.instances_complete
        assert true_grades(r) == r.grades  # what evaluation takes as the truth: the same, today


def test_a_stored_grade_follows_the_rules_as_they_are_now_and_other_labels_stay():
    """A set drawn under Back Market 2026.12.1 stored Unlistable for a 60 mm gouge on a laptop lid;
    under 2026.12.2 that is Fair, and evaluation must judge the model against the grade the rules
    give now, not the one stored. Labels that are not a complete set of true sizes stay."""
    lid = LabelledInstance(
        type="scratch", zone="body", mask="m.png", length_mm=60.0, width_mm=0.4, area_mm2=24.0
    )
    stored = {"backmarket": "Unlistable", "ctia": "D"}
    drawn = ManifestRecord(
        image="a.jpg",
        device_id="d",
        split="val",
        source="synthetic",
        device_kind="laptop",
        instances=[lid],
        instances_complete=True,
        grades=stored,
    )
    assert true_grades(drawn) == {"backmarket": "Fair", "ctia": "D"}
    composite = drawn.model_copy(update={"instances_complete": False})
    unsized = drawn.model_copy(update={"instances": [lid.model_copy(update={"length_mm": None})]})
    assert true_grades(composite) == stored and true_grades(unsized) == stored


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
            # defects lie on the device (one pixel of slack: anti-aliased outline vs 1 px stroke)
            on = int((zone[m > 0] > 0).sum())
            assert on >= 0.9 * int((m > 0).sum()) - 1


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


def test_an_unlistable_laptop_lid_is_drawn_with_structural_damage_not_long_scratches():
    """Back Market 2026.12.2: Fair has no length bound on body scratches, so a lid the generator makes
    Unlistable carries a large chip or dent; the long gouges it once drew for that would be Fair."""
    cfg = SynthConfig(
        seed=5, size=128, grade_mix={"Unlistable": 1.0}, quality_mix={PhotoQuality.USABLE: 1}, **BASE
    )
    lids = [
        make_sample(cfg, i, spec=lookup_device("MacBook Air 13-inch (M2, 2022)"), view=View.BACK)
        for i in range(6)
    ]
    for s in lids:
        assert s.grades["backmarket"] == "Unlistable"
        assert {p.type for p in s.plans} & {DefectType.CHIP, DefectType.DENT}
        assert all(p.length_mm < 42.0 for p in s.plans if p.type is DefectType.SCRATCH)


def test_unknown_grade_in_the_mix_is_an_error():
    with pytest.raises(ValueError, match="unknown grades"):
        SynthConfig(grade_mix={"Mint": 1.0}).grades_and_weights()


def test_quality_classes_are_produced_and_look_their_part():
    cfg = SynthConfig(seed=2, size=256, **BASE)

    def sharpness(img):  # edge energy after a light denoise (sensor noise would dominate otherwise)
        grey = cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (0, 0), 1.0)
        return cv2.Laplacian(grey, cv2.CV_64F).var()

    sharp = blurry = 0.0
    for i in range(6):
        kw = {"spec": lookup_device("iPhone 15"), "view": View.FRONT}
        sharp += sharpness(make_sample(cfg, i, quality=PhotoQuality.USABLE, **kw).image)
        b = make_sample(cfg, i, quality=PhotoQuality.BLURRY, **kw)
        assert b.meta["blur"].startswith(("defocus", "motion"))
        blurry += sharpness(b.image)
    assert blurry < 0.6 * sharp
    dark = make_sample(cfg, 0, quality=PhotoQuality.BAD_EXPOSURE)
    assert dark.meta["exposure"] < 0.3 or dark.meta["exposure"] > 2.0
    none = make_sample(cfg, 1, quality=PhotoQuality.NO_DEVICE)
    assert none.spec is None and not none.zone.any() and not none.masks
    assert math.isclose(sum(SynthConfig().quality_mix.values()), 1.0)


@pytest.mark.skipif(not (REAL / "msd").is_dir(), reason="needs ../shared/data/real beside the repository")
def test_composites_on_real_photos_keep_the_real_group_and_split(tmp_path):
    cfg = SynthConfig(
        seed=4, size=192, p_composite=1.0, quality_mix={PhotoQuality.USABLE: 1}, p_real_background=0.0
    )
    manifest = generate(cfg, 6, tmp_path / "c", progress=False)
    real = {}
    for name in ("msd", "laptop_scratch"):
        for r in read_manifest(Path(__file__).resolve().parents[2] / "datasets" / "real" / f"{name}.jsonl"):
            real[r.device_id] = r.split
    records = read_manifest(manifest)
    assert all(r.source == "composite" for r in records)
    for r in records:
        assert real[r.device_id] == r.split  # a composite of a test photo stays in test
        assert not r.instances_complete and not r.grades and r.mm_per_px is None and r.zone_mask is None
        synthetic = [i for i in r.instances if i.mask]
        assert synthetic and all(i.length_mm is None for i in synthetic)  # no scale, no size claimed
        for inst in synthetic:
            m = cv2.imread(str(resolve(manifest, inst.mask)), cv2.IMREAD_UNCHANGED)
            assert m.shape == (r.height, r.width) and m.any()
    again = generate(cfg, 6, tmp_path / "d", progress=False)
    assert again.read_bytes() == manifest.read_bytes()


def test_edge_dent_deforms_the_silhouette_and_its_mask_stays_on_the_frame():
    from training.synth.defects import plan_edge_dent

    def planner(flat, rng):
        plan = plan_edge_dent(Placer(flat, rng), 8.0)
        assert plan is not None
        return [plan]

    spec = lookup_device("iPhone 15 Pro Max")
    cfg = SynthConfig(seed=3, size=900, **BASE)
    s = make_sample(
        cfg, 0, spec=spec, view=View.LEFT, quality=PhotoQuality.USABLE, planner=planner, flat_pose=True
    )
    plain = make_sample(
        cfg,
        0,
        spec=spec,
        view=View.LEFT,
        quality=PhotoQuality.USABLE,
        planner=lambda f, r: [],
        flat_pose=True,
    )
    (plan,), (m,) = s.plans, s.masks
    assert plan.length_mm == pytest.approx(8.0, rel=0.01) and plan.zone is Zone.FRAME
    frame = list(Zone).index(Zone.FRAME) + 1
    assert (s.zone[m > 0] == frame).mean() > 0.9  # the dented metal is device frame
    notch = (plain.zone > 0) & (s.zone == 0)  # where the silhouette moved in
    assert notch.sum() > 5
    assert m.sum() * s.mm_per_px**2 == pytest.approx(plan.area_mm2, rel=0.15)


def test_busy_wallpapers_put_fine_detail_on_lit_screens():
    """`wallpapers="busy"` (display-on hard negatives) draws detailed wallpapers where the default
    draws a two-colour gradient."""
    from training.synth.devices import _busy_wallpaper, _screen_on, pick_spec, sample_design

    rng = np.random.default_rng(3)
    design = sample_design(rng, pick_spec(rng, lookup_device("Pixel 8").kind), View.FRONT)

    def detail(img: np.ndarray) -> float:
        return float(np.abs(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_32F)).mean())

    plain = _screen_on(np.random.default_rng(0), design, (300, 160), 2.0)
    splash = _busy_wallpaper(np.random.default_rng(1), (300, 160), ())  # no real photos: a splash
    assert splash.shape == (300, 160, 3) and splash.dtype == np.float32
    a, b = (np.asarray(c, np.float32) for c in design.wallpaper)
    t = np.linspace(0, 1, 300, dtype=np.float32)[:, None, None]
    gradient = np.broadcast_to(a * (1 - t) + b * t, (300, 160, 3)).copy()  # the default's wallpaper
    assert detail(splash) > 10 * detail(gradient) + 1e-3
    bright = (splash.max(axis=2) > splash.max(axis=2).mean() + 0.1).astype(np.uint8)
    assert cv2.connectedComponents(bright)[0] > 15  # separate particles, not one blob
    busy = _screen_on(np.random.default_rng(0), design, (300, 160), 2.0, wallpapers=())
    assert not np.allclose(busy, plain)


@pytest.mark.parametrize("finish", [0.06, 0.15, 0.8])
def test_a_gouge_shows_on_any_finish(finish):
    """A labelled scratch the camera cannot show teaches nothing: a gouge on black anodising darkened by
    two thirds changed it by a few grey levels (generator 1). Now a gouge on a dark finish shows lighter
    (the material under it), on a light one darker, by a clear step either way."""
    from types import SimpleNamespace

    from training.synth.defects import DefectPlan, _draw_scratch

    h, w = 40, 200
    region = np.full((h, w, 3), finish, np.float32)
    a = np.zeros((h, w), np.float32)
    a[18:23, 20:180] = 1.0  # a 0.5 mm gouge at 10 px a mm
    line = np.array([[20.0, 20.0], [180.0, 20.0]])
    plan = DefectPlan(DefectType.SCRATCH, Zone.FRAME, "gouge", lines=[line], width_mm=0.5, contrast=0.4)
    flat = SimpleNamespace(ppm=10.0)
    _draw_scratch(flat, plan, region, a, np.random.default_rng(0), light_angle=0.0, box=None)
    step = float(region[19:22, 40:160].mean()) - finish
    assert abs(step) >= 0.12
    assert (step > 0) == (finish < 0.3)  # lighter on dark finishes, darker on light ones


def test_the_generator_draws_only_its_own_devices_so_catalogue_additions_change_no_set():
    from model.catalogue import devices
    from training.synth.devices import GENERATOR_DEVICES, pick_spec

    catalogue = [d.name for d in devices()]
    assert GENERATOR_DEVICES.issubset(catalogue)
    assert set(catalogue) - GENERATOR_DEVICES >= {"iPhone X", "Galaxy S20"}  # added for users, not drawn
    rng = np.random.default_rng(0)
    drawn = Counter(pick_spec(rng).name for _ in range(3000))
    assert set(drawn) == GENERATOR_DEVICES  # every one of its devices, nothing else
