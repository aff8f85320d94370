"""The API's own documentation: Swagger UI at /docs and ReDoc at /redoc from files installed with the
service (the `fastapi-offline` package ships them), so the pages work without internet; and the error
codes each route can answer, for its OpenAPI `responses=`.

`errors("unauthorized", "grading_not_found", ...)` turns error codes into OpenAPI responses: one entry
per HTTP status, the `ErrorOut` body, a description listing every code of that status with when it
happens, and an example per code. `ERROR_CODES` is the one table of codes; docs/api.md explains them.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

from serving.errors import ErrorOut

ASSETS_URL = "/docs/assets"
_OWN_STATIC = Path(__file__).resolve().parent / "static"
_ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
_CDN = {  # only when the package is missing (a partial install): FastAPI's defaults
    "swagger-ui-bundle.js": "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js",
    "swagger-ui.css": "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css",
    "redoc.standalone.js": "https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js",
}


def _package_static() -> Path | None:
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).resolve().parent / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def asset_url(name: str) -> str:
    """Where the docs pages load `name` from: this service, or a CDN when the package is absent."""
    if name == "favicon.svg" or _package_static() is not None:
        return f"{ASSETS_URL}/{name}"
    return _CDN[name]


router = APIRouter(include_in_schema=False)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    app = request.app
    return get_swagger_ui_html(
        openapi_url=app.openapi_url,
        title=f"{app.title} API",
        swagger_js_url=asset_url("swagger-ui-bundle.js"),
        swagger_css_url=asset_url("swagger-ui.css"),
        swagger_favicon_url=asset_url("favicon.svg"),
        oauth2_redirect_url="/docs/oauth2-redirect",
        swagger_ui_parameters={"defaultModelsExpandDepth": 0, "displayRequestDuration": True},
    )


@router.get("/docs/oauth2-redirect")
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    app = request.app
    return get_redoc_html(
        openapi_url=app.openapi_url,
        title=f"{app.title} API",
        redoc_js_url=asset_url("redoc.standalone.js"),
        redoc_favicon_url=asset_url("favicon.svg"),
        with_google_fonts=False,
    )


@router.get(f"{ASSETS_URL}/{{name}}")
def docs_asset(name: str) -> FileResponse:
    folder = _OWN_STATIC if name == "favicon.svg" else _package_static()
    if name not in _ASSET_TYPES or folder is None:
        raise HTTPException(404, "not found")
    return FileResponse(
        folder / name, media_type=_ASSET_TYPES[name], headers={"Cache-Control": "public, max-age=86400"}
    )


# Every error code the API answers: code -> (HTTP status, when, an example message).
ERROR_CODES: dict[str, tuple[int, str, str]] = {
    "unauthorized": (401, "no API key was sent", "send an API key as 'Authorization: Bearer <key>'"),
    "invalid_api_key": (401, "the API key is unknown or revoked", "the API key is unknown or revoked"),
    "forbidden": (
        403,
        "the key's role may not do this",
        "this needs the admin role; your key is refurbisher",
    ),
    "not_ready": (
        503,
        "the service is starting; retry after `Retry-After` seconds",
        "the service is starting",
    ),
    "invalid_request": (
        422,
        "a parameter is missing, malformed or out of range; the message names it",
        "limit: Input should be less than or equal to 100",
    ),
    "grading_not_found": (
        404,
        "no such grading, or it belongs to another tenant",
        "no grading 3f6c1d2e-8a4b-4c59-9e7d-0b1a2c3d4e5f",
    ),
    "photo_not_found": (404, "the grading has no photo with that index", "grading 3f6c… has no photo 3"),
    "photo_erased": (
        410,
        "the grading's photos and overlays were erased (retention or an erase request); its grades stay",
        "the photos of grading 3f6c… were erased at the refurbisher's request on 2027-01-15; its grades "
        "and photo hashes remain",
    ),
    "photos_erased": (
        409,
        "the grading's photos were erased, so it takes no new photos (dispute without photos)",
        "the photos of grading 3f6c… were erased: dispute it without photos",
    ),
    "unsupported_media_type": (
        415,
        "a part is not a photo type (JPEG, PNG, WebP, HEIC, BMP, TIFF, AVIF), or the body is not multipart",
        "photo 2: content type 'text/plain' is not a photo (use JPEG, PNG, WebP or HEIC)",
    ),
    "not_an_image": (
        422,
        "the bytes are not an image in a supported format",
        "photo 1 (front.jpg): the file is not an image in a supported format",
    ),
    "corrupt_image": (
        422,
        "a truncated or damaged image",
        "photo 1 (front.jpg): the image data is truncated or corrupt: ...",
    ),
    "too_many_pixels": (
        422,
        "a photo over 60 megapixels",
        "photo 1 (pano.jpg): the image has more than 60000000 pixels",
    ),
    "empty_file": (422, "a photo part is empty", "photo 2: the file is empty"),
    "no_photos": (422, "no `photos` part", "send 1 to 12 photos in the multipart field 'photos'"),
    "too_many_photos": (422, "more photos than allowed", "13 photos sent; at most 12 per grading"),
    "unknown_device_model": (
        422,
        "`device_model` is not in the catalogue; `suggestions` lists the closest names",
        "unknown device model 'iPhone 13 Pro Maxx'; did you mean iPhone 13 Pro Max?",
    ),
    "invalid_device_kind": (
        422,
        "`device_kind` is not phone, tablet or laptop",
        "device_kind must be one of phone, tablet, laptop, got 'watch'",
    ),
    "unknown_standard": (
        422,
        "an unknown standard; `suggestions` lists the closest names",
        "unknown standard backmarkt; known: backmarket, ctia, r2; did you mean backmarket?",
    ),
    "invalid_views": (
        422,
        "`views` does not give one known view per photo",
        "views lists 2 entries for 3 photos",
    ),
    "invalid_idempotency_key": (
        422,
        "the Idempotency-Key header is empty or too long",
        "Idempotency-Key must be 1 to 200 characters",
    ),
    "file_too_large": (
        413,
        "one photo over the size limit (30 MiB)",
        "photo 1: 40000000 bytes; at most 31457280",
    ),
    "payload_too_large": (
        413,
        "the whole request body over the limit, refused while it streams in",
        "the request body exceeds 378535936 bytes",
    ),
    "request_timeout": (
        408,
        "the request body stopped arriving mid-way",
        "the request body stalled: no data for 30 seconds",
    ),
    "idempotency_key_reused": (
        409,
        "the same Idempotency-Key came with other photos or options",
        "this Idempotency-Key was used for a different request (other photos or options)",
    ),
    "overloaded": (
        503,
        "too many gradings at once; retry after `Retry-After` seconds",
        "too many gradings in progress; retry shortly",
    ),
    "queue_full": (
        503,
        "the model's queue is full; retry after `Retry-After` seconds",
        "the model is busy (queue full); retry shortly",
    ),
    "shutting_down": (
        503,
        "the service is stopping; retry on another instance",
        "the model is busy; retry shortly",
    ),
    "invalid_period": (
        422,
        "`from`/`to` outside the years 1-9999 (UTC), or `from` not before `to`",
        "from must be before to",
    ),
    "unknown_standard_name": (
        404,
        "no standard of that name; `suggestions` lists the closest",
        "no standard 'ctai'; did you mean ctia? (known: backmarket, ctia, r2)",
    ),
    "invalid_key_request": (
        422,
        "a refurbisher key without a tenant, or similar",
        "a refurbisher key needs a tenant",
    ),
    "key_not_found": (404, "no API key with that id", "no API key k7QpZ2"),
    "invalid_model_path": (
        422,
        "the path is not a .onnx file inside the models folder",
        "the model must be a .onnx file inside models/",
    ),
    "model_not_found": (404, "no such file in the models folder", "no model file candidate.onnx"),
    # webhooks (issue 21)
    "invalid_webhook_url": (
        422,
        "the endpoint URL is not absolute, holds credentials or points at a private address",
        "url: the host must be public (not a private address)",
    ),
    "insecure_webhook_url": (
        422,
        "the endpoint URL is not https://",
        "url: webhooks are sent over https:// only",
    ),
    "webhook_limit": (409, "the tenant already has 10 endpoints", "at most 10 webhook endpoints per tenant"),
    "webhook_not_found": (404, "no such endpoint, or another tenant's", "no webhook wh_5d0c3a9e1f2b4c6d"),
    "webhook_event_not_found": (
        404,
        "no such webhook event, or another tenant's",
        "no webhook event evt_9c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a",
    ),
    "webhook_deleted": (
        409,
        "the event's endpoint was deleted: nothing to send it to",
        "the endpoint wh_5d0c3a9e1f2b4c6d of this event was deleted",
    ),
    "invalid_model": (
        422,
        "the file failed verification (card, inputs, outputs, a test run); the running model stays",
        "model card missing field 'version'",
    ),
}
# The code a route answers is sometimes shared with another status elsewhere: GET /v1/standards/{name}
# answers 404 unknown_standard, a grading request 422 unknown_standard.
_CODE_ALIASES = {"unknown_standard_name": "unknown_standard"}

# What every route that needs an API key can answer; routes open to one role only add "forbidden".
AUTH = ("unauthorized", "invalid_api_key", "not_ready")


def errors(*codes: str) -> dict[int | str, dict]:
    """OpenAPI `responses=` for these error codes: per status the ErrorOut body, a description listing
    each code and when, and one example per code."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(ERROR_CODES[code][0], []).append(code)
    out: dict[int | str, dict] = {}
    for status, group in sorted(by_status.items()):
        examples = {}
        lines = []
        for code in group:
            _status, when, message = ERROR_CODES[code]
            shown = _CODE_ALIASES.get(code, code)
            lines.append(f"- `{shown}`: {when}")
            examples[shown] = {"summary": when, "value": {"code": shown, "message": message}}
        out[status] = {
            "model": ErrorOut,
            "description": "\n".join(lines),
            "content": {"application/json": {"examples": examples}},
        }
    return out


_EXAMPLE_KEY = "x-refurbgrade-example"


def example(value, status: int | str = 200, media_type: str = "application/json", **extra) -> dict:
    """A success response's OpenAPI entry with one example body. FastAPI drops every null from the
    schema it generates, examples included; the example travels as JSON text and `install` puts it
    back whole, nulls and all, once the schema is built."""
    return {status: {"content": {media_type: {_EXAMPLE_KEY: json.dumps(value)}}, **extra}}


def _restore_examples(node) -> None:
    if isinstance(node, dict):
        if _EXAMPLE_KEY in node:
            node["example"] = json.loads(node.pop(_EXAMPLE_KEY))
        for v in node.values():
            _restore_examples(v)
    elif isinstance(node, list):
        for v in node:
            _restore_examples(v)


def install(app: FastAPI) -> None:
    """Serve /docs and /redoc from the installed files and build the schema with whole examples."""
    app.include_router(router)
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            _restore_examples(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
