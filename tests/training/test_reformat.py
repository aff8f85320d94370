"""Format-swapped copies of real photos (`training.synth.reformat`, `refurbgrade reformat`): a barred
photo comes out of its bars, any other is shrunk and barred, labels kept, test photos refused; and the
device groups held out for the zone-damage fit (`training.dataset.training_items`, `damage_fit_items`), copies with their
originals."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from model.manifest import ManifestRecord, read_manifest, write_manifest
from model.taxonomy import DefectType
from training.dataset import SHORTCUT_SIDE
from training.synth.reformat import bar_content, swapped_format


def _photo(rng, h, w) -> np.ndarray:
    return rng.integers(60, 200, (h, w, 3), dtype=np.uint8)


def test_bars_are_found_and_cut_off():
    rng = np.random.default_rng(0)
    barred = np.zeros((244, 244, 3), dtype=np.uint8)
    barred[60:184] = _photo(rng, 124, 244)
    barred[:60] = rng.integers(0, 12, (60, 244, 3))  # JPEG noise in a bar is still a bar
    assert bar_content(barred) == (60, 184, 0, 244)
    out, fmt = swapped_format(barred)
    assert fmt == "unbarred" and out.shape == (124, 244, 3)
    assert (out == barred[60:184]).all()


def test_an_unbarred_photo_is_shrunk_and_barred_and_a_small_square_is_left_alone():
    rng = np.random.default_rng(1)
    out, fmt = swapped_format(_photo(rng, 600, 400))
    assert fmt == "barred" and out.shape == (SHORTCUT_SIDE, SHORTCUT_SIDE, 3)
    assert bar_content(out) is not None and out[:, :20].max() == 0  # black bars left and right
    assert swapped_format(_photo(rng, SHORTCUT_SIDE, SHORTCUT_SIDE)) is None
    assert bar_content(np.zeros((50, 50, 3), dtype=np.uint8)) is None  # black all over: no content


def test_cli_copies_image_level_photos_with_their_labels_and_refuses_test(tmp_path):
    from refurbgrade.cli import build

    app = build()

    rng = np.random.default_rng(2)
    barred = np.zeros((244, 244, 3), dtype=np.uint8)
    barred[40:204] = _photo(rng, 164, 244)
    Image.fromarray(barred).save(tmp_path / "cracked.png")
    Image.fromarray(_photo(rng, 500, 300)).save(tmp_path / "intact.png")
    Image.fromarray(_photo(rng, 500, 300)).save(tmp_path / "outlined.png")
    base = {"device_id": "d", "split": "train", "source": "web", "view": "front"}
    records = [
        ManifestRecord(image="cracked.png", image_labels={DefectType.CRACK: True}, **base),
        ManifestRecord(image="intact.png", image_labels={DefectType.CRACK: False}, **base),
        # pixel geometry would not survive the bars being cut: not copied
        ManifestRecord(image="outlined.png", screen_polygons=[[(0, 0), (10, 0), (10, 10)]], **base),
    ]
    write_manifest(tmp_path / "m.jsonl", records)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["reformat", str(tmp_path / "m.jsonl"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 barred, 1 unbarred, 1 skipped" in result.output
    copies = {r.meta["format"]: r for r in read_manifest(out / "manifest.jsonl")}
    assert copies["unbarred"].image_labels == {DefectType.CRACK: True}
    assert copies["barred"].image_labels == {DefectType.CRACK: False}
    assert copies["barred"].source == "web" and copies["barred"].split == "train"
    with Image.open(out / copies["unbarred"].image) as im:
        assert im.size == (244, 164)

    write_manifest(tmp_path / "t.jsonl", [records[0].model_copy(update={"split": "test"})])
    refused = CliRunner().invoke(app, ["reformat", f"{tmp_path / 't.jsonl'}@test", "--out", str(out)])
    assert refused.exit_code != 0 and "test photos" in refused.output


def test_damage_holdout_keeps_held_groups_out_of_training_and_gives_them_alone_to_the_damage_fit():
    from pathlib import Path

    from training.dataset import Item, damage_fit_items, device_group, held_for_damage, training_items

    def item(device_id, source="web", complete=False):
        rec = ManifestRecord(
            image="x.jpg", device_id=device_id, split="train", source=source, instances_complete=complete
        )
        return Item(rec, Path("m.jsonl"), "m.jsonl")

    web = [item(f"web:g{k:04d}") for k in range(400)]
    copies = [item(f"web:g{k:04d}-barred") for k in range(400)]  # `refurbgrade reformat` copies
    synth = [item(f"s{k}", "synthetic", complete=True) for k in range(20)]
    laptops = [item(f"lap{k}", "laptop") for k in range(50)]  # trained on, never in the damage fit
    assert device_group(copies[3].record) == "web:g0003"

    train = training_items(web + synth + laptops, web + copies + synth, 0.25)
    damage = damage_fit_items(web + copies + synth, 0.25)
    held = {it.record.device_id for it in web if held_for_damage(it.record, 0.25)}
    assert 60 < len(held) < 140  # about a quarter of the groups, by a fixed hash
    trained = {it.record.device_id for it in train}
    assert not held & trained and len(train) == 400 - len(held) + 20 + 50  # synthetic and laptops stay
    real_fit = {device_group(it.record) for it in damage if not it.record.instances_complete}
    assert real_fit == held  # originals and copies of the held groups only
    assert sum(it.record.instances_complete for it in damage) == 20
    assert training_items(web, copies, 0.0) == web and damage_fit_items(copies, 0.0) == copies  # off
