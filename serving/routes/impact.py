"""/v1/impact: avoided emissions and e-waste of a tenant's gradings over a period.

Sums per tenant by the grade that stands after reviews (serving/impact.py); JSON, or CSV with
`format=csv` for a refurbisher's own reporting. The method and its sources: docs/impact.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from serving import examples, impact
from serving.apidocs import AUTH, errors
from serving.deps import ReaderDep, StateDep

router = APIRouter(prefix="/v1", tags=["impact"])


class TenantImpactOut(BaseModel):
    tenant: str = Field(description="the refurbisher")
    gradings: int = Field(description="gradings created in the period")
    listed: int = Field(description="counted: the standing grade is listable under every standard")
    not_listed: int = Field(description="unlistable or ungradable as their grade stands: avoid nothing")
    without_impact: int = Field(description="stored before gradings answered their impact: not counted")
    estimated: int = Field(description="listed gradings whose figures use a kind's average")
    avoided_kg_co2e: float = Field(description="kg CO2e the listed gradings avoid, summed")
    ewaste_kg: float = Field(description="kg of devices kept in use")
    method_versions: list[str] = Field(description="the method versions the sums were computed with")


class ImpactSummaryOut(BaseModel):
    from_: datetime | None = Field(alias="from", description="inclusive, UTC; null: from the first grading")
    to: datetime = Field(description="exclusive, UTC")
    tenants: list[TenantImpactOut] = Field(description="one entry per tenant with gradings in the period")
    method: str = Field(
        default="docs/impact.md", description="where the method, its sources and its limits are explained"
    )


@router.get(
    "/impact",
    response_model=ImpactSummaryOut,
    response_model_by_alias=True,
    responses={
        200: {
            "content": {
                "application/json": {"example": examples.IMPACT_SUMMARY},
                "text/csv": {"schema": {"type": "string"}, "example": examples.IMPACT_CSV},
            },
            "description": "JSON, or with `format=csv` a CSV file with one row per tenant",
        },
        **errors(*AUTH, "invalid_request", "invalid_period"),
    },
    summary="Avoided emissions and e-waste of your gradings over a period, per tenant",
)
def impact_summary(
    state: StateDep,
    principal: ReaderDep,
    start: Annotated[
        datetime | None, Query(alias="from", description="graded at or after (ISO 8601; naive is UTC)")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="graded before (default: now)")] = None,
    tenant: Annotated[str | None, Query(max_length=100, description="auditors and admins only")] = None,
    format: Annotated[Literal["json", "csv"], Query(description="json (default) or csv")] = "json",
):
    start_utc, end_utc = impact.parse_period(start, end)
    items = [t.out() for t in impact.summary(state.sessions, principal, tenant, start_utc, end_utc)]
    if format == "csv":
        return Response(
            impact.to_csv(items, start_utc, end_utc),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="refurbgrade-impact.csv"'},
        )
    return {"from": start_utc, "to": end_utc, "tenants": items, "method": "docs/impact.md"}
