"""Importers round-trip tiny fixtures of every format; splits never straddle; bad input is reported with
file and line, the rest imported, and the exit status says whether anything was skipped."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from model.manifest import read_manifest, resolve
from model.taxonomy import DefectType, PhotoQuality, Zone
from training.cli import data as cli_data
from training.data.splits import assign_splits, group_keys, roboflow_key, straddling

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str):
    app = typer.Typer()
    cli_data.register(app)
    result = CliRunner().invoke(app, ["import", *map(str, args)])
    text = result.output + (getattr(result, "stderr", "") or "")
    return result.exit_code, " ".join(text.split())  # rich may wrap long paths


def _jpg(path: Path, w: int = 100, h: int = 80) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), 128, np.uint8)
    cv2.imwrite(str(path), img)
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# YOLO


@pytest.fixture
def yolo(tmp_path):
    src = tmp_path / "yolo"
    _write(src / "data.yaml", "names: [scratch, oil, screen]\ntrain: ../train/images\nval: ../valid/images\n")
    # two Roboflow copies of one photo, another photo, and a transformed copy of the first in valid
    for name in ("a_jpg.rf.111.jpg", "a_jpg.rf.222.jpg", "b_jpg.rf.333.jpg"):
        _jpg(src / "train" / "images" / name)
    _jpg(src / "valid" / "images" / "a_t_0_jpg.rf.444.jpg")
    _write(
        src / "train" / "labels" / "a_jpg.rf.111.txt",
        "0 0.1 0.1 0.5 0.1 0.5 0.5\n"  # scratch polygon
        "1 0.5 0.5 0.2 0.2 0.3 0.4\n"  # oil -> smudge
        "7 0.1 0.1 0.2 0.2 0.3 0.3\n"  # line 3: unknown class id
        "0 0.1 0.1 1.6 0.1 0.5 0.5\n"  # line 4: outside the image
        "0 nan 0.1 0.5 0.1 0.5 0.5\n",  # line 5: not a number
    )
    _write(src / "train" / "labels" / "a_jpg.rf.222.txt", "2 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9\n")
    _write(src / "train" / "labels" / "b_jpg.rf.333.txt", "")
    _write(src / "train" / "labels" / "ghost_jpg.rf.555.txt", "0 0.1 0.1 0.5 0.1 0.5 0.5\n")  # no image
    (src / "train" / "images" / "c_jpg.rf.666.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cmap = _write(
        tmp_path / "map.yaml", "scratch: {defect: scratch, zone: body}\noil: smudge\nscreen: screen_outline\n"
    )
    return src, cmap


def test_yolo_round_trip_and_problem_report(yolo, tmp_path):
    src, cmap = yolo
    out = tmp_path / "m" / "yolo.jsonl"
    code, text = _cli("yolo", src, "--out", out, "--class-map", cmap)
    assert code == 1  # something was skipped
    labels = src / "train" / "labels"
    assert f"{labels / 'a_jpg.rf.111.txt'}:3: unknown class id 7" in text
    assert f"{labels / 'a_jpg.rf.111.txt'}:4: label outside the image" in text
    assert f"{labels / 'a_jpg.rf.111.txt'}:5: not a YOLO label line" in text
    assert f"{labels / 'ghost_jpg.rf.555.txt'}: missing image" in text
    assert "c_jpg.rf.666.jpg: corrupt image" in text
    records = {Path(r.image).name: r for r in read_manifest(out)}
    assert set(records) == {
        "a_jpg.rf.111.jpg",
        "a_jpg.rf.222.jpg",
        "b_jpg.rf.333.jpg",
        "a_t_0_jpg.rf.444.jpg",
    }
    a = records["a_jpg.rf.111.jpg"]
    assert resolve(out, a.image).resolve() == (src / "train" / "images" / "a_jpg.rf.111.jpg").resolve()
    assert (a.width, a.height) == (100, 80)
    scratch, smudge = a.instances
    assert scratch.type is DefectType.SCRATCH and scratch.zone is Zone.BODY
    assert scratch.polygon == [(10.0, 8.0), (50.0, 8.0), (50.0, 40.0)]  # normalised -> pixels
    assert smudge.type is DefectType.SMUDGE
    assert a.image_labels == {DefectType.SCRATCH: True, DefectType.SMUDGE: True}
    assert not a.instances_complete  # a Roboflow export's empty label file is not proof of no defect
    screen = records["a_jpg.rf.222.jpg"]
    assert screen.instances == [] and screen.screen_polygons == [
        [(10.0, 8.0), (90.0, 8.0), (90.0, 72.0), (10.0, 72.0)]
    ]
    # every copy of photo 'a', including the valid-split '_t_0' one, lands in one split
    group = {r.device_id for n, r in records.items() if n.startswith("a_")}
    assert len(group) == 1
    assert len({r.split for n, r in records.items() if n.startswith("a_")}) == 1
    assert records["a_t_0_jpg.rf.444.jpg"].split == "train"  # the leaked copy moved to its majority split

    code, _ = _cli("yolo", src, "--out", out, "--class-map", cmap, "--allow-skips")
    assert code == 0


def test_yolo_boxes_in_a_detection_set(tmp_path):
    src = tmp_path / "det"
    _write(src / "data.yaml", "path: ds\nnames: {0: scratch}\ntrain: images/train\n")  # Ultralytics layout
    _jpg(src / "ds" / "images" / "train" / "x.jpg", 200, 100)
    _write(src / "ds" / "labels" / "train" / "x.txt", "0 0.5 0.5 0.2 0.4\n")
    out = tmp_path / "det.jsonl"
    assert _cli("yolo", src, "--out", out)[0] == 0
    (r,) = read_manifest(out)
    assert r.instances[0].polygon == [(80.0, 30.0), (120.0, 30.0), (120.0, 70.0), (80.0, 70.0)]


def test_yolo_classes_rule_out_their_absent_types_unless_a_shape_shows_them(tmp_path):
    """laptop_scratch's lids are not cracked: a photo with a scratch or stain polygon is a known
    negative for crack; one with a crack polygon too keeps its crack; an unlabelled photo says nothing."""
    src = tmp_path / "lids"
    _write(src / "data.yaml", "path: ds\nnames: {0: scratch, 1: crack}\ntrain: images/train\n")
    for name, label in (
        ("s", "0 0.5 0.5 0.2 0.4\n"),
        ("sc", "1 0.2 0.2 0.1 0.1\n0 0.5 0.5 0.2 0.4\n"),
        ("e", ""),
    ):
        _jpg(src / "ds" / "images" / "train" / f"{name}.jpg", 200, 100)
        _write(src / "ds" / "labels" / "train" / f"{name}.txt", label)
    cmap = _write(
        tmp_path / "lids.yaml", "scratch: {defect: scratch, zone: body, absent: [crack]}\ncrack: crack\n"
    )
    out = tmp_path / "lids.jsonl"
    assert _cli("yolo", src, "--out", out, "--class-map", cmap)[0] == 0
    labels = {Path(r.image).stem: r.image_labels for r in read_manifest(out)}
    assert labels["s"] == {DefectType.SCRATCH: True, DefectType.CRACK: False}
    assert labels["sc"] == {DefectType.SCRATCH: True, DefectType.CRACK: True}
    assert labels["e"] == {}


def test_yolo_label_map_pairs_renamed_images(tmp_path):
    src = tmp_path / "renamed"
    _write(src / "data.yaml", "names: [screen]\ntest: ../test/images\n")
    _jpg(src / "test" / "images" / "est1.jpg")
    _write(src / "test" / "labels" / "Phone-6_jpg.rf.abc.txt", "0 0.1 0.1 0.9 0.1 0.9 0.9\n")
    _write(src / "map.csv", "image,label_file\ntest/images/est1.jpg,test/labels/Phone-6_jpg.rf.abc.txt\n")
    _write(src / "classes.yaml", "screen: screen_outline\nbroken: {defect: crack}\n")
    _write(src / "labels.csv", "file,kind\ntest/images/est1.jpg,broken\ntest/images/gone.jpg,broken\n")
    out = tmp_path / "r.jsonl"
    code, text = _cli(
        "yolo",
        src,
        "--out",
        out,
        "--class-map",
        src / "classes.yaml",
        "--label-map",
        src / "map.csv",
        "--image-labels",
        src / "labels.csv",
    )
    assert f"{src / 'labels.csv'}:3: missing image" in text and code == 1
    (r,) = read_manifest(out)
    assert len(r.screen_polygons) == 1 and r.image_labels == {DefectType.CRACK: True}
    assert r.device_id.endswith(":Phone-6")  # grouped by the source photo its label file names
    assert r.split == "test"


# --------------------------------------------------------------------------------------------------
# VOC, COCO, ImageFolder, CSV


def test_voc_round_trip_with_line_numbers(tmp_path):
    src = tmp_path / "voc"
    _jpg(src / "JPEGImages" / "p1.jpg", 120, 90)
    _write(
        src / "Annotations" / "p1.xml",
        """<annotation>
  <filename>p1.jpg</filename>
  <size><width>120</width><height>90</height></size>
  <object>
    <name>scratch</name>
    <bndbox><xmin>11</xmin><ymin>21</ymin><xmax>40</xmax><ymax>30</ymax></bndbox>
  </object>
  <object>
    <name>dragon</name>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>
  </object>
  <object>
    <name>dent</name>
    <bndbox><xmin>100</xmin><ymin>1</ymin><xmax>400</xmax><ymax>5</ymax></bndbox>
  </object>
</annotation>
""",
    )
    _write(src / "Annotations" / "p2.xml", "<annotation><filename>p2.jpg</filename></annotation>")  # no image
    _write(src / "Annotations" / "p3.xml", "<annotation>\n<filename>p3.jpg</filename>\n<object>\n")  # broken
    out = tmp_path / "voc.jsonl"
    code, text = _cli("voc", src, "--out", out)
    assert code == 1
    xml = src / "Annotations" / "p1.xml"
    assert f"{xml}:8: unknown class 'dragon'" in text
    assert f"{xml}:12: label outside the image" in text
    assert f"{src / 'Annotations' / 'p2.xml'}:1: missing image" in text
    assert f"{src / 'Annotations' / 'p3.xml'}:4: corrupt XML" in text
    (r,) = read_manifest(out)
    (inst,) = r.instances
    assert inst.type is DefectType.SCRATCH and inst.polygon == [
        (10.0, 20.0),
        (40.0, 20.0),
        (40.0, 30.0),
        (10.0, 30.0),
    ]


def test_coco_round_trip_with_line_numbers(tmp_path):
    src = tmp_path / "coco"
    _jpg(src / "images" / "one.jpg", 64, 48)
    data = {
        "images": [
            {"id": 1, "file_name": "images/one.jpg", "width": 64, "height": 48},
            {"id": 2, "file_name": "images/missing.jpg", "width": 64, "height": 48},
        ],
        "categories": [{"id": 3, "name": "stain"}, {"id": 4, "name": "unicorn"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "bbox": [2, 3, 10, 5]},
            {
                "id": 11,
                "image_id": 1,
                "category_id": 3,
                "segmentation": [[1, 1, 9, 1, 9, 9]],
                "bbox": [1, 1, 8, 8],
            },
            {"id": 12, "image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1]},
            {"id": 13, "image_id": 1, "category_id": 3, "bbox": [60, 40, 30, 30]},
        ],
    }
    js = _write(src / "ann.json", json.dumps(data, indent=1))
    lines = js.read_text().splitlines()
    line_of = {i: next(n for n, t in enumerate(lines, 1) if f'"id": {i},' in t) for i in (12, 13)}
    out = tmp_path / "coco.jsonl"
    code, text = _cli("coco", js, "--out", out)
    assert code == 1
    assert f"{js}:{line_of[12]}: unknown class 'unicorn'" in text
    assert f"{js}:{line_of[13]}: label outside the image" in text
    assert "missing image" in text and "missing.jpg" in text
    (r,) = read_manifest(out)
    assert [i.polygon for i in r.instances] == [
        [(2.0, 3.0), (12.0, 3.0), (12.0, 8.0), (2.0, 8.0)],
        [(1.0, 1.0), (9.0, 1.0), (9.0, 9.0)],
    ]


def test_imagefolder_and_csv(tmp_path):
    src = tmp_path / "folders"
    _jpg(src / "train" / "scratched" / "x1.jpg")
    _jpg(src / "train" / "clean" / "x2.jpg")
    _jpg(src / "val" / "mystery" / "x3.jpg")
    cmap = _write(tmp_path / "m.yaml", "scratched: scratch\nclean: clean\n")
    out = tmp_path / "f.jsonl"
    code, text = _cli("imagefolder", src, "--out", out, "--class-map", cmap)
    assert code == 1 and "x3.jpg: unknown class 'mystery'" in text
    assert f"unknown classes, labels skipped: 'mystery' (1); not in the class map {cmap}." in text
    recs = {Path(r.image).name: r for r in read_manifest(out)}
    assert recs["x1.jpg"].image_labels == {DefectType.SCRATCH: True}
    assert recs["x2.jpg"].instances_complete and not any(recs["x2.jpg"].image_labels.values())

    table = _write(tmp_path / "t" / "labels.csv", "file,defect\nimg/a.jpg,oil\nimg/b.jpg,gone\n")
    _jpg(tmp_path / "t" / "img" / "a.jpg")
    _jpg(tmp_path / "t" / "img" / "b.jpg")
    cm = _write(tmp_path / "oil.yaml", "oil: {defect: smudge, zone: screen}\nnothing: no_device\n")
    code, text = _cli("csv", table, "--out", tmp_path / "c.jsonl", "--class-map", cm, "--split", "regroup")
    assert code == 1 and f"{table}:3: unknown class 'gone'" in text
    (r,) = read_manifest(tmp_path / "c.jsonl")
    assert r.image_labels == {DefectType.SMUDGE: True}


def test_an_import_without_a_class_map_says_which_classes_need_one(tmp_path):
    """A folder of "cracked" and "intact" photos, imported without --class-map, imported nothing and said
    only "unknown class" once a photo: the end now names the classes, how many each cost, and the map
    that imports them."""
    src = tmp_path / "folders"
    for k in range(3):
        _jpg(src / "cracked" / f"c{k}.jpg")
    _jpg(src / "intact" / "i0.jpg")
    _jpg(src / "scratch" / "s0.jpg")  # a defect name: known without a map
    out = tmp_path / "f.jsonl"
    code, text = _cli("imagefolder", src, "--out", out, "--split", "regroup")
    assert code == 1
    assert "unknown classes, labels skipped: 'cracked' (3), 'intact' (1); not defect names (scratch," in text
    assert "Give --class-map FILE" in text and "'intact: {defect: crack, present: false}'" in text
    (r,) = read_manifest(out)
    assert r.image_labels == {DefectType.SCRATCH: True}
    # Nothing unknown: no hint.
    cmap = _write(
        tmp_path / "m.yaml", "cracked: crack\nintact: {defect: crack, present: false}\nscratch: scratch\n"
    )
    code, text = _cli("imagefolder", src, "--out", out, "--class-map", cmap, "--split", "regroup")
    assert code == 0 and "unknown classes" not in text and len(read_manifest(out)) == 5


def test_csv_split_group_and_meta_columns(tmp_path):
    t = tmp_path / "t"
    for name in ("a", "b", "c", "d", "e"):
        _jpg(t / "img" / f"{name}.jpg")
    table = _write(
        t / "labels.csv",
        "file,kind,severity,group,split,note\n"
        "img/a.jpg,cracked,less,g1,train,\n"
        "img/b.jpg,cracked,severe,g1,train,render?\n"  # a near-duplicate of a: same group
        "img/c.jpg,intact,none,g2,valid,\n"  # Roboflow's name for val
        "img/d.jpg,intact,none,,test,\n"  # no group: the file-name rule
        "img/e.jpg,intact,none,g3,holdout,\n",
    )
    cm = _write(tmp_path / "k.yaml", "cracked: crack\nintact: {defect: crack, present: false}\n")
    out = tmp_path / "c.jsonl"
    args = ("csv", table, "--out", out, "--class-map", cm, "--source", "web", "--split-column", "split")
    code, text = _cli(*args, "--group-column", "group", "--meta-columns", "severity, note")
    assert code == 1 and f"{table}:6: unknown split 'holdout' (column 'split'): row skipped" in text
    recs = {Path(r.image).name: r for r in read_manifest(out)}
    assert sorted(recs) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert recs["a.jpg"].device_id == recs["b.jpg"].device_id == "web:g1"
    assert recs["d.jpg"].device_id == "web:d"
    assert [recs[n].split for n in ("a.jpg", "b.jpg", "c.jpg", "d.jpg")] == ["train", "train", "val", "test"]
    assert recs["b.jpg"].meta["severity"] == "severe" and recs["b.jpg"].meta["note"] == "render?"
    assert "note" not in recs["a.jpg"].meta  # empty cells are left out
    assert recs["c.jpg"].image_labels == {DefectType.CRACK: False}

    # an explicit groups table still beats the group column
    groups = _write(tmp_path / "groups.csv", "file,group\nc.jpg,g1\n")
    _cli(*args, "--group-column", "group", "--groups", groups, "--allow-skips")
    recs = {Path(r.image).name: r for r in read_manifest(out)}
    assert recs["c.jpg"].device_id == "web:g1" and recs["c.jpg"].split == "train"

    code, text = _cli(*args, "--meta-columns", "colour")
    assert code == 2 and "no column 'colour'" in text
    _write(tmp_path / "y" / "data.yaml", "names: [crack]\n")
    code, text = _cli("yolo", tmp_path / "y", "--out", out, "--group-column", "group")
    assert code == 2 and "csv format only" in text


def test_bad_class_map_is_an_error_with_exit_2(tmp_path, yolo):
    src, _ = yolo
    bad = _write(tmp_path / "bad.yaml", "oil: {defect: grime}\n")
    code, text = _cli("yolo", src, "--out", tmp_path / "x.jsonl", "--class-map", bad)
    assert code == 2 and "class 'oil'" in text


# --------------------------------------------------------------------------------------------------
# splits


def test_roboflow_keys_and_camera_runs():
    assert (
        roboflow_key("IMG_2695_t_0_jpg.rf.71f.jpg") == roboflow_key("IMG_2695_jpeg.rf.a57.jpg") == "IMG_2695"
    )
    assert roboflow_key("Datacluster-Cracked-Screen-279-_jpg.rf.16ab.jpg") == "Datacluster-Cracked-Screen-279"
    assert roboflow_key("Oil_0001.jpg") == "Oil_0001"
    files = [
        "IMG_4890_jpeg.rf.1.jpg",
        "IMG_4896_jpeg.rf.2.jpg",
        "IMG_4893_jpeg.rf.3.jpg",
        "IMG_4891_jpeg.rf.4.jpg",
        "IMG_4892_jpeg.rf.5.jpg",
        "IMG_4894_jpeg.rf.6.jpg",
        "IMG_4895_jpeg.rf.7.jpg",
        "IMG_1969_jpeg.rf.8.jpg",
    ]
    keys = group_keys(files, "runs:1")
    assert len(set(keys[:7])) == 1 and keys[7] != keys[0]
    assert group_keys(["a.jpg", "b.jpg"], "file", {"b.jpg": "a.jpg"}) == ["a.jpg", "a.jpg"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 12), st.sampled_from(["train", "val", "test", None])),
        min_size=1,
        max_size=80,
    ),
    st.booleans(),
)
def test_splits_never_straddle(items, keep):
    groups = [f"g{g}" for g, _ in items]
    preferred = [p for _, p in items] if keep else None
    splits = assign_splits(groups, preferred, val=0.2, test=0.2, seed=3)
    assert not straddling(groups, splits)
    assert splits == assign_splits(groups, preferred, val=0.2, test=0.2, seed=3)


def test_regrouped_splits_follow_the_requested_shares():
    groups = [f"g{i // 3}" for i in range(300)]
    splits = assign_splits(groups, None, val=0.15, test=0.15, seed=0)
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert share["val"] == pytest.approx(0.15, abs=0.02) and share["test"] == pytest.approx(0.15, abs=0.02)


# --------------------------------------------------------------------------------------------------
# the committed manifests of the shared real sets


@pytest.mark.parametrize("name", ["msd", "cracked_screens", "laptop_scratch", "phones_web"])
def test_ready_made_real_manifests(name):
    path = REPO / "datasets" / "real" / f"{name}.jsonl"
    records = read_manifest(path)
    assert not straddling([r.device_id for r in records], [r.split for r in records])
    assert {r.split for r in records} == {"train", "val", "test"}
    for r in records:
        assert r.image.startswith("../../../shared/data/real/")
    shared = REPO.parent / "shared" / "data" / "real"
    if shared.is_dir():  # CI checks out shared/ beside the repo; elsewhere the paths cannot be checked
        assert all(resolve(path, r.image).is_file() for r in records)
    if name == "cracked_screens":
        assert sum(r.quality is PhotoQuality.NO_DEVICE for r in records) == 57
        assert all(not r.instances for r in records)  # polygons are screen outlines, not cracks
        tests = [r for r in records if r.meta.get("source_split") == "test" and r.screen_polygons]
        assert len(tests) == 8  # the renamed test images paired through test_label_map.csv
    if name == "laptop_scratch":
        assert sum(len(r.instances) for r in records) == 258 + 165 + 30 + 8
        assert not any(r.instances_complete for r in records)
    if name == "msd":
        assert len({r.device_id for r in records if r.meta.get("class") == "stain"}) == 1
    if name == "phones_web":  # the data card's fixed split and duplicate clusters (DATA_CARD.md)
        counts = Counter((r.split, r.meta["class"]) for r in records)
        assert counts == {
            ("train", "cracked"): 440,
            ("val", "cracked"): 94,
            ("test", "cracked"): 94,
            ("train", "intact"): 160,
            ("val", "intact"): 34,
            ("test", "intact"): 35,
        }
        assert all(r.split == r.meta["source_split"] for r in records)
        assert all(r.device_id == f"phones_web:{r.meta['group']}" for r in records)
        assert len({r.device_id for r in records}) == 856
        # intact says nothing about scratches, stains, ...: only the crack label is known
        assert all(r.image_labels == {"crack": r.meta["class"] == "cracked"} for r in records)
        assert not any(r.instances_complete for r in records)
