"""The training step and the validation pass: losses, `train_one_epoch`, `validate` — short plain functions.

Losses work on logits (`forward_logits`) and respect each sample's validity flags (see
`training.dataset`): per-pixel defect BCE + soft Dice where masks are known; image-level BCE on the
max-pooled defect logits (max-pooling logits = the logit of the most confident pixel), which is how
photos with only image-level labels train the mask head; zone cross-entropy ignoring unknown pixels;
view and quality cross-entropy ignoring unknown labels. Defect targets are brought to mask resolution
by area averaging: a cell's target is the share of it that is defect, the coverage map that
`model.postprocess` measures (its threshold then finds a defect's true extent, see
tests/model/test_postprocess.py). The stride-s mask of a 1-px hairline is a faint but non-zero band.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.config import LossConfig
from training.dataset import IGNORE, IGNORE_INDEX


class Logits(nn.Module):
    """Training view of a network: forward = `forward_logits`, so DDP (which only calls forward) sees logits."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, inputs):
        # A photo batch, or the cached output of the frozen encoder blocks (`training.feature_cache`).
        if isinstance(inputs, Tensor):
            return self.net.forward_logits(inputs)
        return self.net.logits_from_prefix(inputs)


def model_inputs(batch: dict) -> Tensor | tuple:
    return batch["prefix"] if "prefix" in batch else batch["image"]


def to_device(batch, device: torch.device | None):
    """A batch (tensors in dicts, tuples and lists) moved to `device`; as it is when None (CPU runs)."""
    if device is None:
        return batch
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def autocast(device: torch.device | None):
    """bfloat16 autocast on a GPU (the losses' BCE and cross-entropy stay float32 under it); nothing on
    CPU, where the bundled recipe is float32 throughout."""
    if device is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)


def _base(model: nn.Module) -> nn.Module:
    """The plain network inside Logits / DistributedDataParallel wrappers."""
    while isinstance(model, Logits) or hasattr(model, "module"):
        model = model.net if isinstance(model, Logits) else model.module
    return model


def mask_targets(batch: dict[str, Tensor], stride: int) -> tuple[Tensor, Tensor]:
    if "defect_cells" in batch:  # already at mask resolution (feature cache)
        return batch["defect_cells"], batch["zone_cells"]
    defects = F.avg_pool2d(batch["defects"], stride) if stride > 1 else batch["defects"]
    zone = batch["zone"][:, stride // 2 :: stride, stride // 2 :: stride]  # nearest: cell centres
    return defects, zone


def compute_losses(logits, batch: dict[str, Tensor], stride: int, w: LossConfig) -> dict[str, Tensor]:
    defects, zone = mask_targets(batch, stride)
    d_logit = logits.defect_probs
    valid = batch["pixel_valid"][:, :, None, None].expand_as(d_logit)
    n_valid = valid.sum().clamp(min=1.0)
    pos_weight = torch.tensor(w.defect_pos_weight, device=d_logit.device)
    bce = F.binary_cross_entropy_with_logits(d_logit, defects, reduction="none", pos_weight=pos_weight)
    bce = (bce * valid).sum() / n_valid
    # Soft Dice per (sample, channel) with a positive target; empty channels are covered by the BCE.
    p = torch.sigmoid(d_logit)
    inter = (p * defects).sum(dim=(2, 3))
    denom = (p + defects).sum(dim=(2, 3))
    has_pos = (defects.sum(dim=(2, 3)) > 0).float() * batch["pixel_valid"]
    dice = ((1 - (2 * inter + 1) / (denom + 1)) * has_pos).sum() / has_pos.sum().clamp(min=1.0)
    pooled = d_logit.amax(dim=(2, 3))
    img = F.binary_cross_entropy_with_logits(pooled, batch["image_label"], reduction="none")
    img = (img * batch["image_valid"]).sum() / batch["image_valid"].sum().clamp(min=1.0)
    zero = d_logit.sum() * 0.0  # keeps every head in the graph (DDP needs all parameters used)
    zone_known = (zone != IGNORE).any()
    zl = F.cross_entropy(logits.zone_probs, zone, ignore_index=IGNORE) if zone_known else zero
    vl = zero
    if (batch["view"] != IGNORE_INDEX).any():
        vl = F.cross_entropy(logits.view_probs, batch["view"], ignore_index=IGNORE_INDEX)
    ql = zero
    if (batch["quality"] != IGNORE_INDEX).any():
        ql = F.cross_entropy(logits.quality_probs, batch["quality"], ignore_index=IGNORE_INDEX)
    parts = {
        "defect_bce": bce,
        "defect_dice": dice,
        "image_level": img,
        "zone": zl,
        "view": vl,
        "quality": ql,
    }
    total = (
        w.defect * bce
        + w.defect_dice * dice
        + w.image_level * img
        + w.zone * zl
        + w.view * vl
        + w.quality * ql
        + 0.0 * (logits.zone_probs.sum() + logits.view_probs.sum() + logits.quality_probs.sum())
    )
    return {"loss": total, **parts}


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[dict[str, Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_weights: LossConfig,
    scheduler=None,
    grad_clip: float = 5.0,
    max_steps: int | None = None,
    progress=None,
    device: torch.device | None = None,
) -> dict[str, float]:
    """One pass over `loader`; returns the mean of each loss term. `model` is a network, `Logits(net)`,
    or DistributedDataParallel around `Logits(net)`; with `device`, batches are moved there (the model
    already is)."""
    if not isinstance(model, Logits) and not hasattr(model, "module"):
        model = Logits(model)
    model.train()
    stride = _base(model).mask_stride
    sums: dict[str, float] = defaultdict(float)
    n = 0
    for step, batch in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        batch = to_device(batch, device)
        with autocast(device):
            losses = compute_losses(model(model_inputs(batch)), batch, stride, loss_weights)
        if not math.isfinite(losses["loss"].item()):
            raise FloatingPointError(
                f"non-finite loss at step {step}: { {k: v.item() for k, v in losses.items()} }"
            )
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        for k, v in losses.items():
            sums[k] += v.item()
        n += 1
        if progress is not None:
            progress(losses["loss"].item())
    return {k: v / max(n, 1) for k, v in sums.items()}


@torch.no_grad()
def validate(
    model: nn.Module,
    loader: Iterable[dict[str, Tensor]],
    loss_weights: LossConfig,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Validation losses and quick metrics: defect soft IoU, zone mIoU, view/quality accuracy."""
    model.eval()
    net = _base(model)
    stride = net.mask_stride
    sums: dict[str, float] = defaultdict(float)
    inter = np.zeros(6)
    union = np.zeros(6)  # soft IoU: sum(min(p, t)) / sum(max(p, t)), threshold-free on coverage maps
    zinter, zunion = defaultdict(float), defaultdict(float)
    correct = {"view": [0, 0], "quality": [0, 0]}
    n = 0
    for batch in loader:
        batch = to_device(batch, device)
        with autocast(device):
            logits = Logits(net)(model_inputs(batch))
            losses = compute_losses(logits, batch, stride, loss_weights)
        for k, v in losses.items():
            sums[k] += v.item()
        n += 1
        defects, zone = mask_targets(batch, stride)
        pred = torch.sigmoid(logits.defect_probs.float())
        valid = batch["pixel_valid"][:, :, None, None]
        inter += (torch.minimum(pred, defects) * valid).sum(dim=(0, 2, 3)).cpu().numpy()
        union += (torch.maximum(pred, defects) * valid).sum(dim=(0, 2, 3)).cpu().numpy()
        zpred = logits.zone_probs.argmax(dim=1)
        known = zone != IGNORE
        for c in range(logits.zone_probs.shape[1]):
            zinter[c] += ((zpred == c) & (zone == c) & known).sum().item()
            zunion[c] += (((zpred == c) | (zone == c)) & known).sum().item()
        for key, out in (("view", logits.view_probs), ("quality", logits.quality_probs)):
            ok = batch[key] != IGNORE_INDEX
            correct[key][0] += (out.argmax(dim=1)[ok] == batch[key][ok]).sum().item()
            correct[key][1] += ok.sum().item()
    metrics = {f"val_{k}" if k != "loss" else "val_loss": v / max(n, 1) for k, v in sums.items()}
    seen = union > 0
    metrics["val_defect_iou"] = float((inter[seen] / union[seen]).mean()) if seen.any() else float("nan")
    zious = [zinter[c] / zunion[c] for c in zunion if zunion[c] > 0]
    metrics["val_zone_miou"] = float(np.mean(zious)) if zious else float("nan")
    for key, (ok, tot) in correct.items():
        metrics[f"val_{key}_acc"] = ok / tot if tot else float("nan")
    return metrics
