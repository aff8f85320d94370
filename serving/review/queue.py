"""The review queue's SQL: which gradings wait in which queue, their counts, and the filter menus.

A grading is in "review" while the model flagged it and nobody gave a verdict, in "disputed" while its
last dispute came after its last verdict; "recent" is every grading. Both are decided in SQL from the
event log (events.py owns the kinds), so a page of the queue is one query whatever its length.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, not_, or_, select
from sqlalchemy.orm import Session

from serving.db import Grading, GradingEvent, GradingGrade
from serving.review.events import DISPUTED, VERDICTS

QUEUES = ("review", "disputed", "recent")


def _last(kinds) -> Any:
    return (
        select(func.max(GradingEvent.id))
        .where(GradingEvent.grading_id == Grading.id, GradingEvent.kind.in_(kinds))
        .correlate(Grading)
        .scalar_subquery()
    )


def queue_conditions():
    last_verdict, last_dispute = _last(VERDICTS), _last((DISPUTED,))
    open_dispute = and_(last_dispute.is_not(None), or_(last_verdict.is_(None), last_dispute > last_verdict))
    return {
        "review": and_(Grading.needs_review.is_(True), last_verdict.is_(None), not_(open_dispute)),
        "disputed": open_dispute,
        "recent": None,
    }


@dataclass(frozen=True)
class QueueFilters:
    tenant: str | None = None
    standard: str | None = None
    grade: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None  # exclusive
    model_version: str | None = None

    def apply(self, stmt):
        if self.tenant:
            stmt = stmt.where(Grading.tenant == self.tenant)
        if self.model_version:
            stmt = stmt.where(Grading.model_version == self.model_version)
        if self.date_from:
            stmt = stmt.where(Grading.created_at >= self.date_from)
        if self.date_to:
            stmt = stmt.where(Grading.created_at < self.date_to)
        if self.grade:
            sub = select(GradingGrade.grading_id).where(GradingGrade.grade == self.grade)
            if self.standard:
                sub = sub.where(GradingGrade.standard == self.standard)
            stmt = stmt.where(Grading.id.in_(sub))
        return stmt


def queue_counts(s: Session, filters: QueueFilters) -> dict[str, int]:
    out = {}
    for name, cond in queue_conditions().items():
        stmt = filters.apply(select(func.count()).select_from(Grading))
        if cond is not None:
            stmt = stmt.where(cond)
        out[name] = s.scalar(stmt) or 0
    return out


def queue_page(s: Session, queue: str, filters: QueueFilters, limit: int, offset: int) -> list[Grading]:
    """One page of a queue: work queues oldest first (first in, first reviewed), 'recent' newest first."""
    cond = queue_conditions()[queue]
    stmt = filters.apply(select(Grading))
    if cond is not None:
        stmt = stmt.where(cond)
    order = Grading.created_at.desc() if queue == "recent" else Grading.created_at.asc()
    return list(s.scalars(stmt.order_by(order, Grading.id).limit(limit).offset(offset)))


def filter_choices(s: Session) -> dict[str, list[str]]:
    """Values the queue's filter menus offer (tenants, model versions, standards, grades)."""
    return {
        "tenants": sorted(t for t in s.scalars(select(Grading.tenant).distinct()) if t),
        "model_versions": sorted(s.scalars(select(Grading.model_version).distinct())),
        "standards": sorted(s.scalars(select(GradingGrade.standard).distinct())),
        "grades": sorted(s.scalars(select(GradingGrade.grade).distinct())),
    }
