"""Limits that keep one client from taking the service down: request size, body pace, decoded pixels.

`BodyLimitMiddleware` enforces the request-size limit while the body streams in (before multipart
parsing spools it to disk): a declared Content-Length over the limit is refused at once; a chunked body
is cut off as soon as it passes the limit. Either way the answer is 413 {"code": "payload_too_large"},
also when the form parser had already turned the cut-off body into an error of its own. A body whose
next chunk does not arrive within `body_timeout_s` is answered 408 {"code": "request_timeout"}.

`PixelBudget` bounds the pixels being decoded at once across requests: a photo reserves what its header
says decoding will hold (`model.preprocess.decoded_pixels`) and gives it back once decoded; a photo
that does not fit now is a 503 with Retry-After (`PixelBudgetFull`), never an out-of-memory kill.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


def _json_response(status: int, code: str, message: str) -> tuple[dict, dict]:
    body = json.dumps({"code": code, "message": message}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyLimitMiddleware:
    def __init__(self, app, max_bytes: int, body_timeout_s: float | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout_s = body_timeout_s

    def _too_large(self) -> tuple[dict, dict]:
        return _json_response(413, "payload_too_large", f"the request body exceeds {self.max_bytes} bytes")

    def _too_slow(self) -> tuple[dict, dict]:
        return _json_response(
            408,
            "request_timeout",
            f"the request body stalled: no data for {self.body_timeout_s:g} seconds",
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    for message in self._too_large():
                        await send(message)
                    return
        seen = 0
        body_done = False
        refused: tuple[dict, dict] | None = None  # what to answer instead of the app's own answer
        started = False

        async def _receive():
            nonlocal seen, body_done, refused
            if refused is not None:  # the app read on after the cut-off: it only ever sees an error
                raise _TooLarge
            if body_done or self.body_timeout_s is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), self.body_timeout_s)
                except TimeoutError:
                    refused = self._too_slow()
                    raise _TooSlow from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > self.max_bytes:
                    refused = self._too_large()
                    raise _TooLarge
            return message

        async def _send(message):
            nonlocal started
            if refused is not None:  # e.g. the form parser's 400 for the body it could not finish
                if message["type"] == "http.response.start" and not started:
                    started = True
                    for m in refused:
                        await send(m)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with suppress(_TooLarge, _TooSlow):
            await self.app(scope, _receive, _send)
        if refused is not None and not started:
            for m in refused:
                await send(m)


class PixelBudgetFull(Exception):
    """No room to decode this photo now: answer 503 with Retry-After."""


class PixelBudget:
    """Pixels being decoded at once, across requests (thread-safe, non-blocking)."""

    def __init__(self, max_pixels: int):
        self.max_pixels = max_pixels
        self.in_use = 0
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        pixels = min(pixels, self.max_pixels)  # one photo alone always fits (its size has a limit)
        with self._lock:
            if self.in_use + pixels > self.max_pixels:
                raise PixelBudgetFull(
                    f"{self.in_use} of {self.max_pixels} pixels are being decoded; this photo needs {pixels}"
                )
            self.in_use += pixels
        try:
            yield
        finally:
            with self._lock:
                self.in_use -= pixels
