"""The quality team's numbers: the queue as a CSV file (the queue page's filters), and how often
reviewers agree with the model, per standard and per model grade, with what they changed it to.

`agreement` reads the reviewed gradings (those with a verdict: confirmed or overruled) and compares, per
standard, the model's grade with the grade that stands after review: a confusion table (model grade ->
reviewed grade), the share confirmed per model grade, and the same per reviewer (who gave the verdict),
so the team sees where the model is weak.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from model.rules.schema import UNGRADABLE
from serving.db import Grading, GradingEvent
from serving.deps import StateDep
from serving.impact import csv_cell
from serving.review import events, queue
from serving.review.html import SECURITY_HEADERS, page
from serving.review.pages import QUEUE_LABELS, QueueFiltersDep, _queue_item, queue_filters
from serving.review.signin import ReviewerDep

MAX_ROWS = 50_000  # a CSV or a stats page reads at most this many gradings

router = APIRouter(prefix="/review", include_in_schema=False)


@router.get("/queue.csv")
def queue_csv(
    state: StateDep,
    _reviewer: ReviewerDep,
    filtered: QueueFiltersDep,
    view: str = "review",
) -> Response:
    """Every grading of a queue tab with the page's filters, in the page's order, as CSV."""
    view = view if view in queue.QUEUES else "review"
    filters, _params = filtered
    with state.sessions() as s:
        rows = queue.queue_page(s, view, filters, MAX_ROWS, 0)
        states = events.states_of(s, rows)
        standards = queue.filter_choices(s)["standards"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "grading_id",
            "graded_at_utc",
            "tenant",
            "external_ref",
            "device",
            "status",
            *[f"{std}_{k}" for std in standards for k in ("model", "now")],
            "certainty",
            "photos",
            "defects",
            "open_disputes",
            "model_version",
            "url",
        ]
    )
    for row in rows:
        it = _queue_item(row, states[row.id])
        grades = it["grades"]
        w.writerow(
            [
                row.id,
                it["created"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                csv_cell(it["tenant"]),
                csv_cell(it["ref"]),
                csv_cell(it["device"]),
                it["status"],
                *[
                    v
                    for std in standards
                    for v in ((grades[std].original, grades[std].grade) if std in grades else ("", ""))
                ],
                "" if it["certainty"] is None else f"{it['certainty']:.2f}",
                it["photos"],
                it["defects"],
                it["disputes"],
                csv_cell(it["model_version"]),
                f"/review/gradings/{row.id}",
            ]
        )
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    name = f"refurbgrade-queue-{view}-{stamp}.csv"
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Rows": str(len(rows)),
        },
    )


@dataclass
class StandardAgreement:
    standard: str
    grades: list[str]  # the standard's grades best first, then 'ungradable' when it occurs
    cells: Counter = field(default_factory=Counter)  # (model grade, reviewed grade) -> gradings

    def row_total(self, model_grade: str) -> int:
        return sum(n for (m, _r), n in self.cells.items() if m == model_grade)

    def agreed(self, model_grade: str | None = None) -> int:
        return sum(n for (m, r), n in self.cells.items() if m == r and model_grade in (None, m))

    @property
    def total(self) -> int:
        return sum(self.cells.values())

    def rate(self, model_grade: str | None = None) -> float | None:
        n = self.total if model_grade is None else self.row_total(model_grade)
        return self.agreed(model_grade) / n if n else None

    def changed_to(self, model_grade: str) -> list[tuple[str, int]]:
        """What reviewers changed this model grade to, most often first."""
        out = [(r, n) for (m, r), n in self.cells.items() if m == model_grade and r != m]
        return sorted(out, key=lambda x: -x[1])


@dataclass
class ReviewerAgreement:
    name: str
    gradings: int = 0
    agreed: Counter = field(default_factory=Counter)  # standard -> gradings confirmed under it
    seen: Counter = field(default_factory=Counter)  # standard -> gradings reviewed under it

    def rate(self, standard: str) -> float | None:
        return self.agreed[standard] / self.seen[standard] if self.seen[standard] else None


def _grade_order(standard: str, seen: set[str]) -> list[str]:
    from model.rules import StandardError, load_standard

    try:
        order = [g.name for g in load_standard(standard).grades]
    except StandardError:
        order = []
    extra = sorted(seen - set(order) - {UNGRADABLE})
    return order + extra + ([UNGRADABLE] if UNGRADABLE in seen else [])


def agreement(
    s: Session, filters: queue.QueueFilters, limit: int = MAX_ROWS
) -> tuple[list[StandardAgreement], list[ReviewerAgreement], int]:
    """Per standard the model-vs-review confusion table, per reviewer the share confirmed, and how
    many reviewed gradings were read (the newest `limit` matching the filters)."""
    reviewed = select(GradingEvent.grading_id).where(GradingEvent.kind.in_(events.VERDICTS))
    stmt = filters.apply(select(Grading)).where(Grading.id.in_(reviewed))
    rows = list(s.scalars(stmt.order_by(Grading.created_at.desc(), Grading.id).limit(limit)))
    states = events.states_of(s, rows)
    tables: dict[str, StandardAgreement] = {}
    seen: dict[str, set[str]] = defaultdict(set)
    by_actor: dict[str, ReviewerAgreement] = {}
    for row in rows:
        st = states[row.id]
        if st.verdict is None:
            continue
        actor = st.verdict.actor or ""
        who = by_actor.setdefault(actor, ReviewerAgreement(actor))
        who.gradings += 1
        for name, g in st.grades.items():
            if filters.standard and name != filters.standard:
                continue
            t = tables.setdefault(name, StandardAgreement(name, []))
            t.cells[(g.original, g.grade)] += 1
            seen[name] |= {g.original, g.grade}
            who.seen[name] += 1
            who.agreed[name] += g.original == g.grade
    names = events.actor_names(s, list(by_actor))
    for actor, who in by_actor.items():
        who.name = names.get(actor, f"key {actor}" if actor else "unknown")
    for name, t in tables.items():
        t.grades = _grade_order(name, seen[name])
    reviewers = sorted(by_actor.values(), key=lambda r: (-r.gradings, r.name))
    return [tables[n] for n in sorted(tables)], reviewers, len(rows)


@router.get("/stats")
def stats_page(
    request: Request,
    state: StateDep,
    reviewer: ReviewerDep,
    tenant: str = "",
    standard: str = "",
    date_from: str = "",
    date_to: str = "",
    model_version: str = "",
) -> HTMLResponse:
    filters, params = queue_filters(tenant, standard, "", date_from, date_to, model_version)
    with state.sessions() as s:
        tables, reviewers, n = agreement(s, filters)
        choices = queue.filter_choices(s)
    active = {k: v for k, v in params.items() if v}
    return page(
        request,
        "review_stats.html",
        {
            "reviewer": reviewer,
            "csrf": reviewer.csrf,
            "tables": tables,
            "reviewers": reviewers,
            "standards": [t.standard for t in tables],
            "n": n,
            "limit": MAX_ROWS,
            "params": params,
            "filtered": bool(active),
            "choices": choices,
            "queue_url": "/review/queue?" + urlencode({"view": "recent", **active}),
            "queue_label": QUEUE_LABELS["recent"],
            "ungradable": UNGRADABLE,
        },
    )
