"""Structured logs (issue 20): one JSON object a line on stderr, for the service and for uvicorn.

Every request is one line from `RequestLogMiddleware` (logger `refurbgrade.access`): method, route
template, path, status, latency, request id, and what the request touched (tenant and key id, grading
id, model version: route code adds them with `annotate`). An unexpected error is answered JSON 500
{"code": "internal_error", "message": ..., "request_id": ...} and logged with its traceback on the same
line. The request id is the client's `X-Request-ID` when it is sane (1-128 of `A-Za-z0-9._:-`), a new
one otherwise, and is answered in `X-Request-ID` on every response. `log_config(level)` is the logging
set-up `refurbgrade serve` hands uvicorn, so its own lines (start-up, warnings, its access log when
turned on) come out in the same format.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

ACCESS_LOGGER = "refurbgrade.access"
REQUEST_ID_HEADER = b"x-request-id"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# The fields of the request being served. A dict, shared with the threads route code runs in (they run in
# a copy of this context, which holds the same dict), so what they `annotate` reaches the request's line.
_request: ContextVar[dict | None] = ContextVar("refurbgrade_request", default=None)


def annotate(**fields) -> None:
    """Add fields (tenant, grading_id, model_version, ...) to the current request's log line."""
    current = _request.get()
    if current is not None:
        current.update({k: v for k, v in fields.items() if v is not None})


def current_request_id() -> str | None:
    current = _request.get()
    return current.get("request_id") if current else None


def sane_request_id(value: str | None) -> str:
    """The client's request id when it is safe to log and echo, else a new one."""
    if value and _SANE_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """A log record as one JSON line: ts, level, logger, message, the record's `fields`, the request id
    of the request being served, and the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        elif record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, http_version, status = record.args
            out.update(client=client, method=method, path=path, http_version=http_version, status=status)
        if "request_id" not in out and (rid := current_request_id()):
            out["request_id"] = rid
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def log_config(level: str = "info", access_log: bool = False) -> dict:
    """`logging.config.dictConfig` for the service and uvicorn: JSON lines on stderr."""
    level = level.upper()
    handler = {"handlers": ["stderr"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "uvicorn": handler,
            "uvicorn.error": {"level": level},
            "uvicorn.access": {**handler, "level": level if access_log else "WARNING"},
            "refurbgrade": handler,
        },
    }


def configure(level: str = "info") -> None:
    """Apply `log_config` in this process (tests, or an app run without the CLI)."""
    import logging.config

    logging.config.dictConfig(log_config(level))


class RequestLogMiddleware:
    """Plain ASGI: request id in and out, one log line per request, JSON for unexpected errors."""

    def __init__(self, app, logger: logging.Logger | None = None):
        self.app = app
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", ()) if k == REQUEST_ID_HEADER), b"")
        rid = sane_request_id(given.decode("latin-1"))
        fields: dict = {"request_id": rid}
        token = _request.set(fields)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status: int | None = None

        async def _send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != REQUEST_ID_HEADER]
                message = {**message, "headers": [*headers, (REQUEST_ID_HEADER, rid.encode())]}
            await send(message)

        error: BaseException | None = None
        try:
            await self.app(scope, receive, _send)
        except Exception as exc:  # anything a handler did not turn into an answer
            error = exc
            if status is None:
                body = json.dumps(
                    {
                        "code": "internal_error",
                        "message": "an unexpected error; the service logged it under this request id",
                        "request_id": rid,
                    }
                ).encode()
                await _send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
        finally:
            self._log(scope, fields, status, time.perf_counter() - started, error)
            _request.reset(token)

    def _log(self, scope, fields: dict, status: int | None, seconds: float, error) -> None:
        route = getattr(scope.get("route"), "path", None)
        line = {
            "method": scope.get("method"),
            "route": route,
            "path": scope.get("path"),
            "status": status if status is not None else 500,
            "latency_ms": round(seconds * 1000, 1),
        }
        grading_id = (scope.get("path_params") or {}).get("grading_id")
        if grading_id is not None and "grading_id" not in fields:
            line["grading_id"] = grading_id
        line.update(fields)
        level = logging.ERROR if error is not None or line["status"] >= 500 else logging.INFO
        exc_info = (type(error), error, error.__traceback__) if error is not None else None
        self.logger.log(
            level,
            "%s %s %s",
            line["method"],
            line["path"],
            line["status"],
            extra={"fields": line},
            exc_info=exc_info,
        )
