"""The FastAPI application: `create_app(settings)` wires storage, model, batcher, metrics and routes.

Nothing heavy happens at import or in `create_app`: the lifespan runs the migrations, opens the blob
store, loads and verifies the model and starts the batcher; shutdown drains the batcher and closes
the database. OpenAPI at /docs.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from serving import apidocs, errors, tracing
from serving.activation import start_watcher
from serving.batching import MicroBatcher
from serving.blobs import open_blob_store
from serving.db import make_engine, migrate, session_factory
from serving.deps import AppState
from serving.limits import BodyLimitMiddleware
from serving.logs import RequestLogMiddleware
from serving.memory import no_hugepage_hint
from serving.metrics import Metrics, MetricsMiddleware
from serving.predictor import ModelSlot, load_served_model
from serving.retention import start_sweeper
from serving.review import actions, images, pages, signin
from serving.review import api as review_api
from serving.review import stats as review_stats
from serving.routes import gradings, keys, models, ops
from serving.routes import impact as impact_routes
from serving.routes import reference as reference_routes
from serving.routes import webhooks as webhook_routes
from serving.service import GradingService
from serving.settings import Settings, get_settings
from serving.webhooks.delivery import start_delivery

API_DESCRIPTION = """Cosmetic grading of used phones, tablets and laptops from photos.

Authenticate with an API key: `Authorization: Bearer <key>` (create one with
`refurbgrade keys create --role refurbisher --tenant NAME`). Every error is JSON
`{"code": "...", "message": "..."}`; each route lists the codes it can answer, with an example of each.

Photos and defects are counted from 1 in every message, page and reason ("photo 1: too blurry"); the
`index` of a photo in a grading and the `{n}` of its photo and overlay URLs count from 0, like the
position in the `photos` list. Every route shows an example answer; ReDoc at /redoc shows the same.
"""


def build_state(settings: Settings, metrics: Metrics) -> AppState:
    engine = make_engine(settings.db_url)
    migrate(engine)
    sessions = session_factory(engine)
    blobs = open_blob_store(settings)  # DATA_DIR/blobs, or REFURBGRADE_BLOB_URL (s3://...: issue 20)
    # The INT8 sibling where its card says it passed parity, unless REFURBGRADE_MODEL_PRECISION=fp32.
    model, choice = load_served_model(
        settings.model_path,
        settings.model_precision,
        settings.intra_op_threads,
        settings.inter_op_threads,
        settings.ort_spinning,
        settings.fine_pass,
    )
    logging.getLogger("refurbgrade").info(
        "model %s (%s): %s",
        model.path.name,
        model.version,
        choice.reason,
        extra={
            "fields": {"model_path": str(model.path), "model_version": model.version, "int8": choice.int8}
        },
    )
    metrics.model_info.labels(model.card.name, model.card.version).set(1)
    slot = ModelSlot(model)
    batcher = MicroBatcher(
        max_batch=settings.max_batch_size,
        max_wait_s=settings.max_batch_wait_ms / 1000.0,
        max_queue=settings.max_queue_photos,
        on_batch=metrics.on_batch,
        on_queue_depth=metrics.queue_depth.set,
        expect_more=lambda: service.inflight > 1,
    )
    service = GradingService(settings, sessions, blobs, slot, batcher, metrics)
    return AppState(settings, engine, sessions, blobs, slot, batcher, metrics, service)


def create_app(settings: Settings | None = None) -> FastAPI:
    metrics = Metrics()
    _keep_uploads_in_memory(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        s = settings or get_settings()
        no_hugepage_hint()  # large arrays without the kernel's compaction stalls (serving/memory.py)
        tracing.configure(s)  # OpenTelemetry spans when an OTLP endpoint is set (issue 20); else nothing
        state = build_state(s, metrics)
        watcher = start_watcher(state, s.model_poll_s)  # the model activated on any replica (issue 20)
        app.state.svc = state
        app.state.webhooks = start_delivery(state.sessions, s)  # webhook delivery worker (issue 21)
        sweeper = start_sweeper(state.sessions, state.blobs, s)  # photo retention (issue 20)
        try:
            yield
        finally:
            app.state.svc = None
            watcher.stop()
            if sweeper is not None:
                sweeper.stop()
            if app.state.webhooks is not None:
                app.state.webhooks.stop()
            state.batcher.stop()
            state.service.close()
            state.engine.dispose()
            tracing.shutdown()

    app = FastAPI(
        title="refurbgrade",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc: serving/apidocs.py, from files installed with the service
        redoc_url=None,
    )
    app.state.svc = None
    app.state.webhooks = None
    app.state.metrics = metrics
    errors.install(app)
    for router in (gradings.router, models.router, keys.router, ops.router):
        app.include_router(router)
    app.include_router(reference_routes.router)  # standards and the device catalogue
    app.include_router(review_api.router)  # disputes, review export (issue 6)
    app.include_router(impact_routes.router)  # avoided emissions and e-waste (issue 22)
    apidocs.install(app)  # Swagger UI at /docs, ReDoc at /redoc, without internet; whole examples
    app.include_router(webhook_routes.router)  # webhooks: endpoints, delivery log, replay (issue 21)
    for router in (signin.router, pages.router, images.router, actions.router, review_stats.router):
        app.include_router(router)  # the review pages under /review (issue 6)
    max_request = _max_request_bytes(settings)
    body_timeout = _setting(settings, "body_timeout_s")
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_request, body_timeout_s=body_timeout)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestLogMiddleware)  # outermost: request ids, one log line, JSON 500s (issue 20)
    return app


def _setting(settings: Settings | None, name: str):
    """A setting the middleware needs before the lifespan reads the settings (their default when they
    are invalid: the lifespan then fails with the full message)."""
    if settings is None:
        try:
            settings = get_settings()
        except Exception:
            return Settings.model_fields[name].default
    return getattr(settings, name)


def _keep_uploads_in_memory(settings: Settings | None) -> None:
    """Starlette spools uploads over 1 MB to a temporary file, one thread hop per 64 kB chunk; a phone
    photo is 2-8 MB and is read into memory right after, so keep it there (a process-wide class attribute:
    Starlette offers no per-app setting)."""
    from starlette.formparsers import MultiPartParser

    limit = (
        settings.spool_max_bytes if settings is not None else Settings.model_fields["spool_max_bytes"].default
    )
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, limit)


def _max_request_bytes(settings: Settings | None) -> int:
    if settings is None:
        try:
            settings = get_settings()
        except Exception:  # settings errors surface in the lifespan, with their full message
            return 12 * 30 * 1024 * 1024 + (1 << 20)
    return settings.max_photos * settings.max_photo_bytes + (1 << 20)
