"""/v1/gradings: grade a device from photos, read gradings back, their photos and overlays.

HTTP only: parameters in, `GradingService` (service.py) does the work, response bodies out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Query, Response, UploadFile
from fastapi.responses import FileResponse

from serving import examples
from serving.apidocs import AUTH, errors, example
from serving.current import GradingCurrentOut, standing
from serving.deps import (
    EraserDep,
    GradingId,
    PhotoIndex,
    ReaderDep,
    RefurbisherDep,
    StateDep,
    stored_photo,
)
from serving.errors import refuse_nul
from serving.logs import annotate
from serving.review.schemas import review_of
from serving.schemas import ErasureOut, GradingOut, GradingPage, grading_summary
from serving.service import GradingRequest, Upload
from serving.store import GradingFilters
from serving.times import utc_param

router = APIRouter(prefix="/v1/gradings", tags=["gradings"])


@router.post(
    "",
    status_code=201,
    response_model=GradingOut,
    responses={
        **example(examples.GRADING, 201, description="The grading: grades per standard, defects per photo"),
        **errors(
            *AUTH,
            "forbidden",
            "invalid_request",
            "no_photos",
            "too_many_photos",
            "empty_file",
            "not_an_image",
            "corrupt_image",
            "too_many_pixels",
            "unknown_device_model",
            "invalid_device_kind",
            "unknown_standard",
            "invalid_views",
            "invalid_idempotency_key",
            "unsupported_media_type",
            "file_too_large",
            "payload_too_large",
            "request_timeout",
            "idempotency_key_reused",
            "overloaded",
            "queue_full",
            "shutting_down",
        ),
    },
    summary="Grade one device from 1-12 photos",
    description="Send the photos of one device as multipart/form-data. The answer holds, per standard, "
    "the grade, its probabilities, the reasons each better grade was barred and whether a person should "
    "look (`needs_review`); per photo, its verdict and every defect found. Photos are counted from 1 in "
    "messages ('photo 1: too blurry'); `photos[].index` and the photo URLs count from 0. A retry with the "
    "same `Idempotency-Key` answers the first grading (header `Idempotent-Replayed: true`).",
)
def create_grading(
    state: StateDep,
    principal: RefurbisherDep,
    response: Response,
    photos: Annotated[
        list[UploadFile], File(description="1 to 12 photos of one device (JPEG, PNG, WebP, HEIC)")
    ],
    device_model: Annotated[
        str | None, Form(max_length=100, description="e.g. 'iPhone 13': gives sizes in mm")
    ] = None,
    device_kind: Annotated[str | None, Form(max_length=20, description="phone, tablet or laptop")] = None,
    external_ref: Annotated[
        str | None, Form(max_length=200, description="your reference (SKU, IMEI, ...)")
    ] = None,
    standard: Annotated[
        str | None, Form(max_length=200, description="comma-separated standards (default: all)")
    ] = None,
    views: Annotated[
        str | None, Form(max_length=200, description="comma-separated view per photo (front, back, ...)")
    ] = None,
    idempotency_key: Annotated[
        str | None, Header(max_length=200, description="a retry with the same key returns the first result")
    ] = None,
) -> dict:
    refuse_nul(  # no database stores a NUL in text (PostgreSQL refuses it): 422 before any work
        {
            "device_model": device_model,
            "device_kind": device_kind,
            "external_ref": external_ref,
            "standard": standard,
            "views": views,
            "Idempotency-Key": idempotency_key,
            **{f"photo {k} filename": f.filename for k, f in enumerate(photos)},
        }
    )
    uploads = [Upload(f.file.read(), f.filename, f.content_type) for f in photos]
    req = GradingRequest(device_model, device_kind, external_ref, standard, views)
    body, replayed = state.service.create(principal, uploads, req, idempotency_key)
    annotate(grading_id=body["id"], model_version=body["model"]["version"], replayed=replayed or None)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/gradings/{body['id']}"
    return body


@router.get(
    "",
    response_model=GradingPage,
    responses={**example(examples.GRADING_PAGE), **errors(*AUTH, "invalid_request")},
    summary="List gradings (newest first)",
    description="A refurbisher's key lists its own tenant's gradings; an auditor's or admin's every "
    "tenant's (narrow with `tenant`). The grades listed are the model's; a grading's own page "
    "(`url`) answers the grade that stands after review.",
)
def list_gradings(
    state: StateDep,
    principal: ReaderDep,
    limit: Annotated[int, Query(ge=1, le=100, description="gradings per page")] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="gradings to skip")] = 0,
    tenant: Annotated[str | None, Query(max_length=100, description="auditors and admins only")] = None,
    needs_review: Annotated[
        bool | None, Query(description="only flagged (true) or unflagged (false)")
    ] = None,
    external_ref: Annotated[str | None, Query(max_length=200, description="your reference, exactly")] = None,
    device_model: Annotated[str | None, Query(max_length=100, description="e.g. iPhone 13")] = None,
    standard: Annotated[str | None, Query(max_length=50, description="with `grade`: e.g. backmarket")] = None,
    grade: Annotated[
        str | None, Query(max_length=50, description="e.g. Good, or ungradable; with `standard`, under it")
    ] = None,
    created_after: Annotated[datetime | None, Query(description="graded at or after (ISO 8601)")] = None,
    created_before: Annotated[datetime | None, Query(description="graded before (ISO 8601)")] = None,
) -> GradingPage:
    filters = GradingFilters(
        tenant=tenant,
        needs_review=needs_review,
        external_ref=external_ref,
        device_model=device_model,
        standard=standard,
        grade=grade,
        created_after=utc_param(created_after, "created_after"),
        created_before=utc_param(created_before, "created_before"),
    )
    rows, total = state.service.list(principal, filters, limit=limit, offset=offset)
    return GradingPage(items=[grading_summary(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get(
    "/{grading_id}",
    response_model=GradingCurrentOut,
    responses={
        **example(examples.GRADING_REVIEWED, description="After a reviewer overruled Back Market"),
        **errors(*AUTH, "grading_not_found", "invalid_request"),
    },
    summary="One grading: the grade that stands now, the model's original answer and the review state",
    description="`grades[standard].grade` is the grade to list the device under: the reviewer's where a "
    "reviewer overruled it (`source: review`), the model's otherwise. `original` holds the model's "
    "grades as first answered, `review` the review state and disputes. Another tenant's grading is 404.",
)
def get_grading(state: StateDep, principal: ReaderDep, grading_id: GradingId) -> dict:
    body = state.service.get(principal, grading_id)
    return standing(body, review_of(state.sessions, body))


@router.get(
    "/{grading_id}/photos/{n}",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/*": {}}, "description": "The photo's bytes, in its own type"},
        **errors(*AUTH, "grading_not_found", "photo_not_found", "photo_erased", "invalid_request"),
    },
    summary="A grading's photo, as uploaded",
    description="`n` is the photo's `index`: 0 for the first photo (which messages call photo 1). Once "
    "the grading's photos are erased: 410 `photo_erased`.",
)
def get_photo(state: StateDep, principal: ReaderDep, grading_id: GradingId, n: PhotoIndex) -> FileResponse:
    photo = state.service.photo(principal, grading_id, n)
    return stored_photo(state.blobs, photo.sha256, photo.content_type)


@router.get(
    "/{grading_id}/overlays/{n}",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "A PNG: counted defects bold, candidates faint"},
        **errors(*AUTH, "grading_not_found", "photo_not_found", "photo_erased", "invalid_request"),
    },
    summary="A grading's photo with its defects outlined and labelled (PNG)",
    description="`n` is the photo's `index`: 0 for the first photo (which messages call photo 1). Each "
    "outline carries its number on the photo, counted from 1. Once the grading's photos are erased: 410 "
    "`photo_erased`.",
)
def get_overlay(state: StateDep, principal: ReaderDep, grading_id: GradingId, n: PhotoIndex) -> Response:
    png = state.service.overlay(principal, grading_id, n)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})


@router.post(
    "/{grading_id}/erase",
    response_model=ErasureOut,
    responses={
        **example(examples.ERASURE, description="The photos are erased; the grading stays"),
        **errors(*AUTH, "forbidden", "grading_not_found", "invalid_request"),
    },
    summary="Erase a grading's photos and overlays; its grades, defects and photo hashes stay",
    description="By the refurbisher who owns the grading (another tenant's is 404) or an admin. The "
    "photos, their overlays and any dispute photos are deleted (a photo another grading also uses stays "
    "for that grading); the grading, its hashes and its history remain, with a `photos_erased` event. "
    "Its photo and overlay URLs then answer 410 `photo_erased`. Erasing again answers the first erasure.",
)
def erase_photos(state: StateDep, principal: EraserDep, grading_id: GradingId) -> dict:
    out = state.service.erase(principal, grading_id)
    annotate(grading_id=grading_id)
    return out
