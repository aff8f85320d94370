"""Reviewed gradings back into training: the manifest and photos `reviews export` writes (CLI and admin
API), corrections as labels, and the closed loop grade -> overrule -> export -> one training epoch."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

import pytest

from model.manifest import read_manifest, resolve
from serving.db import ApiKey, Grading, GradingEvent
from serving.review import events
from serving.review.export import export_reviews
from tests.serving.conftest import Keys, pg_and_sqlite, post_grading, store_defects

H = Keys.h


def _auditor(s) -> str:
    return s.query(ApiKey).filter_by(role="auditor").one().id


@pytest.fixture
def reviewed(client, keys, jpeg, clean_jpeg):
    """Three gradings: one overruled with defect corrections, one confirmed, one never reviewed."""
    ids = [
        post_grading(
            client,
            keys.a,
            [("front.jpg", jpeg, "image/jpeg"), ("back.png", clean_jpeg, "image/png")],
            data={"device_model": "iPhone 13", "views": "front,back"},
        ).json()["id"],
        post_grading(client, keys.b, [("p.jpg", jpeg, "image/jpeg")]).json()["id"],
        post_grading(client, keys.a, [("p.jpg", clean_jpeg, "image/jpeg")]).json()["id"],
    ]
    svc = client.app.state.svc
    with svc.sessions() as s:
        who = _auditor(s)
        row = s.get(Grading, ids[0])
        events.retype_defect(s, row, who, "p0-d0", "crack", None)
        events.add_defect(s, row, who, 0, "dent", "screen", (600, 100, 660, 160), "missed", None)
        events.add_defect(s, row, who, 1, "stain", None, (10, 10, 40, 30), "", None)
        events.overrule(s, row, who, {"ctia": "B", "backmarket": "Good"}, "crack is a sticker edge", None)
        row2 = s.get(Grading, ids[1])
        events.reject_defect(s, row2, who, "p0-d0", "reflection", None)
        events.confirm(s, row2, who, "", None)
    return ids


@pg_and_sqlite
def test_export_writes_corrections_as_labels(client, reviewed, tmp_path, jpeg):
    svc = client.app.state.svc
    since = datetime.now(UTC) - timedelta(hours=1)
    summary = export_reviews(svc.sessions, svc.blobs, tmp_path / "out", since, val_fraction=0.0)
    manifest = tmp_path / "out" / "manifest.jsonl"
    records = read_manifest(manifest)
    assert summary.gradings == 2 and summary.photos == len(records) == 3
    assert {r.meta["grading_id"] for r in records} == set(reviewed[:2])  # the unreviewed one is absent
    assert all(r.source == "review" and r.split == "train" for r in records)
    assert all(r.device_id == f"review-{r.meta['grading_id']}" for r in records)
    front, back = [r for r in records if r.meta["grading_id"] == reviewed[0]]
    # the model's scratch, retyped to a crack, plus the drawn dent: polygons in photo pixels
    assert sorted(i.type.value for i in front.instances) == ["crack", "dent"]
    dent = next(i for i in front.instances if i.type.value == "dent")
    assert dent.polygon == [(600, 100), (660, 100), (660, 160), (600, 160)] and dent.zone.value == "screen"
    assert front.view.value == "front" and back.view.value == "back"  # the caller's views are labels
    assert front.device_kind.value == "phone"  # the catalogue's iPhone 13
    assert [i.type.value for i in back.instances] == ["stain"]
    # a verdict vouches for the whole defect list: every type labelled present or absent
    assert front.image_labels["crack"] and front.image_labels["dent"] and not front.image_labels["scratch"]
    assert front.grades["ctia"] == "B" and front.grades["backmarket"] == "Good"
    assert front.grades["r2"]  # confirmed implicitly by the overrule of the others
    assert front.meta["grades_overruled"] == "backmarket,ctia" and front.meta["review_status"] == "overruled"
    assert front.instances_complete is False
    assert (resolve(manifest, front.image)).read_bytes() == jpeg
    assert front.width == 800 and front.height == 600
    confirmed = next(r for r in records if r.meta["grading_id"] == reviewed[1])
    assert confirmed.instances == [] and confirmed.image_labels["scratch"] is False  # marked false
    assert confirmed.grades and confirmed.meta["review_status"] == "confirmed"
    assert confirmed.device_kind is None  # nobody said: the default phone is no label
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["photos"] == 3
    # the window: nothing reviewed after now
    later = export_reviews(
        svc.sessions, svc.blobs, tmp_path / "later", datetime.now(UTC) + timedelta(seconds=1)
    )
    assert later.gradings == 0 and read_manifest(tmp_path / "later" / "manifest.jsonl") == []
    # exporting twice gives the same manifest bytes (records are sorted by review order, keys sorted)
    export_reviews(svc.sessions, svc.blobs, tmp_path / "again", since, val_fraction=0.0)
    assert (tmp_path / "again" / "manifest.jsonl").read_bytes() == manifest.read_bytes()


def test_defect_edits_without_a_verdict_label_only_what_was_touched(client, keys, jpeg, tmp_path):
    gid = post_grading(client, keys.a, [("p.jpg", jpeg, "image/jpeg")]).json()["id"]
    svc = client.app.state.svc
    with svc.sessions() as s:
        events.reject_defect(s, s.get(Grading, gid), _auditor(s), "p0-d0", "", None)
    export_reviews(svc.sessions, svc.blobs, tmp_path, datetime.now(UTC) - timedelta(hours=1))
    (rec,) = read_manifest(tmp_path / "manifest.jsonl")
    assert rec.image_labels == {"scratch": False} and rec.grades == {} and rec.instances == []


def test_splits_group_by_grading(client, reviewed, tmp_path):
    svc = client.app.state.svc
    export_reviews(svc.sessions, svc.blobs, tmp_path, datetime(2000, 1, 1, tzinfo=UTC), val_fraction=0.5)
    by_device: dict[str, set[str]] = {}
    for r in read_manifest(tmp_path / "manifest.jsonl"):
        by_device.setdefault(r.device_id, set()).add(r.split)
    assert all(len(splits) == 1 for splits in by_device.values())


def test_cli_export(client, reviewed, settings, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from refurbgrade.cli import build

    monkeypatch.setenv("REFURBGRADE_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("REFURBGRADE_DATABASE_URL", raising=False)
    out = tmp_path / "cli"
    runner = CliRunner()
    today = datetime.now(UTC).date().isoformat()
    r = runner.invoke(
        build(), ["reviews", "export", "--since", today, "--out", str(out), "--val-fraction", "0"]
    )
    assert r.exit_code == 0, r.output
    assert "exported 2 reviewed grading(s), 3 photo(s)" in r.output
    records = read_manifest(out / "manifest.jsonl")
    assert len(records) == 3 and len(list((out / "photos").iterdir())) == len({r.image for r in records}) == 2
    bad = runner.invoke(build(), ["reviews", "export", "--since", "last tuesday", "--out", str(out)])
    assert bad.exit_code == 2 and "not a date" in bad.output


def test_admin_api_export_is_a_zip(client, keys, reviewed):
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    for token in (keys.a, keys.auditor):
        assert client.get("/v1/reviews/export", params={"since": since}, headers=H(token)).status_code == 403
    r = client.get("/v1/reviews/export", params={"since": since, "val_fraction": 0}, headers=H(keys.admin))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert r.headers["x-export-gradings"] == "2" and "attachment" in r.headers["content-disposition"]
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    names = zf.namelist()
    assert "manifest.jsonl" in names and "summary.json" in names
    lines = zf.read("manifest.jsonl").decode().splitlines()
    assert len(lines) == 3 and all(f"{json.loads(line)['image']}" in names for line in lines)
    r = client.get("/v1/reviews/export", params={"since": "yesterday"}, headers=H(keys.admin))
    assert r.status_code == 422 and set(r.json()) == {"code", "message"}


@pytest.mark.slow
def test_closed_loop_grade_overrule_export_train_one_epoch(client, keys, jpeg, clean_jpeg, tmp_path):
    """The quality team's correction reaches the training loop: grade -> overrule -> export -> train."""
    torch = pytest.importorskip("torch")
    from training.checkpoint import load_checkpoint
    from training.config import load_config
    from training.dataset import ManifestDataset, load_items
    from training.train import run_training

    gid = post_grading(client, keys.a, [("p.jpg", jpeg, "image/jpeg")]).json()["id"]
    other = post_grading(client, keys.a, [("q.jpg", clean_jpeg, "image/jpeg")]).json()["id"]
    svc = client.app.state.svc
    with svc.sessions() as s:
        who = _auditor(s)
        row = s.get(Grading, gid)
        events.add_defect(s, row, who, 0, "dent", "screen", (420, 150, 470, 210), "", None)
        st = events.load_state(s, row)
        new = next(g for g in st.grades["ctia"].choices if g != st.grades["ctia"].grade)
        events.overrule(s, row, who, {"ctia": new}, "dent the model missed", st.last_event_id)
        events.confirm(s, s.get(Grading, other), who, "", None)
        assert s.query(GradingEvent).filter_by(kind="grade_overruled").count() == 1
    out = tmp_path / "export"
    export_reviews(svc.sessions, svc.blobs, out, datetime.now(UTC) - timedelta(minutes=5), val_fraction=0.0)
    manifest = out / "manifest.jsonl"
    rec = next(r for r in read_manifest(manifest) if r.meta["grading_id"] == gid)
    assert rec.grades["ctia"] == new

    # The training data path reads the reviewer's dent as a pixel label of the dent channel.
    items = load_items(manifest, ["train"])
    sample = ManifestDataset(items, 64)[[it.record.meta["grading_id"] for it in items].index(gid)]
    dent = 3  # DEFECT_CHANNELS order: scratch, crack, chip, dent, ...
    assert sample["pixel_valid"][dent] == 1 and sample["defects"][dent].sum() > 0

    cfg = load_config(
        None,
        [
            f"data.train=[{{manifest: {manifest}}}]",
            "data.val=[]",
            "data.batch_size=4",
            "data.samples_per_epoch=8",
            "data.augment=false",
            "model.name=tiny",
            "optim.epochs=1",
            "optim.warmup_steps=0",
            "early_stopping_patience=null",
            "calibrate=false",
            "progress=false",
            "threads=1",
            f"run_dir={tmp_path / 'run'}",
        ],
    )
    ckpt_path = run_training(cfg)
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(history) == 1
    # the reviewer's dent reached the pixel loss, and the epoch's losses are finite
    assert history[0]["train_defect_bce"] > 0 and torch.isfinite(torch.tensor(history[0]["train_loss"]))
    _net, ckpt = load_checkpoint(ckpt_path)
    assert ckpt["config"]["data"]["train"][0]["manifest"] == str(manifest)


def _stored(kind: str, conf: float, role: str, box, length: float = 5.0, zone: str = "screen") -> dict:
    x0, y0, x1, y1 = box
    return {
        "type": kind,
        "zone": zone,
        "confidence": conf,
        "role": role,
        "box": list(box),
        "polygon": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]],
        "units": "mm",
        "length": length,
        "width": 0.1,
        "area": 0.5,
        "length_mm": length,
    }


def test_a_verdict_vouches_for_what_counted_not_for_candidates_or_a_glass_outline(
    client, keys, jpeg, tmp_path
):
    """A confirmed shattered screen: its crack, judged on the glass as a whole and drawn as the screen's
    outline, is a crack label at image level, not a screen-sized crack mask; its faint fragments and a
    candidate scratch nobody touched are no labels, and scratch is left unknown; a candidate the
    reviewer retyped is theirs, and a crack traced on the frame (not glass) keeps its polygon."""
    gid = post_grading(client, keys.a, [("p.jpg", jpeg, "image/jpeg")]).json()["id"]
    store_defects(
        client,
        gid,
        [
            _stored("crack", 0.99, "defect", (50, 40, 750, 560)),  # the glass judged cracked
            _stored("crack", 0.06, "evidence", (400, 500, 420, 540)),  # the one fragment traced
            _stored("scratch", 0.12, "defect", (100, 100, 140, 104)),  # a candidate
            _stored("dent", 0.2, "defect", (10, 10, 30, 30)),  # a candidate the reviewer retypes
            _stored("crack", 0.8, "defect", (0, 100, 8, 400), zone="frame"),  # a traced crack, not glass
        ],
    )
    svc = client.app.state.svc
    with svc.sessions() as s:
        who = _auditor(s)
        events.retype_defect(s, s.get(Grading, gid), who, "p0-d3", "chip", None)
        events.confirm(s, s.get(Grading, gid), who, "", None)
    export_reviews(svc.sessions, svc.blobs, tmp_path, datetime.now(UTC) - timedelta(hours=1))
    (rec,) = read_manifest(tmp_path / "manifest.jsonl")
    # The retyped candidate and the frame's traced crack are polygons; the glass's outline is not.
    assert sorted((i.type.value, i.zone.value) for i in rec.instances) == [
        ("chip", "screen"),
        ("crack", "frame"),
    ]
    assert rec.image_labels["crack"] is True and rec.image_labels["chip"] is True
    assert "scratch" not in rec.image_labels  # only a candidate: nobody said either way
    assert rec.image_labels["stain"] is False and rec.image_labels["dent"] is False


def test_a_box_drawn_round_a_line_and_a_retyped_glass_outline_are_image_labels(client, keys, jpeg, tmp_path):
    """A reviewer's box round a missed crack, filled, would teach the crack map a blob; a glass outlined
    whole and retyped by a reviewer is still the glass's outline. Both are labels at image level; a
    box round a dent is kept as its polygon."""
    gid = post_grading(client, keys.a, [("p.jpg", jpeg, "image/jpeg")]).json()["id"]
    # The glass judged cracked, nothing traced.
    store_defects(client, gid, [_stored("crack", 0.99, "defect", (50, 40, 750, 560), length=0.0)])
    svc = client.app.state.svc
    with svc.sessions() as s:
        who = _auditor(s)
        events.retype_defect(s, s.get(Grading, gid), who, "p0-d0", "stain", None)
        events.add_defect(
            s, s.get(Grading, gid), who, 0, "crack", "screen", (100, 100, 300, 130), "missed", None
        )
        events.add_defect(s, s.get(Grading, gid), who, 0, "dent", "frame", (600, 20, 640, 60), "", None)
        events.confirm(s, s.get(Grading, gid), who, "", None)
    export_reviews(svc.sessions, svc.blobs, tmp_path, datetime.now(UTC) - timedelta(hours=1))
    (rec,) = read_manifest(tmp_path / "manifest.jsonl")
    assert [(i.type.value, i.polygon) for i in rec.instances] == [
        ("dent", [(600, 20), (640, 20), (640, 60), (600, 60)])
    ]
    assert rec.image_labels["crack"] and rec.image_labels["stain"] and rec.image_labels["dent"]
    assert rec.image_labels["scratch"] is False
