"""The service's settings: typed, validated at start-up, read from `REFURBGRADE_*` environment variables.

`get_settings()` is cached; tests build a `Settings(...)` themselves and hand it to `create_app`, or
override the `get_settings` dependency. Validation fails start-up loudly (a missing model file, a
non-positive limit) instead of failing the first request; `settings_error_line` turns such a failure
into the one line the CLI prints.

The defaults do not depend on the current folder, so the commands work from anywhere: the bundled model
is found beside the installed packages (`models/default.onnx` in the checkout an editable install points
at; a wheel does not carry it, so there REFURBGRADE_MODEL_PATH or `--model` is needed), and the data
folder is per user (`$XDG_DATA_HOME/refurbgrade`, else `~/.local/share/refurbgrade`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The checkout (editable install) holding serving/, model/, ... and the bundled models/ folder.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_PATH = PROJECT_ROOT / "models" / "default.onnx"
ENV_PREFIX = "REFURBGRADE_"


def default_data_dir() -> Path:
    """The per-user data folder: $XDG_DATA_HOME/refurbgrade, else ~/.local/share/refurbgrade."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "refurbgrade"


def settings_error_line(exc: ValidationError) -> str:
    """One line for a settings failure: each problem as `REFURBGRADE_NAME: what is wrong`, no links."""
    parts = []
    for err in exc.errors(include_url=False):
        msg = str(err.get("msg", "invalid"))
        msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        loc = ".".join(str(p) for p in err.get("loc", ()))
        if loc:
            value = err.get("input")
            shown = (
                f" (got {value!r})" if isinstance(value, str | int | float) and len(repr(value)) < 60 else ""
            )
            parts.append(f"{ENV_PREFIX}{loc.upper()}{shown}: {msg}")
        else:
            parts.append(msg)
    return " ".join("; ".join(parts).split()) or "invalid settings"


class BlobSettings(BaseSettings):
    """Where photo and overlay blobs live (issue 20): shared by `Settings` and `StorageSettings`.

    `blob_url` unset: a folder under data_dir (DATA_DIR/blobs). `s3://BUCKET/PREFIX`: an S3-compatible
    bucket (AWS S3, MinIO, Ceph RGW, ...), which replicas share; `file:///PATH`: another folder (a mount
    shared by the replicas, say). The s3_* settings reach the bucket; credentials left unset come from
    boto3's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role).
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    blob_url: str | None = None
    s3_endpoint_url: str | None = None  # e.g. http://minio:9000; unset: AWS S3 itself
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # "path" (https://host/bucket/key) is what most S3-compatible servers want; "auto": path-style with
    # an endpoint URL, boto3's choice without.
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    s3_timeout_s: float = Field(default=10.0, gt=0, le=600)

    @field_validator("blob_url")
    @classmethod
    def _check_blob_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if v.startswith("s3://"):
            if not v[5:].split("/", 1)[0]:
                raise ValueError("an s3:// blob URL needs a bucket: s3://BUCKET or s3://BUCKET/PREFIX")
            return v
        if v.startswith("file://"):
            if not Path(v[7:]).is_absolute():
                raise ValueError("a file:// blob URL needs an absolute path: file:///srv/refurbgrade/blobs")
            return v
        raise ValueError("the blob URL must be s3://BUCKET[/PREFIX] or file:///PATH (unset: DATA_DIR/blobs)")

    @property
    def blob_dir(self) -> Path:
        """The blob folder when blobs are on disk (also the default place for local files when not)."""
        if self.blob_url and self.blob_url.startswith("file://"):
            return Path(self.blob_url[7:])
        return self.data_dir / "blobs"


class FineSettings(BaseSettings):
    """REFURBGRADE_FINE_PASS: the service's setting (`Settings` has it from here), and alone for the
    offline commands that load a model, so `refurbgrade grade` and `refurbgrade regrade` grade as the
    service would."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # The fine pass (docs/fine-pass.md): with the fine network beside the model (`NAME.fine.onnx`),
    # photos that show the device at 0.12 mm a pixel or finer get native-resolution tiles for hairline
    # scratches. It costs about 240 ms more a 12 MP photo on 2 cores (5x less throughput on such photos):
    # false serves the coarse pass alone, at the price of missing screen scratches the coarse pass cannot see.
    fine_pass: bool = True


class Settings(BlobSettings, FineSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    # The model served at start-up (default: the bundled one, wherever the command runs from), and the
    # folder from which admins may activate others.
    model_path: Path = DEFAULT_MODEL_PATH
    models_dir: Path | None = None  # default: the model file's folder
    # Replicas (issue 20): the model an admin activates is recorded in the database (serving/activation.py);
    # every process looks for a change this often and swaps it in once the file loads and passes its checks.
    model_poll_s: float = Field(default=5.0, gt=0, le=3600)
    # "auto": serve the model file's INT8 sibling (default.onnx -> default.int8.onnx) where its card says
    # it passed parity against this file (serving.predictor.choose_model_file); "fp32": the file as given.
    model_precision: Literal["auto", "fp32"] = "auto"
    # fine_pass: `FineSettings`.
    # Gradings database and photo blobs. Without a database URL: SQLite under data_dir (per user).
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None

    # ONNX Runtime threads: intra-op parallelism inside one run, inter-op across graph branches.
    intra_op_threads: int = Field(default=2, ge=1, le=256)
    inter_op_threads: int = Field(default=1, ge=1, le=256)
    # Let idle ORT threads spin: lower latency on an otherwise idle machine, wasted cores under load.
    ort_spinning: bool = False
    # Micro-batching: photos of concurrent requests share one model run. On CPU the default is small: with
    # the 384 px network on 2 cores, ORT costs 41/45/52/50 ms of CPU per photo at batch 1/2/4/8 (larger
    # batches outgrow the caches); 16 concurrent gradings through the batcher cost 82-84 ms of CPU per
    # photo at max 1-2, 86 at 4, 89 at 8. Raise it for accelerators.
    max_batch_size: int = Field(default=2, ge=1, le=256)
    max_batch_wait_ms: float = Field(default=3.0, ge=0, le=1000)
    # Photos waiting for the model; beyond this, requests get 503 + Retry-After instead of waiting.
    max_queue_photos: int = Field(default=64, ge=1)
    # Gradings being processed at once; beyond this, 503 + Retry-After.
    max_inflight_requests: int = Field(default=32, ge=1)
    retry_after_s: int = Field(default=1, ge=1)
    # Requests decoding or post-processing at once (default: the number of cores); the rest wait their
    # turn instead of thrashing the cores the model also needs.
    cpu_workers: int | None = Field(default=None, ge=1, le=256)

    # Pixels being decoded at once across requests (each photo reserves its decoded size from its header:
    # a JPEG's reduced-scale size, any other format's full size); a photo that does not fit now is a 503
    # with Retry-After. A 60 MP PNG holds about 3-4 bytes a pixel while it decodes (its raw buffer, then
    # the reduction), so the default bounds decoding to about 0.5 GB. At least one photo's limit (60 MP).
    max_decoding_pixels: int = Field(default=120_000_000, ge=60_000_000)
    # Slow clients (issue 20): a connection must send a whole request head within header_timeout_s
    # (counted from when it opens or its last answer ends), each chunk of a body must come within
    # body_timeout_s of the previous one (else 408), and an idle keep-alive connection closes after
    # keep_alive_s.
    header_timeout_s: float = Field(default=10.0, gt=0, le=600)
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    keep_alive_s: int = Field(default=5, ge=1, le=600)

    # Upload limits.
    max_photos: int = Field(default=12, ge=1, le=100)
    max_photo_bytes: int = Field(default=30 * 1024 * 1024, gt=0)
    # Uploaded files up to this size stay in memory while the form is parsed (larger ones spool to disk).
    spool_max_bytes: int = Field(default=8 * 1024 * 1024, ge=0)

    # needs_review when a standard's top grade is less likely than this (default: the card's value).
    review_threshold: float | None = Field(default=None, ge=0, le=1)
    # Longest side of overlay PNGs.
    overlay_max_side: int = Field(default=1280, ge=64)
    # Review pages (issue 6): the session cookie's Secure flag (off only for plain-http localhost tests)
    # and how long a sign-in lasts.
    review_secure_cookie: bool = True
    review_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    # Webhooks (issue 21): endpoints must be https:// to a public host; allow http(s)://localhost only for
    # tests and a local receiver. Each process runs a delivery worker (off: this replica only serves)
    # that looks for due events every poll, gives each attempt timeout_s, and retries a failure after
    # backoff_s · 2^(attempt-1) (at most backoff_max_s) until max_attempts: about a day by default.
    webhook_allow_http_localhost: bool = False
    webhook_delivery: bool = True
    webhook_poll_s: float = Field(default=1.0, gt=0, le=60)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    webhook_max_attempts: int = Field(default=15, ge=1, le=100)
    webhook_backoff_s: float = Field(default=10.0, ge=0, le=24 * 3600)
    webhook_backoff_max_s: float = Field(default=6 * 3600.0, ge=0)
    webhook_workers: int = Field(default=4, ge=1, le=64)
    # Retention (issue 20): the photos, overlays and dispute photos of gradings older than retention_days
    # are erased (the grading, its photo hashes and its history stay); unset: kept for ever. Each process
    # sweeps every retention_every_s; `refurbgrade retention run` sweeps once by hand (serving/retention.py).
    retention_days: float | None = Field(default=None, gt=0, le=36500)
    retention_every_s: float = Field(default=3600.0, ge=1, le=7 * 86400)
    # Traces (issue 20): OpenTelemetry spans sent over OTLP/HTTP to this collector (e.g.
    # http://otel-collector:4318); unset: the standard OTEL_EXPORTER_OTLP_ENDPOINT; neither: no tracing
    # (serving/tracing.py).
    otel_endpoint: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if not self.model_path.is_file():
            raise ValueError(
                f"model file {self.model_path} does not exist "
                f"(pass --model or set {ENV_PREFIX}MODEL_PATH to an exported .onnx)"
            )
        if self.max_queue_photos < self.max_photos:
            raise ValueError(
                f"max_queue_photos ({self.max_queue_photos}) must hold one request's photos (max_photos {self.max_photos})"
            )
        if self.models_dir is None:
            self.models_dir = self.model_path.resolve().parent
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'refurbgrade.db').resolve()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()


class StorageSettings(BlobSettings):
    """The subset the `keys` command needs: it must work without a model file."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    retention_days: float | None = Field(default=None, gt=0, le=36500)  # `retention run`'s default age

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'refurbgrade.db').resolve()}"
