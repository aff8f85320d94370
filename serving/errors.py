"""Errors the API answers with: every 4xx/5xx body is JSON {"code": machine-readable, "message": ...}.

Route code raises `ApiError`; FastAPI's own errors (validation, unknown route, wrong method) are
rewritten into the same shape here, so a client needs one error parser. `ErrorOut` is that shape, and
`error_responses` the table a route passes as `responses=` so OpenAPI lists its error statuses.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.db import NulInText

_DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


class ErrorOut(BaseModel):
    code: str = Field(description="machine-readable error code", examples=["not_an_image"])
    message: str = Field(description="what went wrong, for a person")
    suggestions: list[str] | None = Field(
        default=None, description="for an unknown name (device model, standard): the closest known ones"
    )


def error_responses(*statuses: int, described: dict[int, str] | None = None) -> dict[int | str, dict]:
    """OpenAPI `responses=` entries: an ErrorOut body for each status, with a description where given."""
    described = described or {}
    return {
        s: {"model": ErrorOut, "description": described[s]} if s in described else {"model": ErrorOut}
        for s in statuses
    }


# What a route that reads or changes one grading can answer besides success.
GRADING_ERRORS = error_responses(401, 403, 404, 422)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        suggestions: list[str] | None = None,
    ):
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.suggestions = suggestions
        super().__init__(message)


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    suggestions: list[str] | None = None,
) -> JSONResponse:
    body: dict = {"code": code, "message": message}
    if suggestions is not None:
        body["suggestions"] = suggestions
    return JSONResponse(body, status_code=status, headers=headers)


def refuse_nul(fields: dict[str, str | None]) -> None:
    """422 invalid_characters for a text field with a NUL character (no database stores one)."""
    for name, value in fields.items():
        if value is not None and "\x00" in value:
            raise ApiError(422, "invalid_characters", f"{name} contains a NUL character (\\x00)")


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers, exc.suggestions)

    @app.exception_handler(NulInText)
    async def _nul(_request: Request, exc: NulInText) -> JSONResponse:
        return error_response(422, "invalid_characters", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _DEFAULT_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        ctype = request.headers.get("content-type", "")
        if (
            request.method == "POST"
            and request.url.path == "/v1/gradings"
            and "multipart/form-data" not in ctype
        ):
            return error_response(
                415, "unsupported_media_type", "send the photos as multipart/form-data (field 'photos')"
            )
        return error_response(422, "invalid_request", _validation_message(exc))
