"""The API's response and request bodies (pydantic), and the conversion from a graded device to them.

A grading's body is stored as JSON exactly as first answered (minus URLs, which depend on where the
service runs), so GET returns what POST returned and later review events never rewrite it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.rules.engine import PRESENT_AT, counted
from model.rules.schema import GRADED_TYPES

if TYPE_CHECKING:  # type-only: the API client imports these schemas without onnxruntime or the database
    from model.instances import DefectInstance
    from serving.db import Grading
    from serving.pipeline import DeviceGrading


def is_counted(d: dict) -> bool:
    """Whether a stored defect counted for the grade: its `counted`, or for a grading stored before
    defects said so, the engine's rule applied to what was stored (graded type, >= PRESENT_AT)."""
    if "counted" in d:
        return bool(d["counted"])
    return (
        d.get("type") in {t.value for t in GRADED_TYPES}
        and d.get("role", "defect") == "defect"
        and (d.get("confidence") or 0.0) >= PRESENT_AT
    )


class DefectOut(BaseModel):
    type: str
    zone: str
    confidence: float
    counted: bool = Field(
        description="whether it counted for the grade: a graded type, role 'defect', confidence at least "
        "0.5, on a device that could be graded; the others are candidates, listed but not counted"
    )
    role: Literal["defect", "evidence"] = Field(
        description="'evidence': a fragment of a zone-level defect listed beside it, never counted itself"
    )
    box: tuple[float, float, float, float] = Field(description="x0, y0, x1, y1 in the photo's pixels")
    polygon: list[tuple[float, float]]
    units: Literal["mm", "relative"]
    length: float
    width: float
    area: float
    length_mm: float | None = Field(description="when the device's size is known")
    length_rel: float | None = Field(description="fraction of the device's length, when its size is unknown")

    @model_validator(mode="before")
    @classmethod
    def _stored_before_counted(cls, data):
        # Gradings stored before defects said whether they counted: derive it from what was stored.
        if isinstance(data, dict) and "counted" not in data:
            data = {"role": "defect", **data, "counted": is_counted(data)}
        return data


class PhotoOut(BaseModel):
    index: int
    filename: str | None
    content_type: str | None
    sha256: str
    bytes: int
    width: int
    height: int
    view: str
    view_source: Literal["caller", "model"]
    view_confidence: float
    quality: str
    quality_confidence: float
    usable: bool
    message: str = Field(description="actionable verdict, e.g. 'too blurry, retake ...'")
    device_found: bool
    defects: list[DefectOut]
    photo_url: str | None = None
    overlay_url: str | None = None


class StandardGradeOut(BaseModel):
    standard: str
    version: str
    grade: str = Field(
        description="one of the standard's grades, or 'ungradable' when no photo of the device was usable"
    )
    listable: bool
    probabilities: dict[str, float] = Field(
        description="per grade of the standard; all 0 when the grade is 'ungradable'"
    )
    needs_review: bool
    review_threshold: float
    reasons: dict[str, list[str]] = Field(
        description="for each better grade: why it was barred; under 'ungradable', why there is no grade"
    )
    advice: list[str]
    method: str
    scale_known: bool
    missing_views: list[str] = Field(
        default_factory=list,
        description="views the device needs (front, back) that no usable photo showed: not graded",
    )
    source: Literal["model", "review"] = Field(
        default="model",
        description="'review': a reviewer overruled the model, so `grade` and `listable` are the reviewer's "
        "while probabilities, reasons and advice stay the model's (the model's answer is under `original`)",
    )


class ImpactOut(BaseModel):
    """What selling this device refurbished instead of a new one avoids (issue 22; docs/impact.md)."""

    listed: bool = Field(
        description="whether the device counts as a listing: every standard graded it listable"
    )
    avoided_kg_co2e: float = Field(description="kg CO2e avoided as a listing; 0 when not listed")
    ewaste_kg: float = Field(
        description="kg of device kept in use instead of becoming waste; 0 when not listed"
    )
    if_listed_kg_co2e: float = Field(description="what a listing would avoid, whatever the grade")
    if_listed_ewaste_kg: float
    estimated: bool = Field(description="the kind's average footprint or mass was used (no published figure)")
    basis: str = Field(description="the device model whose figures were used, or e.g. 'average phone'")
    new_device_kg_co2e: float = Field(description="the new device's life-cycle footprint")
    production_share: float = Field(description="the share of that footprint from production")
    refurbishment_kg_co2e: float
    method: str
    method_version: str = Field(
        description="the footprints' and method's version (model/data/footprints.yaml)"
    )
    source: str = Field(description="where the footprint comes from")
    sources: dict[str, str] = Field(description="footprint, mass and refurbishment sources")
    note: str = Field(description="the answer in words")


class ModelRef(BaseModel):
    name: str
    version: str
    sha256: str


class GradingOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    created_at: datetime
    tenant: str
    external_ref: str | None
    device_model: str | None
    device_kind: str
    scale: Literal["mm", "relative"]
    needs_review: bool
    review_reasons: list[str]
    grades: dict[str, StandardGradeOut]
    photos: list[PhotoOut]
    model: ModelRef
    rules_versions: dict[str, str]
    impact: ImpactOut | None = Field(
        default=None, description="avoided emissions and e-waste; absent for gradings stored before it"
    )


class GradingSummary(BaseModel):
    id: str
    created_at: datetime
    tenant: str
    external_ref: str | None
    device_model: str | None
    needs_review: bool
    grades: dict[str, str]
    n_photos: int
    url: str


def grading_summary(row: Grading) -> GradingSummary:
    return GradingSummary(
        id=row.id,
        created_at=row.body["created_at"],
        tenant=row.tenant,
        external_ref=row.external_ref,
        device_model=row.device_model,
        needs_review=row.needs_review,
        grades={g.standard: g.grade for g in row.grades},
        n_photos=len(row.photos),
        url=f"/v1/gradings/{row.id}",
    )


class GradingPage(BaseModel):
    items: list[GradingSummary]
    total: int
    limit: int
    offset: int


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: str
    sha256: str
    path: str
    input_size: int
    architecture: str
    created: datetime
    metrics: dict[str, float]
    active: bool


class ModelsOut(BaseModel):
    active: ModelInfo
    available: list[str] = Field(description="model files in the models folder that an admin may activate")


class ActivateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="a .onnx file in the models folder (name or path)", max_length=500)


class HealthOut(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["refurbisher", "auditor", "admin"]
    tenant: str | None = Field(default=None, max_length=100)
    name: str | None = Field(default=None, max_length=200)


class KeyOut(BaseModel):
    id: str
    role: str
    tenant: str | None
    name: str | None
    created_at: datetime
    token: str | None = Field(default=None, description="the bearer token; shown once, at creation")


def defect_out(inst: DefectInstance, gradable: bool = True) -> dict:
    """A defect as the API lists it; `gradable` False (the device is ungradable): nothing counted."""
    m = inst.measurement
    return DefectOut(
        type=inst.type.value,
        zone=inst.zone.value,
        confidence=round(inst.confidence, 4),
        counted=gradable and counted(inst),
        role=inst.role,
        box=tuple(round(v, 1) for v in inst.box),
        polygon=[(round(x, 1), round(y, 1)) for x, y in inst.polygon],
        units=m.units,
        length=m.length,
        width=m.width,
        area=m.area,
        length_mm=m.length if m.units == "mm" else None,
        length_rel=m.length if m.units == "relative" else None,
    ).model_dump(mode="json")


def grading_body(
    g: DeviceGrading,
    *,
    grading_id: str,
    created_at: datetime,
    tenant: str,
    external_ref: str | None,
    photo_meta: list[dict],
) -> dict:
    """The stored JSON body of a new grading. photo_meta: per photo filename, content_type, sha256, bytes."""
    from model.impact import device_impact, listing_impact  # here: clients import this module too

    photos = []
    gradable = g.gradable
    for p, meta in zip(g.photos, photo_meta, strict=True):
        photos.append(
            {
                "index": p.index,
                **meta,
                "width": p.width,
                "height": p.height,
                "view": p.view.value,
                "view_source": p.view_source,
                "view_confidence": round(p.view_confidence, 4),
                "quality": p.quality.value,
                "quality_confidence": round(p.quality_confidence, 4),
                "usable": p.usable,
                "message": p.message,
                "device_found": p.device_found,
                "defects": [defect_out(i, gradable) for i in p.instances],
            }
        )
    grades = {
        name: {
            "standard": r.standard,
            "version": r.standard_version,
            "grade": r.grade,
            "listable": r.listable,
            "probabilities": {k: round(v, 4) for k, v in r.probabilities.items()},
            "needs_review": r.needs_review,
            "review_threshold": r.review_threshold,
            "reasons": r.barred,
            "advice": r.advice,
            "method": r.method,
            "scale_known": r.scale_known,
            "missing_views": r.missing_views,
        }
        for name, r in g.grades.items()
    }
    body = {
        "id": grading_id,
        "created_at": created_at.isoformat(),
        "tenant": tenant,
        "external_ref": external_ref,
        "device_model": g.device.model_name,
        "device_kind": g.device.kind.value,
        "scale": g.scale_units,
        "needs_review": g.needs_review,
        "review_reasons": g.review_reasons,
        "grades": grades,
        "photos": photos,
        "model": {"name": g.model_name, "version": g.model_version, "sha256": g.model_sha256},
        "rules_versions": {name: r.standard_version for name, r in g.grades.items()},
        "impact": listing_impact(
            device_impact(g.device.model_name, g.device.kind),
            {name: (r.grade, r.listable) for name, r in g.grades.items()},
        ),
    }
    return GradingOut.model_validate(body).model_dump(mode="json")
