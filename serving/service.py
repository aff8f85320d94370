"""The grading service: what POST/GET /v1/gradings do, apart from HTTP.

Creating a grading: validate the uploads, honour the Idempotency-Key (a retry returns the first result
and never grades twice; the same key with different photos or options is a 409), grade the device
through the micro-batcher, store the photos (fsynced) and then the record (committed), and only then
answer. Reads apply tenant scoping: a refurbisher's query never sees another tenant's rows.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from serving.auth import Principal
from serving.batching import BatcherStoppedError, MicroBatcher, QueueFullError
from serving.blobs import BlobStore
from serving.db import Grading, GradingEvent, GradingGrade, GradingPhoto
from serving.errors import ApiError
from serving.metrics import Metrics
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

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class GradingRequest:
    device_model: str | None = None
    device_kind: str | None = None
    external_ref: str | None = None
    standard: str | None = None
    views: str | None = None


def with_urls(body: dict) -> dict:
    gid = body["id"]
    for p in body["photos"]:
        p["photo_url"] = f"/v1/gradings/{gid}/photos/{p['index']}"
        p["overlay_url"] = f"/v1/gradings/{gid}/overlays/{p['index']}"
    return body


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

    def close(self) -> None:
        self._io.shutdown(wait=True)

    @property
    def inflight(self) -> int:
        """Gradings admitted and not yet graded: they may add photos to the next batch soon."""
        return self._inflight

    # -- creation -------------------------------------------------------------------------------

    def _check_uploads(self, uploads: list[Upload]) -> None:
        s = self.settings
        if not uploads:
            raise ApiError(422, "no_photos", "send 1 to 12 photos in the multipart field 'photos'")
        if len(uploads) > s.max_photos:
            raise ApiError(
                422, "too_many_photos", f"{len(uploads)} photos sent; at most {s.max_photos} per grading"
            )
        for k, u in enumerate(uploads):
            ctype = (u.content_type or "").split(";")[0].strip().lower()
            if ctype not in ACCEPTED_TYPES:
                raise ApiError(
                    415,
                    "unsupported_media_type",
                    f"photo {k}: content type {ctype!r} is not a photo (use JPEG, PNG, WebP or HEIC)",
                )
            if len(u.data) > s.max_photo_bytes:
                raise ApiError(
                    413, "file_too_large", f"photo {k}: {len(u.data)} bytes; at most {s.max_photo_bytes}"
                )
            if not u.data:
                raise ApiError(422, "empty_file", f"photo {k}: the file is empty")

    def _admit(self) -> None:
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

    def _release(self) -> None:
        with self._inflight_lock:
            self._inflight -= 1
            self.metrics.inflight.set(self._inflight)

    def create(
        self, principal: Principal, uploads: list[Upload], req: GradingRequest, idempotency_key: str | None
    ) -> tuple[dict, bool]:
        """Grade and store; returns (body, replayed). Raises ApiError for anything the caller must fix."""
        self._check_uploads(uploads)
        tenant = principal.tenant or ""
        shas = [u.sha256 for u in uploads]
        request_hash = hashlib.sha256(
            json.dumps([shas, req.__dict__], sort_keys=True, default=str).encode()
        ).hexdigest()
        if idempotency_key is None:
            return self._grade_and_store(principal, uploads, shas, req, None, request_hash), False
        if not 1 <= len(idempotency_key) <= 200:
            raise ApiError(422, "invalid_idempotency_key", "Idempotency-Key must be 1 to 200 characters")
        lock = self._idem_locks[hash((tenant, idempotency_key)) % len(self._idem_locks)]
        with lock:  # a concurrent retry in this process waits for the first attempt instead of grading
            existing = self._find_idempotent(tenant, idempotency_key, request_hash)
            if existing is not None:
                return existing, True
            try:
                body = self._grade_and_store(principal, uploads, shas, req, idempotency_key, request_hash)
            except IntegrityError:  # another process stored it first
                existing = self._find_idempotent(tenant, idempotency_key, request_hash)
                if existing is None:
                    raise
                return existing, True
            return body, False

    def _find_idempotent(self, tenant: str, key: str, request_hash: str) -> dict | None:
        with self.sessions() as s:
            row = s.scalar(select(Grading).where(Grading.tenant == tenant, Grading.idempotency_key == key))
            if row is None:
                return None
            if row.request_hash != request_hash:
                raise ApiError(
                    409,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request (other photos or options)",
                )
            return with_urls(copy.deepcopy(row.body))

    def _grade_and_store(
        self,
        principal: Principal,
        uploads: list[Upload],
        shas: list[str],
        req: GradingRequest,
        idempotency_key: str | None,
        request_hash: str,
    ) -> dict:
        try:
            device = resolve_device(req.device_model, req.device_kind)
            standards = resolve_standards(req.standard)
            views = resolve_views(req.views, len(uploads))
        except RequestError as exc:
            raise ApiError(422, exc.code, str(exc)) from exc
        self._admit()
        writes: list[Future] = []

        def store_photos() -> None:  # called once the photos decoded: garbage never reaches the store
            writes.extend(
                self._io.submit(self.blobs.put, u.data, sha) for u, sha in zip(uploads, shas, strict=True)
            )

        try:
            model = self.slot.current
            try:
                graded = grade_device(
                    self.batcher.run,
                    model,
                    [u.data for u in uploads],
                    device=device,
                    standards=standards,
                    views=views,
                    filenames=[u.filename for u in uploads],
                    review_threshold=self.settings.review_threshold,
                    on_decoded=store_photos,
                    cpu_slot=self._cpu,
                )
            except PhotoError as exc:
                raise ApiError(422, exc.code, str(exc)) from exc
            except (QueueFullError, BatcherStoppedError) as exc:
                self.metrics.rejected.labels("queue_full").inc()
                raise ApiError(
                    503,
                    "queue_full" if isinstance(exc, QueueFullError) else "shutting_down",
                    f"the model is busy ({exc}); retry shortly",
                    {"Retry-After": str(self.settings.retry_after_s)},
                ) from exc
        finally:
            self._release()
        grading_id = str(uuid.uuid4())
        created = datetime.now(UTC)
        photo_meta = [
            {"filename": u.filename, "content_type": u.content_type, "sha256": sha, "bytes": len(u.data)}
            for u, sha in zip(uploads, shas, strict=True)
        ]
        body = grading_body(
            graded,
            grading_id=grading_id,
            created_at=created,
            tenant=principal.tenant or "",
            external_ref=req.external_ref,
            photo_meta=photo_meta,
        )
        for w in writes:  # the photos are durably stored before the record that points at them
            w.result()
        with self.sessions() as s:
            s.add(
                Grading(
                    id=grading_id,
                    tenant=principal.tenant or "",
                    created_at=created,
                    created_by=principal.key_id,
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                    external_ref=req.external_ref,
                    device_model=graded.device.model_name,
                    device_kind=graded.device.kind.value,
                    needs_review=graded.needs_review,
                    model_version=graded.model_version,
                    model_sha256=graded.model_sha256,
                    rules_versions=body["rules_versions"],
                    body=body,
                )
            )
            s.flush()  # parent row first: PostgreSQL checks foreign keys per statement
            for meta, (k, _) in zip(photo_meta, enumerate(uploads), strict=True):
                s.add(
                    GradingPhoto(
                        grading_id=grading_id,
                        idx=k,
                        sha256=meta["sha256"],
                        content_type=meta["content_type"],
                        filename=(meta["filename"] or "")[:255] or None,
                        bytes=meta["bytes"],
                    )
                )
            for name, r in graded.grades.items():
                s.add(
                    GradingGrade(
                        grading_id=grading_id, standard=name, grade=r.grade, version=r.standard_version
                    )
                )
            s.add(
                GradingEvent(
                    grading_id=grading_id,
                    created_at=created,
                    actor=principal.key_id,
                    kind="graded",
                    payload={
                        "model_version": graded.model_version,
                        "rules_versions": body["rules_versions"],
                        "grades": {n: r.grade for n, r in graded.grades.items()},
                        "needs_review": graded.needs_review,
                    },
                )
            )
            s.commit()
        for name, r in graded.grades.items():
            self.metrics.grades.labels(name, r.grade, str(graded.needs_review).lower()).inc()
        return with_urls(body)

    # -- reading --------------------------------------------------------------------------------

    @staticmethod
    def scoped(principal: Principal):
        stmt = select(Grading)
        if not principal.sees_all_tenants:
            stmt = stmt.where(Grading.tenant == (principal.tenant or ""))
        return stmt

    def get_row(self, s: Session, principal: Principal, grading_id: str) -> Grading:
        row = s.scalar(self.scoped(principal).where(Grading.id == grading_id))
        if row is None:  # another tenant's grading is as absent as a missing one
            raise ApiError(404, "grading_not_found", f"no grading {grading_id}")
        return row

    def get(self, principal: Principal, grading_id: str) -> dict:
        with self.sessions() as s:
            return with_urls(copy.deepcopy(self.get_row(s, principal, grading_id).body))

    def list(
        self,
        principal: Principal,
        *,
        limit: int,
        offset: int,
        tenant: str | None = None,
        needs_review: bool | None = None,
        external_ref: str | None = None,
        device_model: str | None = None,
        standard: str | None = None,
        grade: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> tuple[list[Grading], int]:
        stmt = self.scoped(principal)
        if tenant is not None and principal.sees_all_tenants:
            stmt = stmt.where(Grading.tenant == tenant)
        if needs_review is not None:
            stmt = stmt.where(Grading.needs_review == needs_review)
        if external_ref is not None:
            stmt = stmt.where(Grading.external_ref == external_ref)
        if device_model is not None:
            stmt = stmt.where(Grading.device_model == device_model)
        if created_after is not None:
            stmt = stmt.where(Grading.created_at >= created_after)
        if created_before is not None:
            stmt = stmt.where(Grading.created_at < created_before)
        if standard is not None or grade is not None:
            sub = select(GradingGrade.grading_id)
            if standard is not None:
                sub = sub.where(GradingGrade.standard == standard)
            if grade is not None:
                sub = sub.where(GradingGrade.grade == grade)
            stmt = stmt.where(Grading.id.in_(sub))
        with self.sessions() as s:
            total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
            rows = list(
                s.scalars(stmt.order_by(Grading.created_at.desc(), Grading.id).limit(limit).offset(offset))
            )
        return rows, total
