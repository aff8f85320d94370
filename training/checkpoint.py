"""Training checkpoints: save, load (the network rebuilt from its recipe), attach a calibration, run.

A checkpoint is a dict saved with `torch.save`: format, model name and overrides, weights, the
resolved training config, and what training or calibration added (epoch, history, `calibration`).
Training writes it; calibration, evaluation and export read it. Living apart from `training.train`,
it lets `training.calibrate` and `training.predict` load networks without importing the training loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model.inference import RunNCHW
from model.registry import create_model

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: Path, net, cfg, **extra) -> None:
    """`cfg`: the run's `training.config.TrainConfig`; `extra`: anything else to keep beside it."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "model_name": cfg.model.name,
        "model_overrides": cfg.model.overrides,
        "state_dict": net.state_dict(),
        "config": cfg.model_dump(mode="json"),
        **extra,
    }
    write_checkpoint(path, state)


def write_checkpoint(path: Path, state: dict) -> None:
    tmp = Path(path).with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # never a half-written checkpoint under the real name


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the network a checkpoint was trained as (recipe + overrides) and load its weights."""
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a refurbgrade checkpoint (format {ckpt.get('format')})")
    overrides = dict(ckpt["model_overrides"])
    overrides["pretrained"] = False  # the checkpoint holds every weight; skip loading ImageNet's
    net = create_model(ckpt["model_name"], **overrides)
    net.load_state_dict(ckpt["state_dict"])
    return net.eval(), ckpt


def attach_calibration(path: str | Path, calibration: dict) -> None:
    """Store `training.calibrate.calibrate`'s result in the checkpoint at `path` (replacing any)."""
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    ckpt["calibration"] = calibration
    write_checkpoint(Path(path), ckpt)


def torch_runner(net: torch.nn.Module) -> RunNCHW:
    """The network in eval mode as a `model.inference.RunNCHW`: uint8 batch in, numpy outputs out."""
    net = net.eval()

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = net(torch.from_numpy(batch))
        return {k: v.numpy() for k, v in out._asdict().items()}

    return run
