"""Avoided emissions and e-waste of gradings (issue 22): the grade that stands, and sums per tenant.

Each grading stores, when it is graded, what listing the device avoids (model/impact.py, by the method
version stored beside it). Whether it counts is decided by the grade that stands: the model's grades
with every review verdict applied in order (as `review.events.fold` does), so a review that overrules
a grade to Unlistable takes the device out of the sums, and one that overrules Unlistable to a
listable grade brings it in. A device counts as a listing when every standard it was graded under
calls its standing grade listable (the standard's own `listable`). The stored answer (`impact` of
GET /v1/gradings/{id}) stays as first answered; the review page and the summary use the standing grade.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache

from model.impact import is_listed
from model.rules import load_standard
from serving.auth import Principal
from serving.errors import ApiError
from serving.store import impact_rows
from serving.times import utc_param

UNGRADABLE = "ungradable"


@cache
def grade_listable(standard: str, grade: str) -> bool:
    """Whether a standard's grade is listable; unknown standards and grades, and ungradable, are not."""
    try:
        std = load_standard(standard)
    except Exception:  # a standard no longer bundled: it cannot be listed under it today
        return False
    return any(g.name == grade and g.listable for g in std.grades)


def standing_grades(original: dict[str, str], verdicts: list[dict]) -> dict[str, str]:
    """The grades that stand: the model's, with each verdict's "after" grades applied in order."""
    grades = dict(original)
    for after in verdicts:
        for name, grade in after.items():
            if name in grades:
                grades[name] = grade
    return grades


def standing_listed(grades: dict[str, str]) -> bool:
    return is_listed({s: (g, grade_listable(s, g)) for s, g in grades.items()})


def standing_impact(stored: dict | None, grades: dict[str, str]) -> dict | None:
    """A grading's stored `impact` as its standing grades make it (for the review page)."""
    if not stored:
        return None
    listed = standing_listed(grades)
    out = dict(stored)
    out["listed"] = listed
    out["avoided_kg_co2e"] = stored["if_listed_kg_co2e"] if listed else 0.0
    out["ewaste_kg"] = stored["if_listed_ewaste_kg"] if listed else 0.0
    out["changed"] = listed != stored.get("listed")
    return out


def parse_period(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime]:
    """[from, to) in UTC (a naive time is UTC; `to` defaults to now); 422 invalid_period when a time
    has no UTC equivalent (e.g. 0001-01-01T00:00:00+05:00) or `from` is not before `to`."""
    start_utc = utc_param(start, "from")
    end_utc = utc_param(end, "to") if end is not None else datetime.now(UTC)
    if start_utc is not None and start_utc >= end_utc:
        raise ApiError(422, "invalid_period", "from must be before to")
    return start_utc, end_utc


@dataclass
class TenantImpact:
    tenant: str
    gradings: int = 0  # graded in the period
    listed: int = 0  # standing grade listable under every standard: counted in the sums
    not_listed: int = 0  # unlistable or ungradable under the standing grade: avoids nothing as a listing
    without_impact: int = 0  # stored before impact figures existed (revision 0003): not counted
    estimated: int = 0  # listed ones whose figures use a kind's average
    avoided_kg_co2e: float = 0.0
    ewaste_kg: float = 0.0
    method_versions: list[str] = field(default_factory=list)

    def add(
        self, kg: float | None, mass: float | None, estimated: bool | None, method: str | None, listed: bool
    ):
        self.gradings += 1
        if kg is None or mass is None:
            self.without_impact += 1
            return
        if method and method not in self.method_versions:
            self.method_versions.append(method)
        if not listed:
            self.not_listed += 1
            return
        self.listed += 1
        self.estimated += bool(estimated)
        self.avoided_kg_co2e += kg
        self.ewaste_kg += mass

    def out(self) -> dict:
        d = asdict(self)
        d["avoided_kg_co2e"] = round(self.avoided_kg_co2e, 1)
        d["ewaste_kg"] = round(self.ewaste_kg, 3)
        d["method_versions"] = sorted(self.method_versions)
        return d


def summary(
    sessions, principal: Principal, tenant: str | None, start: datetime | None, end: datetime
) -> list[TenantImpact]:
    """Per tenant the caller may see (its own; every tenant, or `tenant`, for auditors and admins)."""
    rows, grades, verdicts = impact_rows(sessions, principal, tenant, start, end)
    out: dict[str, TenantImpact] = {}
    if not principal.sees_all_tenants:  # a refurbisher always gets its own line, even with nothing in it
        own = principal.tenant or ""
        out[own] = TenantImpact(own)
    elif tenant is not None:
        out[tenant] = TenantImpact(tenant)
    for gid, row_tenant, method, kg, mass, estimated in rows:
        listed = standing_listed(standing_grades(grades.get(gid, {}), verdicts.get(gid, [])))
        out.setdefault(row_tenant, TenantImpact(row_tenant)).add(kg, mass, estimated, method, listed)
    return [out[t] for t in sorted(out)]


CSV_COLUMNS = (
    "tenant",
    "from",
    "to",
    "gradings",
    "listed",
    "not_listed",
    "without_impact",
    "estimated",
    "avoided_kg_co2e",
    "ewaste_kg",
    "method_versions",
)


def csv_cell(value) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet would run a cell starting with = + - @ as a formula (a tenant's name is free text).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(items: list[dict], start: datetime | None, end: datetime) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for t in items:
        w.writerow(
            [
                csv_cell(t["tenant"]),
                start.isoformat() if start else "",
                end.isoformat(),
                t["gradings"],
                t["listed"],
                t["not_listed"],
                t["without_impact"],
                t["estimated"],
                f"{t['avoided_kg_co2e']:.1f}",
                f"{t['ewaste_kg']:.3f}",
                ";".join(t["method_versions"]),
            ]
        )
    return buf.getvalue()
