"""Negative patches for the fine network (training.synth.fine_photo_patches.py): cut from whole photos at
the fine pass's pixel sizes, all-zero targets, never where a true scratch, chip or crack lies."""

from __future__ import annotations

import cv2
import numpy as np
from typer.testing import CliRunner

from model.manifest import LabelledInstance, ManifestRecord, write_manifest
from refurbgrade.cli import build
from training.fine_train import FinePatchDataset
from training.synth.fine_photo_patches import write_fine_negatives


def _photo_manifest(root, scratch_box=None, mm_per_px=0.05, crack_box=None):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    img = rng.integers(90, 110, (900, 1200, 3), dtype=np.uint8)
    cv2.rectangle(img, (200, 150), (1000, 750), (40, 40, 40), -1)  # the device
    cv2.imwrite(str(root / "p.jpg"), img)
    zones = np.zeros((900, 1200), np.uint8)
    zones[150:750, 200:1000] = 2  # body
    cv2.imwrite(str(root / "z.png"), zones)
    instances = []
    if scratch_box is not None:
        m = np.zeros((900, 1200), np.uint8)
        x0, y0, x1, y1 = scratch_box
        m[y0:y1, x0:x1] = 255
        cv2.imwrite(str(root / "s.png"), m)
        instances.append(LabelledInstance(type="scratch", mask="s.png", zone="body", width_mm=0.15))
    if crack_box is not None:
        m = np.zeros((900, 1200), np.uint8)
        x0, y0, x1, y1 = crack_box
        m[y0:y1, x0:x1] = 255
        cv2.line(img, (x0, (y0 + y1) // 2), (x1, (y0 + y1) // 2), (200, 200, 200), 2)
        cv2.imwrite(str(root / "p.jpg"), img)
        cv2.imwrite(str(root / "c.png"), m)
        instances.append(LabelledInstance(type="crack", mask="c.png", zone="body", width_mm=0.1))
    rec = ManifestRecord(
        image="p.jpg", device_id="d", split="train", source="synthetic", width=1200, height=900,
        device_kind="phone", mm_per_px=mm_per_px, zone_mask="z.png", instances=instances,
        instances_complete=True,
    )  # fmt: skip
    path = root / "manifest.jsonl"
    write_manifest(path, [rec])
    return path


def test_negatives_are_patches_with_zero_targets(tmp_path):
    manifest = _photo_manifest(tmp_path / "photos")
    path = write_fine_negatives([manifest], tmp_path / "neg", per_photo=6, seed=0, size=64)
    ds = FinePatchDataset(path.parent)
    assert len(ds) == 6
    for i in range(len(ds)):
        img, tgt = ds.load(i)
        assert img.shape == (64, 64, 3) and not tgt.any()
        rec = ds.records[i]
        assert rec.surface.kind == "device_photo" and not rec.scratches
        assert 0.05 <= rec.mm_per_px <= 0.12 + 1e-6


def test_no_negative_where_a_scratch_lies(tmp_path):
    # A "scratch" covering the whole photo: every patch would hold it, so none is cut.
    manifest = _photo_manifest(tmp_path / "photos", scratch_box=(0, 0, 1200, 900))
    path = write_fine_negatives([manifest], tmp_path / "neg", per_photo=6, seed=0, size=64)
    assert path.read_text().strip() == ""


def test_a_photo_too_coarse_gives_none_and_the_cli_counts(tmp_path):
    manifest = _photo_manifest(tmp_path / "photos", mm_per_px=0.3)
    out = CliRunner().invoke(build(), ["fine-negatives", "-m", str(manifest), "--out", str(tmp_path / "neg")])
    assert out.exit_code == 0, out.output
    assert "0 negative patches" in out.output
    missing = CliRunner().invoke(
        build(), ["fine-negatives", "-m", str(tmp_path / "no.jsonl"), "--out", str(tmp_path / "n2")]
    )
    assert missing.exit_code == 2 and "no such manifest" in missing.output


def test_positives_put_the_heat_on_the_true_scratch(tmp_path):
    from training.fine_train import fine_loss
    from training.synth.fine_photo_patches import write_fine_positives

    root = tmp_path / "photos"
    # A 300 px line on the body, 0.15 mm wide.
    manifest = _photo_manifest(root, scratch_box=(500, 449, 800, 452))
    path = write_fine_positives([manifest], tmp_path / "pos", per_scratch=4, seed=0, size=64)
    ds = FinePatchDataset(path.parent)
    assert len(ds) >= 1
    for i in range(len(ds)):
        img, tgt = ds.load(i)
        heat, width_px, contrast = tgt[..., 0], tgt[..., 1], tgt[..., 2]
        on = heat > 0.5
        assert on.any()
        ys, _ = np.nonzero(on)
        assert np.ptp(ys) <= 3  # a horizontal line, as drawn
        rec = ds.records[i]
        assert np.allclose(width_px[on & (width_px > 0)], 0.15 / rec.mm_per_px, rtol=0.01)
        assert np.isnan(contrast).all()  # the manifest does not know it
        # The loss leaves the unknown contrast out instead of turning NaN.
        import torch

        from model.fine_network import FineNet

        net = FineNet(pretrained=False, encoder="tiny")
        x = torch.from_numpy(img.transpose(2, 0, 1).copy())[None]
        t = torch.from_numpy(tgt.transpose(2, 0, 1).copy())[None]
        loss, parts = fine_loss(net.forward_logits(x), t)
        assert torch.isfinite(loss) and parts["contrast_l1"] == 0.0


def test_crack_negatives_sit_on_the_crack_with_zero_targets(tmp_path):
    from training.synth.fine_photo_patches import write_fine_crack_negatives

    # A 400 px crack across the body: every patch holds a piece of its bright line, and no target.
    manifest = _photo_manifest(tmp_path / "photos", crack_box=(400, 449, 800, 452))
    path = write_fine_crack_negatives([manifest], tmp_path / "cneg", per_crack=5, seed=0, size=64)
    ds = FinePatchDataset(path.parent)
    assert len(ds) >= 1
    for i in range(len(ds)):
        img, tgt = ds.load(i)
        assert not tgt.any() and not ds.records[i].scratches
        assert img.max() > 80  # the crack's bright line is in the patch (the body is 40)
    # A scratch over the whole photo: a crack patch would hold it, so none is cut.
    both = _photo_manifest(tmp_path / "both", scratch_box=(0, 0, 1200, 900), crack_box=(400, 449, 800, 452))
    assert write_fine_crack_negatives([both], tmp_path / "c2", per_crack=5, seed=0, size=64).read_text() == ""
    out = CliRunner().invoke(
        build(),
        ["fine-crack-negatives", "-m", str(manifest), "--out", str(tmp_path / "c3"), "--per-crack", "2"],
    )
    assert out.exit_code == 0 and "crack patches" in out.output, out.output
