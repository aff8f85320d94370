"""Bulk re-grading (issue 20): a small archive graded by the tiny model through the API, graded again by
a second tiny model on Dask (in-process and in worker processes); the comparison, the summary, the
filters, and a database left exactly as it was."""

from __future__ import annotations

import csv
import hashlib
import json

import onnx
import pytest
from onnx import numpy_helper
from sqlalchemy import select, text
from typer.testing import CliRunner

from serving.db import Grading, GradingEvent, GradingGrade, GradingPhoto
from serving.regrade import RegradeJob, format_summary, read_only_engine, run_regrade
from tests.serving.conftest import post_grading
from tests.serving.tiny_model import build_tiny_model_proto, tiny_card

STANDARDS = ("backmarket", "ctia", "r2")


@pytest.fixture
def archive(client, keys, jpeg, clean_jpeg, settings):
    """Devices photographed front and back, graded by tiny-1: three with a scratched screen (two of acme,
    one of bolt), one clean (acme)."""
    for token, front in ((keys.a, jpeg), (keys.a, jpeg), (keys.a, clean_jpeg), (keys.b, jpeg)):
        photos = [("f.jpg", front, "image/jpeg"), ("b.jpg", clean_jpeg, "image/jpeg")]
        r = post_grading(client, token, photos, data={"views": "front,back", "device_model": "iPhone 13"})
        assert r.status_code == 201, r.text
    return settings


@pytest.fixture
def new_model(tmp_path):
    """tiny-2: the tiny model with its scratch channel switched off, so it sees no scratches at all."""
    proto = build_tiny_model_proto(tiny_card(version="tiny-2"))
    for init in proto.graph.initializer:
        if init.name == "b_def":
            bias = numpy_helper.to_array(init).copy()
            bias[0] = -100.0
            init.CopyFrom(numpy_helper.from_array(bias, "b_def"))
    path = tmp_path / "new.onnx"
    onnx.save(proto, str(path))
    return path


def _snapshot(settings) -> list:
    engine = read_only_engine(settings.db_url)
    with engine.connect() as c:
        rows = [
            sorted(map(tuple, c.execute(select(table)).all()), key=repr)
            for table in (
                Grading.__table__,
                GradingPhoto.__table__,
                GradingGrade.__table__,
                GradingEvent.__table__,
            )
        ]
    engine.dispose()
    return rows


def _job(settings, model, **kw) -> RegradeJob:
    return RegradeJob(
        db_url=settings.db_url,
        blobs=settings,
        model_path=str(model),
        standards=STANDARDS,
        **kw,
    )


def _rows(out) -> list[dict]:
    with (out / "gradings.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_regrade_compares_old_and_new_grades_and_leaves_the_database_alone(archive, new_model, tmp_path):
    before = _snapshot(archive)
    old = {r[0]: r[2] for r in before[2] if r[1] == "backmarket"}  # grading id -> old Back Market grade
    result = run_regrade(_job(archive, new_model), tmp_path / "out", workers=1, partition_size=3)

    assert result.partitions == 2  # 4 gradings, 3 a partition
    rows = _rows(tmp_path / "out")
    assert len(rows) == 4 and {r["grading_id"] for r in rows} == set(old)
    assert all(r["status"] == "ok" and r["new_model_version"] == "tiny-2" for r in rows)
    assert all(r["old_model_version"] == "tiny-1" for r in rows)
    for r in rows:
        assert r["backmarket_old"] == old[r["grading_id"]]
        assert r["backmarket_changed"] == str(r["backmarket_old"] != r["backmarket_new"])
    # The new model sees no scratches: every device gets the clean device's grade.
    clean = [r for r in rows if r["backmarket_changed"] == "False"]
    assert len(clean) == 1 and {r["backmarket_new"] for r in rows} == {clean[0]["backmarket_old"]}
    assert sorted(old.values()) == ["Fair", "Fair", "Fair", "Premium"]  # a long light screen scratch: Fair
    assert result.share_changed("backmarket") == 0.75

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["gradings"] == 4 and summary["status"] == {"ok": 4}
    assert summary["standards"]["backmarket"]["share_changed"] == 0.75
    with (tmp_path / "out" / "summary.csv").open(newline="") as f:
        table = [r for r in csv.DictReader(f) if r["standard"] == "backmarket"]
    assert sum(int(r["gradings"]) for r in table) == 4
    printed = format_summary(result)
    assert "backmarket: 3 of 4 changed (75.0%)" in printed and "old \\ new" in printed

    assert _snapshot(archive) == before  # not one row written


def test_the_job_cannot_write_to_the_database(archive):
    engine = read_only_engine(archive.db_url)
    with engine.connect() as c, pytest.raises(Exception, match=r"readonly|read-only|read only"):
        c.execute(text("DELETE FROM grading_grades"))
    engine.dispose()


def test_filters_and_missing_photos(archive, new_model, tmp_path, jpeg):
    result = run_regrade(_job(archive, new_model, tenant="bolt"), tmp_path / "bolt")
    rows = _rows(tmp_path / "bolt")
    assert [r["tenant"] for r in rows] == ["bolt"] and result.summary.changed_any == 1

    # A photo erased (say by retention) is reported, not fatal: the scratched front photo here.
    from serving.blobs import BlobStore

    BlobStore(archive.blob_dir).delete(hashlib.sha256(jpeg).hexdigest())
    result = run_regrade(_job(archive, new_model, tenant="acme"), tmp_path / "acme", partition_size=1)
    statuses = sorted(r["status"] for r in _rows(tmp_path / "acme"))
    assert statuses == ["missing_photos", "missing_photos", "ok"]
    assert result.summary.status == {"ok": 1, "missing_photos": 2} and result.partitions == 3
    assert "not re-graded: missing_photos 2" in format_summary(result)

    from datetime import UTC, datetime, timedelta

    later = datetime.now(UTC) + timedelta(days=1)
    result = run_regrade(_job(archive, new_model, since=later), tmp_path / "none")
    assert result.summary.gradings == 0 and _rows(tmp_path / "none") == []


def test_cli_in_worker_processes(archive, new_model, tmp_path, monkeypatch):
    from refurbgrade.cli import build

    monkeypatch.setenv("REFURBGRADE_DATA_DIR", str(archive.data_dir))
    monkeypatch.delenv("REFURBGRADE_DATABASE_URL", raising=False)
    out = tmp_path / "cli"
    args = ["regrade", "--model", str(new_model), "--out", str(out), "--workers", "2"]
    r = CliRunner().invoke(build(), [*args, "--partition-size", "2", "--standard", "backmarket"])
    assert r.exit_code == 0, r.output
    assert "re-graded 4 of 4 gradings with tiny-2" in r.output and "backmarket: 3 of 4 changed" in r.output
    rows = _rows(out)
    assert len(rows) == 4 and "ctia_old" not in rows[0]
    bad = CliRunner().invoke(build(), [*args, "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since" in bad.output


def test_regrade_grades_with_the_fine_file_unless_the_setting_says_false(
    archive, new_model, tmp_path, monkeypatch
):
    """As the service and `refurbgrade grade` do: a fine network beside MODEL is used, and named in each
    new model version, unless REFURBGRADE_FINE_PASS is false; a value that is no boolean is refused."""
    import numpy as np
    import torch

    from model.export import export_fine_onnx
    from model.fine_network import FineNet
    from model.fine_pass import FineCard
    from refurbgrade.cli import build

    torch.manual_seed(0)
    card = FineCard(name="tiny-fine", version="0.0.1", tile_px=64, margin_px=8, heat_cut=0.5, max_tiles=2)
    tiles = np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8)
    export_fine_onnx(
        FineNet(pretrained=False, encoder="tiny").eval(), new_model.with_suffix(".fine.onnx"), card, tiles
    )
    monkeypatch.setenv("REFURBGRADE_DATA_DIR", str(archive.data_dir))
    monkeypatch.delenv("REFURBGRADE_DATABASE_URL", raising=False)

    def versions(setting: str) -> set[str]:
        monkeypatch.setenv("REFURBGRADE_FINE_PASS", setting)
        out = tmp_path / setting
        args = ["regrade", "--model", str(new_model), "--out", str(out), "--standard", "backmarket"]
        r = CliRunner().invoke(build(), args)
        assert r.exit_code == 0, r.output
        return {row["new_model_version"] for row in _rows(out)}

    assert versions("true") == {"tiny-2+fine-0.0.1"}
    assert versions("false") == {"tiny-2"}
    monkeypatch.setenv("REFURBGRADE_FINE_PASS", "maybe")
    bad = CliRunner().invoke(build(), ["regrade", "--model", str(new_model), "--out", str(tmp_path / "y")])
    assert bad.exit_code == 2 and "FINE_PASS" in bad.output.upper()


@pytest.mark.parametrize(
    ("stored_source", "source"),
    [
        ("photos", "default"),
        ("default", "default"),
        ("caller", "caller"),
        (None, "caller"),
    ],  # None: stored before
)
def test_a_kind_the_photos_gave_is_read_from_them_again(stored_source, source):
    """A grading stored with the kind read from its photos (or the default) is graded again as its
    photos show, not as the stored guess ("default": the photos decide); a kind the caller gave stands."""
    from serving.regrade import _device

    device = _device(None, "laptop", stored_source)
    assert device.kind_source == source
    assert device.kind.value == ("laptop" if source == "caller" else "phone")
