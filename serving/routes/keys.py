"""/v1/keys (admins): create, list and revoke API keys over HTTP, like `refurbgrade keys create/list/revoke`."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path

from serving import examples
from serving.apidocs import AUTH, errors, example
from serving.auth import create_key, list_keys, revoke_key
from serving.db import ApiKey
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
            lifetime = timedelta(days=body.expires_in_days) if body.expires_in_days else None
            row, token = create_key(s, body.role, body.tenant, body.name, lifetime)
    except ValueError as exc:
        raise ApiError(422, "invalid_key_request", str(exc)) from exc
    return key_out(row, token)


def key_out(row: ApiKey, token: str | None = None) -> KeyOut:
    return KeyOut(
        id=row.id,
        role=row.role,
        tenant=row.tenant,
        name=row.name,
        created_at=row.created_at,
        token=token,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        status=row.status(),
    )


@router.get(
    "",
    response_model=list[KeyOut],
    responses={**example([examples.KEY_LISTED]), **errors(*AUTH, "forbidden")},
    summary="Every API key, newest first: role, tenant, name, status (active, revoked, expired); no tokens",
)
def list_api_keys(state: StateDep, _admin: AdminDep) -> list[KeyOut]:
    with state.sessions() as s:
        return [key_out(r) for r in list_keys(s)]


@router.post(
    "/{key_id}/revoke",
    response_model=KeyOut,
    responses={
        **example(examples.KEY_REVOKED, description="The key, now revoked"),
        **errors(*AUTH, "forbidden", "invalid_request", "key_not_found"),
    },
    summary="Revoke an API key at once: its next request is 401 and its review sessions end",
)
def revoke_api_key(state: StateDep, admin: AdminDep, key_id: Annotated[str, Path(max_length=32)]) -> KeyOut:
    with state.sessions() as s:
        row = revoke_key(s, key_id)
        if row is None:
            raise ApiError(404, "key_not_found", f"no API key {key_id}")
        out = key_out(row)
    logging.getLogger("refurbgrade.keys").info(
        "revoked key %s", key_id, extra={"fields": {"revoked_key": key_id, "by": admin.key_id}}
    )
    return out
