"""The fine stream's patches (`training.synth.fine_patches`, `refurbgrade synth-fine`): one seed gives
the same bytes, a sub-pixel scratch keeps its integrated width x contrast (no 0.6 px floor), the targets
sit on the centreline, the visibility fields follow one arc-minute, and the CLI refuses bad arguments."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from training.synth.fine_patches import (
    FineScratch,
    flat_surface,
    load_targets,
    make_patch,
    make_targets,
    read_fine_manifest,
    render_patch,
    truth,
    write_fine_patches,
)
from training.synth.geometry import SHIFT, to_cv


def _files(d):
    return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_one_seed_gives_the_same_bytes_and_another_seed_differs(tmp_path):
    a = write_fine_patches(tmp_path / "a", 6, seed=3, size=64)
    b = write_fine_patches(tmp_path / "b", 6, seed=3, size=64, workers=2)  # workers do not matter
    c = write_fine_patches(tmp_path / "c", 6, seed=4, size=64)
    fa, fb = _files(a.parent), _files(b.parent)
    assert len(fa) == 13 and fa == fb  # 6 images, 6 targets, the manifest: byte for byte
    assert a.read_bytes() != c.read_bytes()
    assert (
        fa[next(k for k in fa if k.suffix == ".jpg")]
        != _files(c.parent)[next(k for k in fa if k.suffix == ".jpg")]
    )


@pytest.mark.parametrize("luminance, polarity", [(0.3, 1), (0.7, -1)])
def test_a_sub_pixel_scratch_keeps_its_integrated_strength(luminance, polarity):
    size, mm_per_px, contrast = 48, 0.05, 0.3
    sums = {}
    for width_px in (0.25, 0.5, 1.0, 2.0):
        # a horizontal line between pixel rows, camera off (no blur, noise or JPEG)
        s = FineScratch(np.array([[4.0, 20.37], [44.0, 20.37]]), width_px * mm_per_px, contrast, polarity)
        surface, _ = flat_surface(size, luminance)
        img = render_patch(surface, [s], mm_per_px, camera=None)
        column = img[:, 24, 1] - luminance
        sums[width_px] = float(column.sum()) * polarity
        assert sums[width_px] == pytest.approx(width_px * contrast, rel=0.10)
        assert np.abs(column[:15]).max() < 1e-6  # nothing far from the line
    # a quarter-pixel line is a quarter as strong as a one-pixel line, not floored at 0.6 px
    assert sums[0.25] / sums[1.0] == pytest.approx(0.25, rel=0.10)
    assert sums[2.0] / sums[1.0] == pytest.approx(2.0, rel=0.10)


def _exact_distance(points, size):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    d = np.full((size, size), np.inf)
    for a, b in itertools.pairwise(points):
        ab = b - a
        t = np.clip(((xx - a[0]) * ab[0] + (yy - a[1]) * ab[1]) / (ab @ ab), 0, 1)
        d = np.minimum(d, np.hypot(xx - a[0] - t * ab[0], yy - a[1] - t * ab[1]))
    return d


def test_targets_lie_on_the_centreline_with_the_true_width_and_contrast():
    size, mm_per_px = 64, 0.04
    pts = np.array([[5.2, 10.3], [20.7, 18.1], [40.4, 30.9], [58.6, 50.2]])
    s = FineScratch(pts, 0.137, 0.21)
    t = make_targets([s], size, mm_per_px)
    line = np.zeros((size, size), np.uint8)
    cv2.polylines(line, [to_cv(pts)], False, 255, 1, cv2.LINE_8, SHIFT)
    on = line > 0
    assert on.sum() > 50
    assert np.all(np.abs(t["heat"][on].astype(np.float32) - 1.0) <= 0.05)
    far = _exact_distance(pts, size) >= 3.0
    assert far.sum() > 1000 and t["heat"][far].max() < 0.1
    assert np.allclose(t["width_mm"][on].astype(np.float32), 0.137, rtol=2e-3)
    assert np.allclose(t["contrast"][on].astype(np.float32), 0.21, rtol=2e-3)
    assert t["width_mm"][far].max() == 0 and t["contrast"][far].max() == 0


def test_written_targets_match_the_manifest_polylines(tmp_path):
    path = write_fine_patches(tmp_path, 4, seed=11, size=96)
    records = read_fine_manifest(path)
    rec = next(r for r in records if r.scratches)
    t = load_targets(tmp_path / rec.targets)
    s = rec.scratches[0]
    line = np.zeros((96, 96), np.uint8)
    cv2.polylines(line, [to_cv(np.array(s.polyline))], False, 255, 1, cv2.LINE_8, SHIFT)
    assert t["heat"][line > 0].astype(np.float32).min() >= 0.95
    # where scratches cross, the nearer one's width wins; each line holds its own width mostly
    assert np.mean(np.isclose(t["width_mm"][line > 0].astype(np.float32), s.width_mm, rtol=2e-3)) > 0.8


def test_visibility_follows_one_arc_minute():
    pts = np.array([[1.0, 1.0], [30.0, 1.0]])
    for width, v20, v50 in [
        (0.03, False, False),
        (0.058, True, False),
        (0.1, True, False),
        (0.2, True, True),
    ]:
        tr = truth(FineScratch(pts, width, 0.1), 0.05)
        assert tr.arcmin_20cm == pytest.approx(width / 0.058, rel=1e-3)
        assert tr.arcmin_50cm == pytest.approx(width / 0.145, rel=1e-3)
        assert (tr.visible_20cm, tr.visible_50cm) == (v20, v50)
        assert tr.width_px == pytest.approx(width / 0.05, rel=1e-3)
        assert tr.length_mm == pytest.approx(29 * 0.05, rel=1e-3)
    for seed in range(3):
        for s in make_patch(seed, 0, 64).record.scratches:
            assert s.visible_20cm == (s.width_mm / 0.058 >= 1) and s.visible_50cm == (s.width_mm / 0.145 >= 1)


def test_cli_writes_n_records_and_refuses_bad_arguments(tmp_path):
    from refurbgrade.cli import build

    app = build()
    out = tmp_path / "fine"
    ok = CliRunner().invoke(app, ["synth-fine", "--n", "3", "--seed", "5", "--out", str(out), "--size", "64"])
    assert ok.exit_code == 0, ok.output
    records = read_fine_manifest(out / "manifest.jsonl")
    assert len(records) == 3 and all(
        (out / r.image).is_file() and (out / r.targets).is_file() for r in records
    )
    assert all(0.03 <= r.mm_per_px <= 0.12 and r.size == 64 for r in records)

    zero = CliRunner().invoke(app, ["synth-fine", "--n", "0", "--out", str(tmp_path / "z")])
    assert zero.exit_code != 0 and "--n must be at least 1" in zero.output
    assert not (tmp_path / "z").exists()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    clash = CliRunner().invoke(app, ["synth-fine", "--n", "2", "--out", str(a_file)])
    assert clash.exit_code != 0 and "is a file" in clash.output
