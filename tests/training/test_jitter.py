"""Jittered copies of real photos (`training.synth.jitter`, `refurbgrade jitter`): turned, re-exposed,
shrunk and recompressed within their ranges, labels, source and device group kept, pixel geometry
dropped, the same files from the same seed, test photos refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from model.manifest import LabelledInstance, ManifestRecord, read_manifest, write_manifest
from model.taxonomy import DefectType, Zone
from training.dataset import device_group
from training.synth.jitter import (
    DARKER,
    GAIN,
    MIN_SIDE,
    PLAIN_QUALITY,
    QUALITY,
    SCALE,
    SOFT_PER_SIDE,
    TILT_NARROWING,
    exposure_lut,
    jitter_photo,
    table_colour,
    tilt,
)


def test_exposure_is_scaled_in_linear_light():
    assert (exposure_lut(1.0) == np.arange(256)).all()  # no change, to the level
    dark, bright = exposure_lut(0.5), exposure_lut(2.0)
    assert (np.diff(dark.astype(int)) >= 0).all() and (np.diff(bright.astype(int)) >= 0).all()
    # Half the light is not half the level: sRGB mid-grey 128 (21.6% linear) at half is about 10.8%,
    # level 93; doubled, 43.2% is level 176. White clips.
    assert abs(int(dark[128]) - 93) <= 1 and abs(int(bright[128]) - 176) <= 1
    assert dark[0] == 0 and bright[255] == 255 and bright[200] == 255


def test_a_copy_is_drawn_within_the_ranges_and_turned_as_drawn():
    rgb = np.zeros((400, 300, 3), np.uint8)
    rgb[:50, :] = 200  # a bright band along the top edge shows where the top went
    turns = set()
    for k in range(24):
        out, quality, draw = jitter_photo(rgb, np.random.default_rng([5, k]))
        turns.add(draw["turns"])
        assert GAIN[0] <= draw["gain"] <= GAIN[1] and QUALITY[0] <= quality <= QUALITY[1]
        assert SCALE[0] <= draw["scale"] <= SCALE[1] or max(out.shape[:2]) >= MIN_SIDE
        side = (400, 300) if draw["turns"] % 2 == 0 else (300, 400)
        assert (
            abs(out.shape[0] - side[0] * draw["scale"]) <= 1
            and abs(out.shape[1] - side[1] * draw["scale"]) <= 1
        )
        edge = {0: out[0, :], 1: out[:, 0], 2: out[-1, :], 3: out[:, -1]}[draw["turns"]]  # np.rot90: CCW
        assert edge.mean() > out[out.shape[0] // 2, out.shape[1] // 2].mean()
    assert turns == {0, 1, 2, 3}
    small = jitter_photo(np.zeros((300, 280, 3), np.uint8), np.random.default_rng(0))[0]
    assert max(small.shape[:2]) >= MIN_SIDE  # never shrunk under MIN_SIDE on its long side


def test_a_single_change_mode_makes_that_change_alone():
    rgb = np.full((400, 300, 3), 128, np.uint8)
    rgb[:50, :] = 200
    turns = set()
    for k in range(12):
        out, quality, draw = jitter_photo(rgb, np.random.default_rng([5, k]), "quarter-turn")
        turns.add(draw["turns"])
        assert out.shape == (300, 400, 3) and quality == PLAIN_QUALITY  # turned, never shrunk
        assert out[150, 200].tolist() == [128, 128, 128]  # the light as it was
    assert turns == {1, 3}  # a quarter either way, never upright or upside down
    # The same draw with "other-quarter-turn": the photo turned the other way, so both are in a fit.
    for k in range(12):
        one = jitter_photo(rgb, np.random.default_rng([5, k]), "quarter-turn")
        other = jitter_photo(rgb, np.random.default_rng([5, k]), "other-quarter-turn")
        assert one[2]["turns"] + other[2]["turns"] == 4
        np.testing.assert_array_equal(other[0], np.rot90(one[0], 2))
    out, quality, draw = jitter_photo(rgb, np.random.default_rng(0), "darker")
    assert out.shape == rgb.shape and draw == {"turns": 0, "gain": DARKER, "scale": 1.0, "quality": quality}
    assert out[200, 150, 0] == exposure_lut(DARKER)[128] < 128 and out[10, 10, 0] == exposure_lut(DARKER)[200]
    with pytest.raises(ValueError, match="sideways"):
        jitter_photo(rgb, np.random.default_rng(0), "sideways")


def test_a_tilt_narrows_the_far_edge_and_uncovers_the_table():
    rgb = np.full((400, 300, 3), 60, np.uint8)  # the table
    rgb[40:360, 40:260] = 200  # the device, a bright rectangle
    assert table_colour(rgb) == (60.0, 60.0, 60.0)
    for side, (far, near) in {
        0: ("top", "bottom"),
        1: ("right", "left"),
        2: ("bottom", "top"),
        3: ("left", "right"),
    }.items():
        out = tilt(rgb, 0.25, side)
        assert out.shape == rgb.shape
        mask = out[..., 0] > 130
        # The device's extent across its far edge against its near edge, each measured 12 px inside it.
        rows, cols = np.nonzero(mask)
        edges = {
            "top": mask[rows.min() + 12].sum(),
            "bottom": mask[rows.max() - 12].sum(),
            "left": mask[:, cols.min() + 12].sum(),
            "right": mask[:, cols.max() - 12].sum(),
        }
        assert edges[far] < 0.9 * edges[near], (side, edges)
        # What the warp uncovered along the far side is the table's colour, not black.
        strip = {"top": out[:5], "bottom": out[-5:], "left": out[:, :5], "right": out[:, -5:]}[far]
        assert abs(float(strip.mean()) - 60) < 3


def test_the_tilted_and_soft_modes_draw_within_their_ranges():
    rgb = np.full((400, 300, 3), 60, np.uint8)
    rgb[:, 150:] = 200  # a hard vertical edge
    sides = set()
    for k in range(16):
        out, quality, draw = jitter_photo(rgb, np.random.default_rng([3, k]), "tilted")
        sides.add(draw["tilt_side"])
        assert out.shape == rgb.shape and quality == PLAIN_QUALITY and draw["turns"] == 0
        assert TILT_NARROWING[0] <= draw["tilt_narrowing"] <= TILT_NARROWING[1]
        soft, quality, draw = jitter_photo(rgb, np.random.default_rng([3, k]), "soft")
        assert soft.shape == rgb.shape and SOFT_PER_SIDE[0] <= draw["blur_per_side"] <= SOFT_PER_SIDE[1]
        assert np.abs(np.diff(soft[200, :, 0].astype(int))).max() < 140  # the step spread (was 140)
    assert sides == {0, 1, 2, 3}


def test_cli_copies_labelled_photos_with_their_labels_and_group_and_refuses_test(tmp_path):
    from refurbgrade.cli import build

    app = build()
    rng = np.random.default_rng(2)
    for name in ("cracked", "worn", "unlabelled"):
        Image.fromarray(rng.integers(40, 220, (320, 480, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    base = {"split": "train", "source": "web", "view": "front"}
    scratch = LabelledInstance(type=DefectType.SCRATCH, zone=Zone.SCREEN, polygon=[(1, 1), (40, 1), (40, 3)])
    records = [
        ManifestRecord(image="cracked.png", device_id="a", image_labels={DefectType.CRACK: True}, **base),
        ManifestRecord(
            image="worn.png",
            device_id="b",
            image_labels={DefectType.CRACK: False, DefectType.SCRATCH: True},
            instances=[scratch],
            **base,
        ),
        ManifestRecord(image="unlabelled.png", device_id="c", **base),  # nothing image-level to learn
    ]
    write_manifest(tmp_path / "m.jsonl", records)

    def run(out):
        result = CliRunner().invoke(
            app, ["jitter", str(tmp_path / "m.jsonl"), "--out", str(out), "--seed", "3"]
        )
        assert result.exit_code == 0, result.output
        return read_manifest(out / "manifest.jsonl")

    copies = run(tmp_path / "out")
    assert [c.image_labels for c in copies] == [records[0].image_labels, records[1].image_labels]
    for copy, original in zip(copies, records[:2], strict=True):
        assert copy.source == "web" and copy.split == "train" and copy.view == original.view
        assert device_group(copy) == device_group(original) == original.device_id  # grouped with it
        assert not copy.instances and not copy.instances_complete  # the turn moved the outline
        with Image.open(tmp_path / "out" / copy.image) as im:
            assert im.size == (copy.width, copy.height)
    again = run(tmp_path / "again")
    assert [c.meta for c in again] == [c.meta for c in copies]
    assert (tmp_path / "out" / copies[0].image).read_bytes() == (
        tmp_path / "again" / again[0].image
    ).read_bytes()

    write_manifest(tmp_path / "t.jsonl", [records[0].model_copy(update={"split": "test"})])
    refused = CliRunner().invoke(
        app, ["jitter", f"{tmp_path / 't.jsonl'}@test", "--out", str(tmp_path / "x")]
    )
    assert refused.exit_code != 0 and "test photos" in refused.output
