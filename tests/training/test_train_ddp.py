"""Distributed training: torchrun with 2 CPU processes (gloo) on tiny data trains one model, not two."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.checkpoint import load_checkpoint
from training.toydata import write_toy_manifest


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path):
    toy = write_toy_manifest(tmp_path / "toy", n=16, size=64, seed=1)
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(
        f"run_dir: {tmp_path / 'run'}\nthreads: 1\nprogress: false\ncalibrate: false\n"
        f"model: {{name: tiny}}\n"
        f"data: {{train: [{{manifest: {toy}}}], val: [{{manifest: {toy}, splits: [val]}}], batch_size: 2}}\n"
        f"optim: {{epochs: 1, warmup_steps: 0}}\n"
    )
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    proc = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "refurbgrade",
            "train",
            "--config",
            str(cfg),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(history) == 1
    # 10 training photos, batch 2, 2 ranks: each rank runs 10 // (2 * 2) = 2 steps of its own draws.
    _net, ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt["config"]["data"]["batch_size"] == 2
    # Rank 0 alone wrote files, and the weights moved away from the shared initialisation.
    torch.manual_seed(0)
    from model.registry import create_model

    init = create_model("tiny").state_dict()
    assert any(not torch.equal(init[k], v) for k, v in ckpt["state_dict"].items() if v.is_floating_point())
