"""The webhook signature: `Refurbgrade-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`.

The HMAC key is the endpoint's secret and the message is `f"{t}.".encode() + body`, the exact bytes of
the request body, as Stripe signs its webhooks. The timestamp lets a receiver refuse old (replayed)
requests; each attempt is signed afresh. `refurbgrade.client.verify_signature` is the receiver's side.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Refurbgrade-Signature"
SCHEME = "v1"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},{SCHEME}={signature(secret, t, body)}"
