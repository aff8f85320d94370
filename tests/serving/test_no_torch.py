"""serving never imports torch or `training` (DESIGN.md section 3): import every serving module, and
run the app and the batch grader, in a fresh interpreter, then look at sys.modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import importlib, pkgutil, sys
import serving
names = [m.name for m in pkgutil.walk_packages(serving.__path__, "serving.") if ".migrations" not in m.name]
for name in names:
    importlib.import_module(name)
from fastapi.testclient import TestClient
from serving.app import create_app
from serving.settings import Settings
from tests.serving.tiny_model import build_tiny_model
import tempfile, pathlib
d = pathlib.Path(tempfile.mkdtemp())
# the tiny model builder needs onnx, not torch
build_tiny_model(d / "m.onnx")
with TestClient(create_app(Settings(model_path=d / "m.onnx", data_dir=d / "data"))) as c:
    assert c.get("/readyz").status_code == 200
import serving.cli, refurbgrade.cli
bad = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "training", "torchvision"})
print(len(names), "modules;", "forbidden:", bad)
sys.exit(1 if bad else 0)
"""


def test_serving_never_imports_torch_or_training():
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "forbidden: []" in r.stdout
