"""The whole model path in one test, as a fresh clone runs it: synth -> train 1 epoch -> export (checker,
ORT parity, card) -> INT8 -> evaluate the ONNX file through serving's post-processing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from model.export import read_card, run_onnx
from model.manifest import read_manifest
from refurbgrade.cli import build

runner = CliRunner()


@pytest.mark.slow
def test_synth_train_export_parity_evaluate(tmp_path):
    app = build()
    data = tmp_path / "synth"
    r = runner.invoke(app, ["synth", "--n", "16", "--out", str(data), "--seed", "7", "--size", "128"])
    assert r.exit_code == 0, r.output
    manifest = data / "manifest.jsonl"
    records = read_manifest(manifest)
    assert len(records) == 16 and {"train"} <= {r.split for r in records}
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "model: {name: tiny, overrides: {input_size: 128}}\n"
        f"data:\n  train: [{{manifest: {manifest}}}]\n"
        f"  val: [{{manifest: {manifest}, splits: [val, test]}}]\n  batch_size: 4\n"
        f"optim: {{epochs: 1, warmup_steps: 0}}\nrun_dir: {tmp_path / 'run'}\nprogress: false\n"
    )
    # Crop-to-device on: half the draws cropped to the device, calibration and card with the second pass.
    r = runner.invoke(
        app,
        [
            *("train", "--config", str(cfg), "--set", "seed=3"),
            *("--set", "data.device_crop=0.5", "--set", "crop_to_device=true"),
        ],
    )
    assert r.exit_code == 0, r.output
    ckpt = tmp_path / "run" / "best.pt"
    r = runner.invoke(app, ["calibrate", str(ckpt), "-m", f"{manifest}@val,test"])  # recalibration
    assert r.exit_code == 0 and "defect cuts: scratch" in r.output and "needs_review_below" in r.output, (
        r.output
    )
    assert f"figures behind them: {tmp_path / 'run' / 'calibration.json'}" in r.output  # not the weights
    assert '"weights"' not in r.output
    onnx_path = tmp_path / "m.onnx"
    r = runner.invoke(app, ["export", str(ckpt), "--out", str(onnx_path), "--int8", "--version", "9.9.9"])
    assert r.exit_code == 0, r.output
    assert "INT8 vs FP32" in r.output
    card = read_card(onnx_path)
    cal = json.loads((tmp_path / "run" / "calibration.json").read_text())
    assert card.version == "9.9.9" and card.input_size == 128 and card.mask_stride == 4
    assert card.thresholds.model_dump(mode="json") == cal["thresholds"]  # calibrated on val, carried over
    assert len(card.training_data_hash) == 64 and card.git_commit and card.crop_to_device
    assert cal["crop_to_device"] is True
    assert read_card(tmp_path / "m.int8.onnx").quantized
    # Re-quantizing the FP32 file without its checkpoint, from the training config's sources.
    requant = tmp_path / "again.int8.onnx"
    r = runner.invoke(app, ["quantize", str(onnx_path), "--config", str(cfg), "--out", str(requant)])
    assert r.exit_code == 0, r.output
    assert read_card(requant).quantized and read_card(requant).thresholds == card.thresholds
    r = runner.invoke(app, ["quantize", str(requant), "--config", str(cfg)])
    assert r.exit_code == 2 and "already quantized" in r.output
    out = run_onnx(onnx_path, np.zeros((3, 3, 128, 128), np.uint8))
    assert out["defect_probs"].shape == (3, 6, 32, 32)
    report = tmp_path / "report"
    r = runner.invoke(
        app,
        [
            "evaluate",
            str(onnx_path),
            "-m",
            f"{manifest}@val,test",
            "--report",
            str(report),
            "--compare",
            str(tmp_path / "m.int8.onnx"),
            "--card-metrics",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads((report / "metrics.json").read_text())["crop_to_device"]
    # Recalibrating the exported file (no checkpoint needed) rewrites its card and its INT8 sibling's.
    r = runner.invoke(app, ["calibrate", str(onnx_path), "--config", str(cfg), "--no-crop-to-device"])
    assert r.exit_code == 0, r.output
    assert not read_card(onnx_path).crop_to_device and not read_card(tmp_path / "m.int8.onnx").crop_to_device
    assert json.loads((tmp_path / "m.calibration.json").read_text())["crop_to_device"] is False
    r = runner.invoke(app, ["calibrate", str(tmp_path / "m.int8.onnx"), "--config", str(cfg)])
    assert r.exit_code == 2 and "FP32" in r.output
    text = (report / "report.md").read_text()
    assert "## Grades: backmarket" in text and "Compared with" in text
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["kind"] == "onnx" and metrics["n_photos"] == sum(r.split != "train" for r in records)
    card = read_card(onnx_path)  # the test figures went into the card; the weights did not change
    assert any(k.startswith("test_") for k in card.metrics) and any(
        k.startswith("val_") for k in card.metrics
    )
    # The exported network back as a checkpoint (the bundled file is the only copy of its weights), and
    # a run fine-tuning from it; an INT8 file is refused.
    rebuilt = tmp_path / "rebuilt.pt"
    r = runner.invoke(
        app, ["rebuild-checkpoint", str(onnx_path), "--out", str(rebuilt), "--config", str(cfg)]
    )
    assert r.exit_code == 0 and "statistics restored" in r.output, r.output
    r = runner.invoke(
        app, ["rebuild-checkpoint", str(tmp_path / "m.int8.onnx"), "-o", str(rebuilt), "-c", str(cfg)]
    )
    assert r.exit_code == 2 and "INT8" in r.output, r.output
    r = runner.invoke(
        app,
        [
            *("train", "--config", str(cfg), "--set", f"init_weights={rebuilt}"),
            *("--set", f"run_dir={tmp_path / 'tuned'}", "--set", "calibrate=false"),
        ],
    )
    assert r.exit_code == 0 and (tmp_path / "tuned" / "best.pt").is_file(), r.output
