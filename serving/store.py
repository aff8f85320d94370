"""Gradings in the database: the writes of a new grading and the tenant-scoped queries that read them.

A new grading is one transaction: the record (the body as first answered plus indexed copies of its
fields), one row per photo, one row per standard, and its "graded" event (written through
`review.events`, which owns event kinds). Every read goes through `scoped`: a refurbisher's query never
sees another tenant's rows, and another tenant's grading is as absent as a missing one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from serving.auth import Principal
from serving.db import Grading, GradingEvent, GradingGrade, GradingPhoto
from serving.errors import ApiError
from serving.review import events


def add_grading(
    sessions: sessionmaker,
    body: dict,
    *,
    created_at: datetime,
    created_by: str | None,
    idempotency_key: str | None,
    request_hash: str,
    ensure_blobs: Callable[[], None] | None = None,
) -> None:
    """Store a new grading from its body; IntegrityError when its Idempotency-Key was stored first.
    `ensure_blobs` runs before the commit, while the photos' blobs are held against retention deleting
    them (serving/retention.py): it puts back any photo an erasure deleted since it was stored."""
    from serving.retention import hold_blobs

    grading_id = body["id"]
    impact = body.get("impact") or {}  # what listing it avoids; the summary counts it while listable
    with sessions() as s:
        hold_blobs(s, [p["sha256"] for p in body["photos"]])
        s.add(
            Grading(
                id=grading_id,
                tenant=body["tenant"],
                created_at=created_at,
                created_by=created_by,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                external_ref=body["external_ref"],
                device_model=body["device_model"],
                device_kind=body["device_kind"],
                needs_review=body["needs_review"],
                model_version=body["model"]["version"],
                model_sha256=body["model"]["sha256"],
                rules_versions=body["rules_versions"],
                body=body,
                impact_method=impact.get("method_version"),
                impact_kg_co2e=impact.get("if_listed_kg_co2e"),
                impact_mass_kg=impact.get("if_listed_ewaste_kg"),
                impact_estimated=impact.get("estimated"),
            )
        )
        s.flush()  # parent row first: PostgreSQL checks foreign keys per statement
        for k, p in enumerate(body["photos"]):
            s.add(
                GradingPhoto(
                    grading_id=grading_id,
                    idx=k,
                    sha256=p["sha256"],
                    content_type=p["content_type"],
                    filename=(p["filename"] or "")[:255] or None,
                    bytes=p["bytes"],
                )
            )
        for name, g in body["grades"].items():
            s.add(GradingGrade(grading_id=grading_id, standard=name, grade=g["grade"], version=g["version"]))
        events.graded(s, body, created_at, created_by)
        s.flush()  # SQLite: the write lock is ours from the first insert, so no erasure runs meanwhile
        if ensure_blobs is not None:
            ensure_blobs()
        s.commit()


def find_idempotent(sessions: sessionmaker, tenant: str, key: str) -> Grading | None:
    """The grading a tenant stored under this Idempotency-Key, if any."""
    with sessions() as s:
        return s.scalar(select(Grading).where(Grading.tenant == tenant, Grading.idempotency_key == key))


def scoped(principal: Principal) -> Select:
    """All gradings the caller may see: its tenant's, or every tenant's for auditors and admins."""
    stmt = select(Grading)
    if not principal.sees_all_tenants:
        stmt = stmt.where(Grading.tenant == (principal.tenant or ""))
    return stmt


def get_row(s: Session, principal: Principal, grading_id: str) -> Grading:
    row = s.scalar(scoped(principal).where(Grading.id == grading_id))
    if row is None:  # another tenant's grading is as absent as a missing one
        raise ApiError(404, "grading_not_found", f"no grading {grading_id}")
    return row


def get_photo(
    sessions: sessionmaker, principal: Principal, grading_id: str, n: int
) -> tuple[Grading, GradingPhoto]:
    with sessions() as s:
        row = get_row(s, principal, grading_id)
        photo = next((p for p in row.photos if p.idx == n), None)
        if photo is None:
            raise ApiError(
                404, "photo_not_found", f"grading {grading_id} has no photo with index {n} (photo {n + 1})"
            )
        return row, photo


def set_overlay(sessions: sessionmaker, blobs, grading_id: str, n: int, png: bytes) -> None:
    """Store a photo's rendered overlay and remember it, so the next request reads it instead of drawing
    again. Not once the grading's photos are erased (serving/retention.py): the overlay is then deleted
    again unless another grading uses the same bytes."""
    from serving.retention import begin_exclusive, delete_unreferenced, hold_blobs, is_erased

    sha = blobs.put(png)
    with sessions() as s:
        begin_exclusive(s)
        hold_blobs(s, [sha])
        stored = s.get(GradingPhoto, (grading_id, n))
        if stored is not None and not is_erased(s, grading_id):
            if not blobs.exists(sha):  # an erasure of another grading deleted it meanwhile
                blobs.put(png, sha)
            stored.overlay_sha256 = sha
            s.commit()
            return
    delete_unreferenced(sessions, blobs, [sha])  # drawn while the grading's photos were being erased


@dataclass(frozen=True)
class GradingFilters:
    """GET /v1/gradings' filters; None means any. Times compare in UTC (a naive one is UTC)."""

    tenant: str | None = None  # honoured for callers who see every tenant
    needs_review: bool | None = None
    external_ref: str | None = None
    device_model: str | None = None
    standard: str | None = None
    grade: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None  # exclusive


def list_gradings(
    sessions: sessionmaker, principal: Principal, filters: GradingFilters, limit: int, offset: int
) -> tuple[list[Grading], int]:
    """One page of the caller's gradings, newest first, and how many match in all."""
    f = filters
    stmt = scoped(principal)
    if f.tenant is not None and principal.sees_all_tenants:
        stmt = stmt.where(Grading.tenant == f.tenant)
    if f.needs_review is not None:
        stmt = stmt.where(Grading.needs_review == f.needs_review)
    if f.external_ref is not None:
        stmt = stmt.where(Grading.external_ref == f.external_ref)
    if f.device_model is not None:
        stmt = stmt.where(Grading.device_model == f.device_model)
    if f.created_after is not None:
        stmt = stmt.where(Grading.created_at >= f.created_after)
    if f.created_before is not None:
        stmt = stmt.where(Grading.created_at < f.created_before)
    if f.standard is not None or f.grade is not None:
        sub = select(GradingGrade.grading_id)
        if f.standard is not None:
            sub = sub.where(GradingGrade.standard == f.standard)
        if f.grade is not None:
            sub = sub.where(GradingGrade.grade == f.grade)
        stmt = stmt.where(Grading.id.in_(sub))
    with sessions() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = list(
            s.scalars(stmt.order_by(Grading.created_at.desc(), Grading.id).limit(limit).offset(offset))
        )
    return rows, total


def impact_rows(
    sessions: sessionmaker, principal: Principal, tenant: str | None, start: datetime | None, end: datetime
) -> tuple[list, dict[str, dict[str, str]], dict[str, list[dict]]]:
    """The caller's gradings created in [start, end) for the impact summary (issue 22): their impact
    columns, their model's grades (grading id -> standard -> grade) and the "after" grades of their
    verdict events in order (grading id -> [after, ...]), read with three queries."""
    stmt = scoped(principal).with_only_columns(
        Grading.id,
        Grading.tenant,
        Grading.impact_method,
        Grading.impact_kg_co2e,
        Grading.impact_mass_kg,
        Grading.impact_estimated,
    )
    if tenant is not None and principal.sees_all_tenants:
        stmt = stmt.where(Grading.tenant == tenant)
    if start is not None:
        stmt = stmt.where(Grading.created_at >= start)
    stmt = stmt.where(Grading.created_at < end)
    ids = stmt.with_only_columns(Grading.id).scalar_subquery()
    grades: dict[str, dict[str, str]] = {}
    verdicts: dict[str, list[dict]] = {}
    with sessions() as s:
        rows = list(s.execute(stmt.order_by(Grading.tenant, Grading.created_at)))
        for gid, standard, grade in s.execute(
            select(GradingGrade.grading_id, GradingGrade.standard, GradingGrade.grade).where(
                GradingGrade.grading_id.in_(ids)
            )
        ):
            grades.setdefault(gid, {})[standard] = grade
        for gid, payload in s.execute(
            select(GradingEvent.grading_id, GradingEvent.payload)
            .where(GradingEvent.grading_id.in_(ids), GradingEvent.kind.in_(events.VERDICTS))
            .order_by(GradingEvent.id)
        ):
            verdicts.setdefault(gid, []).append((payload or {}).get("after") or {})
    return rows, grades, verdicts
