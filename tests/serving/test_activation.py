"""The active model in the database (issue 20, serving/activation.py), in process: activation records the
file that passed its checks; a process starting later serves it from its first request; a watcher swaps
in only the recorded bytes, keeps its model when the file fails, and does not retry it at every poll."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from serving import activation
from serving.db import ActiveModel
from tests.serving.conftest import Keys, pg_and_sqlite
from tests.serving.tiny_model import build_tiny_model, tiny_card

H = Keys.h


@pytest.fixture
def settings(settings, tmp_path, model_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(model_path, models / "tiny.onnx")
    build_tiny_model(models / "tiny-2.onnx", tiny_card(version="tiny-2"))
    return settings.model_copy(update={"model_path": models / "tiny.onnx", "models_dir": models})


def _version(client, keys) -> str:
    return client.get("/v1/models", headers=H(keys.admin)).json()["active"]["version"]


@pg_and_sqlite
def test_activation_is_recorded_and_a_new_process_starts_on_it(client, keys, settings):
    from serving.app import create_app

    assert activation.read_active(client.app.state.svc.sessions) is None  # no row: MODEL_PATH
    r = client.post("/v1/models/activate", json={"path": "tiny-2.onnx"}, headers=H(keys.admin))
    assert r.status_code == 200
    state = client.app.state.svc
    with state.sessions() as s:
        row = s.get(ActiveModel, 1)
        assert (row.path, row.version, row.sha256) == ("tiny-2.onnx", "tiny-2", state.slot.current.sha256)
        admin_id = row.activated_by
    assert admin_id is not None
    # again, and back: one row, updated
    for name, version in (("tiny.onnx", "tiny-1"), ("tiny-2.onnx", "tiny-2")):
        assert (
            client.post("/v1/models/activate", json={"path": name}, headers=H(keys.admin)).json()["version"]
            == version
        )
    with state.sessions() as s:
        assert s.query(ActiveModel).count() == 1
    # another process on the same database serves the recorded model from its first request
    with TestClient(create_app(settings)) as other:
        assert other.app.state.svc.slot.current.version == "tiny-2"


def test_the_watcher_swaps_only_the_recorded_bytes_and_keeps_its_model_otherwise(
    client, keys, settings, caplog, monkeypatch
):
    state = client.app.state.svc
    watcher = activation.ModelWatcher(state, poll_s=3600)
    assert watcher.sync() is False  # no row
    good = activation.load_model(settings.models_dir / "tiny-2.onnx")
    activation.record_active(state.sessions, good, "tiny-2.onnx", None)
    assert watcher.sync() is True and state.slot.current.version == "tiny-2"
    assert watcher.sync() is False  # already served

    # the row names bytes this replica's file does not have: refused, logged once, not retried at each poll
    tiny = activation.load_model(settings.models_dir / "tiny.onnx")
    build_tiny_model(settings.models_dir / "tiny-3.onnx", tiny_card(version="tiny-3"))
    other = activation.load_model(settings.models_dir / "tiny-3.onnx")
    build_tiny_model(settings.models_dir / "tiny-3.onnx", tiny_card(version="tiny-3b"))  # replaced meanwhile
    activation.record_active(state.sessions, other, "tiny-3.onnx", None)
    calls = []
    real_load = activation.load_model
    monkeypatch.setattr(activation, "load_model", lambda *a, **k: calls.append(a) or real_load(*a, **k))
    with caplog.at_level("ERROR", logger="refurbgrade.models"):
        assert watcher.sync() is False and watcher.sync() is False
    assert state.slot.current.version == "tiny-2" and len(calls) == 1
    assert "SHA-256" in caplog.text and "tiny-3.onnx" in caplog.text
    # a new activation is followed at once
    activation.record_active(state.sessions, tiny, "tiny.onnx", None)
    assert watcher.sync() is True and state.slot.current.version == "tiny-1"
    # a recorded path outside the models folder is refused too
    activation.record_active(state.sessions, good, "../escape.onnx", None)
    assert watcher.sync() is False and state.slot.current.version == "tiny-1"
