"""Storage: the Alembic revisions build exactly the ORM's tables (SQLite and PostgreSQL), the blob store
is content-addressed and safe, and grading events are an append-only log next to the stored grading."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from serving.blobs import BlobStore
from serving.db import ApiKey, Base, GradingEvent, make_engine, migrate, session_factory
from tests.serving.conftest import pg_and_sqlite, post_grading


@pg_and_sqlite
def test_migrations_match_the_models(settings):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(settings.db_url)
    try:
        migrate(engine)
        migrate(engine)  # idempotent
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


@pg_and_sqlite
def test_times_are_stored_in_utc_and_read_back_aware(settings):
    engine = make_engine(settings.db_url)
    try:
        migrate(engine)
        sessions = session_factory(engine)
        naive = datetime(2024, 3, 1, 12, 30, 5, 123456)  # taken to be UTC
        paris = datetime(2024, 3, 1, 14, 30, 5, tzinfo=timezone(timedelta(hours=2)))  # 12:30:05 UTC
        with sessions() as s:
            s.add_all(
                [
                    ApiKey(id="naive", secret_hash="1" * 64, role="admin", created_at=naive),
                    ApiKey(id="paris", secret_hash="2" * 64, role="admin", created_at=paris),
                ]
            )
            s.commit()
        with sessions() as s:
            back = {k.id: k.created_at for k in s.scalars(select(ApiKey))}
            # A query parameter in another zone (or naive) compares as the same instant in UTC.
            since = datetime(2024, 3, 1, 13, 30, 5, tzinfo=timezone(timedelta(hours=1)))
            later = set(s.scalars(select(ApiKey.id).where(ApiKey.created_at >= since)))
            naive_later = set(s.scalars(select(ApiKey.id).where(ApiKey.created_at > naive)))
    finally:
        engine.dispose()
    assert back == {"naive": naive.replace(tzinfo=UTC), "paris": paris}
    assert all(d.utcoffset() == timedelta(0) for d in back.values())
    assert later == {"naive", "paris"} and naive_later == set()


def test_blob_store_is_content_addressed(tmp_path):
    store = BlobStore(tmp_path)
    data = b"photo bytes"
    sha = store.put(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.get(sha) == data and store.put(data) == sha
    assert store.path(sha).relative_to(tmp_path).parts == (sha[:2], sha[2:4], sha)
    assert list((tmp_path / "tmp").iterdir()) == []  # no temporary files left behind
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


def test_blob_put_is_fsynced_before_it_returns(tmp_path, monkeypatch):
    import os

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    BlobStore(tmp_path).put(b"x" * 100)
    assert len(synced) >= 2  # the file, then its directory


@pg_and_sqlite
def test_a_grading_is_stored_with_photos_and_a_graded_event(client, keys, jpeg):
    body = post_grading(
        client, keys.a, [("a.jpg", jpeg, "image/jpeg")], headers={"Idempotency-Key": "e"}
    ).json()
    state = client.app.state.svc
    assert state.blobs.get(body["photos"][0]["sha256"]) == jpeg
    with state.sessions() as s:
        events = s.scalars(select(GradingEvent).where(GradingEvent.grading_id == body["id"])).all()
    assert [e.kind for e in events] == ["graded"]
    assert events[0].payload["grades"] == {k: v["grade"] for k, v in body["grades"].items()}


@pg_and_sqlite
def test_a_grading_is_stored_whole_or_not_at_all(client, keys, jpeg):
    """The path of two processes racing on one Idempotency-Key: the second insert fails as a unit."""
    import copy
    import uuid

    from sqlalchemy.exc import IntegrityError

    from serving import store
    from serving.db import Grading, GradingGrade, GradingPhoto

    first = post_grading(
        client, keys.a, [("a.jpg", jpeg, "image/jpeg")], headers={"Idempotency-Key": "k"}
    ).json()
    state = client.app.state.svc
    with state.sessions() as s:
        stored = s.get(Grading, first["id"])
        body, created = copy.deepcopy(stored.body), stored.created_at
    assert created.tzinfo is not None and body["id"] == first["id"]
    body["id"] = str(uuid.uuid4())
    with pytest.raises(IntegrityError):
        store.add_grading(
            state.sessions,
            body,
            created_at=created,
            created_by=None,
            idempotency_key="k",
            request_hash="0" * 64,
        )
    store.add_grading(
        state.sessions, body, created_at=created, created_by=None, idempotency_key=None, request_hash="0" * 64
    )
    with state.sessions() as s:
        row = s.get(Grading, body["id"])
        kinds = s.scalars(select(GradingEvent.kind).where(GradingEvent.grading_id == body["id"])).all()
        assert s.query(Grading).count() == 2
        assert s.query(GradingPhoto).filter_by(grading_id=body["id"]).count() == len(body["photos"])
        assert {g.standard: g.grade for g in s.query(GradingGrade).filter_by(grading_id=body["id"])} == {
            k: g["grade"] for k, g in body["grades"].items()
        }
    assert kinds == ["graded"] and row.body == body and row.model_version == body["model"]["version"]


def test_a_fresh_sqlite_file_held_by_another_connection_waits_for_wal(tmp_path):
    """Two replicas opening a new SQLite file together: switching it to WAL needs the file alone, and
    SQLite refused at once ("database is locked") instead of waiting; the engine now waits its timeout."""
    import sqlite3
    import threading

    path = tmp_path / "fresh.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # The other replica, mid-way through its own start: it holds the write lock, so this connection
    # can read but not take the file alone, the case SQLite's busy timeout does not cover.
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE other_replica (x INTEGER)")
    threading.Timer(0.3, holder.commit).start()
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()
        holder.close()
