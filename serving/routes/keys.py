"""/v1/keys (admins): create API keys over HTTP, like `refurbgrade keys create`."""

from __future__ import annotations

from fastapi import APIRouter

from serving import examples
from serving.apidocs import AUTH, errors, example
from serving.auth import create_key
from serving.deps import AdminDep, StateDep
from serving.errors import ApiError
from serving.schemas import KeyIn, KeyOut

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post(
    "",
    status_code=201,
    response_model=KeyOut,
    responses={
        **example(examples.KEY, 201, description="The key; `token` is shown only in this answer"),
        **errors(*AUTH, "forbidden", "invalid_request", "invalid_key_request"),
    },
    summary="Create an API key (the token is shown once)",
)
def create_api_key(state: StateDep, _admin: AdminDep, body: KeyIn) -> KeyOut:
    try:
        with state.sessions() as s:
            row, token = create_key(s, body.role, body.tenant, body.name)
    except ValueError as exc:
        raise ApiError(422, "invalid_key_request", str(exc)) from exc
    return KeyOut(
        id=row.id, role=row.role, tenant=row.tenant, name=row.name, created_at=row.created_at, token=token
    )
