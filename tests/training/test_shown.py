"""How much a generated photo shows each defect (training.synth.shown, `SynthConfig.measure_shown`): the
step is the change the defect makes against the clean twin, the twin is the photo less its defects, the
photos themselves do not change, and the manifest carries the step."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from model.manifest import read_manifest
from model.taxonomy import PhotoQuality
from training.synth import SynthConfig, generate, make_sample
from training.synth.shown import photo_steps

BASE = {"p_real_background": 0.0, "p_composite": 0.0}


def test_the_step_is_the_change_over_the_mask_in_grey_levels():
    clean = np.full((40, 60, 3), 100, np.uint8)
    photo = clean.copy()
    photo[10:12, 5:55] = 140  # a line 40 grey levels brighter
    line = np.zeros((40, 60), np.uint8)
    line[9:13, 5:55] = 1  # its mask, a pixel wider each side: the percentile reads the line
    elsewhere = np.zeros((40, 60), np.uint8)
    elsewhere[30:35, 5:55] = 1
    assert photo_steps(photo, clean, [line, elsewhere, np.zeros((40, 60), np.uint8)]) == [40.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="differ in size"):
        photo_steps(photo, clean[:20], [line])


@pytest.mark.parametrize("index", range(6))
def test_measuring_leaves_the_photo_and_its_truth_as_they_were(index):
    a = make_sample(SynthConfig(seed=5, size=256, **BASE), index)
    b = make_sample(SynthConfig(seed=5, size=256, measure_shown=True, **BASE), index)
    assert np.array_equal(a.image, b.image)
    assert a.grades == b.grades and len(a.plans) == len(b.plans)
    assert a.photo_steps is None
    if b.zone is None:  # no device in the photo: nothing drawn, nothing measured
        assert b.photo_steps is None
    else:
        assert b.photo_steps is not None and len(b.photo_steps) == len(b.plans)
        assert all(0.0 <= s <= 255.0 for s in b.photo_steps)


@pytest.mark.parametrize("index", range(8))
def test_the_clean_twin_is_the_photo_without_its_defects(index, monkeypatch):
    # The twin is lit and photographed with the same random draws: away from the defects (their masks
    # grown by the blur's reach) it is the photo to the grey level, and on them it differs.
    import training.synth.generator as generator

    seen = {}

    def spy(photo, clean, masks):
        seen.update(photo=photo, clean=clean, masks=masks)
        return photo_steps(photo, clean, masks)

    monkeypatch.setattr(generator, "photo_steps", spy)
    s = make_sample(SynthConfig(seed=11, size=384, measure_shown=True, **BASE), index)
    if not seen or not seen["masks"]:
        pytest.skip("no defect in this photo")
    near = cv2.dilate(np.max(seen["masks"], axis=0), np.ones((25, 25), np.uint8)) > 0
    diff = np.abs(seen["photo"].astype(int) - seen["clean"].astype(int)).max(axis=2)
    assert diff[~near].max() == 0
    assert s.photo_steps == photo_steps(seen["photo"], seen["clean"], seen["masks"])
    assert any(step > 0 for step in s.photo_steps) or s.quality is not PhotoQuality.USABLE


def test_the_manifest_carries_the_step_only_when_measured(tmp_path):
    measured = read_manifest(
        generate(SynthConfig(seed=2, size=128, measure_shown=True, **BASE), 4, tmp_path / "m", progress=False)
    )
    plain = read_manifest(generate(SynthConfig(seed=2, size=128, **BASE), 4, tmp_path / "p", progress=False))
    with_instances = [r for r in measured if r.instances]
    assert with_instances
    assert all(i.photo_step is not None for r in with_instances for i in r.instances)
    assert all(i.photo_step is None for r in plain for i in r.instances)
    for a, b in zip(measured, plain, strict=True):
        assert (tmp_path / "m" / a.image).read_bytes() == (tmp_path / "p" / b.image).read_bytes()


def test_the_synth_command_measures_when_asked(tmp_path):
    import typer
    from typer.testing import CliRunner

    from training.cli import data

    app = typer.Typer()
    data.register(app)
    out = tmp_path / "run"
    args = ["synth", "--out", str(out), "--n", "3", "--size", "128", "--p-real-background", "0"]
    res = CliRunner().invoke(app, [*args, "--p-composite", "0", "--grade-mix", "Good=1", "--measure-shown"])
    assert res.exit_code == 0, res.output
    instances = [i for r in read_manifest(out / "manifest.jsonl") for i in r.instances]
    assert instances and all(i.photo_step is not None for i in instances)
