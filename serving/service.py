"""The grading service: what POST/GET /v1/gradings do, apart from HTTP.

Creating a grading: check the uploads, honour the Idempotency-Key (a retry returns the first result
and never grades twice; the same key with different photos or options is a 409), resolve the options,
admit the request (a bounded number in flight), grade the device through the micro-batcher while its
photos are written (fsynced), and store the record (store.py, committed) only once the photos are
durable; then answer. Reads go through store.py's tenant-scoped queries.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from serving import retention, store, tracing
from serving.auth import Principal
from serving.batching import BatcherStoppedError, MicroBatcher, QueueFullError
from serving.blobs import BlobStore
from serving.db import Grading, GradingPhoto
from serving.errors import ApiError
from serving.limits import PixelBudget, PixelBudgetFull
from serving.metrics import Metrics
from serving.overlays import render_overlay
from serving.pipeline import (
    PhotoError,
    RequestError,
    grade_device,
    resolve_device,
    resolve_standards,
    resolve_views,
)
from serving.predictor import ModelSlot
from serving.schemas import grading_body
from serving.settings import Settings

if TYPE_CHECKING:
    from serving.pipeline import DeviceGrading

ACCEPTED_TYPES = frozenset(
    {
        "image/jpeg",
        "image/jpg",
        "image/pjpeg",
        "image/png",
        "image/webp",
        "image/heic",
        "image/heif",
        "image/heic-sequence",
        "image/heif-sequence",
        "image/avif",
        "image/bmp",
        "image/tiff",
        "application/octet-stream",  # curl and many clients send this when they do not know
        "",
    }
)


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None
    content_type: str | None

    @cached_property  # hashed once: it names the request (Idempotency-Key) and the stored blob
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def check_photo(k: int, upload: Upload, max_bytes: int) -> None:
    """Refuse an upload that is not a photo file we take (gradings and disputes alike); decoding it is
    the caller's next step. `k` is the photo's index (from 0); messages count from 1, as people do."""
    ctype = (upload.content_type or "").split(";")[0].strip().lower()
    if ctype not in ACCEPTED_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"photo {k + 1}: content type {ctype!r} is not a photo (use JPEG, PNG, WebP or HEIC)",
        )
    if len(upload.data) > max_bytes:
        raise ApiError(413, "file_too_large", f"photo {k + 1}: {len(upload.data)} bytes; at most {max_bytes}")
    if not upload.data:
        raise ApiError(422, "empty_file", f"photo {k + 1}: the file is empty")


@dataclass(frozen=True)
class GradingRequest:
    device_model: str | None = None
    device_kind: str | None = None
    external_ref: str | None = None
    standard: str | None = None
    views: str | None = None


def with_urls(body: dict, erased: dict | None = None) -> dict:
    """The body with its photo and overlay URLs; once its photos are erased (`erased`: when and why,
    serving/retention.py) the URLs are null and `photos_erased` says so."""
    gid = body["id"]
    for p in body["photos"]:
        p["photo_url"] = None if erased else f"/v1/gradings/{gid}/photos/{p['index']}"
        p["overlay_url"] = None if erased else f"/v1/gradings/{gid}/overlays/{p['index']}"
    body["photos_erased"] = erased
    return body


def photo_erased(grading_id: str, erased: dict) -> ApiError:
    """410 for a photo or overlay of a grading whose photos were erased."""
    why = (
        "at the refurbisher's request" if erased["reason"] == retention.REQUEST else "by the retention policy"
    )
    return ApiError(
        410,
        "photo_erased",
        f"the photos of grading {grading_id} were erased {why} on {erased['erased_at']:%Y-%m-%d}; "
        "its grades and photo hashes remain",
    )


class GradingService:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker,
        blobs: BlobStore,
        slot: ModelSlot,
        batcher: MicroBatcher,
        metrics: Metrics,
    ):
        self.settings = settings
        self.sessions = sessions
        self.blobs = blobs
        self.slot = slot
        self.batcher = batcher
        self.metrics = metrics
        self._idem_locks = [threading.Lock() for _ in range(64)]
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        # Photo writes (fsync) run here, overlapping the model run of the same request.
        self._io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="refurbgrade-blobs")
        self._cpu = threading.BoundedSemaphore(settings.cpu_workers or os.cpu_count() or 2)
        self.pixels = PixelBudget(settings.max_decoding_pixels)

    def close(self) -> None:
        self._io.shutdown(wait=True)

    @property
    def inflight(self) -> int:
        """Gradings admitted and not yet graded: they may add photos to the next batch soon."""
        return self._inflight

    # -- creation -------------------------------------------------------------------------------

    def create(
        self, principal: Principal, uploads: list[Upload], req: GradingRequest, idempotency_key: str | None
    ) -> tuple[dict, bool]:
        """Grade and store; returns (body, replayed). Raises ApiError for anything the caller must fix."""
        self._check_uploads(uploads)
        tenant = principal.tenant or ""
        request_hash = hashlib.sha256(
            json.dumps([[u.sha256 for u in uploads], req.__dict__], sort_keys=True, default=str).encode()
        ).hexdigest()
        if idempotency_key is None:
            return self._grade_and_store(principal, uploads, req, None, request_hash), False
        if not 1 <= len(idempotency_key) <= 200:
            raise ApiError(422, "invalid_idempotency_key", "Idempotency-Key must be 1 to 200 characters")
        lock = self._idem_locks[hash((tenant, idempotency_key)) % len(self._idem_locks)]
        with lock:  # a concurrent retry in this process waits for the first attempt instead of grading
            existing = self._replay(tenant, idempotency_key, request_hash)
            if existing is not None:
                return existing, True
            try:
                body = self._grade_and_store(principal, uploads, req, idempotency_key, request_hash)
            except IntegrityError:  # another process stored it first
                existing = self._replay(tenant, idempotency_key, request_hash)
                if existing is None:
                    raise
                return existing, True
            return body, False

    def _check_uploads(self, uploads: list[Upload]) -> None:
        s = self.settings
        if not uploads:
            raise ApiError(422, "no_photos", "send 1 to 12 photos in the multipart field 'photos'")
        if len(uploads) > s.max_photos:
            raise ApiError(
                422, "too_many_photos", f"{len(uploads)} photos sent; at most {s.max_photos} per grading"
            )
        for k, u in enumerate(uploads):
            check_photo(k, u, s.max_photo_bytes)

    def _replay(self, tenant: str, key: str, request_hash: str) -> dict | None:
        """The first answer to this Idempotency-Key; 409 when the key came with another request."""
        row = store.find_idempotent(self.sessions, tenant, key)
        if row is None:
            return None
        if row.request_hash != request_hash:
            raise ApiError(
                409,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request (other photos or options)",
            )
        with self.sessions() as s:
            erased = retention.erased_info(retention.erasure_of(s, row.id))
        return with_urls(copy.deepcopy(row.body), erased)

    def _grade_and_store(
        self,
        principal: Principal,
        uploads: list[Upload],
        req: GradingRequest,
        idempotency_key: str | None,
        request_hash: str,
    ) -> dict:
        grading_id = str(uuid.uuid4())
        attrs = {"grading.id": grading_id, "tenant": principal.tenant, "photo.count": len(uploads)}
        with tracing.span("grading", attrs) as root:
            body = self._grade_and_store_traced(
                principal, uploads, req, idempotency_key, request_hash, grading_id
            )
            root.set_attribute("model.version", body["model"]["version"])
            root.set_attribute("needs_review", bool(body["needs_review"]))
        return body

    def _grade_and_store_traced(
        self,
        principal: Principal,
        uploads: list[Upload],
        req: GradingRequest,
        idempotency_key: str | None,
        request_hash: str,
        grading_id: str,
    ) -> dict:
        graded, writes = self._grade(uploads, req)
        created = datetime.now(UTC)
        body = grading_body(
            graded,
            grading_id=grading_id,
            created_at=created,
            tenant=principal.tenant or "",
            external_ref=req.external_ref,
            photo_meta=[
                {
                    "filename": u.filename,
                    "content_type": u.content_type,
                    "sha256": u.sha256,
                    "bytes": len(u.data),
                }
                for u in uploads
            ],
        )
        attrs = {
            "grading.id": grading_id,
            "photo.count": len(uploads),
            "photo.bytes": sum(len(u.data) for u in uploads),
        }
        with tracing.span("storage", attrs):
            for w in writes:  # the photos are durably stored before the record that points at them
                w.result()
            store.add_grading(
                self.sessions,
                body,
                created_at=created,
                created_by=principal.key_id,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                ensure_blobs=lambda: [
                    self.blobs.put(u.data, u.sha256) for u in uploads if not self.blobs.exists(u.sha256)
                ],
            )
        for name, r in graded.grades.items():
            self.metrics.grades.labels(name, r.grade, str(graded.needs_review).lower()).inc()
        return with_urls(body)

    def _grade(self, uploads: list[Upload], req: GradingRequest) -> tuple[DeviceGrading, list[Future]]:
        """Run the model on the photos; returns the graded device and the pending photo writes."""
        try:
            device = resolve_device(req.device_model, req.device_kind)
            standards = resolve_standards(req.standard)
            views = resolve_views(req.views, len(uploads))
        except RequestError as exc:
            raise _request_error(exc, req) from exc
        writes: list[Future] = []

        def store_photos() -> None:  # called once the photos decoded: garbage never reaches the store
            writes.extend(self._io.submit(self.blobs.put, u.data, u.sha256) for u in uploads)

        with self._admitted():
            try:
                graded = grade_device(
                    self.batcher.run,
                    self.slot.current,
                    [u.data for u in uploads],
                    device=device,
                    standards=standards,
                    views=views,
                    filenames=[u.filename for u in uploads],
                    review_threshold=self.settings.review_threshold,
                    on_decoded=store_photos,
                    cpu_slot=self._cpu,
                    hold_pixels=self.pixels.hold,
                    spare_cores=lambda: self.inflight <= 1,
                )
            except PhotoError as exc:
                raise ApiError(422, exc.code, str(exc)) from exc
            except PixelBudgetFull as exc:
                self.metrics.rejected.labels("pixels").inc()
                raise ApiError(
                    503,
                    "overloaded",
                    f"too many large photos are being decoded ({exc}); retry shortly",
                    {"Retry-After": str(self.settings.retry_after_s)},
                ) from exc
            except (QueueFullError, BatcherStoppedError) as exc:
                self.metrics.rejected.labels("queue_full").inc()
                raise ApiError(
                    503,
                    "queue_full" if isinstance(exc, QueueFullError) else "shutting_down",
                    f"the model is busy ({exc}); retry shortly",
                    {"Retry-After": str(self.settings.retry_after_s)},
                ) from exc
        return graded, writes

    @contextmanager
    def _admitted(self) -> Iterator[None]:
        """Hold one of `max_inflight_requests` places while grading; 503 when none is free."""
        with self._inflight_lock:
            if self._inflight >= self.settings.max_inflight_requests:
                self.metrics.rejected.labels("inflight").inc()
                raise ApiError(
                    503,
                    "overloaded",
                    "too many gradings in progress; retry shortly",
                    {"Retry-After": str(self.settings.retry_after_s)},
                )
            self._inflight += 1
            self.metrics.inflight.set(self._inflight)
        try:
            yield
        finally:
            with self._inflight_lock:
                self._inflight -= 1
                self.metrics.inflight.set(self._inflight)

    # -- reading --------------------------------------------------------------------------------

    def get(self, principal: Principal, grading_id: str) -> dict:
        with self.sessions() as s:
            row = store.get_row(s, principal, grading_id)
            erased = retention.erased_info(retention.erasure_of(s, row.id))
            return with_urls(copy.deepcopy(row.body), erased)

    def list(
        self, principal: Principal, filters: store.GradingFilters, *, limit: int, offset: int
    ) -> tuple[list[Grading], int]:
        return store.list_gradings(self.sessions, principal, filters, limit, offset)

    def _unerased_photo(self, principal: Principal, grading_id: str, n: int) -> tuple[Grading, GradingPhoto]:
        row, photo = store.get_photo(self.sessions, principal, grading_id, n)
        with self.sessions() as s:
            erased = retention.erased_info(retention.erasure_of(s, row.id))
        if erased is not None:
            raise photo_erased(grading_id, erased)
        return row, photo

    def photo(self, principal: Principal, grading_id: str, n: int) -> GradingPhoto:
        return self._unerased_photo(principal, grading_id, n)[1]

    def overlay(self, principal: Principal, grading_id: str, n: int) -> bytes:
        """A photo with its defects drawn (PNG): rendered on the first request, then read from the store."""
        row, photo = self._unerased_photo(principal, grading_id, n)
        if photo.overlay_sha256 and self.blobs.exists(photo.overlay_sha256):
            return self.blobs.get(photo.overlay_sha256)
        defects = row.body["photos"][n]["defects"]
        try:
            original = self.blobs.get(photo.sha256)
        except FileNotFoundError:  # erased since the check above
            with self.sessions() as s:
                erased = retention.erased_info(retention.erasure_of(s, row.id))
            if erased is None:
                raise
            raise photo_erased(grading_id, erased) from None
        png = render_overlay(original, defects, self.settings.overlay_max_side)
        store.set_overlay(self.sessions, self.blobs, grading_id, n, png)
        return png

    def erase(self, principal: Principal, grading_id: str) -> dict:
        """Erase a grading's photos at its refurbisher's (or an admin's) request: its photos, overlays and
        dispute photos go, unless another grading still uses the same bytes; the record stays. Erasing
        again answers the first erasure."""
        with self.sessions() as s:
            row = store.get_row(s, principal, grading_id)  # 404 for another tenant's grading
            n_photos = len(row.photos)
        retention.erase(self.sessions, self.blobs, [row.id], actor=principal.key_id, reason=retention.REQUEST)
        with self.sessions() as s:
            erased = retention.erased_info(retention.erasure_of(s, row.id))
        return {"grading_id": row.id, "photos": n_photos, **erased}


def _request_error(exc: RequestError, req: GradingRequest) -> ApiError:
    """A 422 for a form field; an unknown device model or standard lists the closest known names."""
    import difflib

    from model.rules import list_standards
    from serving.reference import closest_devices

    message, suggestions = str(exc), None
    if exc.code == "unknown_device_model" and req.device_model:
        suggestions = closest_devices(req.device_model)
    elif exc.code == "unknown_standard" and req.standard:
        known = list_standards()
        names = [s.strip().lower() for s in req.standard.split(",") if s.strip()]
        suggestions = [
            m for n in names if n not in known for m in difflib.get_close_matches(n, known, n=1, cutoff=0.5)
        ]
    if suggestions and "did you mean" not in message:
        message += f"; did you mean {', '.join(suggestions)}?"
    return ApiError(422, exc.code, message, suggestions=suggestions)
