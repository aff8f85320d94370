"""CLI for reviewed gradings: `refurbgrade reviews export --since DATE --out DIR`.

Writes the gradings reviewed since DATE as a training manifest plus photos (serving.review.export),
reading the service's database and blob store (REFURBGRADE_DATA_DIR / REFURBGRADE_DATABASE_URL); it needs
no model file. Heavy imports stay inside the command.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

reviews_app = typer.Typer(help="Reviewed gradings: export them back into training.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(reviews_app, name="reviews")


def _when(value: str, option: str) -> datetime:
    try:
        d = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD) or ISO time", param_hint=option
        ) from exc
    from serving.db import as_utc  # the one normaliser; imported here to keep the CLI's start light

    return as_utc(d)


@reviews_app.command("export")
def export(
    since: Annotated[str, typer.Option(help="reviews at or after this date/time (YYYY-MM-DD or ISO, UTC)")],
    out: Annotated[Path, typer.Option(help="output folder: manifest.jsonl, photos/, summary.json")],
    until: Annotated[str | None, typer.Option(help="reviews before this date/time")] = None,
    val_fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="share of gradings put in val")] = 0.1,
) -> None:
    """Export reviewed gradings as a manifest `refurbgrade train` reads, corrections as labels."""
    from serving.blobs import open_blob_store
    from serving.db import make_engine, migrate, session_factory
    from serving.review.export import export_reviews
    from serving.settings import StorageSettings

    start, end = _when(since, "--since"), (_when(until, "--until") if until else None)
    settings = StorageSettings()
    engine = make_engine(settings.db_url)
    try:
        migrate(engine)
        summary = export_reviews(
            session_factory(engine), open_blob_store(settings), out, start, end, val_fraction
        )
    finally:
        engine.dispose()
    typer.echo(
        f"exported {summary.gradings} reviewed grading(s), {summary.photos} photo(s), "
        f"{summary.instances} defect label(s), {summary.grade_labels} photo(s) with grade labels -> {summary.manifest}",
        err=True,
    )
    typer.echo(summary.manifest)
