"""CLI commands of the service: `serve`, `grade` (offline batch grading) and `keys create/list/revoke`.

Imports of onnxruntime, FastAPI, SQLAlchemy and uvicorn stay inside the command functions, so
`refurbgrade --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

keys_app = typer.Typer(help="API keys for the grading service.", no_args_is_help=True)
retention_app = typer.Typer(
    help="Photo retention: erase old gradings' photos (the records stay).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("grade")(grade)
    app.add_typer(keys_app, name="keys")
    app.add_typer(retention_app, name="retention")


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit 2: a start-up problem the user can fix, not a crash to debug."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(2)


def _check_storage(db_url: str) -> None:
    """Open the gradings database once, so a bad URL or an unwritable data folder is one line, not a
    traceback out of the app's start-up."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from serving.db import make_engine

    try:
        url = make_url(db_url)
        if url.get_backend_name() == "sqlite" and url.database:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(db_url)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except (SQLAlchemyError, OSError, ValueError) as exc:
        shown = db_url.split("@")[-1] if "@" in db_url else db_url  # never print a password
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _fail(f"cannot open the database {shown}: {reason} (REFURBGRADE_DATA_DIR / REFURBGRADE_DATABASE_URL)")


def _check_blobs(settings) -> None:
    """Reach the blob store once (an S3 bucket: REFURBGRADE_BLOB_URL), so a wrong bucket, endpoint or
    credentials is one line at start-up, not a failed first grading."""
    from serving.blobs import BlobStoreError, open_blob_store

    try:
        open_blob_store(settings)
    except (BlobStoreError, OSError, ValueError) as exc:
        _fail(
            f"cannot open the blob store {settings.blob_url or settings.blob_dir}: {exc} (REFURBGRADE_BLOB_URL)"
        )


def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    model: Annotated[
        Path | None, typer.Option(help="model file (default REFURBGRADE_MODEL_PATH, else the bundled model)")
    ] = None,
    log_level: Annotated[str, typer.Option(help="log level (debug, info, warning, error)")] = "info",
    access_log: Annotated[
        bool,
        typer.Option(help="also uvicorn's own access log (the service logs every request itself)"),
    ] = False,
) -> None:
    """Run the grading API (uvicorn, one process; ONNX Runtime threads per REFURBGRADE_INTRA_OP_THREADS)."""
    import os

    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    if model is not None:
        os.environ["REFURBGRADE_MODEL_PATH"] = str(model)
    from serving.settings import get_settings, settings_error_line

    try:
        settings = get_settings()
    except ValidationError as exc:
        _fail(f"invalid settings: {settings_error_line(exc)}")
    except SettingsError as exc:
        _fail(f"invalid settings: {exc}")

    # The app loads the model in its lifespan, where a broken file ends in uvicorn's traceback: load it
    # here first (a fraction of a second) so that it is one line instead.
    from serving.predictor import load_model

    try:
        load_model(settings.model_path, intra_op_threads=1)
    except ValueError as exc:
        _fail(f"cannot serve the model: {exc}")
    _check_storage(settings.db_url)
    _check_blobs(settings)

    import logging

    import uvicorn

    from serving.app import create_app
    from serving.server import uvicorn_config

    # JSON log lines on stderr, header/keep-alive timeouts (issue 20): docs/operations.md#logs
    config = uvicorn_config(create_app(settings), settings, host, port, log_level.lower(), access_log)
    data = "REFURBGRADE_DATABASE_URL" if settings.database_url else str(settings.data_dir)
    logging.getLogger("refurbgrade").info(
        "serving %s on http://%s:%d (docs at /docs); data in %s",
        settings.model_path,
        host,
        port,
        data,
        extra={"fields": {"model_path": str(settings.model_path), "data": data}},
    )
    uvicorn.Server(config).run()


def _check_standards(standard: str | None) -> None:
    """Unknown standard names fail at once, with the closest bundled ones."""
    import difflib

    from model.rules import list_standards

    known = list_standards()
    for name in (s.strip().lower() for s in (standard or "").split(",") if s.strip()):
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]}? " if close else ""
            _fail(f"unknown standard {name!r} (--standard); {hint}known: {', '.join(known)}")


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
        typer.Option(help="model file (default REFURBGRADE_MODEL_PATH, else the bundled model)"),
    ] = None,
    threads: Annotated[int, typer.Option(help="ONNX Runtime intra-op threads")] = 2,
    server: Annotated[
        str | None,
        typer.Option(help="grade through this running service (e.g. http://127.0.0.1:8000) instead of here"),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="REFURBGRADE_API_KEY", help="the service's API key (with --server)")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="devices in flight (with --server)")] = 4,
) -> None:
    """Grade photos here, or through a running service with --server; bad files are skipped.

    Each photo is a device unless --device-per-folder; one JSON line per device, and on stderr at the
    end each device's grades and why (up to 30 devices), then the outcomes (graded, needs review,
    ungradable, skipped)."""
    import os

    _check_standards(standard)
    from serving.photo_batch import Batch

    batch = Batch(
        tuple(paths),
        standard=standard,
        device_model=device_model,
        device_kind=device_kind,
        jsonl=jsonl,
        device_per_folder=device_per_folder,
    )
    if server is not None:
        if not api_key:
            _fail("--server needs --api-key (or REFURBGRADE_API_KEY)")
        from serving.remote_grader import run_remote

        raise typer.Exit(run_remote(batch, server=server, api_key=api_key, concurrency=concurrency))
    from serving.settings import DEFAULT_MODEL_PATH

    path = model or Path(os.environ.get("REFURBGRADE_MODEL_PATH") or DEFAULT_MODEL_PATH)
    if not path.is_file():
        if model is not None:
            _fail(f"model file {path} does not exist (--model)")
        if os.environ.get("REFURBGRADE_MODEL_PATH"):
            _fail(f"model file {path} does not exist (REFURBGRADE_MODEL_PATH)")
        _fail(f"the bundled model {path} does not exist: pass --model or set REFURBGRADE_MODEL_PATH")
    from serving.batch_grader import run_batch

    code = run_batch(batch, overlays=overlays, model_path=path, threads=threads)
    raise typer.Exit(code)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="refurbisher, auditor or admin")],
    tenant: Annotated[
        str | None, typer.Option(help="the refurbisher's tenant (required for refurbisher)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="a note to recognise the key")] = None,
    expires_in: Annotated[
        str | None,
        typer.Option(help="the key stops working after this long: 90d, 12h, 30m, 2w (default never)"),
    ] = None,
) -> None:
    """Create an API key in the service's database and print its token (shown once)."""
    from serving.auth import Role, create_key, parse_lifetime
    from serving.db import make_engine, migrate, session_factory
    from serving.settings import StorageSettings

    lifetime = None
    if expires_in is not None:
        try:
            lifetime = parse_lifetime(expires_in)
        except ValueError as exc:
            _fail(f"--expires-in: {exc}")
    if role not in {r.value for r in Role}:
        typer.echo(f"error: role must be one of {', '.join(r.value for r in Role)}", err=True)
        raise typer.Exit(2)
    if role == "refurbisher" and not tenant:
        typer.echo("error: a refurbisher key needs --tenant", err=True)
        raise typer.Exit(2)
    settings = StorageSettings()
    _check_storage(settings.db_url)
    engine = make_engine(settings.db_url)
    try:
        migrate(engine)
        with session_factory(engine)() as s:
            row, token = create_key(s, role, tenant, name, lifetime)
    finally:
        engine.dispose()
    where = "REFURBGRADE_DATABASE_URL" if settings.database_url else settings.data_dir
    until = f", expires {row.expires_at:%Y-%m-%d %H:%M} UTC" if row.expires_at else ""
    typer.echo(
        f"created key {row.id} (role {row.role}{', tenant ' + tenant if tenant else ''}{until}) in {where}",
        err=True,
    )
    typer.echo(token)


def _key_db():
    """An open session factory on the service's database (migrated), and its engine to dispose."""
    from serving.db import make_engine, migrate, session_factory
    from serving.settings import StorageSettings

    settings = StorageSettings()
    _check_storage(settings.db_url)
    engine = make_engine(settings.db_url)
    migrate(engine)
    return session_factory(engine), engine


@keys_app.command("list")
def keys_list(
    all_keys: Annotated[bool, typer.Option("--all", help="also revoked and expired keys")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per key")] = False,
) -> None:
    """List API keys, newest first: id, role, tenant, name, created, expires, status (never a token)."""
    import json

    from serving.auth import list_keys

    sessions, engine = _key_db()
    try:
        with sessions() as s:
            rows = list_keys(s, include_inactive=all_keys)
            keys = [
                {
                    "id": r.id,
                    "role": r.role,
                    "tenant": r.tenant,
                    "name": r.name,
                    "created_at": r.created_at.isoformat(),
                    "expires_at": r.expires_at.isoformat() if r.expires_at else None,
                    "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
                    "status": r.status(),
                }
                for r in rows
            ]
    finally:
        engine.dispose()
    if as_json:
        for k in keys:
            typer.echo(json.dumps(k))
        return
    rows_out = [["id", "role", "tenant", "name", "created", "expires", "status"]] + [
        [
            k["id"],
            k["role"],
            k["tenant"] or "-",
            k["name"] or "-",
            k["created_at"][:16].replace("T", " "),
            (k["expires_at"] or "never")[:16].replace("T", " "),
            k["status"],
        ]
        for k in keys
    ]
    widths = [max(len(r[i]) for r in rows_out) for i in range(len(rows_out[0]))]
    for r in rows_out:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


@keys_app.command("revoke")
def keys_revoke(
    key_ids: Annotated[list[str], typer.Argument(help="key ids (the KEY_ID of rg_KEY_ID_...)")],
) -> None:
    """Revoke keys at once: their next request is 401 and their review sessions end. Exit 1 when a key
    does not exist."""
    from serving.auth import revoke_key

    sessions, engine = _key_db()
    missing = 0
    try:
        with sessions() as s:
            for key_id in key_ids:
                row = revoke_key(s, key_id)
                if row is None:
                    typer.echo(f"error: no key {key_id}", err=True)
                    missing += 1
                else:
                    typer.echo(
                        f"revoked key {key_id} (role {row.role}, since {row.revoked_at:%Y-%m-%d %H:%M} UTC)"
                    )
    finally:
        engine.dispose()
    raise typer.Exit(1 if missing else 0)


@retention_app.command("run")
def retention_run(
    older_than: Annotated[
        str | None,
        typer.Option(
            help="erase the photos of gradings older than this: 90d, 12h, 2w (default REFURBGRADE_RETENTION_DAYS)"
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="count what would be erased, erase nothing")
    ] = False,
) -> None:
    """Erase the photos, overlays and dispute photos of gradings older than an age, once (the service
    also sweeps every hour when REFURBGRADE_RETENTION_DAYS is set). Gradings, their photo hashes and their
    history stay; a photo another grading still uses stays too."""
    from datetime import timedelta

    from serving.blobs import BlobStoreError, open_blob_store
    from serving.retention import parse_age, run_retention

    sessions, engine = _key_db()
    from serving.settings import StorageSettings

    settings = StorageSettings()
    try:
        if older_than is not None:
            try:
                age = parse_age(older_than)
            except ValueError as exc:
                _fail(f"--older-than: {exc}")
        elif settings.retention_days is not None:
            age = timedelta(days=settings.retention_days)
        else:
            _fail("retention is off: pass --older-than (e.g. 90d) or set REFURBGRADE_RETENTION_DAYS")
        try:
            blobs = open_blob_store(settings)  # DATA_DIR/blobs or REFURBGRADE_BLOB_URL (issue 20)
        except BlobStoreError as exc:
            _fail(f"cannot reach the blob store: {exc}")
        done = run_retention(sessions, blobs, age, dry_run=dry_run)
    finally:
        engine.dispose()
    days = age.total_seconds() / 86400
    verb = "would erase" if dry_run else "erased"
    typer.echo(
        f"{verb} the photos of {len(done.gradings)} grading(s) older than {days:g} days: {done.photos} photo(s); "
        f"{done.blobs_deleted} file(s) {'to delete' if dry_run else 'deleted'} ({done.bytes_deleted / 1e6:.1f} MB of photos), "
        f"{done.blobs_kept} kept for other gradings"
    )
