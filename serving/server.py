"""Running the app under uvicorn with production limits (issue 20): JSON logs and slow-client timeouts.

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but it has no limit on how long
a client may take to send a request's head: a connection that sends half a header line and then nothing
(slowloris) was held for ever, and its first byte even cancels the keep-alive timer. `HeaderTimeoutH11`
is uvicorn's h11 protocol plus one timer, armed when a connection opens and again after each answer: if
the request head is not complete when it fires, the connection is closed (logged as a warning). Bodies
are paced in the app (`serving.limits.BodyLimitMiddleware`: 408 when a chunk stalls), and a head is at
most h11's 16 KiB.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("refurbgrade.server")


class HeaderTimeoutH11(H11Protocol):
    """h11 protocol that closes a connection whose request head is not complete in `header_timeout_s`."""

    header_timeout_s: float = 10.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the head arrived (or the connection is done)
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head_timer()  # the next request's head, on a kept-alive connection

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        logger.warning(
            "closed a connection that sent no complete request head in %gs",
            self.header_timeout_s,
            extra={"fields": {"client": client, "header_timeout_s": self.header_timeout_s}},
        )
        self.transport.close()


def protocol(header_timeout_s: float) -> type[HeaderTimeoutH11]:
    return type("HeaderTimeoutH11", (HeaderTimeoutH11,), {"header_timeout_s": header_timeout_s})


def uvicorn_config(app, settings, host: str, port: int, log_level: str = "info", access_log: bool = False):
    """The uvicorn.Config `refurbgrade serve` runs: h11 with the head timeout, the keep-alive timeout,
    and JSON log lines (uvicorn's own access log off by default: the service logs each request itself,
    with more in it)."""
    import uvicorn

    from serving.logs import log_config

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol(settings.header_timeout_s),
        timeout_keep_alive=settings.keep_alive_s,
        log_config=log_config(log_level, access_log=access_log),
        log_level=log_level,
        access_log=access_log,
        server_header=False,
    )
