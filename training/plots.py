"""Plots for training runs and evaluation reports (matplotlib, headless Agg backend, PNG files)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training machines or in CI
import matplotlib.pyplot as plt
import numpy as np


def plot_history(history: list[dict], out: Path) -> None:
    epochs = [r["epoch"] for r in history]
    keys = [k for k in history[-1] if k.endswith("loss") or k.endswith("_iou") or k.endswith("_acc")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k in keys:
        ys = [r.get(k, np.nan) for r in history]
        (axes[0] if k.endswith("loss") else axes[1]).plot(epochs, ys, marker="o", label=k)
    axes[0].set_title("losses")
    axes[1].set_title("validation metrics")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def plot_confusion(cm: np.ndarray, labels: list[str], title: str, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 2, 1.0 * len(labels) + 1.5))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=9)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def plot_reliability(bins: list[dict], ece: float, title: str, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    conf = [b["confidence"] for b in bins if b["n"]]
    acc = [b["accuracy"] for b in bins if b["n"]]
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    ax.plot(conf, acc, "o-", label=f"model (ECE {ece:.3f})")
    ax.set_xlabel("confidence of the top grade")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def plot_coverage(curve: list[dict], chosen: float | None, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([c["coverage"] for c in curve], [c["accuracy"] for c in curve], "o-", ms=3)
    if chosen is not None:
        pt = min(curve, key=lambda c: abs(c["threshold"] - chosen))
        ax.plot([pt["coverage"]], [pt["accuracy"]], "r*", ms=12, label=f"needs_review_below={chosen:.2f}")
        ax.legend()
    ax.set_xlabel("coverage (share graded without review)")
    ax.set_ylabel("accuracy of those graded")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def plot_bars(values: dict[str, dict[str, float]], title: str, out: Path) -> None:
    groups = list(values)
    metrics = sorted({m for v in values.values() for m in v})
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(groups)), 3.8))
    width = 0.8 / max(1, len(metrics))
    for i, m in enumerate(metrics):
        ax.bar(np.arange(len(groups)) + i * width, [values[g].get(m, np.nan) for g in groups], width, label=m)
    ax.set_xticks(np.arange(len(groups)) + width * (len(metrics) - 1) / 2, groups)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def plot_hist(values: list[float], xlabel: str, title: str, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(values, bins=30)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
