"""Photos on the review pages: a grading's photos and a dispute's extra photos, shown in any browser.

Served as uploaded when a browser shows them as they are; anything else (HEIC from iPhones, TIFF,
BMP, very large files) as a JPEG rendition, EXIF orientation applied, so every photo displays and the
defect outlines (in EXIF-oriented pixels) stay aligned.
"""

from __future__ import annotations

from functools import lru_cache

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from serving.db import GradingEvent
from serving.deps import StateDep, stored_photo
from serving.retention import is_erased
from serving.review import events
from serving.review.pages import load_grading
from serving.review.signin import ReviewerDep

router = APIRouter(prefix="/review", include_in_schema=False)

BROWSER_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})
MAX_ORIGINAL_BYTES = 8 * 1024 * 1024
RENDITION_MAX_SIDE = 2400


@lru_cache(maxsize=32)
def _rendition(blobs, sha256: str) -> bytes:  # the disk or S3 blob store (serving/blobs.py)
    import io

    from PIL import Image

    from model.preprocess import decode

    rgb, _draft = decode(blobs.get(sha256), target=RENDITION_MAX_SIDE)
    img = Image.fromarray(rgb)
    if max(img.size) > RENDITION_MAX_SIDE:
        img.thumbnail((RENDITION_MAX_SIDE, RENDITION_MAX_SIDE), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def _displayable(state, meta: dict) -> Response:
    ctype = (meta.get("content_type") or "").split(";")[0].strip().lower()
    if ctype in BROWSER_TYPES and meta.get("bytes", 0) <= MAX_ORIGINAL_BYTES:
        return stored_photo(state.blobs, meta["sha256"], ctype)
    data = _rendition(state.blobs, meta["sha256"])
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


def _gone() -> HTTPException:
    return HTTPException(410, "photos erased")  # retention or an erase request (serving/retention.py)


@router.get("/gradings/{grading_id}/photos/{n}")
def photo(state: StateDep, _reviewer: ReviewerDep, grading_id: str, n: int) -> Response:
    with state.sessions() as s:
        row = load_grading(s, grading_id)
        meta = next((p for p in row.body["photos"] if p["index"] == n), None) if row else None
        erased = meta is not None and is_erased(s, grading_id)
    if meta is None:
        raise HTTPException(404, "no such photo")
    if erased:
        raise _gone()
    return _displayable(state, meta)


@router.get("/gradings/{grading_id}/disputes/{event_id}/photos/{k}")
def dispute_photo(
    state: StateDep, _reviewer: ReviewerDep, grading_id: str, event_id: int, k: int
) -> Response:
    with state.sessions() as s:
        ev = s.get(GradingEvent, event_id)
        ok = ev is not None and ev.grading_id == grading_id and ev.kind == events.DISPUTED
        erased = ok and is_erased(s, grading_id)
    found = (ev.payload.get("photos") or []) if ok else []
    if not 0 <= k < len(found):
        raise HTTPException(404, "no such photo")
    if erased:
        raise _gone()
    return _displayable(state, found[k])
