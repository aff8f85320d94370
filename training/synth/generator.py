"""The synthetic photo generator: one photo from a seed and an index, and a whole dataset in parallel.

Each photo i of a run with seed S uses its own random stream `default_rng([S, i])`, so a photo does
not depend on the number of workers or on the photos before it, and two runs with one seed write
identical files. A photo is made in this order: device design and pose -> flat device -> defect plan
(re-planned until the rules engine gives the target grade, so the grade mix is what the config asks)
-> defects drawn with their masks -> light -> camera warp onto a background -> sensor -> files.

Output layout of `generate(...)` (paths in the manifest are relative to it):
    DIR/manifest.jsonl, DIR/images/NNNNNN.jpg, DIR/zones/NNNNNN.png, DIR/masks/NNNNNN_KK.png
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from model.catalogue import DeviceSpec
from model.manifest import LabelledInstance, ManifestRecord, write_manifest
from model.rules import grade, list_standards, load_standard
from model.taxonomy import DeviceKind, PhotoQuality, View, Zone
from training.synth import backgrounds, compositing, cracks
from training.synth.defects import DefectPlan, draw_defects, photo_mask, plan_device
from training.synth.devices import Flat, pick_spec, render_flat, sample_design
from training.synth.geometry import apply_h
from training.synth.photography import (
    cast_shadow,
    choose_pose,
    encode_jpeg,
    light_flat,
    scale3,
    sensor,
    warp_layers,
)
from training.synth.pool import worker_pool
from training.synth.shown import photo_steps

# In every record's meta. 2 (2026-12-05): a gouge on a dark finish shows lighter (`defects._draw_scratch`).
GENERATOR_VERSION = "2"
ZONES = tuple(Zone)


class SynthConfig(BaseModel):
    """What a synthetic dataset looks like. Every mix is a weight per class (normalised here)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    size: int = Field(default=512, ge=64, le=4096)  # the photo's longer side, px
    target_standard: str = "backmarket"
    # Target mix of grades under `target_standard` (names as in its YAML). Not mostly pristine.
    grade_mix: dict[str, float] = Field(default_factory=dict)
    quality_mix: dict[PhotoQuality, float] = Field(
        default_factory=lambda: {
            PhotoQuality.USABLE: 0.85,
            PhotoQuality.BLURRY: 0.05,
            PhotoQuality.BAD_EXPOSURE: 0.05,
            PhotoQuality.NO_DEVICE: 0.05,
        }
    )
    kind_mix: dict[DeviceKind, float] = Field(
        default_factory=lambda: {DeviceKind.PHONE: 0.6, DeviceKind.TABLET: 0.15, DeviceKind.LAPTOP: 0.25}
    )
    view_mix: dict[View, float] = Field(
        default_factory=lambda: {
            View.FRONT: 0.4,
            View.BACK: 0.4,
            View.LEFT: 0.05,
            View.RIGHT: 0.05,
            View.TOP: 0.05,
            View.BOTTOM: 0.05,
        }
    )
    aspect_mix: dict[str, float] = Field(default_factory=lambda: {"1:1": 0.4, "4:3": 0.3, "3:4": 0.3})
    split_mix: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    p_real_background: float = Field(default=0.3, ge=0, le=1)
    # Share of photos that are synthetic defects composited onto real device photos (compositing.py);
    # needs the committed real manifests and the shared photos, else those photos are procedural.
    p_composite: float = Field(default=0.1, ge=0, le=1)
    # Which splits of the real photos composites may use. A composite keeps its real photo's split, but a
    # training set is read whole (its synthetic splits mean nothing), so the training set's generation
    # asks for ("train",): else composites of real test photos would be trained on.
    composite_splits: tuple[Literal["train", "val", "test"], ...] = ("train", "val", "test")
    real_root: str | None = (
        None  # shared real data folder; None = look for it (backgrounds.default_real_root)
    )
    jpeg_quality: tuple[int, int] = (72, 95)
    max_replans: int = Field(default=12, ge=1)
    # How glass cracks look (defects.plan_device): "classic" keeps every existing seed's photos unchanged
    crack_style: Literal["classic", "realistic", "mixed"] = "classic"
    # What a lit screen shows: "gradient" keeps every existing seed's photos unchanged; "busy" draws real
    # photos and particle splashes (devices._busy_wallpaper), the display-on hard negatives
    wallpapers: Literal["gradient", "busy"] = "gradient"
    # Photograph each procedural device again without its defects and record how much the photo shows
    # each one (`training.synth.shown`: the instance's `photo_step`). The photos are unchanged; the
    # light, warp and sensor run twice, so it is on only for the sets evaluation reads it from.
    measure_shown: bool = False

    @field_validator("grade_mix", "quality_mix", "kind_mix", "view_mix", "aspect_mix", "split_mix")
    @classmethod
    def _weights(cls, v: dict) -> dict:
        if v and (any(w < 0 for w in v.values()) or sum(v.values()) <= 0):
            raise ValueError("weights must be >= 0 with a positive sum")
        return v

    def grades_and_weights(self) -> tuple[tuple[str, ...], np.ndarray]:
        names = load_standard(self.target_standard).grade_names
        mix = self.grade_mix or {n: 1.0 for n in names}  # default: every grade equally often
        unknown = set(mix) - set(names)
        if unknown:
            raise ValueError(
                f"grade_mix names unknown grades {sorted(unknown)}; {self.target_standard} has {names}"
            )
        w = np.array([mix.get(n, 0.0) for n in names], dtype=float)
        return names, w / w.sum()


def parse_mix(text: str) -> dict[str, float]:
    """'Premium=1,Good=2' -> {'Premium': 1.0, 'Good': 2.0} (the CLI's mix syntax)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, w = part.partition("=")
        if not _:
            raise ValueError(f"expected NAME=WEIGHT, got {part!r}")
        out[name.strip()] = float(w)
    return out


def config_from_options(grade_mix: str = "", quality_mix: str = "", **fields) -> SynthConfig:
    """A config from `refurbgrade synth`'s options: the mixes in `parse_mix` syntax (empty: the default
    mix). Checked against the target standard here, so unknown grade names fail (`ValueError`) before
    any photo is drawn."""
    if grade_mix:
        fields["grade_mix"] = parse_mix(grade_mix)
    if quality_mix:
        fields["quality_mix"] = parse_mix(quality_mix)
    cfg = SynthConfig(**fields)
    cfg.grades_and_weights()
    return cfg


def _pick(rng: np.random.Generator, mix: dict):
    keys = list(mix)
    w = np.array([mix[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


@dataclass
class Sample:
    """One generated photo in memory, with everything its manifest record needs."""

    image: np.ndarray  # HxWx3 uint8 RGB
    zone: np.ndarray | None  # HxW uint8 (None: unknown, composites)
    masks: list[np.ndarray]  # HxW uint8 0/1, one per instance
    plans: list[DefectPlan]
    quality: PhotoQuality
    spec: DeviceSpec | None
    view: View | None
    mm_per_px: float | None
    grades: dict[str, str]
    split: str
    license: str
    screen_polygons: list[list[tuple[float, float]]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    jpeg_quality: int = 90
    # Composites onto real photos (compositing.py) differ: no zone map, no true sizes, no grade, the
    # real photo's own (partial) labels, and the real photo's device id and kind.
    composite: bool = False
    real_instances: list[LabelledInstance] = field(default_factory=list)
    device_id: str | None = None
    device_kind: DeviceKind | None = None
    image_labels: dict = field(default_factory=dict)
    # Per plan, how much the photo shows it (`training.synth.shown`); None: not measured.
    photo_steps: list[float] | None = None


def _out_size(rng: np.random.Generator, cfg: SynthConfig) -> tuple[int, int]:
    aspect = _pick(rng, cfg.aspect_mix)
    a, b = (int(x) for x in aspect.split(":"))
    w, h = (cfg.size, round(cfg.size * b / a)) if a >= b else (round(cfg.size * a / b), cfg.size)
    return w, h


def grade_all(plans: list[DefectPlan], kind: DeviceKind) -> dict[str, str]:
    insts = [p.instance() for p in plans]
    return {std: grade(insts, std, device_kind=kind).grade for std in list_standards()}


def plan_for_grade(
    flat: Flat, rng: np.random.Generator, cfg: SynthConfig, target: int
) -> tuple[list[DefectPlan], int]:
    """Plan defects at the target's severity, re-planning until the rules engine agrees (or the closest)."""
    std = load_standard(cfg.target_standard)
    kind = flat.design.kind
    best: tuple[int, list[DefectPlan]] | None = None
    for _ in range(cfg.max_replans):
        plans = plan_device(flat, rng, min(target, 4), cfg.crack_style, cracks.plan)
        got = std.index(grade([p.instance() for p in plans], std, device_kind=kind).grade)
        if got == target:
            return plans, got
        if best is None or abs(got - target) < abs(best[0] - target):
            best = (got, plans)
    assert best is not None
    return best[1], best[0]


def make_sample(
    cfg: SynthConfig,
    index: int,
    *,
    spec: DeviceSpec | None = None,
    view: View | None = None,
    quality: PhotoQuality | None = None,
    planner: Callable[[Flat, np.random.Generator], list[DefectPlan]] | None = None,
    flat_pose: bool = False,
) -> Sample:
    """Photo `index` of the run `cfg.seed`. Keyword overrides pin the device, view, quality or defects
    (tests use them: e.g. a scratch of known length on a known device, photographed without tilt)."""
    rng = np.random.default_rng([cfg.seed, index])
    out_w, out_h = _out_size(rng, cfg)
    split = _pick(rng, cfg.split_mix)
    quality = PhotoQuality(quality or _pick(rng, cfg.quality_mix))
    real_root = cfg.real_root if cfg.real_root is not None else backgrounds.default_real_root()
    real_files = backgrounds.real_background_files(str(real_root) if real_root else None)
    bg, bg_name = backgrounds.background(rng, out_h, out_w, real_files, cfg.p_real_background)
    busy = real_files if cfg.wallpapers == "busy" else None
    license = (
        backgrounds.REAL_LICENSE
        # a busy wallpaper may be a crop of one of the same real photos
        if bg_name.startswith("real:") or busy
        else "Apache-2.0 (generated by refurbgrade synth)"
    )
    meta: dict = {"generator": GENERATOR_VERSION, "seed": cfg.seed, "index": index, "background": bg_name}
    jpeg_q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    scale = max(out_w, out_h) / 512

    if quality is PhotoQuality.USABLE and rng.random() < cfg.p_composite and planner is None and spec is None:
        sources = compositing.load_sources(tuple(str(p) for p in compositing.default_manifests()))
        sources = tuple(s for s in sources if s[1].split in cfg.composite_splits)
        c = compositing.composite(rng, cfg.size, sources) if sources else None
        if c is not None and c.plans:  # else (no room for a defect on any photo tried): a procedural one
            meta.update(c.meta)
            meta.pop("background")
            return Sample(
                c.image,
                None,
                c.masks,
                c.plans,
                quality,
                None,
                c.record.view,
                None,
                {},
                c.record.split,
                c.record.license,
                meta=meta,
                jpeg_quality=jpeg_q,
                composite=True,
                real_instances=c.real,
                device_id=c.record.device_id,
                device_kind=c.record.device_kind,
                image_labels=c.image_labels,
            )

    if quality is PhotoQuality.NO_DEVICE:
        image, smeta = sensor(bg, rng, quality, scale)
        meta.update(smeta)
        return Sample(
            image,
            np.zeros((out_h, out_w), np.uint8),
            [],
            [],
            quality,
            None,
            None,
            None,
            {},
            split,
            license,
            meta=meta,
            jpeg_quality=jpeg_q,
        )

    kind = DeviceKind(_pick(rng, cfg.kind_mix))
    spec = spec or pick_spec(rng, kind)
    view = View(view or _pick(rng, cfg.view_mix))
    design = sample_design(rng, spec, view)
    pose = choose_pose(rng, design.plane_mm(), out_w, out_h, flat_tilt=flat_pose)
    if flat_pose:
        pose = type(pose)(pose.ppm, 0.0, (0.0, 0.0), pose.out_centre, pose.half_extent_mm)
    flat = render_flat(design, pose.ppm, rng, wallpapers=busy)

    names, weights = cfg.grades_and_weights()
    target = int(rng.choice(len(names), p=weights))
    if planner is not None:
        plans = planner(flat, rng)
    else:
        plans, _ = plan_for_grade(flat, rng, cfg, target)
    light_angle = float(rng.uniform(-math.pi, math.pi))
    # The clean twin (`measure_shown`): the flat device before its defects (a chip cuts the outline, so
    # every layer), lit and photographed with copies of the random stream taken at the same points.
    twin = copy.deepcopy(flat) if cfg.measure_shown else None
    draw_defects(flat, plans, rng, light_angle)
    light_rng = copy.deepcopy(rng) if twin is not None else None
    meta.update(light_flat(flat, rng, light_angle))

    hmat = pose.homography(flat)
    dev_rgb, alpha, zone = warp_layers(flat, hmat, out_w, out_h)
    cast_shadow(bg, alpha, rng, light_angle)
    img = cv2.add(scale3(bg, 1.0 - alpha), dev_rgb)  # dev_rgb is premultiplied by alpha
    sensor_rng = copy.deepcopy(rng) if twin is not None else None
    image, smeta = sensor(img, rng, quality, scale)
    meta.update(smeta)
    clean = None
    if twin is not None:
        light_flat(twin, light_rng, light_angle)
        twin_rgb, twin_alpha, _ = warp_layers(twin, hmat, out_w, out_h)
        clean, _ = sensor(cv2.add(scale3(bg, 1.0 - twin_alpha), twin_rgb), sensor_rng, quality, scale)

    masks, kept = [], []
    for plan in plans:
        m = photo_mask(plan, hmat, pose.ppm, out_w, out_h)
        if m.any():  # the device is always whole in frame: this only guards against degenerate shapes
            masks.append(m)
            kept.append(plan)
    steps = photo_steps(image, clean, masks) if clean is not None else None
    screen_polys = []
    if flat.screen_poly is not None:
        screen_polys.append(
            [(round(float(x), 2), round(float(y), 2)) for x, y in apply_h(hmat, flat.screen_poly)]
        )
    meta.update(
        {
            "target_grade": names[target],
            "material": design.back_material,
            "body_colour": design.body_name,
            "frame_colour": design.frame_name,
            "screen_on": design.screen_on if view is View.FRONT else None,
            "front_camera": design.front_cam if view is View.FRONT else None,
            "camera_bump": design.bump if view is View.BACK else None,
            "rotation_deg": round(math.degrees(pose.rotation), 2),
            "tilt_x": round(pose.tilt[0], 4),
            "tilt_y": round(pose.tilt[1], 4),
            "styles": ",".join(p.style for p in kept),
        }
    )
    return Sample(
        image=image,
        zone=zone,
        masks=masks,
        plans=kept,
        quality=quality,
        spec=spec,
        view=view,
        mm_per_px=1.0 / pose.ppm,
        grades=grade_all(kept, spec.kind),
        split=split,
        license=license,
        screen_polygons=screen_polys,
        meta=meta,
        jpeg_quality=jpeg_q,
        photo_steps=steps,
    )


def _png(arr: np.ndarray, bilevel: bool = False) -> bytes:
    # 1-bit PNGs for instance masks: 6x faster to encode than 8-bit ones, and they still read back as
    # single-channel uint8 0/255 with cv2 and Pillow
    flags = [cv2.IMWRITE_PNG_COMPRESSION, 1] + ([cv2.IMWRITE_PNG_BILEVEL, 1] if bilevel else [])
    ok, buf = cv2.imencode(".png", arr, flags)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def write_sample(sample: Sample, out_dir: Path, index: int, seed: int) -> ManifestRecord:
    stem = f"{index:06d}"
    (out_dir / "images" / f"{stem}.jpg").write_bytes(encode_jpeg(sample.image, sample.jpeg_quality))
    h, w = sample.image.shape[:2]
    instances = []
    for k, (plan, m) in enumerate(zip(sample.plans, sample.masks, strict=True)):
        rel = f"masks/{stem}_{k:02d}.png"
        (out_dir / rel).write_bytes(_png(m * np.uint8(255), bilevel=True))
        sizes = {}
        if not sample.composite:
            sizes = {
                "length_mm": round(plan.length_mm, 4),
                "width_mm": round(plan.width_mm, 4),
                "area_mm2": round(plan.area_mm2, 4),
            }
        if sample.photo_steps is not None:
            sizes["photo_step"] = sample.photo_steps[k]
        instances.append(LabelledInstance(type=plan.type, zone=plan.zone, mask=rel, **sizes))
    zone_rel = None
    if sample.zone is not None:
        zone_rel = f"zones/{stem}.png"
        (out_dir / zone_rel).write_bytes(_png(sample.zone))
    return ManifestRecord(
        image=f"images/{stem}.jpg",
        device_id=sample.device_id or f"synth-s{seed}-{stem}",
        split=sample.split,
        source="composite" if sample.composite else "synthetic",
        license=sample.license,
        width=w,
        height=h,
        view=sample.view,
        device_kind=sample.device_kind or (sample.spec.kind if sample.spec else None),
        device_model=sample.spec.name if sample.spec else None,
        mm_per_px=sample.mm_per_px,
        quality=sample.quality,
        instances=instances + sample.real_instances,
        image_labels=sample.image_labels,
        instances_complete=not sample.composite,
        zone_mask=zone_rel,
        screen_polygons=sample.screen_polygons,
        grades=sample.grades,
        meta=sample.meta,
    )


_WORKER_CFG: SynthConfig | None = None
_WORKER_OUT: Path | None = None


def _init_worker(cfg: SynthConfig, out_dir: Path) -> None:
    global _WORKER_CFG, _WORKER_OUT
    _WORKER_CFG, _WORKER_OUT = cfg, out_dir
    cv2.setNumThreads(1)  # one process per core: cv2's own threads would only contend


def _work(index: int) -> str:
    assert _WORKER_CFG is not None and _WORKER_OUT is not None
    rec = write_sample(make_sample(_WORKER_CFG, index), _WORKER_OUT, index, _WORKER_CFG.seed)
    return rec.model_dump_json()


def iter_generate(
    cfg: SynthConfig, n: int, out_dir: Path, workers: int = 1, start: int = 0
) -> Iterator[ManifestRecord]:
    """Generate photos start..start+n-1 into out_dir, yielding their records in index order."""
    out_dir = Path(out_dir)
    for sub in ("images", "zones", "masks"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    indices = range(start, start + n)
    if workers <= 1:
        _init_worker(cfg, out_dir)
        for i in indices:
            yield ManifestRecord.model_validate_json(_work(i))
        return
    with worker_pool(workers, _init_worker, (cfg, out_dir)) as pool:
        for js in pool.imap(_work, indices, chunksize=4):
            yield ManifestRecord.model_validate_json(js)


def generate(cfg: SynthConfig, n: int, out_dir: Path, workers: int = 1, progress: bool = True) -> Path:
    """Write n photos, their masks and DIR/manifest.jsonl; returns the manifest path."""
    out_dir = Path(out_dir)
    records = iter_generate(cfg, n, out_dir, workers)
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
            task = bar.add_task("synth", total=n)

            def tick(it):
                for r in it:
                    bar.advance(task)
                    yield r

            records_list = list(tick(records))
    else:
        records_list = list(records)
    path = out_dir / "manifest.jsonl"
    write_manifest(path, records_list)
    return path
