"""FastAPI dependencies: the app's shared state, the caller's identity and role, and shared parameters.

Handlers declare what they need with the `Annotated` aliases below (`StateDep`, `PrincipalDep`,
`AdminDep`, `GradingId`, ...), which keeps them thin and makes every route's access rule visible in its
signature.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.responses import FileResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from serving.auth import Principal, Role, authenticate
from serving.batching import MicroBatcher
from serving.blobs import BlobStore
from serving.errors import ApiError
from serving.logs import annotate
from serving.metrics import Metrics
from serving.predictor import ModelSlot
from serving.service import GradingService
from serving.settings import Settings


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker
    blobs: BlobStore
    slot: ModelSlot
    batcher: MicroBatcher
    metrics: Metrics
    service: GradingService
    swap_lock: threading.Lock = field(default_factory=threading.Lock)


def get_state(request: Request) -> AppState:
    state = getattr(request.app.state, "svc", None)
    if state is None:
        raise ApiError(503, "not_ready", "the service is starting", {"Retry-After": "1"})
    return state


StateDep = Annotated[AppState, Depends(get_state)]

_bearer = HTTPBearer(auto_error=False, description="an API key: `refurbgrade keys create --role ROLE`")


def get_principal(
    state: StateDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise ApiError(401, "unauthorized", "send an API key as 'Authorization: Bearer <key>'", challenge)
    with state.sessions() as s:
        principal = authenticate(s, credentials.credentials)
    if principal is None:
        raise ApiError(401, "invalid_api_key", "the API key is unknown, revoked or expired", challenge)
    annotate(tenant=principal.tenant, key_id=principal.key_id, role=principal.role.value)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(*roles: Role):
    def _check(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            allowed = " or ".join(r.value for r in roles)
            raise ApiError(
                403, "forbidden", f"this needs the {allowed} role; your key is {principal.role.value}"
            )
        return principal

    return _check


RefurbisherDep = Annotated[Principal, Depends(require(Role.REFURBISHER))]
ReaderDep = Annotated[Principal, Depends(require(Role.REFURBISHER, Role.AUDITOR, Role.ADMIN))]
AdminDep = Annotated[Principal, Depends(require(Role.ADMIN))]
EraserDep = Annotated[Principal, Depends(require(Role.REFURBISHER, Role.ADMIN))]  # erase photos (retention)


# Path parameters of the /v1 routes under one grading (gradings, photos, overlays, disputes).
GradingId = Annotated[str, Path(max_length=36, description="the grading's id")]
PhotoIndex = Annotated[
    int,
    Path(ge=0, le=99, description="the photo's `index`: 0 for the first photo (messages call it photo 1)"),
]


def stored_photo(blobs: BlobStore, sha256: str, content_type: str | None) -> Response:
    """A stored photo as a response: its own type when it is an image type (else a download), never
    sniffed by the browser, cached privately (content-addressed: the bytes behind a hash never change).
    Streamed from its file on disk; read whole from an S3 store (serving/blobs_s3.py)."""
    ctype = content_type if (content_type or "").startswith("image/") else "application/octet-stream"
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=86400"}
    path = blobs.local_path(sha256)
    if path is None:
        return Response(blobs.get(sha256), media_type=ctype, headers=headers)
    return FileResponse(path, media_type=ctype, headers=headers)
