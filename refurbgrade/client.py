"""A Python client for the grading API: `from refurbgrade.client import Client`.

    with Client("http://127.0.0.1:8000", api_key=KEY) as rg:
        g = rg.grade(["front.jpg", "back.jpg"], device_model="iPhone 13", external_ref="SKU-4711")
        print(g.grades["backmarket"].grade, g.needs_review)
        done = rg.wait_for_review(g.id) if g.needs_review else rg.get(g.id)

Answers are the server's own pydantic schemas (`serving.schemas`, `serving.review.schemas`,
`serving.current`), which import neither onnxruntime nor FastAPI; the client needs httpx
(`pip install 'refurbgrade[client]'`). Errors are `ApiError` with the server's machine-readable `code`.

Retries: a 502/503/504 (honouring `Retry-After`) and network errors are retried with exponential
backoff. A grading is sent with an `Idempotency-Key` (random per `grade` call unless given; derived from
the photos and options in `grade_many`, so a re-run replays instead of grading again), and every retry
of it sends the same key: a retry never makes a second grading.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from serving.current import GradingCurrentOut
from serving.reference import DevicesOut, StandardOut
from serving.review.schemas import DisputeOut
from serving.schemas import GradingOut, GradingPage

__all__ = [
    "PHOTO_SUFFIXES",
    "ApiError",
    "Client",
    "Device",
    "DeviceResult",
    "devices_from_csv",
    "devices_from_folder",
    "verify_signature",
]

PHOTO_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".heic",
    ".heif",
    ".bmp",
    ".tif",
    ".tiff",
    ".avif",
}
_CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".avif": "image/avif",
}
RETRY_STATUSES = {502, 503, 504}
REVIEW_DONE = {"graded", "confirmed", "overruled"}  # review states in which the grade stands

Photo = str | Path | bytes | tuple[str, bytes]


class ApiError(Exception):
    """An error answer (`status`, the server's `code` and `message`), or a local problem before sending
    (`status` 0: e.g. `file_not_found`, `network_error`, `review_timeout`)."""

    def __init__(self, status: int, code: str, message: str, response: httpx.Response | None = None):
        self.status = status
        self.code = code
        self.message = message
        self.response = response
        super().__init__(f"{status or 'error'} {code}: {message}")


def _photo_part(photo: Photo, n: int) -> tuple[str, tuple[str, bytes, str]]:
    """('photos', (filename, bytes, content type)), read once so every retry sends the same bytes."""
    if isinstance(photo, tuple):
        name, data = photo
    elif isinstance(photo, bytes):
        name, data = f"photo{n}.jpg", photo
    else:
        path = Path(photo)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ApiError(0, "file_not_found", f"{path}: no such file") from None
        except OSError as exc:
            raise ApiError(0, "unreadable_file", f"{path}: cannot read: {exc.strerror}") from None
        name = path.name
    ctype = _CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")
    return "photos", (name, data, ctype)


def _form(**fields: Any) -> dict[str, str]:
    out = {}
    for k, v in fields.items():
        if v is None:
            continue
        out[k] = ",".join(v) if isinstance(v, list | tuple) else str(v)
    return out


def _error_of(r: httpx.Response) -> ApiError:
    try:
        body = r.json()
        return ApiError(r.status_code, str(body["code"]), str(body["message"]), r)
    except (ValueError, KeyError, TypeError):
        return ApiError(r.status_code, "http_error", r.text[:500] or r.reason_phrase, r)


class Client:
    """A grading service at `base_url`, with an API key. Thread-safe (grade_many uses threads)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 120.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "refurbgrade-client"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------------

    def _delay(self, attempt: int, r: httpx.Response | None) -> float:
        if r is not None and (after := r.headers.get("Retry-After")):
            try:
                return min(float(after), self.max_backoff)
            except ValueError:
                pass
        base = min(self.backoff * 2**attempt, self.max_backoff)
        return base * (0.5 + random.random() / 2)  # jitter: concurrent clients do not retry in step

    def _request(self, method: str, url: str, *, safe: bool, **kwargs: Any) -> httpx.Response:
        """Send, retrying 502/503/504 and network errors. `safe`: the request may be repeated without
        effect (GET, or a grading with its Idempotency-Key); otherwise only a refused connection (the
        request never left) and 503 (refused before any work) are retried."""
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                r = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if last or not (safe or isinstance(exc, httpx.ConnectError)):
                    raise ApiError(0, "network_error", f"{method} {url}: {exc!r}") from exc
                self._sleep(self._delay(attempt, None))
                continue
            if r.status_code in RETRY_STATUSES and not last and (safe or r.status_code == 503):
                self._sleep(self._delay(attempt, r))
                continue
            if r.status_code >= 400:
                raise _error_of(r)
            return r
        raise AssertionError("unreachable")

    # -- gradings -------------------------------------------------------------------------------

    def grade(
        self,
        photos: Sequence[Photo],
        *,
        device_model: str | None = None,
        device_kind: str | None = None,
        external_ref: str | None = None,
        standard: str | Sequence[str] | None = None,
        views: Sequence[str] | None = None,
        idempotency_key: str | None = None,
    ) -> GradingOut:
        """Grade one device from its photos (paths, bytes or (filename, bytes))."""
        files = [_photo_part(p, n) for n, p in enumerate(photos)]
        data = _form(
            device_model=device_model,
            device_kind=device_kind,
            external_ref=external_ref,
            standard=standard,
            views=views,
        )
        key = idempotency_key or f"rg-{uuid.uuid4()}"
        r = self._request(
            "POST", "/v1/gradings", safe=True, files=files, data=data, headers={"Idempotency-Key": key}
        )
        return GradingOut.model_validate(r.json())

    def get(self, grading_id: str) -> GradingCurrentOut:
        """One grading: `grades` holds the grade that stands now, `original` the model's, `review` the rest."""
        return GradingCurrentOut.model_validate(
            self._request("GET", f"/v1/gradings/{grading_id}", safe=True).json()
        )

    def list(
        self,
        *,
        limit: int = 20,
        offset: int = 0,
        needs_review: bool | None = None,
        external_ref: str | None = None,
        device_model: str | None = None,
        standard: str | None = None,
        grade: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        tenant: str | None = None,
    ) -> GradingPage:
        """One page of gradings, newest first (filters as GET /v1/gradings)."""
        params = {
            "limit": limit,
            "offset": offset,
            "needs_review": None if needs_review is None else str(needs_review).lower(),
            "external_ref": external_ref,
            "device_model": device_model,
            "standard": standard,
            "grade": grade,
            "created_after": created_after.isoformat() if created_after else None,
            "created_before": created_before.isoformat() if created_before else None,
            "tenant": tenant,
        }
        params = {k: v for k, v in params.items() if v is not None}
        return GradingPage.model_validate(
            self._request("GET", "/v1/gradings", safe=True, params=params).json()
        )

    def dispute(self, grading_id: str, reason: str, photos: Sequence[Photo] = ()) -> DisputeOut:
        """Dispute a grading (optionally with extra photos): it goes to the quality team's queue."""
        files = [_photo_part(p, n) for n, p in enumerate(photos)] or None
        r = self._request(
            "POST", f"/v1/gradings/{grading_id}/disputes", safe=False, data={"reason": reason}, files=files
        )
        return DisputeOut.model_validate(r.json())

    def wait_for_review(
        self, grading_id: str, *, timeout: float = 3600.0, poll: float = 10.0
    ) -> GradingCurrentOut:
        """Poll until nobody needs to look (graded) or a reviewer decided (confirmed, overruled); the
        answer's `grades` are then the ones that stand. ApiError `review_timeout` after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            g = self.get(grading_id)
            if g.review is None or g.review.status in REVIEW_DONE:
                return g
            left = deadline - time.monotonic()
            if left <= 0:
                raise ApiError(
                    0, "review_timeout", f"grading {grading_id} still {g.review.status} after {timeout:g} s"
                )
            self._sleep(min(poll, left))

    # -- impact -----------------------------------------------------------------------------------

    def impact(
        self,
        from_: datetime | str | None = None,
        to: datetime | str | None = None,
        tenant: str | None = None,
        format: str = "json",
    ) -> dict | str:
        """Avoided emissions and e-waste over a period (GET /v1/impact), per tenant, by the grade that
        stands after review: the JSON answer as a dict (`from`, `to`, `tenants`, `method`), or with
        `format="csv"` the CSV text. `tenant`: auditors and admins only."""
        if format not in ("json", "csv"):
            raise ApiError(0, "invalid_request", f"format: json or csv, not {format!r}")

        def when(d: datetime | str | None) -> str | None:
            return d.isoformat() if isinstance(d, datetime) else d

        params = {"from": when(from_), "to": when(to), "tenant": tenant, "format": format}
        r = self._request(
            "GET", "/v1/impact", safe=True, params={k: v for k, v in params.items() if v is not None}
        )
        return r.text if format == "csv" else r.json()

    # -- reference data -------------------------------------------------------------------------

    def standards(self) -> list[StandardOut]:
        """The grading standards: grades best first, their limits in words, their sources."""
        return [
            StandardOut.model_validate(x) for x in self._request("GET", "/v1/standards", safe=True).json()
        ]

    def devices(self, q: str | None = None, *, kind: str | None = None) -> DevicesOut:
        """The device catalogue, or the devices whose name contains `q` (`suggestions` when none does)."""
        params = {k: v for k, v in {"q": q, "kind": kind}.items() if v is not None}
        return DevicesOut.model_validate(self._request("GET", "/v1/devices", safe=True, params=params).json())

    def grade_many(
        self,
        devices: str | Path | Iterable[Device],
        *,
        concurrency: int = 4,
        progress: bool = True,
        device_model: str | None = None,
        device_kind: str | None = None,
        standard: str | Sequence[str] | None = None,
        on_result: Callable[[DeviceResult], None] | None = None,
    ) -> list[DeviceResult]:
        """Grade many devices, `concurrency` at a time, with a progress bar (on stderr).

        `devices`: a folder (each subfolder with photos is one device, its name the external_ref; each
        photo directly inside is a device of its own), a CSV file (`devices_from_csv`), or `Device`s.
        The keyword options are defaults for devices that do not set their own. A device that fails
        (missing file, refused photo) is a `DeviceResult` with `error`, never an exception; results
        come back in the devices' order, and `on_result` sees each as it completes.
        """
        if isinstance(devices, str | Path):
            path = Path(devices)
            if path.is_dir():
                items = devices_from_folder(path)
            elif path.suffix.lower() == ".csv":
                items = devices_from_csv(path)
            elif not path.exists():
                raise ApiError(0, "file_not_found", f"{path}: no such file or folder")
            else:
                raise ApiError(0, "invalid_request", f"{path}: give a folder of photos or a .csv file")
        else:
            items = list(devices)
        results: list[DeviceResult | None] = [None] * len(items)

        def run(d: Device) -> DeviceResult:
            try:
                files = [_photo_part(p, n) for n, p in enumerate(d.photos)]
                options = {
                    "device_model": d.device_model or device_model,
                    "device_kind": d.device_kind or device_kind,
                    "external_ref": d.external_ref,
                    "standard": d.standard or standard,
                    "views": d.views or None,
                }
                key = d.idempotency_key or _content_key(files, options)
                photos = [(name, data) for _, (name, data, _) in files]
                return DeviceResult(d, self.grade(photos, **options, idempotency_key=key))
            except ApiError as exc:
                return DeviceResult(d, error=exc)

        bar = _Progress(len(items), enabled=progress)
        with bar, ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            futures = {pool.submit(run, d): n for n, d in enumerate(items)}
            for fut in as_completed(futures):
                res = fut.result()
                results[futures[fut]] = res
                bar.advance(res)
                if on_result is not None:
                    on_result(res)
        return [r for r in results if r is not None]


def verify_signature(
    secret: str, header: str | None, body: bytes | str, tolerance: float = 300, *, now: float | None = None
) -> bool:
    """For a webhook receiver: whether `header` (the request's `Refurbgrade-Signature`, `t=...,v1=...`)
    signs `body` (the raw request body, exactly as received) with the endpoint's `secret`, and its
    timestamp is within `tolerance` seconds of now (refuses replays of old requests; 0 or less: any age).

        if not verify_signature(SECRET, request.headers.get("Refurbgrade-Signature"), raw_body):
            return 400
        event = json.loads(raw_body)  # then deduplicate on event["id"]: delivery is at-least-once
    """
    if not header or not secret:
        return False
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1" and value:
            signatures.append(value)
    try:
        t = int(timestamp or "")
    except ValueError:
        return False
    if tolerance > 0 and abs((time.time() if now is None else now) - t) > tolerance:
        return False
    raw = body.encode() if isinstance(body, str) else bytes(body)
    expected = hmac.new(secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in signatures)


def _content_key(files: list, options: dict) -> str:
    """An Idempotency-Key from the photos' bytes and the options: the same device sent again replays."""
    h = hashlib.sha256()
    for _, (_, data, _) in files:
        h.update(hashlib.sha256(data).digest())
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    return f"rg-{h.hexdigest()[:40]}"


# -- devices to grade ----------------------------------------------------------------------------


@dataclass
class Device:
    """One device to grade: its photos and options (None: grade_many's default)."""

    photos: list[Photo]
    external_ref: str | None = None
    device_model: str | None = None
    device_kind: str | None = None
    standard: str | None = None
    views: list[str] = field(default_factory=list)
    idempotency_key: str | None = None
    source: str | None = None  # where it came from (folder, CSV line), for messages


@dataclass
class DeviceResult:
    device: Device
    grading: GradingOut | None = None
    error: ApiError | None = None

    @property
    def outcome(self) -> str:
        """graded, needs_review, ungradable (every standard 'ungradable') or failed."""
        g = self.grading
        if g is None:
            return "failed"
        if g.grades and all(s.grade == "ungradable" for s in g.grades.values()):
            return "ungradable"
        return "needs_review" if g.needs_review else "graded"


def _is_photo(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in PHOTO_SUFFIXES


def devices_from_folder(folder: Path) -> list[Device]:
    """Each subfolder with photos is one device (external_ref: its name); each photo directly in
    `folder` is a device of its own (external_ref: the file's stem)."""
    out = []
    for p in sorted(Path(folder).iterdir()):
        if p.is_dir():
            photos = sorted(f for f in p.rglob("*") if _is_photo(f))
            if photos:
                out.append(Device(list(photos), external_ref=p.name, source=str(p)))
        elif _is_photo(p):
            out.append(Device([p], external_ref=p.stem, source=str(p)))
    return out


def devices_from_csv(path: Path) -> list[Device]:
    """A CSV with a header: `photos` (paths separated by `;` or `|`, relative to the CSV's folder),
    optional `external_ref`, `device_model`, `device_kind`, `standard`, `views` (`;`-separated)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ApiError(0, "file_not_found", f"{path}: no such file") from None
    except OSError as exc:
        raise ApiError(0, "unreadable_file", f"{path}: cannot read: {exc.strerror}") from None
    rows = csv.DictReader(text.splitlines())
    if rows.fieldnames is None or "photos" not in rows.fieldnames:
        raise ApiError(0, "invalid_csv", f"{path}: needs a header line with a 'photos' column")
    out = []
    for n, row in enumerate(rows, start=2):
        names = [s.strip() for s in (row.get("photos") or "").replace("|", ";").split(";") if s.strip()]
        if not names:
            raise ApiError(0, "invalid_csv", f"{path}: line {n}: no photos")

        def cell(name: str, row: dict = row) -> str | None:
            return (row.get(name) or "").strip() or None

        out.append(
            Device(
                [path.parent / s for s in names],
                external_ref=cell("external_ref"),
                device_model=cell("device_model"),
                device_kind=cell("device_kind"),
                standard=cell("standard"),
                views=[v.strip() for v in (cell("views") or "").split(";") if v.strip()],
                source=f"{path}:{n}",
            )
        )
    return out


class _Progress:
    """A rich progress bar on stderr (nothing when disabled or not a terminal... rich decides)."""

    def __init__(self, total: int, enabled: bool):
        self.total = total
        self.enabled = enabled
        self._bar = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("grading"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("grading", total=self.total, status="")
            self._counts: dict[str, int] = {}
        return self

    def advance(self, res: DeviceResult) -> None:
        if self._bar is None:
            return
        self._counts[res.outcome] = self._counts.get(res.outcome, 0) + 1
        status = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sorted(self._counts.items()))
        self._bar.update(self._task, advance=1, status=status)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
