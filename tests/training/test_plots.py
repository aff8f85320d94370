"""Training plots: a run's history is drawn whatever it logged."""

from __future__ import annotations

import warnings

from PIL import Image

from training.plots import plot_history


def test_history_without_validation_metrics_is_drawn_without_an_empty_legend(tmp_path):
    history = [{"epoch": 1, "train_loss": 3.2}, {"epoch": 2, "train_loss": 2.9}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when a legend has nothing to list
        plot_history(history, tmp_path / "curves.png")
        plot_history(
            [*history, {"epoch": 3, "train_loss": 2.5, "val_loss": 2.7, "val_iou": 0.4}], tmp_path / "v.png"
        )
    for name in ("curves.png", "v.png"):
        with Image.open(tmp_path / name) as im:
            assert im.size[0] > 500 and im.size[1] > 200
