"""The commands work from any folder: the bundled model is found beside the installed packages, the
data folder is per user, and a bad model or setting is one line on stderr with a non-zero exit.

The CLI runs in a fresh interpreter whose current folder is a temporary one, without PYTHONPATH: only
the installed (editable) package can be found, as for a user who runs `refurbgrade` from their home.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from serving.settings import (
    DEFAULT_MODEL_PATH,
    Settings,
    StorageSettings,
    default_data_dir,
    settings_error_line,
)
from tests.serving.test_crash_and_cli import _free_port, _start

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "refurbgrade"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user: no REFURBGRADE_* settings, no PYTHONPATH, data under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFURBGRADE_") and k != "PYTHONPATH"}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    env["REFURBGRADE_INTRA_OP_THREADS"] = "1"
    env.update(extra)
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _one_clear_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr and "pydantic.dev" not in stderr and "http" not in stderr, stderr
    return lines[0]


def _photo(path: Path) -> Path:
    rgb = np.full((240, 320, 3), 205, np.uint8)
    rgb[40:200, 110:210] = 25  # a dark slab on a light table
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    path.write_bytes(buf.getvalue())
    return path


def test_defaults_do_not_depend_on_the_current_folder(monkeypatch, tmp_path):
    assert DEFAULT_MODEL_PATH.is_absolute() and DEFAULT_MODEL_PATH == ROOT / "models" / "default.onnx"
    assert DEFAULT_MODEL_PATH.is_file()
    assert Settings.model_fields["model_path"].default == DEFAULT_MODEL_PATH  # what `grade` falls back to
    monkeypatch.chdir(tmp_path)
    for name in ("REFURBGRADE_MODEL_PATH", "REFURBGRADE_DATA_DIR", "REFURBGRADE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    s = Settings()
    assert s.model_path == DEFAULT_MODEL_PATH
    assert s.data_dir == tmp_path / "xdg" / "refurbgrade" == StorageSettings().data_dir
    assert s.db_url == f"sqlite:///{tmp_path / 'xdg' / 'refurbgrade' / 'refurbgrade.db'}"

    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "refurbgrade"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")  # the XDG spec: relative paths are invalid
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "refurbgrade"

    monkeypatch.setenv("REFURBGRADE_DATA_DIR", str(tmp_path / "mine"))
    assert Settings().data_dir == StorageSettings().data_dir == tmp_path / "mine"


def test_settings_errors_read_as_one_line(tmp_path):
    with pytest.raises(ValidationError) as info:
        Settings(model_path=tmp_path / "missing.onnx")
    line = settings_error_line(info.value)
    assert "\n" not in line and "pydantic.dev" not in line and "Value error" not in line
    assert "missing.onnx does not exist" in line
    with pytest.raises(ValidationError) as info:
        Settings(max_batch_size=0, max_photos="many")
    line = settings_error_line(info.value)
    assert "REFURBGRADE_MAX_BATCH_SIZE (got 0): " in line and "REFURBGRADE_MAX_PHOTOS (got 'many'): " in line


@pytest.mark.slow
def test_grade_from_another_folder_uses_the_bundled_model(tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    _photo(work / "phone.jpg")
    r = _run(["grade", "phone.jpg", "--standard", "backmarket"], work, _env(tmp_path))
    assert r.returncode == 0, r.stderr
    (rec,) = [json.loads(x) for x in r.stdout.splitlines()]
    assert rec["file"] == "phone.jpg" and set(rec["grades"]) == {"backmarket"}
    assert rec["model_version"]

    r = _run(["grade", "phone.jpg", "--model", "missing.onnx"], work, _env(tmp_path))
    assert r.returncode == 2
    assert "missing.onnx does not exist" in _one_clear_line(r.stderr)

    r = _run(["grade", "phone.jpg"], work, _env(tmp_path, REFURBGRADE_MODEL_PATH="gone.onnx"))
    assert r.returncode == 2
    assert "gone.onnx does not exist (REFURBGRADE_MODEL_PATH)" in _one_clear_line(r.stderr)

    (work / "broken.onnx").write_text("not a model")
    r = _run(["grade", "phone.jpg", "--model", "broken.onnx"], work, _env(tmp_path))
    assert r.returncode == 2 and "broken.onnx" in _one_clear_line(r.stderr)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"REFURBGRADE_MODEL_PATH": "missing.onnx"}, "missing.onnx does not exist"),
        ({"REFURBGRADE_MAX_BATCH_SIZE": "0"}, "REFURBGRADE_MAX_BATCH_SIZE"),
        ({"REFURBGRADE_MAX_PHOTOS": "lots"}, "REFURBGRADE_MAX_PHOTOS"),
        ({"REFURBGRADE_MAX_QUEUE_PHOTOS": "2"}, "max_queue_photos"),
        ({"REFURBGRADE_DATABASE_URL": "nosuchdb://x"}, "cannot open the database nosuchdb://x"),
        ({"REFURBGRADE_DATA_DIR": "/proc/refurbgrade"}, "cannot open the database"),
        ({"REFURBGRADE_MODEL_PATH": "broken.onnx"}, "cannot serve the model: broken.onnx"),
    ],
)
def test_serve_refuses_a_bad_setting_in_one_line(tmp_path, extra, expected):
    (tmp_path / "broken.onnx").write_text("not a model")
    r = _run(["serve", "--port", "1"], tmp_path, _env(tmp_path, **extra))
    assert r.returncode == 2
    assert expected in _one_clear_line(r.stderr)


@pytest.mark.slow
def test_serve_from_another_folder_keeps_its_data_per_user(tmp_path):
    env = _env(tmp_path)
    data = tmp_path / "xdg" / "refurbgrade"
    r = _run(["keys", "create", "--role", "auditor"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert (data / "refurbgrade.db").is_file() and not (tmp_path / "var").exists()

    port = _free_port()
    proc = _start(env, port, cwd=tmp_path, timeout_s=90)
    try:
        models = httpx.get(
            f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert models.status_code == 200, models.text  # the key made before lives in the same database
        assert models.json()["active"]["path"] == "default.onnx"
        assert "default.int8.onnx" in models.json()["available"]  # the models folder is the checkout's
    finally:
        proc.terminate()
        proc.wait(15)
