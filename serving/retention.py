"""Retention (issue 20): a grading's photos and overlays erased after an age or on request; the record stays.

Erasing a grading appends its `photos_erased` event (the grading's record, its photo hashes and its
history stay) and deletes the blobs it alone used: its photos, their overlays and the extra photos of its
disputes. Blobs are content-addressed (serving/blobs.py), so two gradings of the same photo share one
blob; a blob is deleted only when no grading that is not erased references it (as a photo, an overlay
or a dispute photo). From then on the photo and overlay routes answer 410 `photo_erased`, the grading's
JSON carries `photos_erased` and null photo URLs, and the review page says "photos erased".

Races with a new grading of the same photo: the check-then-delete runs in a transaction that holds the
blobs' locks, and a new grading takes the same locks before it commits and re-puts any photo missing
by then (`hold_blobs` + the service's check). On SQLite the lock is the database's write lock (BEGIN
IMMEDIATE, and the grading's own inserts); on PostgreSQL one advisory lock per blob (exclusive to erase,
shared to reference).

Triggers: `POST /v1/gradings/{id}/erase` (the grading's refurbisher, or an admin), and
`refurbgrade retention run [--older-than 90d] [--dry-run]` (default age REFURBGRADE_RETENTION_DAYS; off
unless set), which an operator schedules (cron, a Kubernetes CronJob).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from serving.db import Grading, GradingEvent, GradingPhoto, utcnow
from serving.review import events

log = logging.getLogger("refurbgrade.retention")

PHOTOS_ERASED = events.PHOTOS_ERASED
REQUEST, RETENTION = "request", "retention"  # why a grading's photos were erased
BATCH = 100  # gradings erased per transaction by a retention run


@dataclass
class Erasure:
    """What erasing (or, dry, would erase) did: gradings, the photos they held, the blobs deleted and
    those kept because a grading that is not erased still uses them."""

    gradings: list[str] = field(default_factory=list)
    photos: int = 0
    blobs_deleted: int = 0
    blobs_kept: int = 0  # shared with a grading that is not erased
    bytes_deleted: int = 0  # of the photos deleted (overlays are not sized)

    def add(self, other: Erasure) -> None:
        self.gradings += other.gradings
        self.photos += other.photos
        self.blobs_deleted += other.blobs_deleted
        self.blobs_kept += other.blobs_kept
        self.bytes_deleted += other.bytes_deleted


def erased_gradings():
    """A subquery: the ids of gradings whose photos are erased."""
    return select(GradingEvent.grading_id).where(GradingEvent.kind == PHOTOS_ERASED)


def erasure_of(s: Session, grading_id: str) -> GradingEvent | None:
    """The grading's `photos_erased` event (the first, should there be two), or None."""
    return s.scalar(
        select(GradingEvent)
        .where(GradingEvent.grading_id == grading_id, GradingEvent.kind == PHOTOS_ERASED)
        .order_by(GradingEvent.id)
        .limit(1)
    )


def is_erased(s: Session, grading_id: str) -> bool:
    return erasure_of(s, grading_id) is not None


def delete_unreferenced(sessions: sessionmaker, blobs, shas: Sequence[str]) -> int:
    """Delete those of these blobs that no grading that is not erased uses; how many were deleted."""
    with sessions() as s:
        begin_exclusive(s)
        hold_blobs(s, shas, shared=False)
        doomed = sorted(set(shas) - referenced(s, set(shas)))
        for sha in doomed:
            blobs.delete(sha)
        s.commit()
    return len(doomed)


def erased_info(event: GradingEvent | None) -> dict | None:
    """What the API and the pages say about an erasure: when, and why (request or retention)."""
    if event is None:
        return None
    return {"erased_at": event.created_at, "reason": (event.payload or {}).get("reason", REQUEST)}


def _lock_key(sha: str) -> int:
    return int(sha[:15], 16)  # 60 bits: a positive bigint


def begin_exclusive(s: Session) -> None:
    """SQLite: take the database's write lock now (the first statement of the session's transaction)."""
    if s.get_bind().dialect.name == "sqlite":
        s.connection().exec_driver_sql("BEGIN IMMEDIATE")


def hold_blobs(s: Session, shas: Iterable[str], shared: bool = True) -> None:
    """PostgreSQL: lock these blobs until the transaction ends (shared: to reference them; exclusive: to
    delete them), in sorted order so two transactions cannot deadlock. SQLite: the write lock does it."""
    if s.get_bind().dialect.name != "postgresql":
        return
    fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    for sha in sorted(set(shas)):
        s.execute(text(f"SELECT {fn}(:k)"), {"k": _lock_key(sha)})


def _dispute_photos(payloads: Iterable[dict | None]) -> list[dict]:
    return [p for payload in payloads for p in (payload or {}).get("photos") or [] if p.get("sha256")]


def referenced(s: Session, shas: set[str]) -> set[str]:
    """Those of `shas` that a grading that is not erased uses (photo, overlay or dispute photo)."""
    if not shas:
        return set()
    live = Grading.id.not_in(erased_gradings())
    used: set[str] = set()
    for column in (GradingPhoto.sha256, GradingPhoto.overlay_sha256):
        used |= set(
            s.scalars(
                select(column)
                .join(Grading, Grading.id == GradingPhoto.grading_id)
                .where(column.in_(shas), live)
            )
        )
    disputes = s.scalars(
        select(GradingEvent.payload)
        .join(Grading, Grading.id == GradingEvent.grading_id)
        .where(GradingEvent.kind == events.DISPUTED, live)
    )
    used |= {p["sha256"] for p in _dispute_photos(disputes)} & shas
    return used


def _blobs_of(s: Session, ids: Sequence[str]) -> tuple[dict[str, int], int, int]:
    """sha -> bytes (0 for overlays) of every blob the gradings use; the number of their photos, and of
    them per grading id (for the events)."""
    sizes: dict[str, int] = {}
    photos = 0
    for p in s.scalars(select(GradingPhoto).where(GradingPhoto.grading_id.in_(ids))):
        photos += 1
        sizes[p.sha256] = p.bytes
        if p.overlay_sha256:
            sizes.setdefault(p.overlay_sha256, 0)
    disputes = s.scalars(
        select(GradingEvent.payload).where(
            GradingEvent.grading_id.in_(ids), GradingEvent.kind == events.DISPUTED
        )
    )
    extra = 0
    for p in _dispute_photos(disputes):
        extra += 1
        sizes[p["sha256"]] = int(p.get("bytes") or 0)
    return sizes, photos, extra


def erase(
    sessions: sessionmaker,
    blobs,
    grading_ids: Sequence[str],
    *,
    actor: str | None,
    reason: str,
    dry_run: bool = False,
    extra: dict | None = None,
) -> Erasure:
    """Erase the photos of these gradings (those not erased yet) in one transaction: their events, then
    the blobs no remaining grading uses. `dry_run`: the same checks, rolled back, nothing deleted."""
    out = Erasure()
    with sessions() as s:
        begin_exclusive(s)
        # PostgreSQL: a second erasure of the same grading waits here, then sees the first one's event.
        s.execute(
            select(Grading.id).where(Grading.id.in_(grading_ids)).order_by(Grading.id).with_for_update()
        )
        ids = list(
            s.scalars(
                select(Grading.id).where(Grading.id.in_(grading_ids), Grading.id.not_in(erased_gradings()))
            )
        )
        if not ids:
            return out
        sizes, photos, dispute_photos = _blobs_of(s, ids)
        hold_blobs(s, sizes, shared=False)
        now = utcnow()
        per_grading = dict(
            s.execute(
                select(GradingPhoto.grading_id, func.count())
                .where(GradingPhoto.grading_id.in_(ids))
                .group_by(GradingPhoto.grading_id)
            ).all()
        )
        for gid in ids:
            payload = {"reason": reason, "photos": int(per_grading.get(gid, 0)), **(extra or {})}
            s.add(
                GradingEvent(grading_id=gid, created_at=now, actor=actor, kind=PHOTOS_ERASED, payload=payload)
            )
        s.flush()  # these gradings now count as erased for the check below
        kept = referenced(s, set(sizes))
        doomed = sorted(set(sizes) - kept)
        out = Erasure(ids, photos, len(doomed), len(kept), sum(sizes[sha] for sha in doomed))
        if dry_run:
            s.rollback()
            return out
        for sha in doomed:  # while the locks are held: no grading can start using them meanwhile
            blobs.delete(sha)
        s.commit()
    _forget_renditions()
    log.info(
        "erased the photos of %d grading(s)",
        len(ids),
        extra={
            "fields": {
                "reason": reason,
                "gradings": len(ids),
                "photos": photos,
                "dispute_photos": dispute_photos,
                "blobs_deleted": out.blobs_deleted,
                "blobs_kept": out.blobs_kept,
                "bytes_deleted": out.bytes_deleted,
            }
        },
    )
    return out


def due(sessions: sessionmaker, cutoff: datetime, limit: int, after: tuple[datetime, str] | None = None):
    """Up to `limit` (created_at, id) of gradings created before `cutoff` whose photos are not erased, oldest
    first, after the key `after` (so a dry run pages through them)."""
    stmt = select(Grading.created_at, Grading.id).where(
        Grading.created_at < cutoff, Grading.id.not_in(erased_gradings())
    )
    if after is not None:
        stmt = stmt.where(
            (Grading.created_at > after[0]) | ((Grading.created_at == after[0]) & (Grading.id > after[1]))
        )
    with sessions() as s:
        return [tuple(r) for r in s.execute(stmt.order_by(Grading.created_at, Grading.id).limit(limit))]


def run_retention(
    sessions: sessionmaker,
    blobs,
    older_than: timedelta,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    batch: int = BATCH,
) -> Erasure:
    """Erase the photos of every grading created more than `older_than` ago, `batch` gradings per
    transaction (a dry run checks each batch the same way, then rolls it back)."""
    cutoff = (now or utcnow()) - older_than
    days = round(older_than.total_seconds() / 86400, 2)
    total = Erasure()
    after = None
    while True:
        rows = due(sessions, cutoff, batch, after)
        if not rows:
            return total
        total.add(
            erase(
                sessions,
                blobs,
                [gid for _, gid in rows],
                actor=None,
                reason=RETENTION,
                dry_run=dry_run,
                extra={"older_than_days": days},
            )
        )
        after = rows[-1]  # a dry run leaves them unerased: page on


def _forget_renditions() -> None:
    """The review pages cache JPEG renditions of photos in memory: drop this process's copies."""
    from serving.review.images import _rendition

    _rendition.cache_clear()


def parse_age(value: str) -> timedelta:
    """'90d', '12h', '2w', '30m', or a number of days."""
    v = value.strip().lower()
    units = {"d": 86400, "h": 3600, "w": 7 * 86400, "m": 60}
    try:
        if v and v[-1] in units:
            n, unit = float(v[:-1]), units[v[-1]]
        else:
            n, unit = float(v), 86400
    except ValueError:
        raise ValueError(f"{value!r} is not an age: use 90d, 12h, 2w or 30m") from None
    if not n > 0:
        raise ValueError(f"{value!r}: the age must be more than 0")
    return timedelta(seconds=n * unit)


class Sweeper:
    """Each process's retention sweep (REFURBGRADE_RETENTION_DAYS set): a thread that erases the photos of
    gradings past the age every `every_s`, the first time a few seconds after start. Replicas may sweep
    at once: erasing is idempotent and serialised by the database (see the module's notes)."""

    def __init__(self, sessions: sessionmaker, blobs, days: float, every_s: float):
        import threading

        self.sessions, self.blobs, self.days, self.every_s = sessions, blobs, days, every_s
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="refurbgrade-retention", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        wait = min(5.0, self.every_s)
        while not self._stop.wait(wait):
            try:
                run_retention(self.sessions, self.blobs, timedelta(days=self.days))
            except Exception:  # a database hiccup: log it and try again next time
                log.exception("retention sweep failed")
            self.runs += 1
            wait = self.every_s

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def start_sweeper(sessions: sessionmaker, blobs, settings) -> Sweeper | None:
    if settings.retention_days is None:
        return None
    return Sweeper(sessions, blobs, settings.retention_days, settings.retention_every_s)
