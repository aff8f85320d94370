"""Training samples from manifests: photos through the serving preprocessing, targets, and what each supervises.

Every photo is loaded as `model.preprocess.prepare` does (`decode_for` + `letterbox`), exactly as serving loads
it; masks and polygons go through the same letterbox. Sources differ in what they know, so each sample
carries validity flags and the losses use only what is known:

- synthetic records (instance masks, complete): every defect channel per pixel, zones, view, quality;
- real records with polygons (Roboflow exports): per pixel only for the defect types annotated in that
  photo (an empty label file does not mean "no defect", see the data card);
- real records with image-level labels (MSD, cracked-screen kinds): trained through the max-pooled
  defect map (image-level BCE);
- screen polygons (cracked_screens): the screen zone inside them; outside is unknown (ignored);
- photos marked `quality: no_device`: no defect anywhere and every pixel background.

Which photos: `load_items` (a manifest's splits), `load_sources` (a config's sources),
`parse_manifest_arg` / `load_manifest_args` (the commands' `PATH@splits` arguments), and
`training_items` / `damage_fit_items` (device groups held out of training for the zone-damage fit,
`data.damage_holdout`).

Augmentations (albumentations) are photometric plus a mild affine; no flips, since left/right views
would swap meaning. With `device_crop`, a share of draws is cropped to the true device box first, as
the crop-to-device pass (`model.crop`) shows the device to the network. With `reformat`, a share of the
draws of photos labelled at image level only is first brought to phones_web's "less damaged" format
(shrunk to 244 px and padded to a black-barred square, `small_black_barred`): in that set nearly every
such photo is cracked and almost no intact one is, so the format alone would tell the classes apart
(the data card's shortcut); seen in both classes, the format stops meaning "cracked".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from model.catalogue import UnknownDeviceError, lookup_device
from model.crop import CROP_MARGIN, MIN_GAIN
from model.manifest import ManifestRecord, read_manifest, resolve
from model.outputs import DEFECT_CHANNELS, QUALITY_CLASSES, VIEW_CLASSES
from model.preprocess import PAD_VALUE, Letterbox, decode_for, letterbox
from model.taxonomy import PhotoQuality
from training.config import SourceConfig

IGNORE = 255  # zone target value for unknown pixels
IGNORE_INDEX = -100  # class target for unknown view / quality
N_DEFECT = len(DEFECT_CHANNELS)


@dataclass(frozen=True)
class Item:
    record: ManifestRecord
    manifest: Path
    source: str  # manifest path, for per-source sampling weights


def load_items(
    manifest: str | Path, splits: list[str] | tuple[str, ...], limit: int | None = None
) -> list[Item]:
    manifest = Path(manifest)
    items = [Item(r, manifest, str(manifest)) for r in read_manifest(manifest) if r.split in splits]
    return items[:limit] if limit else items


def load_sources(sources: Iterable[SourceConfig]) -> list[Item]:
    """The items of a config's sources (`data.train` or `data.val`), in order, each source's limit applied."""
    return [it for s in sources for it in load_items(s.manifest, s.splits, s.limit)]


# Suffixes of the device ids of derived copies (`refurbgrade reformat`, `refurbgrade degrade`,
# `refurbgrade jitter`): a copy belongs to its original's group.
COPY_SUFFIXES = ("-barred", "-unbarred", "-degraded", "-jitter")


def catalogue_length(rec: ManifestRecord) -> float | None:
    """The catalogue's length (mm) of a record's named device model; None when unnamed or unknown."""
    if not rec.device_model:
        return None
    try:
        return lookup_device(rec.device_model).length
    except UnknownDeviceError:
        return None


def device_group(rec: ManifestRecord) -> str:
    """The device group a record belongs to: its device id, a derived copy's original's."""
    gid = rec.device_id
    for suffix in COPY_SUFFIXES:
        gid = gid.removesuffix(suffix)
    return gid


def held_for_damage(rec: ManifestRecord, share: float) -> bool:
    """Whether a real record's device group is among the `share` kept for the zone-damage fit: a fixed
    hash of the group, so every run, and every copy of a photo, holds out the same groups."""
    if share <= 0 or rec.instances_complete:
        return False
    digest = hashlib.sha1(device_group(rec).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def damage_fit_items(damage: list[Item], share: float) -> list[Item]:
    """The zone-damage fit's photos with `share` of the real sources' device groups held out of training
    (`held_for_damage`): of the real photos, only those groups (copies with their originals); synthetic
    photos (complete labels) all. Share 0: `damage` as it is."""
    if share <= 0:
        return damage
    return [it for it in damage if it.record.instances_complete or held_for_damage(it.record, share)]


def training_items(train: list[Item], damage: list[Item], share: float) -> list[Item]:
    """The training photos without the device groups `damage_fit_items` keeps for the damage fit: every
    source whose real photos the fit reads loses those groups; other sources and synthetic photos stay."""
    if share <= 0:
        return train
    real = {it.record.source for it in damage if not it.record.instances_complete}
    return [it for it in train if not (it.record.source in real and held_for_damage(it.record, share))]


def parse_manifest_arg(arg: str, default_splits: Sequence[str]) -> tuple[Path, tuple[str, ...]]:
    """A command line's manifest, `PATH` or `PATH@train,val` (its own splits: a held-out synthetic
    seed is test as a whole), as (path, splits). A missing file is a `FileNotFoundError` naming it."""
    path, _, splits = arg.partition("@")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such manifest: {path}")
    return Path(path), tuple(splits.split(",")) if splits else tuple(default_splits)


def load_manifest_args(args: Iterable[str], default_splits: Sequence[str]) -> list[Item]:
    """The items of `parse_manifest_arg` arguments, in order; every file is checked before any is read."""
    parsed = [parse_manifest_arg(a, default_splits) for a in args]
    return [it for path, splits in parsed for it in load_items(path, splits)]


def letterbox_mask(mask: np.ndarray, lb: Letterbox, size: int) -> np.ndarray:
    """A label mask in original-photo pixels -> the model's letterboxed frame (nearest, padded with 0)."""
    # lb.scale maps decoded pixels; a full-resolution mask is draft_factor times larger than decoded.
    s = lb.scale / lb.draft_factor
    if lb.crop is not None:  # the crop's part of the mask, in full-resolution pixels
        x0, y0, x1, y1 = (round(v * lb.draft_factor) for v in lb.crop)
        mask = mask[y0:y1, x0:x1]
    nw, nh = max(1, round(mask.shape[1] * s)), max(1, round(mask.shape[0] * s))
    if mask.ndim == 2 and mask.max() <= 1 and s < 1:
        # Thin defects must survive downscaling: area-average then any coverage counts.
        small = cv2.resize(mask.astype(np.float32), (nw, nh), interpolation=cv2.INTER_AREA) > 0.05
        small = small.astype(mask.dtype)
    else:
        # Pixel-centre aligned like the photo's resize (plain INTER_NEAREST shifts by up to half a pixel).
        small = cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_NEAREST_EXACT)
    out = np.zeros((size, size), dtype=mask.dtype)
    h, w = min(nh, size - lb.pad_y), min(nw, size - lb.pad_x)
    out[lb.pad_y : lb.pad_y + h, lb.pad_x : lb.pad_x + w] = small[:h, :w]
    return out


def polygon_to_model(poly, lb: Letterbox) -> np.ndarray:
    pts = lb.to_model(poly)
    return np.round(pts).astype(np.int32)


def read_mask(path: Path) -> np.ndarray:
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise FileNotFoundError(f"cannot read mask {path}")
    return m if m.ndim == 2 else m[..., 0]


def true_device_box(item: Item, draft: float, margin: float) -> tuple[int, int, int, int] | None:
    """The box around the device in a record's zone mask, grown by `margin` of its size on each side,
    in the pixels of a decode at `draft` (original pixels per decoded pixel, as `decode_for` gives;
    what `build_targets(crop=)` takes); None without a zone mask or a device in it."""
    rec = item.record
    if rec.zone_mask is None:
        return None
    zone = read_mask(resolve(item.manifest, rec.zone_mask))
    ys, xs = np.nonzero(zone)
    if len(xs) == 0:
        return None
    w, h = xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()
    x0, x1 = (xs.min() - margin * w) / draft, (xs.max() + 1 + margin * w) / draft
    y0, y1 = (ys.min() - margin * h) / draft, (ys.max() + 1 + margin * h) / draft
    W, H = zone.shape[1] / draft, zone.shape[0] / draft
    return (
        max(0, int(x0)),
        max(0, int(y0)),
        min(round(W), int(np.ceil(x1))),
        min(round(H), int(np.ceil(y1))),
    )


def true_crop_box(item: Item, whole: Letterbox) -> tuple[int, int, int, int] | None:
    """The crop serving's second pass (`model.crop.device_box`) would take from a perfect zone map: the
    true device box in the pixels of `whole`'s decode, grown by `CROP_MARGIN`; None where that crop
    would magnify the device less than `MIN_GAIN` (serving then keeps the first pass)."""
    box = true_device_box(item, whole.draft_factor, CROP_MARGIN)
    if box is not None and max(whole.region_size) / max(box[2] - box[0], box[3] - box[1]) < MIN_GAIN:
        return None
    return box


SHORTCUT_SIDE = 244  # phones_web's "less damaged" photos: 244 x 244, black bars (data card)


def small_black_barred(rgb: np.ndarray, side: int = SHORTCUT_SIDE) -> np.ndarray:
    """The photo shrunk to fit `side` and centred on a black `side` x `side` square."""
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    out = np.zeros((side, side, 3), dtype=np.uint8)
    y, x = (side - nh) // 2, (side - nw) // 2
    out[y : y + nh, x : x + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def image_level_only(rec: ManifestRecord) -> bool:
    """No pixel geometry to keep in register: no instances, screen outlines or zone mask."""
    return not rec.instances and not rec.screen_polygons and rec.zone_mask is None


def has_zone_truth(rec) -> bool:
    """Whether a photo's zones are known beyond the letterbox padding `build_targets` marks background:
    a zone mask, screen outlines, or no device at all. A real photo labelled only cracked or intact has
    none, and an evaluation that scored its padding alone reported a zone mIoU of 0.5 for a folder of
    such photos (background 1.0 on the padding, screen 0 for a predicted cell or two there)."""
    return rec.zone_mask is not None or bool(rec.screen_polygons) or rec.quality is PhotoQuality.NO_DEVICE


def build_targets(
    item: Item,
    size: int,
    crop: tuple[int, int, int, int] | None = None,
    device_margin: float | None = None,
    reformat: bool = False,
) -> dict[str, np.ndarray]:
    """Photo and targets at model-input resolution, with validity flags; of the photo's `crop` when
    given (decoded pixels, as `Letterbox.crop`: the crop-to-device pass), or with `device_margin`, of
    the true device box grown by that margin (`true_device_box`; the whole photo without one). With
    `reformat`, a photo labelled at image level only is first made `small_black_barred`."""
    rec = item.record
    rgb, draft = decode_for(resolve(item.manifest, rec.image), size)  # decoded once, crop or not
    if reformat and image_level_only(rec):
        rgb, draft = small_black_barred(rgb), 1.0
    if device_margin is not None:
        crop = true_device_box(item, draft, device_margin)
    image, lb = letterbox(rgb, size, draft, crop)
    defects = np.zeros((size, size, N_DEFECT), dtype=np.uint8)
    pixel_valid = np.zeros(N_DEFECT, dtype=np.float32)
    for inst in rec.instances:
        d = DEFECT_CHANNELS.index(inst.type.value)
        if inst.mask is not None:
            m = (read_mask(resolve(item.manifest, inst.mask)) > 0).astype(np.uint8)
            defects[..., d] |= letterbox_mask(m, lb, size)
        else:
            layer = np.ascontiguousarray(defects[..., d])
            cv2.fillPoly(layer, [polygon_to_model(inst.polygon, lb)], 1)
            defects[..., d] = layer
        pixel_valid[d] = 1.0
    no_device = rec.quality is PhotoQuality.NO_DEVICE
    if rec.instances_complete or no_device:  # a photo without a device has no defect anywhere
        pixel_valid[:] = 1.0
    image_label = np.zeros(N_DEFECT, dtype=np.float32)
    image_valid = pixel_valid.copy()
    image_label[:] = defects.reshape(-1, N_DEFECT).max(axis=0)
    for dtype, present in rec.image_labels.items():
        d = DEFECT_CHANNELS.index(dtype.value)
        image_label[d], image_valid[d] = float(present), 1.0
    # Unknown zones are ignored, except the letterbox padding, which is background by construction.
    zone = np.zeros((size, size), dtype=np.uint8)
    rw, rh = lb.region_size
    nw, nh = round(rw * lb.scale), round(rh * lb.scale)
    zone[lb.pad_y : lb.pad_y + nh, lb.pad_x : lb.pad_x + nw] = IGNORE
    if rec.zone_mask is not None:
        zone = letterbox_mask(read_mask(resolve(item.manifest, rec.zone_mask)).astype(np.uint8), lb, size)
    elif no_device:
        zone[:] = 0  # all background
    elif rec.screen_polygons:
        for poly in rec.screen_polygons:
            if len(poly) >= 3:
                cv2.fillPoly(zone, [polygon_to_model(poly, lb)], 1)  # 1 = screen (ZONE_CHANNELS[1])
    return {
        "image": image,
        "defects": defects,
        "zone": zone,
        "pixel_valid": pixel_valid,
        "image_label": image_label,
        "image_valid": image_valid,
        "view": np.int64(VIEW_CLASSES.index(rec.view.value) if rec.view else IGNORE_INDEX),
        "quality": np.int64(QUALITY_CLASSES.index(rec.quality.value) if rec.quality else IGNORE_INDEX),
    }


def train_augment() -> A.Compose:
    return A.Compose(
        [
            A.Affine(
                scale=(0.85, 1.15),
                translate_percent=(-0.06, 0.06),
                rotate=(-12, 12),
                border_mode=cv2.BORDER_CONSTANT,
                fill=PAD_VALUE,
                fill_mask=0,
                p=0.7,
            ),
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.6),
            A.HueSaturationValue(hue_shift_limit=6, sat_shift_limit=15, val_shift_limit=0, p=0.4),
            A.GaussNoise(std_range=(0.01, 0.04), p=0.3),
            A.ImageCompression(quality_range=(60, 95), p=0.3),
        ],
        additional_targets={"zone": "mask"},
    )


class ManifestDataset(Dataset):
    """Items -> tensors: image uint8 3xSxS, defects float DxSxS, zone long SxS, flags and labels."""

    def __init__(
        self,
        items: list[Item],
        size: int,
        augment: bool = False,
        cache: bool = False,
        device_crop: float = 0.0,
        reformat: float = 0.0,
    ):
        self.items = items
        self.size = size
        self.augment = train_augment() if augment else None
        self._cache: dict[int, dict[str, np.ndarray]] | None = {} if cache else None
        # Share of draws cropped to the true device box, as the crop-to-device pass sees photos (model.crop).
        self.device_crop = device_crop
        self.reformat = reformat  # share of image-level-only draws made small and black-barred

    def __len__(self) -> int:
        return len(self.items)

    def _targets(self, i: int) -> dict[str, np.ndarray]:
        if self._cache is None:
            return build_targets(self.items[i], self.size)
        if i not in self._cache:
            self._cache[i] = build_targets(self.items[i], self.size)
        return self._cache[i]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if (
            self.reformat > 0
            and image_level_only(self.items[i].record)
            and np.random.random() < self.reformat
        ):
            t = build_targets(self.items[i], self.size, reformat=True)
        elif self.device_crop > 0 and np.random.random() < self.device_crop:
            # The margin varies around the inference crop's (CROP_MARGIN): the zone map's box is approximate.
            margin = float(np.random.uniform(0.5, 2.5) * CROP_MARGIN)
            t = build_targets(self.items[i], self.size, device_margin=margin)
        else:
            t = dict(self._targets(i))
        if self.augment is not None:
            out = self.augment(image=t["image"], mask=t["defects"], zone=t["zone"])
            # Pixels the affine brings in from outside the frame are filled with 0: background, known.
            t["image"], t["defects"], t["zone"] = out["image"], out["mask"], out["zone"]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(t["image"].transpose(2, 0, 1))),
            "defects": torch.from_numpy(np.ascontiguousarray(t["defects"].transpose(2, 0, 1))).float(),
            "zone": torch.from_numpy(np.ascontiguousarray(t["zone"])).long(),
            "pixel_valid": torch.from_numpy(t["pixel_valid"]),
            "image_label": torch.from_numpy(t["image_label"]),
            "image_valid": torch.from_numpy(t["image_valid"]),
            "view": torch.tensor(t["view"]),
            "quality": torch.tensor(t["quality"]),
            "index": torch.tensor(i),
        }
