"""The notebooks run top to bottom on tiny data (nbclient), so they cannot rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

from model.registry import create_model
from training.checkpoint import save_checkpoint
from training.config import load_config
from training.toydata import write_toy_manifest

ROOT = Path(__file__).resolve().parents[2]


def _run(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    )
    client.execute()
    return nb


@pytest.fixture()
def toy_env(tmp_path, monkeypatch):
    toy = write_toy_manifest(tmp_path / "toy", n=12, size=64, seed=5)
    monkeypatch.setenv("NB_ROOT", str(ROOT))
    monkeypatch.setenv("NB_MANIFESTS", str(toy))
    monkeypatch.setenv("NB_OUT", str(tmp_path / "out"))
    return toy


@pytest.mark.slow
def test_data_tour_notebook(toy_env, tmp_path, monkeypatch):
    monkeypatch.setenv("NB_SYNTH_N", "2")
    nb = _run("01_data_tour.ipynb", tmp_path)
    assert (tmp_path / "out" / "data_tour_samples.png").stat().st_size > 1000
    assert (tmp_path / "out" / "synth_gallery.png").exists()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "'photos': 14" in text  # 12 toy photos + 2 real-like records


@pytest.mark.slow
def test_error_analysis_notebook(toy_env, tmp_path, monkeypatch):
    torch.manual_seed(0)
    cfg = load_config(
        None, [f"data.train=[{{manifest: {toy_env}}}]", "model.name=tiny", "early_stopping_patience=null"]
    )
    save_checkpoint(tmp_path / "tiny.pt", create_model("tiny"), cfg, history=[], epoch=0)
    monkeypatch.setenv("NB_MODEL", str(tmp_path / "tiny.pt"))
    monkeypatch.setenv("NB_WORST", "3")
    nb = _run("02_error_analysis.ipynb", tmp_path)
    assert (tmp_path / "out" / "worst_photos.png").stat().st_size > 1000
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "device grades wrong" in text
