"""The gradings database: tables (SQLAlchemy ORM), engine set-up, and Alembic migrations at start-up.

SQLite (a file under the data directory) by default, PostgreSQL when `REFURBGRADE_DATABASE_URL` points
at one. The schema is changed only through Alembic revisions in `serving/migrations` (a test checks
that they match these tables).

A grading's result is stored once, as the JSON body first answered, and never rewritten; what happens
to a grading afterwards (reviews, disputes, overrides: issue 6) is appended to `grading_events`.

Every time column is a `UTCDateTime`: stored in UTC, read back aware, on SQLite as on PostgreSQL.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(d: datetime | None) -> datetime | None:
    """The same instant in UTC; a naive datetime is taken to be UTC already (every stored time is)."""
    if d is None:
        return None
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)


class UTCDateTime(TypeDecorator):
    """A `TIMESTAMP WITH TIME ZONE` that stores UTC and always reads back an aware UTC datetime.

    SQLite has no time zones: it keeps the wall-clock digits and hands back naive datetimes, and it
    would keep an aware non-UTC value's local digits. PostgreSQL hands back the session's zone. Both
    directions go through `as_utc`, so the rest of the service compares and prints aware UTC times
    only; query parameters bound against these columns are converted the same way.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        return as_utc(value)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return as_utc(value)


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public part of the token
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the whole token
    role: Mapped[str] = mapped_column(String(16))
    tenant: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # revision 0005; NULL: never

    def status(self, now: datetime | None = None) -> str:
        """active, revoked or expired: only an active key authenticates."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"


class Grading(Base):
    __tablename__ = "gradings"
    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key", name="uq_gradings_tenant_idempotency_key"),
        Index("ix_gradings_tenant_created", "tenant", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    created_by: Mapped[str | None] = mapped_column(String(32))  # api key id
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    external_ref: Mapped[str | None] = mapped_column(String(200), index=True)
    device_model: Mapped[str | None] = mapped_column(String(100))
    device_kind: Mapped[str] = mapped_column(String(16))
    needs_review: Mapped[bool] = mapped_column(Boolean, index=True)
    model_version: Mapped[str] = mapped_column(String(100))
    model_sha256: Mapped[str] = mapped_column(String(64))
    rules_versions: Mapped[dict] = mapped_column(JSON)
    body: Mapped[dict] = mapped_column(JSON)  # the response as first answered, without URLs
    # What listing this device avoids (issue 22, model/impact.py), whatever its grade: the summary counts
    # it only while the grade that stands is listable. NULL for gradings stored before revision 0003.
    impact_method: Mapped[str | None] = mapped_column(String(50))
    impact_kg_co2e: Mapped[float | None] = mapped_column(Float)
    impact_mass_kg: Mapped[float | None] = mapped_column(Float)
    impact_estimated: Mapped[bool | None] = mapped_column(Boolean)

    photos: Mapped[list[GradingPhoto]] = relationship(
        back_populates="grading", order_by="GradingPhoto.idx", lazy="selectin"
    )
    grades: Mapped[list[GradingGrade]] = relationship(back_populates="grading", lazy="selectin")


class GradingPhoto(Base):
    __tablename__ = "grading_photos"

    grading_id: Mapped[str] = mapped_column(ForeignKey("gradings.id"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    content_type: Mapped[str | None] = mapped_column(String(100))
    filename: Mapped[str | None] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(Integer)
    overlay_sha256: Mapped[str | None] = mapped_column(String(64))  # rendered on first request

    grading: Mapped[Grading] = relationship(back_populates="photos")


class GradingGrade(Base):
    """One row per standard of a grading, so lists can filter on grades."""

    __tablename__ = "grading_grades"
    __table_args__ = (Index("ix_grading_grades_standard_grade", "standard", "grade"),)

    grading_id: Mapped[str] = mapped_column(ForeignKey("gradings.id"), primary_key=True)
    standard: Mapped[str] = mapped_column(String(50), primary_key=True)
    grade: Mapped[str] = mapped_column(String(50))
    version: Mapped[str] = mapped_column(String(50))

    grading: Mapped[Grading] = relationship(back_populates="grades")


class GradingEvent(Base):
    """Append-only history of a grading: 'graded' at creation; reviews and disputes later (issue 6)."""

    __tablename__ = "grading_events"
    __table_args__ = (Index("ix_grading_events_grading_kind", "grading_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    grading_id: Mapped[str] = mapped_column(ForeignKey("gradings.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str | None] = mapped_column(String(32))  # api key id
    kind: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)


class ReviewSession(Base):
    """A signed-in review-pages session (issue 6): the cookie holds a random token, only its hash is
    stored; signing out or revoking the API key ends it. Each session has its own CSRF token."""

    __tablename__ = "review_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie token
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookEndpoint(Base):
    """A tenant's webhook endpoint (issue 21): where its grading events are POSTed, signed with `secret`.

    Deleting one sets `deleted_at` (its delivery log stays readable); events still pending for it are
    cancelled."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # "wh_<hex>"
    tenant: Mapped[str] = mapped_column(String(100), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))  # needed to sign, so stored as given
    events: Mapped[list] = mapped_column(JSON)  # the event types it receives
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(32))  # api key id
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookEvent(Base):
    """The webhook outbox: one row per event and endpoint, written in the transaction of the grading
    event it reports, delivered at least once by serving/webhooks/delivery.py. `body` holds the exact
    bytes sent (and signed) on every attempt. A worker claims a due row by setting `locked_until`."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("ix_webhook_events_due", "status", "next_attempt_at"),
        Index("ix_webhook_events_tenant_created", "tenant", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "evt_<hex>"
    tenant: Mapped[str] = mapped_column(String(100))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    type: Mapped[str] = mapped_column(String(50))
    grading_id: Mapped[str] = mapped_column(ForeignKey("gradings.id"), index=True)
    grading_event_id: Mapped[int | None] = mapped_column(ForeignKey("grading_events.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed, cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    locked_by: Mapped[str | None] = mapped_column(String(64))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))


class WebhookAttempt(Base):
    """The delivery log: one row per attempt to send a webhook event."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)  # 1, 2, ... (replays continue the count)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)  # None: no answer (refused, timeout, ...)
    error: Mapped[str | None] = mapped_column(String(500))
    delivered: Mapped[bool] = mapped_column(Boolean)


class ActiveModel(Base):
    """The model every replica serves (issue 20, revision 0006): one row, id 1, written by
    `POST /v1/models/activate` after the file passed its checks; processes poll it (serving/activation.py).
    `path` is relative to REFURBGRADE_MODELS_DIR, so replicas may mount that folder anywhere."""

    __tablename__ = "active_model"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    path: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))  # the file's: a replica refuses other bytes
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(100))
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    activated_by: Mapped[str | None] = mapped_column(String(32))  # api key id


class NulInText(Exception):
    """A text value with a NUL character: PostgreSQL cannot store one, so no database gets it (the API
    answers 422 invalid_characters)."""


def _has_nul(params) -> bool:
    if isinstance(params, str):
        return "\x00" in params
    if isinstance(params, dict):
        return any(_has_nul(v) for v in params.values())
    if isinstance(params, list | tuple):
        return any(_has_nul(v) for v in params)
    return False


def _refuse_nul(_conn, _cursor, _statement, parameters, _context, _executemany) -> None:
    if _has_nul(parameters):
        raise NulInText("a text value contains a NUL character (\\x00), which cannot be stored")


def make_engine(url: str) -> Engine:
    engine = _make_engine(url)
    # The same on SQLite as on PostgreSQL, which rejects NUL in text with an error of its own.
    event.listen(engine, "before_cursor_execute", _refuse_nul)
    return engine


SQLITE_TIMEOUT_S = 30.0  # how long an SQLite connection waits for another's lock


def _enable_wal(cur, timeout_s: float) -> None:
    """Put the database in WAL mode, waiting up to `timeout_s` for the lock that takes. Switching a fresh
    file to WAL needs it exclusively and SQLite answers "database is locked" at once rather than
    through its busy timeout, so replicas opening a new file together (tests/serving/test_replicas.py)
    failed about one start in twenty. WAL is stored in the file: once set, the check costs nothing."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - exercised by every sqlite test
            cur = dbapi_conn.cursor()
            # WAL lets readers run while a grading commits; synchronous=FULL makes a commit durable.
            _enable_wal(cur, SQLITE_TIMEOUT_S)
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def alembic_config(connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "serving:migrations")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


MIGRATION_LOCK = 0x72677267  # "rgrg": PostgreSQL advisory lock key of the migrations


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest Alembic revision."""
    from alembic import command

    if engine.url.get_backend_name() == "sqlite" and engine.url.database:
        from pathlib import Path

        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
    with engine.begin() as conn:
        # Replicas starting together (issue 20): one migrates, the others wait for it, then find nothing
        # to do. PostgreSQL: a lock held until this transaction ends; SQLite: the write lock, taken now.
        if engine.url.get_backend_name() == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        elif engine.url.get_backend_name() == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        command.upgrade(alembic_config(conn), "head")


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
