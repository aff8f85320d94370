"""Dependency direction (DESIGN.md section 3): the contract never loads torch."""

from __future__ import annotations

import subprocess
import sys

TORCH_FREE = [
    "model",
    "model.taxonomy",
    "model.instances",
    "model.catalogue",
    "model.card",
    "model.outputs",
    "model.manifest",
    "model.preprocess",
    "model.postprocess",
    "model.geometry",
    "model.crop",
    "model.inference",
    "model.rules",
    "model.visibility",
    "model.cli",
    "refurbgrade.cli",
]


def test_contract_modules_leave_torch_unloaded():
    code = (
        "import importlib, sys\n"
        f"for m in {TORCH_FREE!r}: importlib.import_module(m)\n"
        "from refurbgrade.cli import build; build()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'torchvision', 'training'})\n"
        "print(bad); sys.exit(1 if any(m.split('.')[0] in {'torch', 'torchvision'} for m in bad) else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_datasets_folder_is_not_a_package():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    assert not (root / "datasets" / "__init__.py").exists()
