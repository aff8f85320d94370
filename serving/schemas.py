"""The API's response and request bodies (pydantic), and the conversion from a graded device to them.

A grading's body is stored as JSON exactly as first answered (minus URLs, which depend on where the
service runs), so GET returns what POST returned and later review events never rewrite it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.rules.engine import PRESENT_AT, counted
from model.rules.schema import GRADED_TYPES
from model.taxonomy import LINEAR_DEFECT_TYPES, DefectType, DeviceKind, PhotoQuality, View, Zone
from model.visibility import visibility_index, visible_up_to_cm

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


def is_measured(d: dict) -> bool:
    """Whether a stored defect has a size: length 0 is "not measured" (a glass judged cracked as a
    whole with no crack line traced, `model.damage.judge_zone_damage`), which is shown without one."""
    return d.get("length") != 0


_LINES = {t.value for t in LINEAR_DEFECT_TYPES}


def visibility_of(d: dict) -> dict | None:
    """A stored or new defect's `visibility` block (`VisibilityOut`; `model.visibility`): for a line
    (scratch, crack) measured in mm with a measured contrast, at Back Market's distances (body scratches
    invisible at 20 cm for Excellent, at 50 cm for Good); None otherwise (no contrast, relative units, not
    a line), and for values the model refuses."""
    contrast, width = d.get("contrast"), d.get("width")
    if contrast is None or width is None or d.get("units") != "mm" or d.get("type") not in _LINES:
        return None
    try:
        at20, at50 = (visibility_index(width, contrast, cm) for cm in (20, 50))
        farthest = visible_up_to_cm(width, contrast)
    except (TypeError, ValueError):
        return None
    return {
        "index_at_20cm": round(at20, 3),
        "index_at_50cm": round(at50, 3),
        # from the unrounded index, as model.visibility.visible and the rules decide it
        "visible_at_20cm": at20 >= 1.0,
        "visible_at_50cm": at50 >= 1.0,
        "visible_up_to_cm": round(farthest, 1),
    }


def _one_of(enum, description: str, **kw) -> Any:
    """A str field whose documented values are the enum's (the field stays a str for older clients)."""
    values = [e.value for e in enum]
    return Field(description=f"{description}: {', '.join(values)}", json_schema_extra={"enum": values}, **kw)


class VisibilityOut(BaseModel):
    """How visible a line is to a buyer, from its width (mm) and measured contrast (model.visibility)."""

    index_at_20cm: float = Field(
        description="its visibility index at 20 cm, in threshold units: below 1 a normal observer does not "
        "see it, 1 just visible (Back Market's Excellent: invisible at 20 cm)"
    )
    index_at_50cm: float = Field(
        description="its visibility index at 50 cm (Back Market's Good: invisible at 50 cm)"
    )
    visible_at_20cm: bool = Field(description="whether it is visible at 20 cm (index at least 1)")
    visible_at_50cm: bool = Field(description="whether it is visible at 50 cm (index at least 1)")
    visible_up_to_cm: float = Field(
        description="the farthest distance it is visible from, cm (0: from nowhere, its contrast is too low)"
    )


class DefectOut(BaseModel):
    type: str = _one_of(DefectType, "the kind of defect")
    zone: str = _one_of(Zone, "where on the device (body is the back panel, or a laptop's lid and base)")
    confidence: float = Field(description="how sure the model is that this defect is there, 0 to 1")
    counted: bool = Field(
        description="whether it counted for the grade: a graded type, role 'defect', confidence at least "
        "0.5, on a device that could be graded; the others are candidates, listed but not counted"
    )
    role: Literal["defect", "evidence"] = Field(
        description="'evidence': a fragment of a zone-level defect, or a scratch on glass a counted crack "
        "lies on, listed beside it, never counted itself"
    )
    box: tuple[float, float, float, float] = Field(description="x0, y0, x1, y1 in the photo's pixels")
    polygon: list[tuple[float, float]] = Field(description="the outline, (x, y) points in the photo's pixels")
    units: Literal["mm", "relative"] = Field(
        description="'mm' when the device's size is known (a catalogue `device_model`), 'relative' to the "
        "device's length otherwise"
    )
    length: float = Field(
        description="the defect's length, in `units`; a crack judged on the glass as a whole: how far its "
        "fragments spread across that glass; 0 where nothing was traced to measure (a glass judged cracked "
        "from its look alone, no crack line found): not measured, never quoted in the reasons"
    )
    width: float = Field(description="its width, in `units`")
    area: float = Field(description="its area, in `units` squared (mm²)")
    length_mm: float | None = Field(description="when the device's size is known")
    length_rel: float | None = Field(description="fraction of the device's length, when its size is unknown")
    contrast: float | None = Field(
        default=None,
        description="a line's contrast as the fine pass measured it at the photo's native resolution: the "
        "change in brightness at its centre as a fraction of the surface's brightness, 0 to 1; null where "
        "not measured (the coarse pass, blobs, gradings stored before contrasts were kept). With `width` it "
        "decides a body scratch's visibility limits (docs/visibility.md)",
    )
    visibility: VisibilityOut | None = Field(
        default=None,
        description="derived from `width` and `contrast` (docs/visibility.md): how visible the line is at "
        "20 and 50 cm; only for a scratch or crack with a measured contrast on a device whose size is known "
        "(`units` 'mm'), null otherwise",
        json_schema_extra={"readOnly": True},
    )

    @model_validator(mode="before")
    @classmethod
    def _stored_before_counted(cls, data):
        # Gradings stored before defects said whether they counted: derive it from what was stored.
        if isinstance(data, dict) and "counted" not in data:
            data = {"role": "defect", **data, "counted": is_counted(data)}
        return data

    @model_validator(mode="before")
    @classmethod
    def _derived_visibility(cls, data):
        # Derived, never sent in: computed when a defect is first listed (and for a stored one without
        # it), then stored with the grading, so GET answers what POST answered.
        if isinstance(data, dict) and "visibility" not in data:
            data = {**data, "visibility": visibility_of(data)}
        return data


class PhotoOut(BaseModel):
    index: int = Field(
        description="position in upload order, from 0 (the `{n}` of its URLs); messages call index 0 "
        "'photo 1'"
    )
    filename: str | None = Field(description="the file name sent, if any")
    content_type: str | None = Field(description="the content type sent, e.g. image/jpeg")
    sha256: str = Field(description="SHA-256 of the photo's bytes, hex")
    bytes: int = Field(description="size of the photo as uploaded")
    width: int = Field(description="width in pixels, after applying the EXIF orientation")
    height: int = Field(description="height in pixels, after applying the EXIF orientation")
    view: str = _one_of(View, "which side of the device the photo shows")
    view_source: Literal["caller", "model"] = Field(
        description="'caller': given in `views`; 'model': recognised by the model"
    )
    view_confidence: float = Field(description="the model's confidence in the view, 0 to 1 (1 when given)")
    quality: str = _one_of(PhotoQuality, "whether the photo can be graded")
    quality_confidence: float = Field(description="the model's confidence in `quality`, 0 to 1")
    usable: bool = Field(description="quality is 'usable': the photo shows the device well enough")
    message: str = Field(description="actionable verdict, e.g. 'too blurry, retake ...'")
    device_found: bool = Field(description="whether a device was found in the photo")
    defects: list[DefectOut] = Field(description="every defect found, counted or not")
    photo_url: str | None = Field(default=None, description="the photo as uploaded")
    overlay_url: str | None = Field(default=None, description="a PNG with the defects outlined and numbered")


class StandardGradeOut(BaseModel):
    standard: str = Field(description="the standard's name: backmarket, ctia or r2 (GET /v1/standards)")
    version: str = Field(description="the version of the standard's rules that graded it")
    grade: str = Field(
        description="one of the standard's grades, or 'ungradable' when no photo of the device was usable"
    )
    listable: bool = Field(description="whether a marketplace may list the device at this grade")
    probabilities: dict[str, float] = Field(
        description="per grade of the standard, how likely it is the right one (0 to 1, summing to 1); "
        "all 0 when the grade is 'ungradable'"
    )
    needs_review: bool = Field(
        description="a person should look: the grade's probability is below `review_threshold`, a view is "
        "missing, or there is no grade"
    )
    review_threshold: float = Field(description="the probability under which a grade goes to review")
    reasons: dict[str, list[str]] = Field(
        description="for each better grade: why it was barred; under 'ungradable', why there is no grade"
    )
    advice: list[str] = Field(description="what to do for a better grading, e.g. which photo to retake")
    method: str = Field(
        description="how the probabilities were computed, e.g. 'exact, calibrated on 137 validation devices'"
    )
    scale_known: bool = Field(description="sizes were measured in mm (the device model is known)")
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
    """What selling this device refurbished instead of a new one avoids (the method: docs/impact.md)."""

    listed: bool = Field(
        description="whether the device counts as a listing: every standard graded it listable"
    )
    avoided_kg_co2e: float = Field(description="kg CO2e avoided as a listing; 0 when not listed")
    ewaste_kg: float = Field(
        description="kg of device kept in use instead of becoming waste; 0 when not listed"
    )
    if_listed_kg_co2e: float = Field(description="what a listing would avoid, whatever the grade")
    if_listed_ewaste_kg: float = Field(description="the kg a listing would keep in use, whatever the grade")
    estimated: bool = Field(description="the kind's average footprint or mass was used (no published figure)")
    basis: str = Field(description="the device model whose figures were used, or e.g. 'average phone'")
    new_device_kg_co2e: float = Field(description="the new device's life-cycle footprint")
    production_share: float = Field(description="the share of that footprint from production")
    refurbishment_kg_co2e: float = Field(description="kg CO2e refurbishing the device costs")
    method: str = Field(description="the method's name")
    method_version: str = Field(
        description="the footprints' and method's version (model/data/footprints.yaml)"
    )
    source: str = Field(description="where the footprint comes from")
    sources: dict[str, str] = Field(description="footprint, mass and refurbishment sources")
    note: str = Field(description="the answer in words")


class ModelRef(BaseModel):
    name: str = Field(description="the model's name, from its model card")
    version: str = Field(description="the model's version")
    sha256: str = Field(description="SHA-256 of the model file, hex")


class PhotosErasedOut(BaseModel):
    erased_at: datetime = Field(description="when the photos were erased, UTC")
    reason: Literal["request", "retention"] = Field(
        description="'request': the refurbisher (or an admin) asked; 'retention': the retention period ran out"
    )


class ErasureOut(PhotosErasedOut):
    grading_id: str = Field(description="the grading whose photos were erased; its record stays")
    photos: int = Field(description="how many photos the grading had (their hashes stay in the grading)")


# Who named a grading's device kind (`serving.pipeline.Device.kind_source`).
KindSource = Literal["caller", "catalogue", "photos", "default"]
# Nobody did: the model read it from the photos, or could not and took a phone. Such a kind is no label
# (`serving.review.export`) and a regrade reads it from the photos again (`serving.regrade`).
KIND_NOT_NAMED: tuple[KindSource, ...] = ("photos", "default")


class GradingOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str = Field(description="the grading's id (a UUID)")
    created_at: datetime = Field(description="when it was graded, UTC")
    tenant: str = Field(description="the refurbisher it belongs to")
    external_ref: str | None = Field(description="your reference, as sent")
    device_model: str | None = Field(description="the catalogue's name of the device model, if given")
    device_kind: str = _one_of(DeviceKind, "the kind of device")
    device_kind_source: KindSource | None = Field(
        None,
        description=(
            "who said the device's kind: 'caller' (device_kind), 'catalogue' (device_model), 'photos' "
            "(neither was given: the model read it from the photos; only a laptop is told from a phone), "
            "'default' (neither, and the model could not tell: a phone). Absent on gradings stored before it"
        ),
    )
    scale: Literal["mm", "relative"] = Field(
        description="'mm' when the device's size is known, 'relative' to its length otherwise"
    )
    needs_review: bool = Field(description="the model asks a person to look (any standard's needs_review)")
    review_reasons: list[str] = Field(description="why, in words; photos counted from 1")
    grades: dict[str, StandardGradeOut] = Field(description="per standard name, its grade")
    photos: list[PhotoOut] = Field(description="the photos in upload order, each with its defects")
    model: ModelRef = Field(description="the model that graded it")
    rules_versions: dict[str, str] = Field(description="per standard, the version of its rules")
    impact: ImpactOut | None = Field(
        default=None, description="avoided emissions and e-waste; absent for gradings stored before it"
    )
    photos_erased: PhotosErasedOut | None = Field(
        default=None,
        description="set once the photos and overlays were erased (retention or an erase request): the "
        "photo and overlay URLs are then null and answer 410 photo_erased; grades, defects and photo "
        "hashes stay",
    )


class GradingSummary(BaseModel):
    id: str = Field(description="the grading's id")
    created_at: datetime = Field(description="when it was graded, UTC")
    tenant: str = Field(description="the refurbisher it belongs to")
    external_ref: str | None = Field(description="your reference, as sent")
    device_model: str | None = Field(description="the device model, if given")
    needs_review: bool = Field(description="the model asked a person to look")
    grades: dict[str, str] = Field(description="per standard, the model's grade (before any review)")
    n_photos: int = Field(description="how many photos it was graded from")
    url: str = Field(description="the grading, with the grade that stands after review")


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
    items: list[GradingSummary] = Field(description="this page's gradings, newest first")
    total: int = Field(description="gradings matching the filters, on all pages")
    limit: int = Field(description="the page size asked for")
    offset: int = Field(description="gradings skipped before this page")


class ModelInfo(ModelRef):
    """A model file as the models routes describe it: what a grading records of it, and more."""

    model_config = ConfigDict(protected_namespaces=())

    path: str = Field(description="the file's name in the models folder")
    input_size: int = Field(description="the side in pixels the model reads photos at")
    architecture: str = Field(description="the network, in words")
    created: datetime = Field(description="when the model was trained")
    metrics: dict[str, float] = Field(description="validation figures from the model card")
    active: bool = Field(description="whether it is the model grading now")


class ModelsOut(BaseModel):
    active: ModelInfo = Field(description="the model grading now")
    available: list[str] = Field(description="model files in the models folder that an admin may activate")


class ActivateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="a .onnx file in the models folder (name or path)", max_length=500)


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"] = Field(description="'ok', or 'unavailable' when a check failed")
    checks: dict[str, str] = Field(
        default_factory=dict, description="per check (model, database, batcher): 'ok (...)' or what is wrong"
    )


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["refurbisher", "auditor", "admin"] = Field(
        description="refurbisher: grades and reads its tenant's gradings; auditor: reads every tenant's "
        "and reviews; admin: also models and keys"
    )
    tenant: str | None = Field(default=None, max_length=100, description="required for a refurbisher")
    name: str | None = Field(default=None, max_length=200, description="who or what uses the key")
    expires_in_days: float | None = Field(
        default=None, gt=0, le=3650, description="days until the key stops working (default: never)"
    )


class KeyOut(BaseModel):
    id: str = Field(description="the key's id (the KEY_ID in a token rg_KEY_ID_secret)")
    role: str = Field(
        description="refurbisher, auditor or admin",
        json_schema_extra={"enum": ["refurbisher", "auditor", "admin"]},
    )
    tenant: str | None = Field(description="the refurbisher's tenant")
    name: str | None = Field(description="who or what uses the key")
    created_at: datetime = Field(description="when it was created, UTC")
    token: str | None = Field(default=None, description="the bearer token; shown once, at creation")
    expires_at: datetime | None = Field(default=None, description="when it stops working, UTC (null: never)")
    revoked_at: datetime | None = Field(default=None, description="when it was revoked, UTC")
    status: Literal["active", "revoked", "expired"] = Field(
        default="active", description="only an active key authenticates"
    )


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
        contrast=m.contrast,  # unrounded, like the sizes: the record reproduces the grade
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
        "device_kind_source": g.device.kind_source,
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
