"""Bulk re-grading (issue 20): every stored grading's photos graded again by another model, on Dask.

For ML engineers after a model change: what would the archive's grades be with the new model? The job
reads the gradings (database) and their photos (blob store), grades each device again with the same
pipeline as the service (`serving.pipeline.grade_device`, the device model, kind and caller-given views
of the original request, the same standards), and writes a comparison: per grading its old and new grade
under each standard and whether it changed, and a summary (per standard a confusion table old -> new
and the share changed). Nothing is written to the database: its connections are read-only
(`read_only_engine`), and the stored gradings stay as first answered.

Streaming, on an existing engine (dask.bag): the driver walks the matching grading ids in id order once
(only ids, a page at a time) and keeps every `partition_size`-th as a boundary, so it holds a few
bytes per partition, never the archive. Each Dask partition is one id range: the worker reads its
gradings, loads the model once per worker process (`_model`, cached; never per photo), grades them one
by one, writes its rows to its own CSV part file and returns only counts. The driver merges the counts
and concatenates the parts. Local: `workers=1` runs in this process, `workers=N` in N processes
(dask's multiprocessing scheduler); `scheduler="tcp://host:8786"` hands the partitions to a
dask.distributed cluster whose workers can reach the same database and blob store.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, select

from serving.db import Grading, GradingGrade, GradingPhoto, as_utc, make_engine
from serving.settings import BlobSettings

DEFAULT_PARTITION_SIZE = 500
STATUSES = ("ok", "missing_photos", "undecodable", "error")


@dataclass(frozen=True)
class RegradeJob:
    """What to re-grade and with what; pickled to every worker, so only plain values."""

    db_url: str
    blobs: BlobSettings  # where the photos are (DATA_DIR/blobs, file:// or s3://: REFURBGRADE_BLOB_URL)
    model_path: str
    standards: tuple[str, ...]  # the columns of the comparison
    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at < until (the job pins it to its start when not given)
    tenant: str | None = None
    intra_op_threads: int = 1
    # With the fine network beside the model, where there is one (REFURBGRADE_FINE_PASS).
    fine_pass: bool = True


@dataclass(frozen=True)
class IdRange:
    """One partition: the matching gradings with after < id <= last (after None: from the first)."""

    index: int
    after: str | None
    last: str


@dataclass
class Summary:
    """Counts only: what a partition sends back to the driver, merged with `add`."""

    gradings: int = 0
    status: Counter = field(default_factory=Counter)
    changed_any: int = 0
    # standard -> "old\tnew" -> gradings (a tab-joined key keeps it JSON- and pickle-friendly)
    confusion: dict[str, Counter] = field(default_factory=dict)
    review_old: int = 0
    review_new: int = 0

    def add(self, other: Summary) -> Summary:
        self.gradings += other.gradings
        self.status.update(other.status)
        self.changed_any += other.changed_any
        for std, pairs in other.confusion.items():
            self.confusion.setdefault(std, Counter()).update(pairs)
        self.review_old += other.review_old
        self.review_new += other.review_new
        return self

    def compared(self, std: str) -> int:
        return sum(self.confusion.get(std, Counter()).values())

    def changed(self, std: str) -> int:
        return sum(
            n for k, n in self.confusion.get(std, Counter()).items() if k.split("\t")[0] != k.split("\t")[1]
        )

    def table(self, std: str) -> tuple[list[str], list[str], dict[tuple[str, str], int]]:
        """Old grades (rows), new grades (columns), counts, in the standard's order of grades."""
        from model.rules import load_standard
        from model.rules.engine import UNGRADABLE

        cells = {tuple(k.split("\t")): n for k, n in self.confusion.get(std, Counter()).items()}
        try:
            order = [*load_standard(std).grade_names, UNGRADABLE]
        except Exception:  # a standard the bundled rules no longer have: alphabetical
            order = []
        rank = {g: i for i, g in enumerate(order)}

        def key(g):
            return (rank.get(g, len(rank)), g)

        return (
            sorted({o for o, _ in cells}, key=key),
            sorted({n for _, n in cells}, key=key),
            cells,
        )


def read_only_engine(url: str) -> Engine:
    """An engine whose connections refuse writes: SQLite `query_only`, PostgreSQL read-only transactions."""
    if url.startswith("sqlite"):
        engine = make_engine(url)

        @event.listens_for(engine, "connect")
        def _query_only(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA query_only=ON")
            cur.close()

        return engine
    return create_engine(
        url, pool_pre_ping=True, connect_args={"options": "-c default_transaction_read_only=on"}
    )


def _filtered(stmt, job: RegradeJob):
    if job.since is not None:
        stmt = stmt.where(Grading.created_at >= job.since)
    if job.until is not None:
        stmt = stmt.where(Grading.created_at < job.until)
    if job.tenant is not None:
        stmt = stmt.where(Grading.tenant == job.tenant)
    return stmt


def id_ranges(engine: Engine, job: RegradeJob, partition_size: int) -> Iterator[IdRange]:
    """The job's gradings cut into id ranges of `partition_size`, read as a stream of ids."""
    stmt = _filtered(select(Grading.id), job).order_by(Grading.id).execution_options(yield_per=10_000)
    after, last, n, k = None, None, 0, 0
    with engine.connect() as conn:
        for (gid,) in conn.execute(stmt):
            last, n = gid, n + 1
            if n == partition_size:
                yield IdRange(k, after, last)
                after, n, k = last, 0, k + 1
    if n:
        yield IdRange(k, after, last)


# -- the worker side ---------------------------------------------------------------------------------

_MODELS: dict[tuple[str, int, bool], object] = {}


def job_model(path: str, threads: int, fine: bool = True):
    """The new model, loaded once per process: the command's check, the job's version and every
    partition a worker in the same process runs share it; `fine`: with the fine network beside it, as
    the service loads it unless REFURBGRADE_FINE_PASS is false."""
    from serving.memory import no_hugepage_hint
    from serving.predictor import load_model

    key = (path, threads, fine)
    if key not in _MODELS:
        no_hugepage_hint()  # a re-grading worker grades as the service does (serving/memory.py)
        _MODELS[key] = load_model(path, intra_op_threads=threads, fine=fine)
    return _MODELS[key]


def columns(standards: Sequence[str]) -> list[str]:
    cols = [
        "grading_id",
        "tenant",
        "created_at",
        "device_model",
        "photos",
        "old_model_version",
        "new_model_version",
        "status",
        "error",
        "old_needs_review",
        "new_needs_review",
        "changed",
    ]
    for std in standards:
        cols += [f"{std}_old", f"{std}_new", f"{std}_changed"]
    return cols


def _caller_views(body: dict, n: int) -> list:
    """The views the caller gave in the original request (the model's own are decided again)."""
    from model.taxonomy import View

    views: list = [None] * n
    for p in body.get("photos") or []:
        k = p.get("index")
        if isinstance(k, int) and 0 <= k < n and p.get("view_source") == "caller" and p.get("view"):
            with contextlib.suppress(ValueError):  # a view this taxonomy no longer has: the model decides
                views[k] = View(p["view"])
    return views


def _device(device_model: str | None, device_kind: str | None, kind_source: str | None = None):
    from serving.pipeline import RequestError, resolve_device
    from serving.schemas import KIND_NOT_NAMED

    if kind_source in KIND_NOT_NAMED:  # the caller did not say: the photos decide again
        device_kind = None
    try:
        return resolve_device(device_model, device_kind)
    except RequestError:  # the catalogue no longer knows it: grade in relative units, as the API would
        return resolve_device(None, device_kind)


def regrade_one(model, blobs, row, photos: list, old: dict[str, str], standards: Sequence[str]) -> dict:
    """One stored grading graded again: its comparison row."""
    from model.preprocess import DecodeError
    from serving.pipeline import PhotoError, grade_device, run_direct

    out = {
        "grading_id": row.id,
        "tenant": row.tenant,
        "created_at": as_utc(row.created_at).isoformat(),
        "device_model": row.device_model or "",
        "photos": len(photos),
        "old_model_version": row.model_version,
        "new_model_version": model.version,
        "status": "ok",
        "error": "",
        "old_needs_review": row.needs_review,
        "new_needs_review": "",
        "changed": "",
    }
    for std in standards:
        out[f"{std}_old"], out[f"{std}_new"], out[f"{std}_changed"] = old.get(std, ""), "", ""
    try:
        datas = [blobs.get(p.sha256) for p in photos]
    except (FileNotFoundError, OSError) as exc:
        out["status"], out["error"] = "missing_photos", f"photo blob missing (erased by retention?): {exc}"
        return out
    asked = [s for s in standards if s in old] or list(standards)
    try:
        graded = grade_device(
            run_direct,
            model,
            datas,
            device=_device(row.device_model, row.device_kind, (row.body or {}).get("device_kind_source")),
            standards=asked,
            views=_caller_views(row.body or {}, len(datas)),
            filenames=[p.filename for p in photos],
        )
    except (PhotoError, DecodeError) as exc:
        out["status"], out["error"] = "undecodable", str(exc)
        return out
    except Exception as exc:  # one bad grading must not end a job over millions
        out["status"], out["error"] = "error", f"{type(exc).__name__}: {exc}"
        return out
    changed = False
    for std in asked:
        new = graded.grades[std].grade
        out[f"{std}_new"] = new
        if std in old:
            out[f"{std}_changed"] = new != old[std]
            changed |= new != old[std]
    out["new_needs_review"] = graded.needs_review
    out["changed"] = changed
    return out


def _open_blobs(job: RegradeJob):
    from serving.blobs import open_blob_store

    return open_blob_store(job.blobs, check=False)


def run_partition(rng: IdRange, job: RegradeJob, parts_dir: str) -> Summary:
    """Grade one id range again; its rows go to `parts_dir/part-NNNNN.csv`, its counts are returned."""
    model = job_model(job.model_path, job.intra_op_threads, job.fine_pass)
    blobs = _open_blobs(job)
    engine = read_only_engine(job.db_url)
    stmt = _filtered(
        select(
            Grading.id,
            Grading.tenant,
            Grading.created_at,
            Grading.device_model,
            Grading.device_kind,
            Grading.model_version,
            Grading.needs_review,
            Grading.body,
        ),
        job,
    ).where(Grading.id <= rng.last)
    if rng.after is not None:
        stmt = stmt.where(Grading.id > rng.after)
    summary = Summary()
    final = Path(parts_dir) / f"part-{rng.index:05d}.csv"
    tmp = final.with_suffix(".tmp")
    try:
        with engine.connect() as conn, tmp.open("w", newline="") as f:
            rows = list(conn.execute(stmt.order_by(Grading.id)))
            ids = [r.id for r in rows]
            photos: dict[str, list] = {}
            for p in conn.execute(
                select(GradingPhoto.grading_id, GradingPhoto.idx, GradingPhoto.sha256, GradingPhoto.filename)
                .where(GradingPhoto.grading_id.in_(ids))
                .order_by(GradingPhoto.grading_id, GradingPhoto.idx)
            ):
                photos.setdefault(p.grading_id, []).append(p)
            old: dict[str, dict[str, str]] = {}
            for g in conn.execute(
                select(GradingGrade.grading_id, GradingGrade.standard, GradingGrade.grade).where(
                    GradingGrade.grading_id.in_(ids)
                )
            ):
                old.setdefault(g.grading_id, {})[g.standard] = g.grade
            writer = csv.DictWriter(f, fieldnames=columns(job.standards))
            writer.writeheader()
            for row in rows:
                grades = old.get(row.id, {})
                out = regrade_one(model, blobs, row, photos.get(row.id, []), grades, job.standards)
                writer.writerow(out)
                summary.gradings += 1
                summary.status[out["status"]] += 1
                if out["status"] != "ok":
                    continue
                summary.changed_any += bool(out["changed"])
                summary.review_old += bool(row.needs_review)
                summary.review_new += bool(out["new_needs_review"])
                for std in job.standards:
                    if out[f"{std}_old"] and out[f"{std}_new"]:
                        key = f"{out[f'{std}_old']}\t{out[f'{std}_new']}"
                        summary.confusion.setdefault(std, Counter())[key] += 1
        tmp.replace(final)
    finally:
        engine.dispose()
        tmp.unlink(missing_ok=True)
    return summary


def _bag_partition(items: list[IdRange], job: RegradeJob, parts_dir: str) -> list[Summary]:
    return [run_partition(rng, job, parts_dir) for rng in items]


# -- the driver ----------------------------------------------------------------------------------------


@dataclass
class RegradeResult:
    out_dir: Path
    summary: Summary
    job: RegradeJob
    partitions: int
    model_version: str
    seconds: float

    def share_changed(self, std: str) -> float | None:
        n = self.summary.compared(std)
        return self.summary.changed(std) / n if n else None


def run_regrade(
    job: RegradeJob,
    out_dir: str | Path,
    workers: int = 1,
    partition_size: int = DEFAULT_PARTITION_SIZE,
    scheduler: str | None = None,
) -> RegradeResult:
    """Re-grade the job's gradings on Dask and write `out_dir`/gradings.csv, summary.csv, summary.json."""
    import time

    import dask
    import dask.bag as db

    t0 = time.perf_counter()
    out = Path(out_dir)
    parts = out / "parts"
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True)
    if job.until is None:  # a snapshot: gradings stored while the job runs are not half-included
        job = replace(job, until=datetime.now(UTC))
    # Refuses a bad file up front; the command checked it with the same key, so this loads nothing.
    model_version = job_model(job.model_path, job.intra_op_threads, job.fine_pass).version
    engine = read_only_engine(job.db_url)
    try:
        ranges = list(id_ranges(engine, job, partition_size))  # one small record per partition
    finally:
        engine.dispose()
    summary = Summary()
    if ranges:
        bag = db.from_sequence(ranges, npartitions=len(ranges))
        summaries = bag.map_partitions(_bag_partition, job, str(parts))
        if scheduler:
            try:
                from dask.distributed import Client
            except ImportError as exc:
                raise RuntimeError(
                    "--scheduler needs dask.distributed: pip install 'dask[distributed]'"
                ) from exc
            with Client(scheduler):
                computed = summaries.compute()
        elif workers > 1:
            computed = summaries.compute(scheduler="processes", num_workers=workers)
        else:
            with dask.config.set(scheduler="synchronous"):
                computed = summaries.compute()
        for s in computed:
            summary.add(s)
    _concatenate(sorted(parts.glob("part-*.csv")), out / "gradings.csv", columns(job.standards))
    shutil.rmtree(parts, ignore_errors=True)
    result = RegradeResult(out, summary, job, len(ranges), model_version, time.perf_counter() - t0)
    _write_summary(result)
    return result


def _concatenate(parts: list[Path], dest: Path, header: list[str]) -> None:
    """The part files in order, one header (a stream copy: never the whole table in memory)."""
    with dest.open("w", newline="") as f:
        csv.writer(f).writerow(header)
        for p in parts:
            with p.open(newline="") as src:
                src.readline()
                shutil.copyfileobj(src, f)


def _write_summary(r: RegradeResult) -> None:
    s = r.summary
    with (r.out_dir / "summary.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["standard", "old_grade", "new_grade", "gradings", "share_of_old_grade"])
        for std in r.job.standards:
            olds, news, cells = s.table(std)
            for o in olds:
                row_total = sum(cells.get((o, n), 0) for n in news)
                for n in news:
                    if cells.get((o, n)):
                        w.writerow([std, o, n, cells[(o, n)], round(cells[(o, n)] / row_total, 4)])
    doc = {
        "model_path": r.job.model_path,
        "new_model_version": r.model_version,
        "filters": {
            "since": r.job.since.isoformat() if r.job.since else None,
            "until": r.job.until.isoformat() if r.job.until else None,
            "tenant": r.job.tenant,
        },
        "gradings": s.gradings,
        "status": dict(s.status),
        "changed_any": s.changed_any,
        "needs_review": {"old": s.review_old, "new": s.review_new},
        "standards": {
            std: {
                "compared": s.compared(std),
                "changed": s.changed(std),
                "share_changed": r.share_changed(std),
                "confusion": {f"{o} -> {n}": c for (o, n), c in sorted(s.table(std)[2].items())},
            }
            for std in r.job.standards
        },
        "partitions": r.partitions,
        "seconds": round(r.seconds, 2),
    }
    (r.out_dir / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")


def format_summary(r: RegradeResult) -> str:
    """The printed summary: counts, then per standard the share changed and the confusion old -> new."""
    s = r.summary
    ok = s.status.get("ok", 0)
    lines = [
        f"re-graded {ok} of {s.gradings} gradings with {r.model_version} in {r.seconds:.1f} s "
        f"({r.partitions} partitions); changed under any standard: {s.changed_any}"
        + (f" ({s.changed_any / ok:.1%})" if ok else ""),
        f"needs review: {s.review_old} before, {s.review_new} now",
    ]
    skipped = {k: v for k, v in s.status.items() if k != "ok"}
    if skipped:
        lines.append("not re-graded: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())))
    for std in r.job.standards:
        n = s.compared(std)
        if not n:
            continue
        lines.append("")
        lines.append(
            f"{std}: {s.changed(std)} of {n} changed ({s.changed(std) / n:.1%}); rows old, columns new"
        )
        olds, news, cells = s.table(std)
        width = max(len(g) for g in [*olds, *news, "old \\ new"]) + 2
        lines.append("old \\ new".ljust(width) + "".join(g.rjust(width) for g in news))
        for o in olds:
            lines.append(o.ljust(width) + "".join(str(cells.get((o, g), 0)).rjust(width) for g in news))
    lines.append("")
    lines.append(f"written: {r.out_dir / 'gradings.csv'}, summary.csv, summary.json")
    return "\n".join(lines)


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 2) // max(1, workers))
