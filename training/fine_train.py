"""Training the fine network (`model.fine_network.FineNet`) on the fine stream's patches (issue 19).

Owns the dataset over a fine manifest (`training.synth.fine_patches`: a JPEG and its targets per patch;
the width target is converted from mm to input pixels with the patch's mm/px, since the net sees
pixels), the augmentation (flips and 90-degree rotations only: they keep the analytic truth exact;
optional random square crops for speed, the net being fully convolutional), the loss, and the loop
(AdamW, cosine schedule, a wall-clock budget, `last.pt` every epoch with `--resume`, `best.pt` by
validation loss). `refurbgrade train-fine` (training/cli/models.py) calls `run_fine_training`.

The loss (`fine_loss`), per batch:

- heat: binary cross-entropy against the soft centreline target, weighted 1 + 9 x target (the
  centreline is ~2% of the pixels);
- skeleton recall: `1 - sum(p * skel) / sum(skel)` with skel = heat target > 0.5, the share of true
  centreline pixels the predicted heat misses (a faint hairline costs as much as a bold one);
- L1 on width_px (x 0.2) and contrast (x 2) only where the heat target > 0.5.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from model.fine_network import FineNet, FineOutputs
from training.synth.fine_patches import load_targets, read_fine_manifest

HEAT_POS_WEIGHT = 9.0
WIDTH_WEIGHT = 0.2
CONTRAST_WEIGHT = 2.0
ON_LINE = 0.5  # heat target above which a pixel is on the centreline (within ~1.2 px of it)


def manifest_path(folder: str | Path) -> Path:
    """The manifest of a fine-patch folder (or the manifest file itself); FileNotFoundError if absent."""
    p = Path(folder)
    m = p / "manifest.jsonl" if p.is_dir() else p
    if not m.is_file():
        raise FileNotFoundError(
            f"no fine manifest at {m} (write one with `refurbgrade synth-fine --out DIR`)"
        )
    return m


class FinePatchDataset(Dataset):
    """(uint8 3xHxW image, float 3xHxW targets: heat, width_px, contrast) per patch of a fine manifest."""

    def __init__(self, folder: str | Path, augment: bool = False, crop: int | None = None, seed: int = 0):
        self.manifest = manifest_path(folder)
        self.root = self.manifest.parent
        self.records = read_fine_manifest(self.manifest)
        if not self.records:
            raise ValueError(f"{self.manifest} lists no patches")
        self.augment, self.crop = augment, crop
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.records)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rec = self.records[i]
        img = cv2.imread(str(self.root / rec.image), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(self.root / rec.image)
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        t = load_targets(self.root / rec.targets)
        width_px = t["width_mm"].astype(np.float32) / rec.mm_per_px
        tgt = np.stack([t["heat"].astype(np.float32), width_px, t["contrast"].astype(np.float32)], axis=-1)
        return img, tgt

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        img, tgt = self.load(i)
        if self.crop and self.crop < img.shape[0]:
            y, x = self.rng.integers(0, img.shape[0] - self.crop + 1, size=2)
            img, tgt = img[y : y + self.crop, x : x + self.crop], tgt[y : y + self.crop, x : x + self.crop]
        if self.augment:
            k = int(self.rng.integers(4))
            img, tgt = np.rot90(img, k), np.rot90(tgt, k)
            if self.rng.random() < 0.5:
                img, tgt = img[:, ::-1], tgt[:, ::-1]
        img_t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        return img_t, torch.from_numpy(np.ascontiguousarray(tgt.transpose(2, 0, 1)))


def fine_loss(logits: FineOutputs, target: Tensor) -> tuple[Tensor, dict[str, float]]:
    """The total loss and its parts. target: N x 3 x H x W (heat, width_px, contrast)."""
    heat_t, width_t, contrast_t = target[:, 0:1], target[:, 1:2], target[:, 2:3]
    weight = 1.0 + HEAT_POS_WEIGHT * heat_t
    bce = F.binary_cross_entropy_with_logits(logits.heat, heat_t, weight=weight)
    p = torch.sigmoid(logits.heat)
    skel = (heat_t > ON_LINE).float()
    n_on = skel.sum()
    recall = 1.0 - (p * skel).sum() / n_on.clamp(min=1.0) if n_on > 0 else p.new_zeros(())
    # A patch cut from a device photo knows its scratches' widths but not their contrast (NaN): the
    # contrast term reads only where it is known.
    known = (~torch.isnan(contrast_t)).float() * skel
    contrast_t = torch.nan_to_num(contrast_t)
    n_known = known.sum()
    width = (
        (F.softplus(logits.width_px) - width_t).abs().mul(skel).sum() / n_on if n_on > 0 else p.new_zeros(())
    )
    if n_known > 0:
        contrast = (torch.sigmoid(logits.contrast) - contrast_t).abs().mul(known).sum() / n_known
    else:
        contrast = p.new_zeros(())
    total = bce + recall + WIDTH_WEIGHT * width + CONTRAST_WEIGHT * contrast
    parts = {
        "bce": bce.item(),
        "skel_recall": float(recall.detach()),
        "width_l1": float(width.detach()),
        "contrast_l1": float(contrast.detach()),
    }
    return total, parts


@dataclass
class FineTrainConfig:
    train: str | list[str]  # one fine-patch folder or several (rendered patches, negatives)
    val: str | list[str]
    out: str
    minutes: float = 20.0
    batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    crop: int | None = 128  # training crops (validation runs on whole patches)
    max_epochs: int = 1000
    resume: bool = False
    pretrained: bool = True
    encoder: str = "lite0"
    head: str = "full"  # model.fine_network.HEADS: what runs at the tile's full resolution
    threads: int = 2
    seed: int = 0
    progress: bool = True
    init: str | None = None  # start from this checkpoint's weights (a fresh optimiser and schedule)


def evaluate_loss(net: FineNet, loader: DataLoader) -> float:
    net.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for img, tgt in loader:
            loss, _ = fine_loss(net.forward_logits(img), tgt)
            total += loss.item() * len(img)
            n += len(img)
    return total / max(n, 1)


def _save(
    path: Path, net: FineNet, opt, epoch: int, best: float, cfg: FineTrainConfig, hist: list, spent: float
) -> None:
    tmp = path.with_suffix(".tmp")
    state = {
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "elapsed_s": spent,
        "epoch": epoch,
        "best_val": best,
        "config": dict(cfg.__dict__),
        "history": hist,
    }
    torch.save(state, tmp)
    tmp.replace(path)


def load_fine_net(checkpoint: str | Path) -> FineNet:
    """A FineNet from a `train-fine` checkpoint (eval mode)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = state["config"]
    net = FineNet(pretrained=False, encoder=cfg.get("encoder", "lite0"), head=cfg.get("head", "full"))
    net.load_state_dict(state["model"])
    return net.eval()


def load_matching(net: FineNet, state: dict[str, Tensor]) -> list[str]:
    """Load the tensors of `state` that `net` has with the same shape (a light head from a full one's
    encoder and decoder); returns the names of `net`'s tensors that keep their fresh values."""
    own = net.state_dict()
    kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(kept, strict=False)
    return [k for k in own if k not in kept]


INIT_TILES = 64  # training patches an exported file's BatchNorm statistics are restored on


def _init_state(init: str, train_ds: Dataset, progress: bool) -> dict[str, Tensor]:
    """The weights `--init` names: a `train-fine` checkpoint's, or an exported fine file's rebuilt
    (`training.fine_from_onnx`; the bundled network is the only copy of its weights)."""
    if not init.endswith(".onnx"):
        return torch.load(init, map_location="cpu", weights_only=False)["model"]
    from training.fine_from_onnx import rebuilt_fine_net  # imports this module

    sets = train_ds.datasets if isinstance(train_ds, ConcatDataset) else [train_ds]
    every = [(d, i) for d in sets for i in range(len(d))]
    picked = every[:: max(1, len(every) // INIT_TILES)][:INIT_TILES]  # whole patches, as they are on disk
    tiles = np.stack([d.load(i)[0].transpose(2, 0, 1) for d, i in picked])
    net, rep = rebuilt_fine_net(init, tiles)
    if progress:
        print(
            f"--init {init}: {rep['head']} network {rep['version']} rebuilt, max |diff| against ONNX Runtime "
            f"{rep['max_diff_statistics']:.1e} on {rep['tiles']} training patches"
        )
    return net.state_dict()


def _folders(folders: str | list[str], **kwargs) -> Dataset:
    """One fine-patch folder's dataset, or several concatenated."""
    if isinstance(folders, str | Path):
        return FinePatchDataset(folders, **kwargs)
    sets = [FinePatchDataset(f, **kwargs) for f in folders]
    return sets[0] if len(sets) == 1 else ConcatDataset(sets)


def run_fine_training(cfg: FineTrainConfig) -> Path:
    """Train until the time budget or `max_epochs`; returns the path of `best.pt`."""
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    train_ds = _folders(cfg.train, augment=True, crop=cfg.crop, seed=cfg.seed)
    val_ds = _folders(cfg.val)
    train_dl = DataLoader(train_ds, batch_size=cfg.batch, shuffle=True, drop_last=len(train_ds) > cfg.batch)
    val_dl = DataLoader(val_ds, batch_size=cfg.batch)
    net = FineNet(pretrained=cfg.pretrained, encoder=cfg.encoder, head=cfg.head)
    if cfg.init and not cfg.resume:
        fresh = load_matching(net, _init_state(cfg.init, train_ds, cfg.progress))
        if fresh and cfg.progress:
            tqdm.write(f"--init {cfg.init}: {len(fresh)} tensors of another shape or head start fresh")
    out.mkdir(parents=True, exist_ok=True)  # after --init: a file refused leaves no empty run folder
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, best, history, spent = 0, math.inf, [], 0.0
    last = out / "last.pt"
    if cfg.resume:
        if not last.is_file():
            raise FileNotFoundError(f"--resume: no {last}")
        state = torch.load(last, map_location="cpu", weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, best, history = state["epoch"] + 1, state["best_val"], state["history"]
        spent = state["elapsed_s"]
    # The cosine runs over the time budget (the budget is what the run has, not a number of epochs):
    # lr = lr0 x (0.05 + 0.95 x (1 + cos(pi x spent / budget)) / 2); a resumed run carries its time on.
    budget_s = cfg.minutes * 60.0
    t0 = time.monotonic() - spent

    def elapsed() -> float:
        return time.monotonic() - t0

    for epoch in range(start_epoch, cfg.max_epochs):
        net.train()
        bar = tqdm(train_dl, desc=f"fine epoch {epoch}", disable=not cfg.progress, leave=False)
        run_loss, n = 0.0, 0
        for img, tgt in bar:
            frac = min(1.0, elapsed() / budget_s) if budget_s > 0 else 1.0
            for g in opt.param_groups:
                g["lr"] = cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * frac)))
            loss, parts = fine_loss(net.forward_logits(img), tgt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run_loss += loss.item()
            n += 1
            bar.set_postfix(loss=f"{run_loss / n:.3f}", **{k: f"{v:.3f}" for k, v in parts.items()})
            if elapsed() > budget_s:
                break
        val = evaluate_loss(net, val_dl)
        history.append(
            {
                "epoch": epoch,
                "train_loss": run_loss / max(n, 1),
                "val_loss": val,
                "elapsed_s": elapsed(),
                "steps": n,
            }
        )
        if val < best:
            best = val
            _save(out / "best.pt", net, opt, epoch, best, cfg, history, elapsed())
        _save(last, net, opt, epoch, best, cfg, history, elapsed())
        (out / "history.json").write_text(json.dumps(history, indent=1))
        if cfg.progress:
            tqdm.write(f"epoch {epoch}: train {run_loss / max(n, 1):.4f} val {val:.4f} (best {best:.4f})")
        if elapsed() > budget_s:
            break
    return out / "best.pt"
