"""/v1 API of issue 6: disputes (`POST /v1/gradings/{id}/disputes`) and the admin's review export.

A dispute may come from the refurbisher who owns the grading (another tenant's grading is 404, as for
every read) or from an auditor/admin; it carries a reason and optionally extra photos (stored in the blob
store, referenced from the event) and puts the grading in the review queue until a reviewer confirms
or overrules it. The export answers a zip of `reviews export`'s folder.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, File, Form, Query, UploadFile
from fastapi.responses import FileResponse

from serving import examples
from serving.apidocs import AUTH, errors, example
from serving.deps import AdminDep, GradingId, ReaderDep, StateDep
from serving.errors import ApiError
from serving.retention import is_erased
from serving.review import events
from serving.review.export import export_reviews
from serving.review.schemas import DisputeOut, dispute_out
from serving.service import Upload, check_photo
from serving.store import get_row
from serving.times import utc_param

router = APIRouter(tags=["review"])

MAX_DISPUTE_PHOTOS = 6


def _check_photo(k: int, upload: Upload, max_bytes: int) -> None:
    """A dispute's extra photo passes the gradings' upload check and must decode: no model reads it."""
    check_photo(k, upload, max_bytes)
    from model.preprocess import decode

    try:
        decode(upload.data, target=64)
    except Exception as exc:  # every decoder failure means the same to the caller
        raise ApiError(422, "not_an_image", f"photo {k + 1}: not a readable photo") from exc


@router.post(
    "/v1/gradings/{grading_id}/disputes",
    status_code=201,
    response_model=DisputeOut,
    responses={
        **example(examples.DISPUTE, 201, description="The dispute, open until a reviewer decides"),
        **errors(
            *AUTH,
            "grading_not_found",
            "invalid_request",
            "too_many_photos",
            "empty_file",
            "not_an_image",
            "unsupported_media_type",
            "file_too_large",
            "payload_too_large",
            "request_timeout",
            "photos_erased",
        ),
    },
    summary="Dispute a grading: it goes to the quality team's review queue",
    description="By the refurbisher who owns the grading (another tenant's is 404) or an auditor or "
    "admin: a reason and up to 6 extra photos. The grading waits in the Disputed queue until a reviewer "
    "confirms or overrules it; `GET /v1/gradings/{id}` then answers the resolution under `review`.",
)
def create_dispute(
    state: StateDep,
    principal: ReaderDep,
    grading_id: GradingId,
    reason: Annotated[str, Form(min_length=3, max_length=2000, description="why the grade is wrong")],
    photos: Annotated[
        list[UploadFile] | None, File(description=f"up to {MAX_DISPUTE_PHOTOS} extra photos (optional)")
    ] = None,
) -> DisputeOut:
    if not reason.strip():
        raise ApiError(422, "invalid_request", "reason: give a reason")
    photos = [p for p in photos or [] if p.filename or p.size]
    if len(photos) > MAX_DISPUTE_PHOTOS:
        raise ApiError(422, "too_many_photos", f"at most {MAX_DISPUTE_PHOTOS} extra photos per dispute")
    with state.sessions() as s:
        row = get_row(s, principal, grading_id)  # 404 for another tenant's grading
        if photos and is_erased(s, row.id):  # they would be erased already: retention (issue 20)
            raise ApiError(
                409, "photos_erased", f"the photos of grading {row.id} were erased: dispute it without photos"
            )
        uploads = [Upload(f.file.read(), f.filename, f.content_type) for f in photos]
        for k, u in enumerate(uploads):
            _check_photo(k, u, state.settings.max_photo_bytes)
        stored = [
            {
                "sha256": state.blobs.put(u.data, u.sha256),
                "filename": (u.filename or "")[:255] or None,
                "content_type": u.content_type,
                "bytes": len(u.data),
            }
            for u in uploads
        ]
        event = events.dispute(s, row, principal.key_id, principal.role.value, reason, stored)
        d = next(d for d in events.load_state(s, row).disputes if d.event_id == event.id)
    return dispute_out(grading_id, d)


@router.get(
    "/v1/reviews/export",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"application/zip": {}},
            "description": "A zip: manifest.jsonl (train and val) and the photos it names; headers "
            "X-Export-Gradings and X-Export-Photos count them",
        },
        **errors(*AUTH, "forbidden", "invalid_request"),
    },
    summary="Reviewed gradings as a training manifest plus photos (zip; admins)",
)
def export(
    state: StateDep,
    _admin: AdminDep,
    background: BackgroundTasks,
    since: Annotated[datetime, Query(description="reviews at or after this time (UTC if no zone)")],
    until: Annotated[datetime | None, Query(description="reviews before this time")] = None,
    val_fraction: Annotated[float, Query(ge=0, le=1, description="share of gradings put in val")] = 0.1,
) -> FileResponse:
    work = Path(tempfile.mkdtemp(prefix="refurbgrade-export-"))
    background.add_task(shutil.rmtree, work, True)
    try:
        summary = export_reviews(
            state.sessions,
            state.blobs,
            work / "export",
            utc_param(since, "since"),
            utc_param(until, "until"),
            val_fraction,
        )
        archive = work / "reviews.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
            for path in sorted((work / "export").rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(work / "export").as_posix())
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return FileResponse(
        archive,
        media_type="application/zip",
        filename=f"reviews-{stamp}.zip",
        headers={"X-Export-Gradings": str(summary.gradings), "X-Export-Photos": str(summary.photos)},
    )
