"""Deployment files (issue 20): the Dockerfile and docker-compose.yml, checked without Docker.

What Docker would check is not run here (no daemon, no base images): the compose file must load as
YAML with its anchors, every REFURBGRADE_* variable it or the Dockerfile sets must be a setting the code
reads, the commands must be ones the package has, and the Dockerfile must keep its promises (serve extra
only, non-root, HEALTHCHECK on /readyz, the bundled model). `scripts/check_image_entrypoint.sh` runs the
image's CMD on a fresh serve-only virtualenv; it installs ~700 MB, so its test runs only when
REFURBGRADE_TEST_IMAGE_ENTRYPOINT=1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
STANDARD_ENV = {"OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}


def setting_names() -> set[str]:
    from serving.settings import Settings, StorageSettings

    return {f"REFURBGRADE_{n.upper()}" for cls in (Settings, StorageSettings) for n in cls.model_fields}


def dockerfile_instructions(name: str) -> list[str]:
    text = DOCKERFILE.replace("\\\n", " ")
    return [line[len(name) + 1 :].strip() for line in text.splitlines() if line.startswith(name + " ")]


def test_compose_loads_with_the_services_it_promises():
    services = COMPOSE["services"]
    assert {"postgres", "minio", "minio-bucket", "migrate", "refurbgrade-1", "refurbgrade-2", "nginx"} <= set(
        services
    )
    for name in ("refurbgrade-1", "refurbgrade-2"):
        s = services[name]
        assert s["image"] == "refurbgrade:latest" and s["build"] == "."
        assert s["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        env = s["environment"]
        assert env["REFURBGRADE_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["REFURBGRADE_BLOB_URL"].startswith("s3://")
        assert env["REFURBGRADE_S3_ENDPOINT_URL"] == "http://minio:9000"
    nginx = services["nginx"]
    assert nginx["ports"] == ["8080:8080"]
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    for name in ("refurbgrade-1", "refurbgrade-2"):
        assert f"server {name}:8000" in conf
        assert nginx["depends_on"][name]["condition"] == "service_healthy"
    assert "listen 8080;" in conf
    assert ("./deploy/nginx.conf:/etc/nginx/nginx.conf:ro") in nginx["volumes"]


def test_every_variable_set_is_a_setting_the_code_reads():
    names = setting_names()
    seen = set()
    for service in COMPOSE["services"].values():
        env = service.get("environment") or {}
        for key in env:
            if key.startswith("REFURBGRADE_"):
                assert key in names, f"{key} is not a setting in serving/settings.py"
                seen.add(key)
            elif key.startswith("OTEL_"):
                assert key in STANDARD_ENV, key
    for line in dockerfile_instructions("ENV"):
        for key in re.findall(r"(REFURBGRADE_[A-Z0-9_]+)=", line):
            assert key in names, key
            seen.add(key)
    # the commented-out examples too
    text = (ROOT / "docker-compose.yml").read_text()
    for key in re.findall(r"#\s*(REFURBGRADE_[A-Z0-9_]+):", text):
        assert key in names, key
    assert {"REFURBGRADE_DATABASE_URL", "REFURBGRADE_BLOB_URL", "REFURBGRADE_MODEL_PATH"} <= seen


def test_the_compose_settings_validate(tmp_path, monkeypatch):
    """The replicas' environment, as compose would substitute it, makes valid settings."""
    from serving.settings import Settings

    env = dict(COMPOSE["services"]["refurbgrade-1"]["environment"])
    for key, value in env.items():
        value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))
        if key.startswith("REFURBGRADE_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("REFURBGRADE_DATA_DIR", str(tmp_path))
    s = Settings()
    assert s.database_url == "postgresql+psycopg://refurbgrade:refurbgrade@postgres:5432/refurbgrade"
    assert s.review_secure_cookie is True


def test_the_dockerfile_keeps_its_promises():
    assert dockerfile_instructions("FROM")[0].startswith("python:3.11-slim")
    assert dockerfile_instructions("FROM")[-1] == "python:3.11-slim"
    (install,) = [r for r in dockerfile_instructions("RUN") if "pip install" in r]
    assert "-c constraints.txt '.[serve]'" in install  # the serve extra only: no torch, no dev tools
    assert dockerfile_instructions("USER") == ["refurbgrade"]
    assert "useradd --system --uid 10001" in DOCKERFILE
    copies = " ".join(dockerfile_instructions("COPY"))
    assert "models/default.onnx" in copies and "models/default.int8.onnx" in copies
    assert "models/default.fine.onnx" in copies  # the fine pass beside either precision
    (env,) = [e for e in dockerfile_instructions("ENV") if "REFURBGRADE_MODEL_PATH" in e]
    assert "REFURBGRADE_MODEL_PATH=/opt/refurbgrade-models/default.onnx" in env
    (health,) = dockerfile_instructions("HEALTHCHECK")
    assert "/readyz" in health and health.count("CMD") == 1
    (cmd,) = dockerfile_instructions("CMD")
    argv = json.loads(cmd)
    assert argv[:2] == ["refurbgrade", "serve"] and "0.0.0.0" in argv
    assert dockerfile_instructions("EXPOSE") == [argv[argv.index("--port") + 1]]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored and "models/default_report" in ignored


def test_the_commands_compose_runs_exist(tmp_path):
    """`refurbgrade serve`'s options as the CMD passes them, and the migrate service's command, run."""
    from typer.testing import CliRunner

    from refurbgrade.cli import build

    r = CliRunner().invoke(build(), ["serve", "--help"])
    assert r.exit_code == 0 and "--host" in r.stdout and "--port" in r.stdout
    argv = COMPOSE["services"]["migrate"]["command"]
    assert argv[:2] == ["python", "-c"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFURBGRADE_")}
    env["REFURBGRADE_DATA_DIR"] = str(tmp_path)  # SQLite here instead of the compose PostgreSQL
    out = subprocess.run(
        [sys.executable, "-c", argv[2]], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "latest revision" in out.stdout and (tmp_path / "refurbgrade.db").is_file()


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("REFURBGRADE_TEST_IMAGE_ENTRYPOINT") != "1",
    reason="installs the serve extra into a fresh virtualenv (~700 MB): set REFURBGRADE_TEST_IMAGE_ENTRYPOINT=1",
)
def test_the_image_entrypoint_serves_on_a_serve_only_install(tmp_path):
    out = subprocess.run(
        [str(ROOT / "scripts" / "check_image_entrypoint.sh"), str(tmp_path / "venv")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "HEALTHCHECK: passed" in out.stderr
