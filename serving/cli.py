"""CLI commands of the service: `serve`, `grade` (offline batch grading) and `keys create`.

Imports of onnxruntime, FastAPI, SQLAlchemy and uvicorn stay inside the command functions, so
`refurbgrade --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

keys_app = typer.Typer(help="API keys for the grading service.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("grade")(grade)
    app.add_typer(keys_app, name="keys")


def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    model: Annotated[Path | None, typer.Option(help="model file (default REFURBGRADE_MODEL_PATH)")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the grading API (uvicorn, one process; ONNX Runtime threads per REFURBGRADE_INTRA_OP_THREADS)."""
    import os

    import uvicorn
    from pydantic import ValidationError

    if model is not None:
        os.environ["REFURBGRADE_MODEL_PATH"] = str(model)
    from serving.app import create_app
    from serving.settings import get_settings

    try:
        settings = get_settings()
    except ValidationError as exc:
        typer.echo(f"error: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"refurbgrade: serving {settings.model_path} on http://{host}:{port} (docs at /docs)", err=True
    )
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=False)


def _photo_files(paths: list[Path]) -> list[tuple[Path, Path]]:
    """(file, its device group folder) for every file under `paths`."""
    out = []
    for p in paths:
        if p.is_dir():
            out += [(f, f.parent) for f in sorted(p.rglob("*")) if f.is_file() and not f.name.startswith(".")]
        else:
            out.append((p, p.parent))
    return out


def grade(
    paths: Annotated[list[Path], typer.Argument(help="photo files or folders")],
    standard: Annotated[str | None, typer.Option(help="standard(s), comma-separated (default: all)")] = None,
    device_model: Annotated[str | None, typer.Option(help="device model for sizes in mm")] = None,
    device_kind: Annotated[str | None, typer.Option(help="phone, tablet or laptop")] = None,
    jsonl: Annotated[
        Path | None, typer.Option(help="write one JSON line per device here (default stdout)")
    ] = None,
    overlays: Annotated[
        Path | None, typer.Option(help="write an overlay PNG per photo into this folder")
    ] = None,
    device_per_folder: Annotated[
        bool, typer.Option("--device-per-folder", help="grade each folder's photos as one device")
    ] = False,
    model: Annotated[
        Path | None,
        typer.Option(help="model file (default REFURBGRADE_MODEL_PATH, else models/default.onnx)"),
    ] = None,
    threads: Annotated[int, typer.Option(help="ONNX Runtime intra-op threads")] = 2,
) -> None:
    """Grade photos offline with the service's predictor; bad files are reported and skipped."""
    from serving.batch_grader import run_batch

    code = run_batch(
        paths=paths,
        files=_photo_files(paths),
        standard=standard,
        device_model=device_model,
        device_kind=device_kind,
        jsonl=jsonl,
        overlays=overlays,
        device_per_folder=device_per_folder,
        model_path=model,
        threads=threads,
    )
    raise typer.Exit(code)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="refurbisher, auditor or admin")],
    tenant: Annotated[
        str | None, typer.Option(help="the refurbisher's tenant (required for refurbisher)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="a note to recognise the key")] = None,
) -> None:
    """Create an API key in the service's database and print its token (shown once)."""
    from serving.auth import Role, create_key
    from serving.db import make_engine, migrate, session_factory
    from serving.settings import StorageSettings

    if role not in {r.value for r in Role}:
        typer.echo(f"error: role must be one of {', '.join(r.value for r in Role)}", err=True)
        raise typer.Exit(2)
    if role == "refurbisher" and not tenant:
        typer.echo("error: a refurbisher key needs --tenant", err=True)
        raise typer.Exit(2)
    settings = StorageSettings()
    engine = make_engine(settings.db_url)
    try:
        migrate(engine)
        with session_factory(engine)() as s:
            row, token = create_key(s, role, tenant, name)
    finally:
        engine.dispose()
    typer.echo(f"created key {row.id} (role {row.role}{', tenant ' + tenant if tenant else ''})", err=True)
    typer.echo(token)
