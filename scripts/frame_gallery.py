"""A gallery of the frame reader (`model.frame_read`) on photos of a manifest: for each photo the fine
pass reads, a crop around each frame scratch it reports, the scratch drawn in red over the photo, the
true frame scratches (where the manifest has masks) in green.

    python scripts/frame_gallery.py MODEL.onnx -m MANIFEST[@splits] --out docs/frame_read.jpg [--photos 6]

MODEL needs its fine file beside it with the frame reader on (`FineCard.frame_z`). Crops are 12 mm of
the device on a side, at most 4 a photo, in rows of 4.
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np
from PIL import Image

from model.fine_instances import frame_instances, frame_lines
from model.manifest import resolve
from model.outputs import VIEW_CLASSES
from model.preprocess import decode
from model.taxonomy import View
from training.dataset import load_manifest_args, read_mask
from training.metrics import photo_scale
from training.predict import load_predictor, predict

CROP_MM = 12.0
TILE = 320  # px of a crop in the gallery


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("-m", "--manifest", action="append", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--photos", type=int, default=6)
    args = ap.parse_args()
    pred = load_predictor(args.model, fine=True)
    if pred.fine_card is None or pred.fine_card.frame_z is None:
        sys.exit(f"{args.model}: no fine file with the frame reader on beside it")
    items = load_manifest_args(args.manifest, ("train", "val", "test"))
    tiles: list[np.ndarray] = []
    photos = 0
    for p in predict(items, pred):
        if photos >= args.photos:
            break
        fine = p.inferred.fine
        if fine is None:
            continue
        # The reader's own lines, measured as serving measures them (not the coarse pass's frame scratches).
        view = View(VIEW_CLASSES[int(np.argmax(p.outputs["view_probs"]))])
        scale, _ = photo_scale(p, p.size, view)
        found = frame_instances(frame_lines(fine, view), fine.card.frame_z, scale, 0.0)
        if not found:
            continue
        photos += 1
        rgb = decode(resolve(p.item.manifest, p.item.record.image))[0].copy()
        for inst in p.item.record.instances or []:
            if inst.zone == "frame" and inst.type == "scratch" and inst.mask:
                mask = read_mask(resolve(p.item.manifest, inst.mask)) > 0
                if mask.shape == rgb.shape[:2]:
                    rgb[mask] = (0.4 * rgb[mask] + (0, 150, 0)).astype(np.uint8)
        mm_px = fine.mm_per_px * fine.letterbox.scale / fine.letterbox.draft_factor
        half = round(CROP_MM / mm_px / 2)
        for inst in found[:4]:
            pts = np.asarray(inst.polygon, float)
            cv2.polylines(rgb, [pts.round().astype(np.int32)], True, (230, 30, 30), 2)
        for inst in found[:4]:
            cx, cy = np.asarray(inst.polygon, float).mean(axis=0).round().astype(int)
            crop = rgb[max(0, cy - half) : cy + half, max(0, cx - half) : cx + half]
            crop = cv2.resize(crop, (TILE, TILE), interpolation=cv2.INTER_AREA)
            m = inst.measurement
            label = f"{m.length:.1f} x {m.width:.2f} mm, {inst.confidence:.2f}"
            cv2.putText(
                crop, label, (6, TILE - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
            )
            tiles.append(crop)
    if not tiles:
        sys.exit("no frame scratch reported on these photos")
    crops = len(tiles)
    while len(tiles) % 4:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + 4]) for i in range(0, len(tiles), 4)]
    Image.fromarray(np.vstack(rows)).save(args.out, quality=85)
    print(f"{args.out}: {crops} crops from {photos} photos")


if __name__ == "__main__":
    main()
