"""Alternatives to the card's screen zone-damage features, judged as `bench_damage_cv.py` judges the card's.

    .venv/bin/python benchmarks/bench_damage_alternatives.py [--model models/default.onnx]
        [--config training/configs/default.yaml] [--folds 5] [--head-epochs 12] [--json OUT]

The screen's crack call (`model.damage`) is a logistic model over the encoder's and ImageNet's pooled
features of the 384 px frame. Intact display-on phones still read as cracked on real photos; two ways
to see more of the glass, each measured on the same photos and folds as the card's own features:

- **zoom**: the screen's box cut out of the frame, letterboxed at the input size and run through the
  same model again (a third pass, about 20 ms), its ImageNet stride-32 features pooled four ways over
  the crop and its own crack map's statistics: a logistic model fitted as calibration fits one;
- **head**: a crack head trained on image-level truth: ImageNet's Lite0 block 15 fine-tuned with a
  1x1 convolution over the stride-32 cells, pooled over the screen's cells by log-mean-exp (a
  multiple-instance pooling: one cracked region makes a cracked screen), on the frozen ImageNet blocks
  11-14 of the encoder's stride-16 features of the frame and of its mirror image; trained per fold
  with the fit's source weights (`training.damage.source_weights`), scored as the mean over the frame
  and its mirror.

Each is printed alone and as the mean of its logit with the card's (an ensemble). The out-of-fold
probabilities are the folds of `training.damage.cross_fitted` (a fixed hash of the device group); each
method's cut is its highest Youden's J on the real validation photos, as calibration chooses the
card's. Printed per source, originals only: AUROC, intact photos called cracked (FP) and cracked ones
found (TP) at that cut, then the same on the real validation photos.

The caveat of `bench_damage_cv.py` holds: the bundled network trained on cracked_screens' and MSD's
train splits, so their out-of-fold figures are optimistic; phones_web's are honest.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEAD_BLOCK = 15  # Lite0's last block: fine-tuned by the head; blocks 11-14 stay ImageNet's
SOURCES = ("phones_web", "cracked_screens", "msd", "synthetic")


@dataclass
class Photo:
    """One fit or validation photo with screen truth: what every method reads."""

    source: str
    cracked: bool
    synthetic: bool
    group: str
    copy: bool
    card: np.ndarray  # the card's features of the screen
    zoom: np.ndarray  # the screen's box, letterboxed at the input size (uint8 S x S x 3)
    zoom_content: np.ndarray  # where the box lies in `zoom` (S x S bool; the rest is padding)
    s16: np.ndarray  # the encoder's stride-16 features of the frame and of its mirror (2 x C x H x W)
    cells: np.ndarray  # the screen's cells at stride 16 (H x W)


def collect(items, predictor, kind: str) -> list[Photo]:
    """Every photo whose screen truth is known and that shows enough screen, with what the methods read."""
    from tqdm import tqdm

    from model.damage import coarsen, zone_features
    from model.inference import batched
    from model.outputs import ENCODER_S16, ZONE_CHANNELS
    from model.preprocess import letterbox
    from model.taxonomy import Zone
    from training.damage import GENERATED_DEFECT_SOURCES, zone_truth
    from training.dataset import COPY_SUFFIXES, device_group
    from training.predict import predict

    run = batched(predictor.run)
    screen = ZONE_CHANNELS.index(Zone.SCREEN.value)
    out = []
    for p in tqdm(predict(items, predictor), total=len(items), desc="photos"):
        rec = p.item.record
        truth = zone_truth(rec).get(Zone.SCREEN)
        card = None if truth is None else zone_features(p.outputs, Zone.SCREEN, kind)
        if card is None:
            continue
        cells = p.outputs["zone_probs"].argmax(axis=0) == screen
        ys, xs = np.nonzero(cells)
        k = p.size / cells.shape[0]
        # 1st-99th percentile of the screen's cells: a stray cell far off does not widen the box.
        x0, x1 = (int(np.percentile(xs, q) * k) + d for q, d in ((1, 0), (99, int(k))))
        y0, y1 = (int(np.percentile(ys, q) * k) + d for q, d in ((1, 0), (99, int(k))))
        zoom, lb = letterbox(np.ascontiguousarray(p.image[y0:y1, x0:x1]), p.size)
        content = np.zeros(zoom.shape[:2], dtype=bool)
        nh, nw = round((y1 - y0) * lb.scale), round((x1 - x0) * lb.scale)
        content[lb.pad_y : lb.pad_y + nh, lb.pad_x : lb.pad_x + nw] = True
        mirror = run([np.ascontiguousarray(p.image[:, ::-1])])[0][ENCODER_S16]
        s16 = np.stack([p.outputs[ENCODER_S16], mirror]).astype(np.float16)
        stride16 = coarsen(cells, s16.shape[-1])
        generated = rec.instances_complete or rec.source in GENERATED_DEFECT_SOURCES
        copy = rec.device_id.endswith(COPY_SUFFIXES)
        out.append(
            Photo(
                rec.source,
                bool(truth),
                bool(generated),
                device_group(rec),
                copy,
                card,
                zoom,
                content,
                s16,
                stride16,
            )
        )
    return out


def zoom_features(photos: list[Photo], predictor) -> list[np.ndarray]:
    """Each zoomed screen through the model again: ImageNet's stride-32 features pooled four ways over the
    crop's content, then its crack map's statistics over the same cells."""
    from model.damage import _crack_stats, _encoder_pool, coarsen
    from model.inference import batched
    from model.outputs import IMAGENET_S32

    run = batched(predictor.run)
    out = []
    for start in range(0, len(photos), 8):
        chunk = photos[start : start + 8]
        for ph, o in zip(chunk, run([ph.zoom for ph in chunk]), strict=True):
            cells = coarsen(ph.zoom_content, o["defect_probs"].shape[-1])
            pooled = _encoder_pool(o[IMAGENET_S32], cells, four_ways=True)
            out.append(np.concatenate([pooled, _crack_stats(o["defect_probs"], cells)]))
    return out


def logistic_out_of_fold(photos, val, features, val_features, folds: int):
    """`training.damage.cross_fitted` and the full fit's validation probabilities for `features`."""
    from model.damage import JOINT_V3
    from training.damage import ZoneSample, cross_fitted, fit_zone_damage

    def samples(ps, fs):
        return [ZoneSample(p.source, f, p.cracked, p.synthetic, p.group) for p, f in zip(ps, fs, strict=True)]

    fit, choose = samples(photos, features), samples(val, val_features)
    # JOINT_V3: the last four features are a crack map's statistics, emphasised as calibration does.
    model, _ = fit_zone_damage(fit, choose, JOINT_V3)
    return cross_fitted(fit, choose, JOINT_V3, folds), np.array(
        [model.probability(s.features) for s in choose]
    )


def head_out_of_fold(photos, val, folds: int, epochs: int) -> tuple[np.ndarray, np.ndarray]:
    """The crack head's logits: out of fold (the folds of `cross_fitted`) and, fitted on all, on validation."""
    import torch

    from model.network import imagenet_classifier

    torch.set_num_threads(2)
    frozen = torch.nn.ModuleList(list(imagenet_classifier(pretrained=True)._blocks)[11:HEAD_BLOCK]).eval()

    @torch.no_grad()
    def base(ps):  # blocks 11-14 once per photo and mirror: N x 2 x C x h x w
        out = []
        for p in ps:
            x = torch.from_numpy(p.s16.astype(np.float32))
            for block in frozen:
                x = block(x, drop_connect_rate=None)
            out.append(x.numpy())
        return np.stack(out)

    fit_x, val_x = base(photos), base(val)
    fold = np.array([zlib.crc32(p.group.encode()) % folds for p in photos])
    oof = np.full(len(photos), np.nan)
    for k in range(folds):
        net = train_head([photos[i] for i in np.flatnonzero(fold != k)], fit_x[fold != k], epochs)
        oof[fold == k] = score_head(net, [photos[i] for i in np.flatnonzero(fold == k)], fit_x[fold == k])
    net = train_head(photos, fit_x, epochs)
    return oof, score_head(net, val, val_x)


def _head():
    import torch
    import torch.nn.functional as F

    from model.network import imagenet_classifier

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList(list(imagenet_classifier(pretrained=True)._blocks)[HEAD_BLOCK:])
            self.out = torch.nn.Conv2d(320, 1, 1)
            torch.nn.init.zeros_(self.out.weight)
            torch.nn.init.zeros_(self.out.bias)

        def forward(self, x, cells):  # cells: N x H16 x W16 bool, pooled to the head's stride 32
            for block in self.blocks:
                x = block(x, drop_connect_rate=0.1 if self.training else None)
            logits = self.out(x)[:, 0]
            m = F.max_pool2d(cells[:, None].float(), 2)[:, 0] > 0
            n = m.flatten(1).sum(1).clamp(min=1).float()
            return torch.logsumexp(logits.masked_fill(~m, -1e4).flatten(1), 1) - torch.log(n)

    return Head()


def train_head(photos, x, epochs: int):
    import torch
    import torch.nn.functional as F

    from training.damage import ZoneSample, source_weights

    torch.manual_seed(0)
    net = _head().train()
    for m in net.modules():  # BatchNorm keeps ImageNet's statistics: batches of 32 are too few
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    w = torch.from_numpy(
        source_weights([ZoneSample(p.source, None, p.cracked, p.synthetic, p.group) for p in photos])
    ).float()
    y = torch.tensor([float(p.cracked) for p in photos])
    cells = np.stack([p.cells for p in photos])
    params = [{"params": net.blocks.parameters(), "lr": 2e-4}, {"params": net.out.parameters(), "lr": 2e-3}]
    opt = torch.optim.AdamW(params, weight_decay=1e-2)
    steps = epochs * ((len(photos) + 31) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[2e-4, 2e-3], total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        order = rng.permutation(len(photos))
        for b in range(0, len(order), 32):
            j = order[b : b + 32]
            mirror = rng.random(len(j)) < 0.5
            xb = torch.from_numpy(x[j, mirror.astype(int)].astype(np.float32))
            cb = np.where(mirror[:, None, None], cells[j][:, :, ::-1], cells[j])
            logit = net(F.dropout2d(xb, 0.1, True), torch.from_numpy(np.ascontiguousarray(cb)))
            loss = (F.binary_cross_entropy_with_logits(logit, y[j], reduction="none") * w[j]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def score_head(net, photos, x) -> np.ndarray:
    """The head's logit, the mean over the frame and its mirror."""
    import torch

    cells = np.stack([p.cells for p in photos])
    with torch.no_grad():
        a = net(torch.from_numpy(x[:, 0].astype(np.float32)), torch.from_numpy(cells))
        b = net(
            torch.from_numpy(x[:, 1].astype(np.float32)),
            torch.from_numpy(np.ascontiguousarray(cells[:, :, ::-1])),
        )
    return ((a + b) / 2).numpy()


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def table(name: str, photos, val, z_fit: np.ndarray, z_val: np.ndarray) -> dict:
    """One method's figures: its cut chosen on the real validation photos, then per source (originals)
    out of fold, and on validation."""
    from sklearn.metrics import roc_auc_score

    from training.damage import ZoneSample, choose_cut, source_weights

    p_fit, p_val = 1 / (1 + np.exp(-z_fit)), 1 / (1 + np.exp(-z_val))
    real = [i for i, p in enumerate(val) if not p.synthetic]
    yv = np.array([val[i].cracked for i in real])
    w = source_weights([ZoneSample(val[i].source, None, val[i].cracked, False, val[i].group) for i in real])
    cut, _ = choose_cut(p_val[real], yv, w)
    row: dict = {"cut": cut}
    for src in SOURCES:
        keep = [i for i, p in enumerate(photos) if p.source == src and not p.copy and not np.isnan(p_fit[i])]
        y = np.array([photos[i].cracked for i in keep])
        p = p_fit[keep]
        row[src] = {
            "auroc": float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None,
            "fp": float(np.mean(p[~y] >= cut)) if (~y).any() else None,
            "tp": float(np.mean(p[y] >= cut)) if y.any() else None,
        }
    pv = p_val[real]
    row["validation"] = {
        "auroc": float(roc_auc_score(yv, pv)),
        "fp": float(np.mean(pv[~yv] >= cut)),
        "tp": float(np.mean(pv[yv] >= cut)),
    }
    cells = []
    for key in (*SOURCES, "validation"):
        r = row[key]
        cells.append(" ".join("  —  " if r[m] is None else f"{r[m]:.3f}" for m in ("auroc", "fp", "tp")))
    print(f"{name:18s} {cut:4.2f}  " + " | ".join(cells))
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models/default.onnx")
    ap.add_argument("--config", type=Path, default=ROOT / "training/configs/default.yaml")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--head-epochs", type=int, default=12)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    from model.export import read_card
    from model.outputs import ENCODER_S16, IMAGENET_S32
    from model.taxonomy import Zone
    from training.cli.models import load_cli_config
    from training.dataset import damage_fit_items, load_sources
    from training.predict import default_thresholds, load_predictor

    card = read_card(args.model)
    if not {ENCODER_S16, IMAGENET_S32} <= set(card.feature_outputs):
        sys.exit(
            f"{args.model}: its graph lacks {ENCODER_S16} or {IMAGENET_S32}; run `refurbgrade calibrate` first"
        )
    screen = card.thresholds.zone_damage.get(Zone.SCREEN.value)
    if screen is None:
        sys.exit(f"{args.model}: its card has no zone-damage model for the screen")
    data = load_cli_config(args.config).data
    predictor = replace(
        load_predictor(args.model, fine=False),
        thresholds=default_thresholds(),
        crop_to_device=card.crop_to_device,
    )
    photos = collect(
        damage_fit_items(load_sources(data.damage), data.damage_holdout), predictor, screen.features
    )
    val = collect(load_sources(data.val), predictor, screen.features)

    z: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    p = logistic_out_of_fold(photos, val, [q.card for q in photos], [q.card for q in val], args.folds)
    z[f"card ({screen.features})"] = card_z = (_logit(p[0]), _logit(p[1]))
    p = logistic_out_of_fold(
        photos, val, zoom_features(photos, predictor), zoom_features(val, predictor), args.folds
    )
    z["zoom"] = (_logit(p[0]), _logit(p[1]))
    z["head"] = head_out_of_fold(photos, val, args.folds, args.head_epochs)
    for name in ("zoom", "head"):
        z[f"card + {name}"] = tuple((a + b) / 2 for a, b in zip(card_z, z[name], strict=True))

    print(f"\nscreen, {args.folds} folds by device group; per source (originals, out of fold): AUROC FP TP")
    print(f"{'method':18s} {'cut':4s}  " + " | ".join(f"{s:^17s}" for s in (*SOURCES, "real validation")))
    report = {name: table(name, photos, val, *zs) for name, zs in z.items()}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
