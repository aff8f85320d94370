"""`refurbgrade fine-cut` (training.fine_cut): the fine file's heat cut chosen on whole photos through the
one inference path, and written into its card without touching its graph."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from model.export import _session, export_fine_onnx, update_fine_card
from model.fine_network import FineNet
from model.fine_pass import FineCard
from model.manifest import LabelledInstance, ManifestRecord, write_manifest
from refurbgrade.cli import build
from tests.serving.tiny_model import build_tiny_model, device_photo
from training.fine_cut import choose, choose_frame, cut_table

W, H = 2400, 3000  # the tiny model's device fills 80% of the height: about 0.06 mm per pixel


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("finecut")
    build_tiny_model(d / "tiny.onnx")
    torch.manual_seed(0)
    net = FineNet(pretrained=False, encoder="tiny").eval()
    card = FineCard(name="tiny-fine", version="0.0.1", tile_px=64, margin_px=8, heat_cut=0.5, max_tiles=2)
    tiles = np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8)
    export_fine_onnx(net, d / "tiny.fine.onnx", card, tiles)
    Image.fromarray(device_photo(width=W, height=H)).save(d / "phone.jpg", quality=92)
    x0, x1, cy, t = int(W * 0.3), int(W * 0.7), (int(H * 0.1) + int(H * 0.9)) // 2, H // 40
    a, b = x0 + (x1 - x0) // 5, x1 - (x1 - x0) // 5
    rec = ManifestRecord(
        image="phone.jpg",
        device_id="phone-1",
        split="val",
        source="synthetic",
        width=W,
        height=H,
        device_kind="phone",
        instances=[
            LabelledInstance(type="scratch", polygon=[(a, cy - t), (b, cy - t), (b, cy + t), (a, cy + t)])
        ],
        instances_complete=True,
        grades={"backmarket": "Fair"},
    )
    write_manifest(d / "val.jsonl", [rec])
    return d


def test_every_cut_is_read_on_the_same_photos(model_dir):
    rows = cut_table(
        model_dir / "tiny.onnx", [f"{model_dir / 'val.jsonl'}@val"], (0.3, 0.6), (None, 0.2, 0.5)
    )
    assert [(r["heat_cut"], r["heat_low"]) for r in rows] == [
        (None, None),  # the coarse pass alone, the baseline
        (0.3, None),
        (0.3, 0.2),
        (0.6, None),
        (0.6, 0.2),
        (0.6, 0.5),
    ]  # a low at or over its cut is no hysteresis: skipped
    for r in rows:
        assert r["scratch_tp"] + r["scratch_fn"] == 1  # the one true scratch, found or missed
        assert 0.0 <= r["scratch_f1"] <= 1.0 and r["graded"] == 1
        assert set(r["unlistable_share"]) == {"synthetic"}


def test_each_cut_is_also_read_with_the_frame_lines_from_each_z(model_dir):
    rows = cut_table(
        model_dir / "tiny.onnx",
        [f"{model_dir / 'val.jsonl'}@val"],
        (0.6,),
        (None,),
        ("val",),
        (None, 6.0, 12.0),
    )
    assert [(r["heat_cut"], r["frame_z"]) for r in rows] == [
        (None, None),
        (0.6, None),
        (0.6, 6.0),
        (0.6, 12.0),
    ]
    assert [r["frame_z_low"] for r in rows] == [None, None, 4.0, 4.0]  # the lines grown from the default low
    for r in rows:
        assert r["scratch_tp"] + r["scratch_fn"] == 1 and r["graded"] == 1


def test_the_frame_z_that_grades_best_wins_if_it_costs_nothing():
    best = {
        "heat_cut": 0.99,
        "heat_low": 0.5,
        "frame_z": None,
        "backmarket_accuracy": 0.40,
        "scratch_f1": 0.30,
    }
    at = {"heat_cut": 0.99, "heat_low": 0.5}
    rows = [
        best,
        {**at, "frame_z": 6.0, "backmarket_accuracy": 0.35, "scratch_f1": 0.40},  # grades worse
        {**at, "frame_z": 10.0, "backmarket_accuracy": 0.44, "scratch_f1": 0.38},
        {**at, "frame_z": 12.0, "backmarket_accuracy": 0.44, "scratch_f1": 0.37},  # the tie: higher z
        {"heat_cut": 0.97, "heat_low": 0.5, "frame_z": 8.0, "backmarket_accuracy": 0.9, "scratch_f1": 0.9},
    ]
    assert choose_frame(rows, best) == 12.0
    assert (
        choose_frame([best, {**at, "frame_z": 8.0, "backmarket_accuracy": 0.44, "scratch_f1": 0.29}], best)
        is None
    )
    assert choose_frame([best], best) is None


def test_the_best_f1_wins_and_a_tie_goes_to_the_higher_cut():
    rows = [
        {"heat_cut": 0.9, "scratch_f1": 0.40},
        {"heat_cut": 0.97, "scratch_f1": 0.42},
        {"heat_cut": 0.99, "scratch_f1": 0.42},
        {"heat_cut": 0.8, "scratch_f1": 0.30},
        {"heat_cut": None, "scratch_f1": 0.50},  # the coarse baseline is never the choice
        {"heat_cut": 0.9, "frame_z": 8.0, "scratch_f1": 0.60},  # nor a row with frame lines
    ]
    assert choose(rows)["heat_cut"] == 0.99


def test_the_card_is_rewritten_and_the_network_is_not(model_dir, tmp_path):
    path = tmp_path / "x.fine.onnx"
    path.write_bytes((model_dir / "tiny.fine.onnx").read_bytes())
    x = np.random.default_rng(1).integers(0, 256, (1, 3, 64, 64), dtype=np.uint8)
    before = _session(path).run(None, {"image": x})
    card = update_fine_card(path, heat_cut=0.97, heat_low=0.5)
    assert (card.heat_cut, card.heat_low, card.tile_px) == (0.97, 0.5, 64)
    sess = _session(path)
    assert FineCard.from_metadata(dict(sess.get_modelmeta().custom_metadata_map)) == card
    for a, b in zip(before, sess.run(None, {"image": x}), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_command_writes_its_choice_and_refuses_a_model_without_a_fine_file(model_dir, tmp_path):
    runner, app = CliRunner(), build()
    (tmp_path / "m").mkdir()
    for name in ("tiny.onnx", "tiny.fine.onnx"):
        (tmp_path / "m" / name).write_bytes((model_dir / name).read_bytes())
    manifest = f"{model_dir / 'val.jsonl'}@val"
    res = runner.invoke(
        app,
        [
            "fine-cut",
            str(tmp_path / "m" / "tiny.onnx"),
            "-m",
            manifest,
            "--cuts",
            "0.3,0.6",
            "--lows",
            "none",
            "--frame-zs",
            "8,12",
            "--write",
        ],
    )
    assert res.exit_code == 0, res.output
    sess = _session(tmp_path / "m" / "tiny.fine.onnx")
    card = json.loads(sess.get_modelmeta().custom_metadata_map["refurbgrade.fine_card"])
    assert card["heat_cut"] in (0.3, 0.6) and card["heat_low"] is None
    assert "| cut | low | frame z |" in res.output and "frame reader:" in res.output
    assert card["frame_z"] in (None, 8.0, 12.0)  # off unless it grades and finds as well
    assert (card["frame_z_low"] is None) == (card["frame_z"] is None)
    assert "chosen on whole photos" in card["notes"]

    res = runner.invoke(app, ["fine-cut", str(model_dir / "tiny.onnx"), "-m", "nowhere.jsonl"])
    assert res.exit_code == 2 and "nowhere.jsonl" in res.output
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "tiny.onnx").write_bytes((model_dir / "tiny.onnx").read_bytes())
    res = runner.invoke(app, ["fine-cut", str(tmp_path / "bare" / "tiny.onnx"), "-m", manifest])
    assert res.exit_code == 2 and "no fine file" in res.output
    res = runner.invoke(app, ["fine-cut", str(model_dir / "tiny.onnx"), "-m", manifest, "--cuts", "1.5"])
    assert res.exit_code == 2 and "between 0 and 1" in res.output
