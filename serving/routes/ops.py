"""Operations endpoints, no auth: /livez (the process answers), /readyz (model loaded, database
reachable), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from serving import examples
from serving.apidocs import errors, example
from serving.schemas import HealthOut

router = APIRouter(tags=["operations"])


@router.get(
    "/livez",
    response_model=HealthOut,
    responses=example({"status": "ok", "checks": {}}),
    summary="The process answers (no key needed)",
)
def livez() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=HealthOut,
    responses={
        **example(examples.HEALTH_OK),
        503: {
            "model": HealthOut,
            "description": "Not ready: the model is not loaded or the database is unreachable",
            "content": {"application/json": {"example": examples.HEALTH_STARTING}},
        },
    },
    summary="Ready to grade: model loaded, database reachable (no key needed)",
)
def readyz(request: Request):
    state = getattr(request.app.state, "svc", None)
    checks: dict[str, str] = {}
    if state is None:
        checks["model"] = "not loaded"
        checks["database"] = "not connected"
    else:
        checks["model"] = f"ok ({state.slot.current.version})"
        try:
            with state.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # any driver error means not ready
            checks["database"] = f"error: {type(exc).__name__}"
        if not state.batcher.alive:
            checks["batcher"] = "stopped"
    ok = all(v.startswith("ok") for v in checks.values())
    body = HealthOut(status="ok" if ok else "unavailable", checks=checks)
    return body if ok else JSONResponse(body.model_dump(), status_code=503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text format: requests, latencies, batches, queue depth, model",
        },
        **errors("not_ready"),
    },
    summary="Prometheus metrics (no key needed)",
)
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
