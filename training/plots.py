"""Plots for training runs and evaluation reports (matplotlib, headless Agg backend, PNG files)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training machines or in CI
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator


def plot_history(history: list[dict], out: Path) -> None:
    epochs = [r["epoch"] for r in history]
    keys = [k for k in history[-1] if k.endswith("loss") or k.endswith("_iou") or k.endswith("_acc")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k in keys:
        ys = [r.get(k, np.nan) for r in history]
        (axes[0] if k.endswith("loss") else axes[1]).plot(epochs, ys, marker="o", label=k)
    axes[0].set_title("losses")
    axes[1].set_title("validation metrics")
    for ax, what in zip(
        axes, ("no losses logged", "no validation metrics (a run without validation data)"), strict=True
    ):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        if ax.get_lines():
            ax.legend(fontsize=7)
        else:  # say so rather than leave an empty frame
            ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="grey")
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


def plot_reliability(
    bins: list[dict], ece: float, title: str, out: Path, before: tuple[list[dict], float] | None = None
) -> None:
    """Reliability diagram; `before`: (bins, ECE) of the rules' uncalibrated probabilities, drawn too."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    series = [(bins, ece, "calibrated" if before else "model", "o-")]
    if before is not None:
        series.insert(0, (before[0], before[1], "rules only", "s:"))
    for b_, e_, label, style in series:
        conf = [b["confidence"] for b in b_ if b["n"]]
        acc = [b["accuracy"] for b in b_ if b["n"]]
        ax.plot(conf, acc, style, label=f"{label} (ECE {e_:.3f})")
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


def plot_measured_vs_true(pairs: list[tuple[float, float]], tolerance: float, title: str, out: Path) -> None:
    """Measured against true sizes on log axes: the identity line, a +-`tolerance` band, and the share
    inside it. Log axes because errors are relative and a merged scratch can read 30x too long."""
    t, m = np.asarray(pairs, dtype=float).T
    keep = (t > 0) & (m > 0)
    t, m = t[keep], m[keep]
    fig, ax = plt.subplots(figsize=(5, 4.5))
    lo, hi = min(t.min(), m.min()) / 1.3, max(t.max(), m.max()) * 1.3
    xs = np.geomspace(lo, hi, 50)
    ax.fill_between(xs, xs * (1 - tolerance), xs * (1 + tolerance), color="tab:green", alpha=0.15)
    ax.plot(xs, xs, color="tab:green", lw=1)
    inside = np.abs(m - t) <= tolerance * t
    ax.scatter(t[~inside], m[~inside], s=8, alpha=0.5, color="tab:red", label="outside the band")
    ax.scatter(t[inside], m[inside], s=8, alpha=0.6, color="tab:blue", label=f"within +-{tolerance:.0%}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("true length (mm)")
    ax.set_ylabel("measured length (mm)")
    ax.set_title(f"{title}: {inside.mean():.0%} of {len(t)} within +-{tolerance:.0%}")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
