"""The fine network (`model.fine_network.FineNet`) on held-out fine patches, against a line filter.

    .venv/bin/python benchmarks/bench_fine_net.py --checkpoint RUN/best.pt --manifest /tmp/fine_test
        [--train /tmp/fine_train] [--compare OTHER/best.pt] [--int8] [--json OUT]

The manifest must come from a seed the net never trained on (`refurbgrade synth-fine --seed 13`).
Per scratch truth from the manifest (its polyline, width and contrast):

- centreline recall and precision at a 1-pixel tolerance: the predicted centreline is heat >= the cut
  (`--cut`, default 0.5; pass the fine card's, which `refurbgrade export-fine` chose on validation)
  thinned with `skimage.morphology.skeletonize`; a true centreline pixel (the polyline rendered as
  the generator renders its targets) is found when a predicted one lies within 1 px (8-neighbours), a
  predicted pixel is right when a true one does. Recall pools the pixels of the scratches of each
  width class (true width < 1 px, >= 1 px); precision pools all predicted pixels (a false pixel has no
  scratch, so it has no width class). "Scratches found": the share with at least half their pixels
  found;
- width: per scratch, the median predicted width_px over its true centreline pixels; the median over
  scratches of the absolute error in px and in mm (x the patch's mm/px) and of the relative error;
- contrast: the same, absolute error.

Baselines, measured in the same run: for the centreline, a top-hat/black-hat line filter (7 px
ellipse, the larger of the two responses on the grey image) thresholded at median + 6 MAD of the
patch and thinned the same way; for width and contrast, a constant (the training manifest's median,
with `--train`; otherwise the test manifest's, which flatters it). Then the ONNX latency per 256 px
tile: `torch.onnx.export` (opset 18, dynamo=False), ONNX Runtime on 2 threads, FP32 at 1, 2, 4 and 8
tiles a run, and with `--int8` a static QDQ INT8 file calibrated on training patches (batch 1).
`--compare` measures a second checkpoint in the same run (the full head against the light one,
`model.fine_network.HEADS`) and prints how many times faster a tile the first is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.morphology import skeletonize

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model.export import _Calibration, _session, export_fine_onnx  # noqa: E402
from model.fine_network import FineNet  # noqa: E402
from model.fine_pass import FineCard  # noqa: E402
from model.outputs import INPUT_NAME  # noqa: E402
from training.fine_metrics import CLASSES, Tally, true_lines  # noqa: E402
from training.fine_train import FinePatchDataset, load_fine_net  # noqa: E402

KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))


def line_filter(img_rgb: np.ndarray) -> np.ndarray:
    """The baseline: max(top-hat, black-hat) of the grey image above median + 6 MAD, as a bool mask."""
    grey = cv2.cvtColor(img_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    resp = np.maximum(
        cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, KERNEL), cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, KERNEL)
    )
    med = float(np.median(resp))
    mad = float(np.median(np.abs(resp - med)))
    return resp > med + 6.0 * 1.4826 * max(mad, 1e-3)


def predict(net: FineNet, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    x = torch.from_numpy(np.stack([im.transpose(2, 0, 1) for im in images]))
    with torch.no_grad():
        o = net(x)
    return [
        (o.heat[i, 0].numpy(), o.width_px[i, 0].numpy(), o.contrast[i, 0].numpy()) for i in range(len(images))
    ]


def accuracy(
    net: FineNet, ds: FinePatchDataset, const_width: float, const_contrast: float, cut: float = 0.5
) -> tuple[dict, dict]:
    from tqdm import tqdm

    fine, base = Tally(), Tally()
    batch = 8
    for start in tqdm(range(0, len(ds), batch), desc="bench", leave=False):
        idx = list(range(start, min(len(ds), start + batch)))
        images = [ds.load(i)[0] for i in idx]
        for i, img, (heat, width_px, contrast) in zip(idx, images, predict(net, images), strict=True):
            rec = ds.records[i]
            lines = true_lines(rec)
            fine.add_lines(rec, lines, skeletonize(heat >= cut))
            fine.add_values(rec, lines, width_px, contrast)
            base.add_lines(rec, lines, skeletonize(line_filter(img)))
            base.add_values(rec, lines, const_width, const_contrast)
    return fine.summary(), base.summary()


BATCHES = (1, 2, 4, 8)  # tiles a run: the fine pass runs `model.fine_pass.TILE_BATCH` at once


def ort_latency_ms(path: Path, size: int = 256, runs: int = 40, batch: int = 1) -> float:
    """Median milliseconds a tile, `batch` tiles a run."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # the optimiser's notes on unused initialisers: errors only
    sess = _session(path, threads=2)
    x = np.random.default_rng(0).integers(0, 256, (batch, 3, size, size), dtype=np.uint8)
    for _ in range(5):
        sess.run(None, {INPUT_NAME: x})
    times = []
    for _ in range(max(5, runs // batch)):
        t = time.perf_counter()
        sess.run(None, {INPUT_NAME: x})
        times.append((time.perf_counter() - t) * 1000 / batch)
    return statistics.median(times)


def quantize(fp32: Path, out: Path, images: list[np.ndarray]) -> None:
    """Static INT8 as `model.export.quantize_int8` makes it (QDQ, per-channel), calibrated on `images`."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    nchw = np.stack([im.transpose(2, 0, 1) for im in images])
    quantize_static(
        str(fp32), str(out), _Calibration(nchw), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
    )  # fmt: skip


def fmt(v: float, pct: bool = False) -> str:
    if v != v:
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.3f}"


def table(fine: dict, base: dict) -> str:
    rows = ["| metric | FineNet | baseline | FineNet / baseline |", "|---|---|---|---|"]
    for c in CLASSES:
        rows.append(f"| scratches ({c}) | {fine[f'n {c}']} | | |")
    for key, pct, label in (
        ("recall", True, "centreline recall, 1 px"),
        ("found", True, "scratches found (>= half their centreline)"),
        ("width_px", False, "width abs. error, px (median)"),
        ("width_mm", False, "width abs. error, mm (median)"),
        ("width_rel", True, "width relative error (median)"),
        ("contrast", False, "contrast abs. error (median)"),
    ):
        for c in CLASSES:
            f, b = fine[f"{key} {c}"], base[f"{key} {c}"]
            ratio = f"{f / b:.2f}" if b == b and b and f == f else "-"
            rows.append(f"| {label}, {c} | {fmt(f, pct)} | {fmt(b, pct)} | {ratio} |")
        if key == "recall":
            f, b = fine["precision"], base["precision"]
            rows.append(f"| centreline precision, 1 px | {fmt(f, True)} | {fmt(b, True)} | {f / b:.2f} |")
    return "\n".join(rows)


def measure(checkpoint: Path, ds, ref, const_w: float, const_c: float, args) -> dict:
    """One checkpoint's accuracy table against the baselines and, unless --no-latency, its ONNX time a
    tile at each of `BATCHES` (and INT8 at batch 1 with --int8)."""
    net = load_fine_net(checkpoint)
    fine, base = accuracy(net, ds, const_w, const_c, args.cut)
    print(f"\n{checkpoint} ({net.head_kind} head): {len(ds)} patches from {ds.manifest}")
    print(table(fine, base))
    result = {"fine": fine, "baseline": base}
    if args.no_latency:
        return result
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fine.onnx"
        tiles = np.random.default_rng(0).integers(0, 256, (2, 3, 256, 256), dtype=np.uint8)
        export_fine_onnx(net, fp32, FineCard(name="bench", version="0"), tiles)
        result["onnx_fp32_ms"] = {b: ort_latency_ms(fp32, batch=b) for b in BATCHES}
        cells = ", ".join(f"{ms:.1f} ms at {b}" for b, ms in result["onnx_fp32_ms"].items())
        print(f"ONNX Runtime, 2 threads, 256 px tile, FP32 a tile: {cells} a run")
        if args.int8:
            int8 = Path(tmp) / "fine.int8.onnx"
            quantize(fp32, int8, [ref.load(i)[0] for i in range(min(32, len(ref)))])
            result["onnx_int8_ms"] = ort_latency_ms(int8)
            print(f"                                  INT8 a tile, batch 1: {result['onnx_int8_ms']:.1f} ms")
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, type=Path)
    ap.add_argument("--compare", type=Path, help="a second checkpoint, measured in the same run")
    ap.add_argument("--manifest", required=True, help="held-out fine-patch folder (unseen seed)")
    ap.add_argument(
        "--train", help="training fine-patch folder: the constant baseline's medians, INT8 calibration"
    )
    ap.add_argument("--limit", type=int, help="at most this many patches")
    ap.add_argument("--cut", type=float, default=0.5, help="heat cut for the centreline (the fine card's)")
    ap.add_argument("--int8", action="store_true", help="also quantize (static QDQ) and time INT8")
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    ds = FinePatchDataset(args.manifest)
    if args.limit:
        ds.records = ds.records[: args.limit]
    ref = FinePatchDataset(args.train) if args.train else ds
    widths = [s.width_px for r in ref.records for s in r.scratches]
    contrasts = [s.contrast for r in ref.records for s in r.scratches]
    const_w, const_c = statistics.median(widths), statistics.median(contrasts)
    print(f"baseline width {const_w:.2f} px, contrast {const_c:.3f}")
    result = measure(args.checkpoint, ds, ref, const_w, const_c, args)
    result.update(const_width_px=const_w, const_contrast=const_c)
    if args.compare:
        result["compare"] = other = measure(args.compare, ds, ref, const_w, const_c, args)
        if not args.no_latency:
            ratios = ", ".join(
                f"{other['onnx_fp32_ms'][b] / result['onnx_fp32_ms'][b]:.2f}x at {b}" for b in BATCHES
            )
            print(f"\n{args.checkpoint} is faster a tile than {args.compare}: {ratios}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
