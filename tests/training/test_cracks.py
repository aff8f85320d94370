"""Realistic cracks (training/synth/cracks.py): off by default, exact masks, sane lengths, glass zones."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from model.taxonomy import DefectType, DeviceKind, View, Zone
from training.synth import SynthConfig, cracks, make_sample
from training.synth.defects import Placer, draw_defects, photo_mask
from training.synth.devices import ZONE_VALUE, pick_spec, render_flat, sample_design

BASE = {"p_real_background": 0.0, "p_composite": 0.0, "grade_mix": {"Unlistable": 1.0}}
PHONES = {
    "kind_mix": {DeviceKind.PHONE: 1.0},
    "view_mix": {View.FRONT: 0.6, View.BACK: 0.4},
    "quality_mix": {"usable": 1.0},
}


def test_default_style_is_classic_and_never_calls_the_realistic_code(monkeypatch):
    """Existing seeds (the test set's 303, the bundled model's recipe) must give the same photos."""

    def boom(*a, **k):
        raise AssertionError("realistic crack code reached with the default crack_style")

    monkeypatch.setattr(cracks, "plan_realistic_crack", boom)
    monkeypatch.setattr(cracks, "choose_style", boom)
    monkeypatch.setattr(cracks, "plan", boom)
    monkeypatch.setattr(cracks, "draw_realistic", boom)
    cfg = SynthConfig(seed=7, size=128, **BASE, **PHONES)
    assert cfg.crack_style == "classic"
    styles = []
    for i in range(10):
        s = make_sample(cfg, i)
        styles += [p.style for p in s.plans if p.type is DefectType.CRACK]
    assert styles and set(styles) <= {"spider", "corner", "long"}


def _flat(seed: int, view: View):
    rng = np.random.default_rng(seed)
    design = sample_design(rng, pick_spec(rng, DeviceKind.PHONE), view)
    return render_flat(design, 4.0, rng), rng


@pytest.mark.parametrize("style", ["web", "splinter", "display"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_realistic_crack_masks_cover_what_is_drawn(style, seed):
    flat, rng = _flat(seed, View.FRONT)
    plan = None
    for _ in range(5):
        plan = cracks.plan_realistic_crack(Placer(flat, rng), Zone.SCREEN, style)
        if plan is not None:
            break
    assert plan is not None and plan.style == style and plan.zone is Zone.SCREEN
    assert cracks.MIN_TOTAL_MM <= plan.length_mm <= 400
    before = flat.rgb.copy()
    draw_defects(flat, [plan], rng, 0.4)
    h, w = flat.zone.shape
    mask = photo_mask(plan, np.eye(3), flat.ppm, w, h)
    changed = np.abs(flat.rgb - before).max(axis=-1) > 0.1
    # every visibly changed pixel is on the mask or its anti-aliased one-pixel fringe
    near = cv2.dilate(mask, np.ones((3, 3), np.uint8)).astype(bool)
    assert changed.any() and not (changed & ~near).any()
    # and the lines' mask is what was drawn, not a loose box: most of it visibly changed (an ink blotch on
    # a screen that is off may not show)
    lines = photo_mask(replace(plan, blot=None), np.eye(3), flat.ppm, w, h)
    assert (changed & lines.astype(bool)).sum() >= 0.5 * lines.sum()
    # on the glass it is drawn on
    assert np.mean(flat.zone[mask.astype(bool)] == ZONE_VALUE[Zone.SCREEN]) > 0.97


def test_realistic_photos_have_sane_crack_instances():
    cfg = SynthConfig(seed=3, size=256, crack_style="realistic", **BASE, **PHONES)
    seen = set()
    for i in range(16):
        s = make_sample(cfg, i)
        for plan, m in zip(s.plans, s.masks, strict=True):
            if plan.type is not DefectType.CRACK:
                continue
            assert plan.style in cracks.REALISTIC_STYLES
            assert plan.zone in (Zone.SCREEN, Zone.BODY)
            assert plan.zone is Zone.SCREEN if s.view is View.FRONT else Zone.BODY
            assert 10 <= plan.length_mm <= 400
            assert m.any()
            on_zone = s.zone[m.astype(bool)] == ZONE_VALUE[plan.zone]
            assert on_zone.mean() > 0.9
            seen.add(plan.style)
    assert {"web", "splinter"} <= seen


def test_mixed_style_draws_both_kinds():
    cfg = SynthConfig(seed=5, size=128, crack_style="mixed", **BASE, **PHONES)
    styles = {p.style for i in range(24) for p in make_sample(cfg, i).plans if p.type is DefectType.CRACK}
    assert styles & set(cracks.REALISTIC_STYLES) and styles & {"spider", "corner", "long"}


def test_cli_crack_style_option(tmp_path):
    import typer
    from typer.testing import CliRunner

    from training.cli import data

    app = typer.Typer()
    data.register(app)
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["synth", "--out", str(out), "--n", "3", "--size", "96", "--p-real-background", "0"]
    res = runner.invoke(app, [*args, "--crack-style", "realistic", "--grade-mix", "Unlistable=1"])
    assert res.exit_code == 0, res.output
    assert (out / "manifest.jsonl").exists()
    assert runner.invoke(app, [*args, "--crack-style", "bogus"]).exit_code == 2
