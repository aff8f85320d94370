"""`refurbgrade regrade`: the stored gradings graded again by another model, compared (serving/regrade.py).

Heavy imports (Dask, ONNX Runtime, SQLAlchemy) stay inside the command, so `refurbgrade --help` stays fast.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("regrade")(regrade)


def _when(value: str | None, option: str) -> datetime | None:
    """An ISO date (its midnight, UTC) or date-time (naive: UTC)."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time.min, UTC)
        d = datetime.fromisoformat(value)
    except ValueError:
        typer.echo(f"error: {option} {value!r}: give a date (2026-11-01) or an ISO date-time", err=True)
        raise typer.Exit(2) from None
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)


def regrade(
    model: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="the new model file (.onnx) to grade with")
    ],
    out: Annotated[Path, typer.Option(help="folder for gradings.csv, summary.csv and summary.json")],
    since: Annotated[
        str | None, typer.Option(help="only gradings created at or after this date / ISO time (UTC)")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="only gradings created before this date / ISO time (default: now)")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="only this tenant's gradings")] = None,
    standard: Annotated[
        str | None, typer.Option(help="standard(s) to compare, comma-separated (default: all)")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=256, help="worker processes (1: this process)")] = 1,
    partition_size: Annotated[
        int, typer.Option(min=1, help="gradings per partition (one task, one CSV part)")
    ] = 500,
    threads: Annotated[
        int | None, typer.Option(min=1, help="ONNX Runtime threads per worker (default: cores / workers)")
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="a dask.distributed scheduler (tcp://host:8786) instead of local processes"),
    ] = None,
) -> None:
    """Grade the stored gradings' photos again with MODEL and compare old and new grades.

    Reads the database and blob store of REFURBGRADE_DATABASE_URL / DATA_DIR / BLOB_URL (never writes
    to them); grades each device as the service would (its device model, kind and given views); writes
    per grading the old and new grade per standard and whether it changed (gradings.csv), the confusion
    old -> new per standard (summary.csv, summary.json), and prints the summary. Runs on Dask: in this
    process, in --workers processes, or on a --scheduler cluster, one model load per worker."""
    from pydantic import ValidationError

    from model.rules import list_standards
    from serving.cli import _check_standards, _check_storage, _fail
    from serving.settings import FineSettings, StorageSettings, settings_error_line

    _check_standards(standard)
    try:
        settings = StorageSettings()
        # As the service grades: with the fine network beside MODEL unless REFURBGRADE_FINE_PASS is false.
        fine = FineSettings().fine_pass
    except ValidationError as exc:
        _fail(f"invalid settings: {settings_error_line(exc)}")
    _check_storage(settings.db_url)
    from serving.predictor import ModelLoadError
    from serving.regrade import RegradeJob, default_threads, format_summary, job_model, run_regrade

    model_path, intra_op_threads = str(model.resolve()), threads or default_threads(workers)
    try:
        job_model(model_path, intra_op_threads, fine)
    except ModelLoadError as exc:
        _fail(f"cannot grade with the model: {exc}")
    standards = (
        tuple(s.strip().lower() for s in standard.split(",") if s.strip())
        if standard
        else tuple(list_standards())
    )
    job = RegradeJob(
        db_url=settings.db_url,
        blobs=settings,
        model_path=model_path,
        standards=standards,
        since=_when(since, "--since"),
        until=_when(until, "--until"),
        tenant=tenant,
        intra_op_threads=intra_op_threads,
        fine_pass=fine,
    )
    try:
        result = run_regrade(job, out, workers=workers, partition_size=partition_size, scheduler=scheduler)
    except RuntimeError as exc:
        _fail(str(exc))
    typer.echo(format_summary(result))
