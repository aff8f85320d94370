"""The training run: data sources, sampling, optimiser, epochs, checkpoints, metrics, early stopping, DDP.

`run_training(cfg)` is what `refurbgrade train` calls. It writes into `cfg.run_dir`:
`config.yaml` (resolved), `metrics.csv` / `metrics.json` (one row per epoch), `metrics.png`,
`last.pt` (every epoch, for resume) and `best.pt` (lowest val loss; calibrated thresholds added at the
end), `calibration.json`.

Mixed sources: every epoch draws `samples_per_epoch` photos with replacement, each source getting a
share proportional to its `weight` (not to its size, so 100 MSD photos are not drowned by 5000
synthetic ones). Draws come from a generator seeded by (seed, epoch), so runs repeat exactly, and under
torchrun each rank takes every world_size-th draw. With `data.feature_cache`, steps run on cached
outputs of the frozen encoder blocks (`training.feature_cache`): several times faster on CPU. Multi-process: `torchrun --nproc-per-node K -m
refurbgrade train ...` (gloo on CPU, nccl on GPUs); rank 0 alone writes files.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader

from model.manifest import manifest_hash
from model.registry import create_model
from training.checkpoint import attach_calibration, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.dataset import Item, ManifestDataset, damage_fit_items, load_sources, training_items
from training.engine import Logits, train_one_epoch, validate


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def training_data_hash(manifests: list[str]) -> str:
    """`model.manifest.manifest_hash` of the training manifest; with several, a hash of their hashes."""
    hashes = sorted({manifest_hash(m) for m in manifests})
    if len(hashes) == 1:
        return hashes[0]
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def _dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def epoch_indices(items: list[Item], weights: dict[str, float], n: int, seed: int, epoch: int) -> list[int]:
    """n draws with replacement; each source's share is proportional to its weight."""
    sizes: dict[str, int] = {}
    for it in items:
        sizes[it.source] = sizes.get(it.source, 0) + 1
    w = torch.tensor([weights[it.source] / sizes[it.source] for it in items], dtype=torch.double)
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.multinomial(w, n, replacement=True, generator=g).tolist()


def _collate(samples):
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _write_metrics(run_dir: Path, history: list[dict]) -> None:
    (run_dir / "metrics.json").write_text(json.dumps(history, indent=2))
    keys = list(dict.fromkeys(k for row in history for k in row))
    with (run_dir / "metrics.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    from training.plots import plot_history

    plot_history(history, run_dir / "metrics.png")


def run_training(cfg: TrainConfig) -> Path:
    """Train; returns the path of the best checkpoint (the last one when there is no validation data)."""
    rank, world = _dist_info()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed + rank)
    run_dir = Path(cfg.run_dir)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    net = create_model(cfg.model.name, **cfg.model.overrides)
    if cfg.init_weights:
        net.load_state_dict(
            torch.load(cfg.init_weights, map_location="cpu", weights_only=False)["state_dict"]
        )
    device = _device(cfg.device, rank)
    if device is not None:
        net.to(device)
        if cfg.data.feature_cache:
            raise ValueError("data.feature_cache is a CPU economy; set it false to train on a GPU")
    size = net.input_size
    train_items = load_sources(cfg.data.train)
    if cfg.data.damage_holdout:
        # Training needs only which real sources the damage fit reads: manifests generated for the fit
        # alone (synthetic seeds, format copies) need not exist where the network trains (a lent GPU).
        present = [s for s in cfg.data.damage if Path(s.manifest).is_file()]
        train_items = training_items(train_items, load_sources(present), cfg.data.damage_holdout)
    weights = {str(Path(s.manifest)): s.weight for s in cfg.data.train}
    val_items = load_sources(cfg.data.val)
    if not train_items:
        raise ValueError("no training records in the configured sources and splits")
    train_ds = ManifestDataset(
        train_items,
        size,
        augment=cfg.data.augment,
        cache=cfg.data.cache_images,
        device_crop=cfg.data.device_crop,
        reformat=cfg.data.reformat,
    )
    if train_ds.augment is not None:
        train_ds.augment.set_random_seed(cfg.seed + rank)
    val_ds = ManifestDataset(val_items, size, augment=False, cache=cfg.data.cache_images)
    # Workers stay for the whole run, so each keeps its share of decoded validation photos (cache_images).
    val_loader = DataLoader(
        val_ds,
        batch_size=cfg.data.batch_size,
        collate_fn=_collate,
        num_workers=cfg.data.num_workers,
        persistent_workers=cfg.data.num_workers > 0,
        pin_memory=device is not None,
    )
    train_cache = val_cache = None
    if cfg.data.feature_cache:
        from training.feature_cache import FeatureCache

        train_cache = FeatureCache(net, train_ds, cfg.data.feature_cache_views, seed=cfg.seed + rank)
        val_cache = FeatureCache(net, val_ds, 1)

    model = Logits(net)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    enc = [p for p in net.encoder.parameters() if p.requires_grad]
    enc_ids = {id(p) for p in enc}
    rest = [p for p in net.parameters() if p.requires_grad and id(p) not in enc_ids]
    o = cfg.optim
    scale = o.backbone_lr_scale if getattr(net.encoder, "pretrained", False) else 1.0
    optimizer = torch.optim.AdamW(
        [{"params": enc, "lr": o.lr * scale}, {"params": rest, "lr": o.lr}], weight_decay=o.weight_decay
    )
    n_samples = cfg.data.samples_per_epoch or len(train_items)
    steps_per_epoch = max(1, n_samples // (cfg.data.batch_size * world))
    if o.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, o.max_steps_per_epoch)
    epochs = o.epochs  # fitted to o.time_budget_minutes after the first two epochs

    def lr_factor(step: int) -> float:  # linear warm-up, then cosine to 5% at the end of `epochs`
        if step < o.warmup_steps:
            return (step + 1) / (o.warmup_steps + 1)
        total = steps_per_epoch * epochs  # read at each step: the closure sees `epochs` refitted
        t = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(t, 1.0)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    history: list[dict] = []
    sign = -1.0 if cfg.monitor == "val_defect_iou" else 1.0  # the monitor, as something to minimise
    start_epoch, best, stale = 0, float("inf"), 0
    if cfg.resume:
        ckpt = torch.load(cfg.resume, map_location="cpu", weights_only=False)
        net.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, history = ckpt["epoch"] + 1, ckpt["history"]
        best, stale = ckpt.get("best", best), ckpt.get("stale", 0)
        epochs = ckpt.get("epochs_fitted") or epochs  # a budgeted run resumes with its fitted length

    best_path = run_dir / "best.pt"
    started = time.time()
    epoch = start_epoch
    while epoch < epochs:
        t0 = time.time()
        idx = epoch_indices(
            train_items, weights, steps_per_epoch * cfg.data.batch_size * world, cfg.seed, epoch
        )
        if train_cache is not None:
            loader = train_cache.batches(idx[rank::world], cfg.data.batch_size)
        else:
            loader = DataLoader(
                train_ds,
                batch_size=cfg.data.batch_size,
                sampler=idx[rank::world],
                collate_fn=_collate,
                num_workers=cfg.data.num_workers,
                worker_init_fn=_worker_init,
                persistent_workers=False,
                pin_memory=device is not None,
                drop_last=True,
            )
        bar = None
        if cfg.progress and rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
        tick = _ticker(bar) if bar is not None else None
        train_m = train_one_epoch(
            model,
            loader,
            optimizer,
            cfg.loss,
            scheduler,
            o.grad_clip,
            steps_per_epoch,
            progress=tick,
            device=device,
        )
        if bar is not None:
            bar.close()
        row = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in train_m.items()}}
        row["lr"] = optimizer.param_groups[1]["lr"]
        if val_items:
            vl = val_cache.in_order(cfg.data.batch_size) if val_cache is not None else val_loader
            row.update(validate(net, vl, cfg.loss, device))
        if train_cache is not None:
            row["feature_cache_mb"] = round((train_cache.nbytes + val_cache.nbytes) / 2**20, 1)
        row["seconds"] = round(time.time() - t0, 1)
        history.append(row)
        monitor = sign * row[cfg.monitor] if cfg.monitor in row else row["train_loss"]
        improved = monitor < best
        best, stale = (monitor, 0) if improved else (best, stale + 1)
        epochs, out_of_time = _fit_to_budget(
            o.time_budget_minutes, started, epoch - start_epoch, o.epochs, epochs, epoch, time.time() - t0
        )
        if rank == 0:
            fitted = epochs if o.time_budget_minutes else None
            extra = dict(epoch=epoch, history=history, best=best, stale=stale, epochs_fitted=fitted)
            save_checkpoint(
                run_dir / "last.pt",
                net,
                cfg,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                **extra,
            )
            if improved:
                save_checkpoint(best_path, net, cfg, **extra, training_data_hash=_hash(cfg))
            _write_metrics(run_dir, history)
            summary = ", ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float))
            print(f"epoch {epoch + 1}: {summary}", flush=True)
        if cfg.early_stopping_patience is not None and stale >= cfg.early_stopping_patience:
            if rank == 0:
                print(f"early stop: no val improvement for {stale} epochs", flush=True)
            break
        if out_of_time:
            if rank == 0:
                print(f"time budget of {o.time_budget_minutes} min spent after epoch {epoch + 1}", flush=True)
            break
        epoch += 1
    if world > 1:
        dist.barrier()
    if rank == 0 and cfg.calibrate and val_items:
        from training.calibrate import calibrate

        best_net, _ = load_checkpoint(best_path)
        cal = calibrate(
            best_net,
            val_items,
            crop_to_device=cfg.crop_to_device,
            crop_upright=cfg.crop_upright,
            damage_items=damage_fit_items(load_sources(cfg.data.damage), cfg.data.damage_holdout),
            probe_items=load_sources(cfg.data.probes),
        )
        attach_calibration(best_path, cal)
        (run_dir / "calibration.json").write_text(json.dumps(cal, indent=2))
        print(f"calibrated on {len(val_items)} val photos: {json.dumps(cal['thresholds'])}", flush=True)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return best_path if best_path.exists() else run_dir / "last.pt"


def _device(name: str, rank: int) -> torch.device | None:
    """The GPU to train on (one per rank), or None for the CPU (where batches need no moving)."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return None
    if not torch.cuda.is_available():
        raise ValueError("device: cuda asked for, but torch sees no CUDA GPU")
    torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
    return torch.device("cuda", rank % torch.cuda.device_count())


def _fit_to_budget(
    budget_min: float | None,
    started: float,
    done_here: int,
    asked: int,
    epochs: int,
    epoch: int,
    last: float,
) -> tuple[int, bool]:
    """(epochs, out_of_time) after epoch `epoch` (0-based), the `done_here`-th of this process (0-based),
    which took `last` seconds; `asked` is the config's epoch count, `epochs` the run's current length.
    After each of the first two, the length becomes what fits in the budget at the last epoch's pace, up
    to `asked` (the first epoch is slower: workers start, cuDNN picks its kernels, the validation photos
    are decoded and kept; so the second may lengthen what the first shortened); after later ones, the
    run stops when the next epoch would not fit."""
    if budget_min is None:
        return epochs, False
    left = budget_min * 60 - (time.time() - started)
    if done_here <= 1:
        fitted = max(epoch + 1, min(asked, epoch + 1 + int(left // last)))
        if fitted != epochs:
            print(f"time budget: {epochs} epochs fitted to {fitted} at {last:.0f} s an epoch", flush=True)
        return fitted, False
    return epochs, epoch + 1 < epochs and left < last


def _ticker(bar):
    def tick(loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")

    return tick


def _hash(cfg: TrainConfig) -> str:
    return training_data_hash([s.manifest for s in cfg.data.train])
