"""`refurbgrade calibrate --fine-grading-only`: the grading of the devices the fine pass reads fitted
on an exported file's card (`training.calibrate.calibrate_gradings`), every other threshold as it
was; refused for a file the fine pass never runs beside. `--gradings-only`: every grading (each
standard's grade calibration and review threshold, the fine pass's too), the cuts as they were."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from model.export import export_fine_onnx, read_card
from model.fine_network import FineNet
from model.fine_pass import FineCard
from model.manifest import ManifestRecord
from refurbgrade.cli import build
from tests.serving.tiny_model import build_tiny_model, device_photo

runner = CliRunner()


def _photos(folder, n: int, width: int, height: int) -> str:
    """`n` one-photo devices of a known Back Market grade as a manifest, all in its val split."""
    folder.mkdir()
    lines = []
    for i in range(n):
        Image.fromarray(device_photo(width=width, height=height, scratch=i % 2 == 0)).save(
            folder / f"{i}.jpg"
        )
        rec = ManifestRecord(
            image=f"{i}.jpg", device_id=f"d{i}", split="val", source="synthetic",
            device_kind="phone", grades={"backmarket": "Good" if i % 2 == 0 else "Premium"},
        )  # fmt: skip
        lines.append(rec.model_dump_json(exclude_none=True))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return f"{folder / 'manifest.jsonl'}@val"


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.onnx"
    build_tiny_model(path)
    return path


def _with_fine(path):
    torch.manual_seed(0)
    card = FineCard(name="tiny-fine", version="0.0.1", tile_px=64, margin_px=8, heat_cut=0.5, max_tiles=2)
    tiles = np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8)
    export_fine_onnx(
        FineNet(pretrained=False, encoder="tiny").eval(), path.with_suffix(".fine.onnx"), card, tiles
    )


def test_fine_grading_is_fitted_on_the_devices_the_fine_pass_reads(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr("training.calibrate.MIN_CALIBRATION_DEVICES", 3)
    _with_fine(tiny)
    before = read_card(tiny).thresholds
    fine = _photos(tmp_path / "fine", 4, 2400, 3000)  # about 0.06 mm a pixel: the fine pass reads them
    small = _photos(tmp_path / "small", 3, 800, 600)  # too coarse: never part of the fit
    r = runner.invoke(
        build(), ["calibrate", str(tiny), "-m", small, "--fine-val", fine, "--fine-grading-only"]
    )
    assert r.exit_code == 0, r.output
    assert "devices the fine pass reads: 4 validation devices" in r.output
    after = read_card(tiny).thresholds
    assert after.fine_grading is not None and after.fine_grading.devices == 4
    assert after.fine_grading.grade_calibration["backmarket"].devices == 4
    assert after.model_copy(update={"fine_grading": None}) == before  # nothing else moved
    beside = json.loads(tiny.with_suffix(".calibration.json").read_text())
    assert beside["thresholds"]["fine_grading"]["devices"] == 4
    assert beside["figures"]["fine_grading"]["review"]["devices"] == 4


def test_fine_grading_needs_a_fine_network_and_enough_devices(tiny, tmp_path, monkeypatch):
    fine = _photos(tmp_path / "fine", 2, 2400, 3000)
    args = ["calibrate", str(tiny), "-m", fine, "--fine-grading-only"]
    r = runner.invoke(build(), args)
    assert r.exit_code == 2 and "no fine network beside it" in r.output
    _with_fine(tiny)
    r = runner.invoke(build(), args)
    assert r.exit_code == 2 and "read 2 validation devices" in r.output
    assert read_card(tiny).thresholds.fine_grading is None  # nothing stored on a refusal


def test_gradings_only_refits_every_grading_and_leaves_the_cuts(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr("training.calibrate.MIN_CALIBRATION_DEVICES", 3)
    _with_fine(tiny)
    before = read_card(tiny).thresholds
    fine = _photos(tmp_path / "fine", 4, 2400, 3000)
    small = _photos(tmp_path / "small", 5, 800, 600)  # the coarse grading's devices
    r = runner.invoke(build(), ["calibrate", str(tiny), "-m", small, "--fine-val", fine, "--gradings-only"])
    assert r.exit_code == 0, r.output
    assert "grade calibration, backmarket" in r.output and "needs_review_below" in r.output
    after = read_card(tiny).thresholds
    assert before.grade_calibration == {}  # the tiny card had none: this step fitted it
    assert after.grade_calibration["backmarket"].devices == 5
    assert after.fine_grading is not None and after.fine_grading.devices == 4
    kept = {"grade_calibration", "needs_review_below", "fine_grading"}
    assert after.model_dump(exclude=kept) == before.model_dump(exclude=kept)  # cuts, confidences, zones
    beside = json.loads(tiny.with_suffix(".calibration.json").read_text())
    assert beside["figures"]["grades"]["backmarket"]["devices"] == 5
    assert beside["figures"]["review"]["devices"] == 5


def test_one_only_flag_at_a_time(tiny, tmp_path):
    small = _photos(tmp_path / "small", 2, 800, 600)
    r = runner.invoke(
        build(), ["calibrate", str(tiny), "-m", small, "--gradings-only", "--fine-grading-only"]
    )
    assert r.exit_code == 2 and "not both" in r.output
