"""The active model across replicas (issue 20): recorded in the database, followed by every process.

`activate` (POST /v1/models/activate) loads and verifies the file on the replica that was asked, then
writes the `active_model` row, then swaps the model in there: a file that does not load or fails its
checks is never recorded, so it becomes active nowhere. Every process runs a `ModelWatcher` that reads
the row every REFURBGRADE_MODEL_POLL_S (a poll works the same on SQLite and PostgreSQL) and, when it names
other bytes than the ones it serves, loads that file from its own REFURBGRADE_MODELS_DIR, checks it
(the contract checks of `load_model`, and the SHA-256 the row recorded, so every replica serves the same
bytes) and swaps it in; when that fails it keeps the model it has, logs why, and tries again a minute
later or as soon as the row changes. At start-up a process follows the row before it serves its first
request; without a row it serves REFURBGRADE_MODEL_PATH.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from serving.db import ActiveModel, utcnow
from serving.predictor import Model, ModelLoadError, load_model

log = logging.getLogger("refurbgrade.models")

ROW_ID = 1
RETRY_FAILED_S = 60.0  # a row whose file failed here is tried again after this, or when it changes


@dataclass(frozen=True)
class Recorded:
    path: str
    sha256: str
    version: str
    activated_at: object

    @property
    def key(self) -> tuple:
        return (self.path, self.sha256, self.activated_at)


def read_active(sessions: sessionmaker) -> Recorded | None:
    with sessions() as s:
        row = s.get(ActiveModel, ROW_ID)
        if row is None:
            return None
        return Recorded(row.path, row.sha256, row.version, row.activated_at)


def record_active(sessions: sessionmaker, model: Model, path: str, actor: str | None) -> None:
    """Write the row (insert or update: the same on SQLite and PostgreSQL, two admins at once included)."""
    values = {
        "path": path,
        "sha256": model.sha256,
        "name": model.card.name,
        "version": model.card.version,
        "activated_at": utcnow(),
        "activated_by": actor,
    }
    for _ in range(2):
        with sessions() as s:
            row = s.get(ActiveModel, ROW_ID, with_for_update=True)
            if row is None:
                s.add(ActiveModel(id=ROW_ID, **values))
            else:
                for k, v in values.items():
                    setattr(row, k, v)
            try:
                s.commit()
                return
            except IntegrityError:  # another replica inserted the first row meanwhile: update it
                s.rollback()
    raise RuntimeError("could not record the active model")


def model_file(models_dir: Path, path: str) -> Path:
    """The recorded path inside this process's models folder; ModelLoadError when it leaves the folder."""
    folder = models_dir.resolve()
    candidate = (folder / path).resolve()
    if folder not in candidate.parents or candidate.suffix != ".onnx":
        raise ModelLoadError(f"{path}: not a .onnx file inside {folder}")
    return candidate


def install(state, model: Model) -> Model:
    """Swap `model` in (callers hold `state.swap_lock`) and update the model_info metric; the old one."""
    old = state.slot.swap(model)
    if old is not model:
        state.metrics.model_info.remove(old.card.name, old.card.version)
        state.metrics.model_info.labels(model.card.name, model.card.version).set(1)
    return old


def activate(state, candidate: Path, actor: str | None) -> Model:
    """Load and verify `candidate` (inside the models folder), record it, swap it in here.
    ModelLoadError when the file cannot be served: nothing is recorded or swapped then."""
    s = state.settings
    rel = candidate.relative_to(s.models_dir.resolve()).as_posix()
    with state.swap_lock:
        model = load_model(candidate, s.intra_op_threads, s.inter_op_threads, s.ort_spinning, s.fine_pass)
        record_active(state.sessions, model, rel, actor)
        install(state, model)
    log.info(
        "activated model %s (%s)",
        rel,
        model.version,
        extra={"fields": {"model_path": rel, "model_version": model.version, "model_sha256": model.sha256}},
    )
    return model


class ModelWatcher:
    """Follows the `active_model` row in one process (a daemon thread; `sync` is one look)."""

    def __init__(self, state, poll_s: float):
        self.state = state
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: dict[tuple, float] = {}  # row key -> when its file last failed here

    def sync(self) -> bool:
        """Serve the recorded model if it is not served yet; True when a model was swapped in."""
        st = self.state
        row = read_active(st.sessions)
        if row is None or row.sha256 == st.slot.current.sha256:
            return False
        failed_at = self._failed.get(row.key)
        if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_S:
            return False
        s = st.settings
        with st.swap_lock:
            row = read_active(st.sessions)  # an activation here may have changed it meanwhile
            if row is None or row.sha256 == st.slot.current.sha256:
                return False
            try:
                path = model_file(s.models_dir, row.path)
                model = load_model(path, s.intra_op_threads, s.inter_op_threads, s.ort_spinning, s.fine_pass)
                if model.sha256 != row.sha256:
                    raise ModelLoadError(
                        f"{path}: its SHA-256 is {model.sha256[:12]}..., the activated file's "
                        f"{row.sha256[:12]}... (another file of the same name?)"
                    )
            except ModelLoadError as exc:
                self._failed[row.key] = time.monotonic()
                log.error(
                    "keeping model %s: the activated model %s cannot be served here: %s",
                    st.slot.current.path.name,
                    row.path,
                    exc,
                    extra={"fields": {"model_path": row.path, "model_version": row.version}},
                )
                return False
            old = install(st, model)
        self._failed.pop(row.key, None)
        log.info(
            "now serving model %s (%s), the one recorded as active; was %s",
            row.path,
            model.version,
            old.path.name,
            extra={"fields": {"model_path": row.path, "model_version": model.version}},
        )
        return True

    def start(self) -> ModelWatcher:
        self._thread = threading.Thread(target=self._run, name="refurbgrade-model-watcher", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.sync()
            except Exception:  # a database hiccup: look again at the next poll
                log.warning("could not read the active model", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def start_watcher(state, poll_s: float) -> ModelWatcher:
    """Follow the recorded model now (before the first request), then every `poll_s` seconds."""
    watcher = ModelWatcher(state, poll_s)
    try:
        watcher.sync()
    except Exception:
        log.warning("could not read the active model at start-up", exc_info=True)
    return watcher.start()
