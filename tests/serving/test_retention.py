"""Retention (issue 20): a grading's photos and overlays erased on request or past an age, the record, its
hashes and its history kept, and a photo shared with a grading that is not erased kept for it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import update

from serving import retention, store
from serving.db import Grading, GradingEvent
from tests.serving.conftest import Keys, encode, pg_and_sqlite, post_grading
from tests.serving.tiny_model import device_photo


def grade(client, token, *photos: bytes, **data) -> dict:
    r = post_grading(client, token, [(f"p{k}.jpg", p, "image/jpeg") for k, p in enumerate(photos)], data)
    assert r.status_code == 201, r.text
    return r.json()


def blob_exists(client, sha: str) -> bool:
    return client.app.state.svc.blobs.exists(sha)


def events_of(client, gid: str) -> list[GradingEvent]:
    with client.app.state.svc.sessions() as s:
        return list(s.query(GradingEvent).filter_by(grading_id=gid).order_by(GradingEvent.id))


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"review_secure_cookie": False})  # the review page over plain http


@pytest.fixture
def other_jpeg() -> bytes:
    return encode(device_photo(width=640, height=480))


@pg_and_sqlite
def test_erase_on_request_keeps_the_record_and_answers_410(client, keys, jpeg, other_jpeg):
    g = grade(client, keys.a, jpeg, other_jpeg)
    gid, h = g["id"], Keys.h(keys.a)
    assert client.get(f"/v1/gradings/{gid}/overlays/0", headers=h).status_code == 200  # overlay stored
    with client.app.state.svc.sessions() as s:
        overlay = s.get(Grading, gid).photos[0].overlay_sha256
    shas = [p["sha256"] for p in g["photos"]]
    assert all(blob_exists(client, x) for x in [*shas, overlay])

    r = client.post(f"/v1/gradings/{gid}/erase", headers=h)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["grading_id"] == gid and out["photos"] == 2 and out["reason"] == "request"
    assert not any(blob_exists(client, x) for x in [*shas, overlay])

    for url in (f"/v1/gradings/{gid}/photos/1", f"/v1/gradings/{gid}/overlays/0"):
        r = client.get(url, headers=h)
        assert r.status_code == 410 and r.json()["code"] == "photo_erased", r.text
    body = client.get(f"/v1/gradings/{gid}", headers=h).json()
    assert body["photos_erased"]["reason"] == "request"
    assert body["photos_erased"]["erased_at"] == out["erased_at"]
    assert [p["sha256"] for p in body["photos"]] == shas  # the hashes stay
    assert all(p["photo_url"] is None and p["overlay_url"] is None for p in body["photos"])
    assert body["grades"] == g["grades"] and [p["defects"] for p in body["photos"]] == [
        p["defects"] for p in g["photos"]
    ]
    kinds = [e.kind for e in events_of(client, gid)]
    assert kinds == ["graded", "photos_erased"]
    assert events_of(client, gid)[1].payload == {"reason": "request", "photos": 2}

    again = client.post(f"/v1/gradings/{gid}/erase", headers=Keys.h(keys.admin))  # the first erasure
    assert again.status_code == 200 and again.json()["erased_at"] == out["erased_at"]
    assert [e.kind for e in events_of(client, gid)] == ["graded", "photos_erased"]


@pg_and_sqlite
def test_a_photo_another_grading_uses_stays_until_both_are_erased(client, keys, jpeg):
    mine, theirs = grade(client, keys.a, jpeg), grade(client, keys.b, jpeg)  # two tenants, one photo
    sha = mine["photos"][0]["sha256"]
    assert theirs["photos"][0]["sha256"] == sha
    for token, g in ((keys.a, mine), (keys.b, theirs)):  # identical overlays: one blob too
        assert client.get(f"/v1/gradings/{g['id']}/overlays/0", headers=Keys.h(token)).status_code == 200
    with client.app.state.svc.sessions() as s:
        overlays = {s.get(Grading, g["id"]).photos[0].overlay_sha256 for g in (mine, theirs)}
    (overlay,) = overlays

    assert client.post(f"/v1/gradings/{mine['id']}/erase", headers=Keys.h(keys.a)).status_code == 200
    assert blob_exists(client, sha) and blob_exists(client, overlay)
    assert client.get(f"/v1/gradings/{theirs['id']}/photos/0", headers=Keys.h(keys.b)).content == jpeg
    assert client.get(f"/v1/gradings/{theirs['id']}/overlays/0", headers=Keys.h(keys.b)).status_code == 200
    assert client.get(f"/v1/gradings/{mine['id']}/photos/0", headers=Keys.h(keys.a)).status_code == 410

    assert client.post(f"/v1/gradings/{theirs['id']}/erase", headers=Keys.h(keys.b)).status_code == 200
    assert not blob_exists(client, sha) and not blob_exists(client, overlay)


def test_who_may_erase(client, keys, jpeg):
    gid = grade(client, keys.a, jpeg)["id"]
    assert client.post(f"/v1/gradings/{gid}/erase", headers=Keys.h(keys.b)).status_code == 404  # other tenant
    r = client.post(f"/v1/gradings/{gid}/erase", headers=Keys.h(keys.auditor))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert client.post(f"/v1/gradings/{gid}/erase").status_code == 401
    assert client.post("/v1/gradings/nope/erase", headers=Keys.h(keys.a)).status_code == 404
    assert client.post(f"/v1/gradings/{gid}/erase", headers=Keys.h(keys.admin)).status_code == 200


def test_dispute_photos_go_too_and_no_new_ones_come(client, keys, jpeg, clean_jpeg):
    gid = grade(client, keys.a, jpeg)["id"]
    h = Keys.h(keys.a)
    r = client.post(
        f"/v1/gradings/{gid}/disputes",
        data={"reason": "the back is mint"},
        files=[("photos", ("extra.jpg", clean_jpeg, "image/jpeg"))],
        headers=h,
    )
    assert r.status_code == 201, r.text
    extra = r.json()["photos"][0]["sha256"]
    assert blob_exists(client, extra)
    assert client.post(f"/v1/gradings/{gid}/erase", headers=h).status_code == 200
    assert not blob_exists(client, extra)
    r = client.post(
        f"/v1/gradings/{gid}/disputes",
        data={"reason": "again"},
        files=[("photos", ("extra.jpg", clean_jpeg, "image/jpeg"))],
        headers=h,
    )
    assert r.status_code == 409 and r.json()["code"] == "photos_erased"
    r = client.post(f"/v1/gradings/{gid}/disputes", data={"reason": "without photos"}, headers=h)
    assert r.status_code == 201


def test_a_grading_that_reuses_a_photo_being_erased_puts_it_back(client, keys, jpeg, monkeypatch):
    """The race: B stores the photo (already there), A's erasure deletes it before B commits; B's commit
    finds it missing and writes it again, so B never points at a deleted photo."""
    state = client.app.state.svc
    first = grade(client, keys.a, jpeg)["id"]
    real = store.add_grading

    def erase_first_then_add(*args, **kwargs):
        retention.erase(state.sessions, state.blobs, [first], actor=None, reason=retention.REQUEST)
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "add_grading", erase_first_then_add)
    second = grade(client, keys.b, jpeg)
    assert client.get(f"/v1/gradings/{first}/photos/0", headers=Keys.h(keys.a)).status_code == 410
    assert client.get(f"/v1/gradings/{second['id']}/photos/0", headers=Keys.h(keys.b)).content == jpeg


def test_an_overlay_drawn_during_erasure_is_not_kept(client, keys, jpeg):
    state = client.app.state.svc
    gid = grade(client, keys.a, jpeg)["id"]
    assert client.post(f"/v1/gradings/{gid}/erase", headers=Keys.h(keys.a)).status_code == 200
    store.set_overlay(state.sessions, state.blobs, gid, 0, b"\x89PNG late overlay")
    import hashlib

    assert not blob_exists(client, hashlib.sha256(b"\x89PNG late overlay").hexdigest())
    with state.sessions() as s:
        assert s.get(Grading, gid).photos[0].overlay_sha256 is None


def backdate(client, gid: str, days: float) -> None:
    with client.app.state.svc.sessions() as s:
        row = s.get(Grading, gid)
        s.execute(
            update(Grading).where(Grading.id == gid).values(created_at=row.created_at - timedelta(days=days))
        )
        s.commit()


@pg_and_sqlite
def test_retention_cli_dry_run_then_run(client, keys, settings, jpeg, clean_jpeg, monkeypatch):
    from typer.testing import CliRunner

    from refurbgrade.cli import build

    old, shared_old, new = (
        grade(client, keys.a, clean_jpeg),
        grade(client, keys.a, jpeg),
        grade(client, keys.b, jpeg),
    )
    backdate(client, old["id"], 100)
    backdate(client, shared_old["id"], 95)
    monkeypatch.setenv("REFURBGRADE_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("REFURBGRADE_DATABASE_URL", settings.database_url)
    else:
        monkeypatch.delenv("REFURBGRADE_DATABASE_URL", raising=False)
    monkeypatch.delenv("REFURBGRADE_RETENTION_DAYS", raising=False)
    runner = CliRunner()

    off = runner.invoke(build(), ["retention", "run"])
    assert off.exit_code == 2 and "retention is off" in off.stderr
    bad = runner.invoke(build(), ["retention", "run", "--older-than", "soon"])
    assert bad.exit_code == 2 and "not an age" in bad.stderr

    dry = runner.invoke(build(), ["retention", "run", "--older-than", "90d", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would erase the photos of 2 grading(s)" in dry.stdout and "1 file(s) to delete" in dry.stdout
    assert "1 kept for other gradings" in dry.stdout
    assert blob_exists(client, old["photos"][0]["sha256"])
    assert all(len(events_of(client, g["id"])) == 1 for g in (old, shared_old, new))

    monkeypatch.setenv("REFURBGRADE_RETENTION_DAYS", "90")
    done = runner.invoke(build(), ["retention", "run"])
    assert done.exit_code == 0, done.output
    assert "erased the photos of 2 grading(s)" in done.stdout and "1 file(s) deleted" in done.stdout
    assert not blob_exists(client, old["photos"][0]["sha256"])
    assert blob_exists(client, jpeg_sha := new["photos"][0]["sha256"])  # still the new grading's
    assert client.get(f"/v1/gradings/{new['id']}/photos/0", headers=Keys.h(keys.b)).status_code == 200
    ev = events_of(client, old["id"])[-1]
    assert ev.kind == "photos_erased" and ev.payload["reason"] == "retention" and ev.actor is None
    assert ev.payload["older_than_days"] == 90
    body = client.get(f"/v1/gradings/{shared_old['id']}", headers=Keys.h(keys.a)).json()
    assert body["photos_erased"]["reason"] == "retention"
    assert len(events_of(client, new["id"])) == 1

    again = runner.invoke(build(), ["retention", "run", "--older-than", "1h"])  # nothing left that old
    assert "erased the photos of 0 grading(s)" in again.stdout
    assert blob_exists(client, jpeg_sha)


def test_the_service_sweeps_when_retention_is_set(settings):
    import time

    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.auth import create_key
    from tests.serving.conftest import encode as enc

    with TestClient(
        create_app(settings.model_copy(update={"retention_days": 30, "retention_every_s": 1}))
    ) as c:
        with c.app.state.svc.sessions() as s:
            token = create_key(s, "refurbisher", "acme")[1]
        g = grade(c, token, enc(device_photo()))
        backdate(c, g["id"], 31)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(events_of(c, g["id"])) < 2:
            time.sleep(0.2)
        assert [e.kind for e in events_of(c, g["id"])] == ["graded", "photos_erased"]


def test_the_review_page_says_photos_erased(client, keys, jpeg, settings):
    from tests.serving.test_review_pages import sign_in

    gid = grade(client, keys.a, jpeg)["id"]
    assert client.post(f"/v1/gradings/{gid}/erase", headers=Keys.h(keys.a)).status_code == 200
    assert sign_in(client, keys.auditor).status_code == 303
    page = client.get(f"/review/gradings/{gid}")
    assert page.status_code == 200
    assert (
        "Photos erased at the refurbisher&#39;s request" in page.text
        or "Photos erased at the refurbisher's request" in page.text
    )
    assert f'src="/review/gradings/{gid}/photos/0"' not in page.text
    assert "data:image/svg+xml" in page.text
    assert client.get(f"/review/gradings/{gid}/photos/0").status_code == 410


def test_age_parsing():
    assert retention.parse_age("90d") == timedelta(days=90)
    assert retention.parse_age("12h") == timedelta(hours=12)
    assert retention.parse_age("2") == timedelta(days=2)
    for bad in ("", "soon", "0d", "-3d"):
        with pytest.raises(ValueError):
            retention.parse_age(bad)


def test_erasure_json_example_is_what_the_route_answers():
    from serving.examples import ERASURE
    from serving.schemas import ErasureOut

    assert ErasureOut.model_validate(ERASURE).model_dump(mode="json")["reason"] == "request"
    json.dumps(ERASURE)
