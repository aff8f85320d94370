"""The training configuration: typed, strict (a YAML typo is an error), overridable from the command line.

`load_config(path, ["optim.lr=3e-4", "data.batch_size=8"])` reads the YAML, applies dotted overrides
(values parsed as YAML, so numbers and lists keep their types), and validates the result. The resolved
config (after overrides) is what runs save next to their metrics and inside every checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(Strict):
    """One manifest and how much of each epoch it supplies."""

    manifest: str
    weight: float = Field(default=1.0, gt=0, description="share of sampled photos, relative to other sources")
    splits: list[Literal["train", "val", "test"]] = ["train"]
    limit: int | None = Field(default=None, gt=0, description="use at most this many records (smoke runs)")


class DataConfig(Strict):
    train: list[SourceConfig]
    val: list[SourceConfig] = []
    # Photos with "cracked or not" truth, unseen by training, on which calibration fits the zone-damage
    # models (model.damage, training.damage); never a test split.
    damage: list[SourceConfig] = []
    # Photos with a known view or photo quality (synthetic, real, faulty copies of real photos), unseen
    # by training, on which calibration fits the photo probes (model.probes, training.probes).
    probes: list[SourceConfig] = []
    # High-resolution validation devices (12 MP synthetic ones, `bench_fine_oracle.py synth`) on which
    # calibration fits the grading of the devices the fine pass reads (model.card.FineGrading), and
    # nothing else; never a test split.
    fine_val: list[SourceConfig] = []
    damage_holdout: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="share of the device groups of the real sources in `damage` kept out of training and "
        "left to the zone-damage fit alone (training.dataset.damage_fit_items): fitted on photos the encoder "
        "trained on, the damage model stacks on them (docs/model-history.md, 2026-12-04)",
    )
    batch_size: int = Field(default=8, gt=0)
    num_workers: int = Field(default=0, ge=0)
    samples_per_epoch: int | None = Field(default=None, gt=0, description="default: all training records")
    augment: bool = True
    cache_images: bool = Field(default=False, description="keep decoded, letterboxed photos in memory")
    feature_cache: bool = Field(
        default=False,
        description="keep the frozen encoder blocks' output per photo view in memory and train only the "
        "rest (training.feature_cache); needs model.overrides.freeze_blocks > 0",
    )
    feature_cache_views: int = Field(default=1, gt=0, description="augmented views cached per photo")
    device_crop: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of training draws cropped to the true device box (photos with zone masks)",
    )
    reformat: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of draws of image-level-only photos made 244 px and black-barred "
        "(training.dataset.small_black_barred: breaks phones_web's format shortcut)",
    )


class ModelConfig(Strict):
    name: str = "lite0_fpn"
    overrides: dict[str, Any] = {}


class OptimConfig(Strict):
    epochs: int = Field(default=10, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    backbone_lr_scale: float = Field(default=0.1, gt=0, description="pretrained encoder learns slower")
    weight_decay: float = Field(default=1e-4, ge=0)
    warmup_steps: int = Field(default=50, ge=0)
    grad_clip: float = Field(default=5.0, gt=0)
    max_steps_per_epoch: int | None = Field(default=None, gt=0)
    time_budget_minutes: float | None = Field(
        default=None,
        gt=0,
        description="fit the run into this wall-clock time: after each of the first two epochs, the run's "
        "length becomes what fits at that epoch's pace, at most `epochs` (the learning-rate schedule "
        "follows), and training stops early if later epochs run slower (a lent GPU machine's minutes "
        "are few and fixed)",
    )


class LossConfig(Strict):
    defect: float = Field(default=1.0, ge=0)
    defect_dice: float = Field(default=1.0, ge=0)
    defect_pos_weight: float = Field(default=3.0, gt=0, description="BCE weight of defect pixels (sparse)")
    image_level: float = Field(default=0.5, ge=0, description="max-pooled defect map vs image labels")
    zone: float = Field(default=1.0, ge=0)
    view: float = Field(default=0.2, ge=0)
    quality: float = Field(default=0.2, ge=0)


class TrainConfig(Strict):
    run_dir: str = "runs/default"
    seed: int = 0
    threads: int | None = Field(default=None, gt=0, description="torch intra-op threads (default: torch's)")
    model: ModelConfig = ModelConfig()
    data: DataConfig
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    crop_to_device: bool = Field(
        default=False,
        description="infer with a second pass on the device crop (model.inference): calibration and the card",
    )
    crop_upright: bool = Field(
        default=False,
        description="with crop_to_device: a device lying wide is turned long side up for the crop pass "
        "(model.crop.upright_turns): calibration and the card",
    )
    early_stopping_patience: int | None = Field(default=5, gt=0, description="epochs without val improvement")
    # What picks best.pt (and early stopping): the validation loss (lower is better), or the defect maps'
    # soft IoU on validation (higher is better). The 2026-12-04 GPU run showed why the second exists: its
    # real photos' image-level loss rose from epoch 8 on while the defect IoU kept rising to epoch 24.
    monitor: Literal["val_loss", "val_defect_iou"] = "val_loss"
    resume: str | None = Field(
        default=None, description="checkpoint to resume from (model, optimizer, epoch)"
    )
    init_weights: str | None = Field(
        default=None,
        description="checkpoint whose weights start this run (fine-tuning: a fresh optimizer, schedule "
        "and history, unlike resume)",
    )
    calibrate: bool = Field(
        default=True, description="calibrate thresholds on the val sources after training"
    )
    progress: bool = True
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="where to train: auto = a CUDA GPU when there is one, else the CPU"
    )

    @model_validator(mode="after")
    def _val_needed(self) -> TrainConfig:
        if self.early_stopping_patience is not None and not self.data.val:
            raise ValueError("early stopping needs data.val sources (or set early_stopping_patience: null)")
        return self


class ConfigError(ValueError):
    """A config file or override that does not validate; names the file."""


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Set `a.b.c=value` in a nested dict; the value is parsed as YAML ("3" -> 3, "[a, b]" -> list).
    A number picks an item of a list: `data.train.1.weight=4.0` reweights the second training source
    (how `make model`'s last stage changes one source without a second config file)."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} is not key=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node: Any = data
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                raise ConfigError(f"override {assignment!r}: {p} is not an item of a {len(node)}-item list")
            if last:
                node[int(p)] = yaml.safe_load(raw)
            else:
                node = node[int(p)]
        elif not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {parts[i - 1]} is not a section")
        elif last:
            node[p] = yaml.safe_load(raw)
        else:
            node = node.setdefault(p, {})


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    data: dict[str, Any] = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the config must be a mapping")
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path or 'config'}: {exc}") from exc


def resolve_paths(cfg: TrainConfig, base: str | Path) -> TrainConfig:
    """Paths in a config file (manifests, run_dir, resume, init_weights) are relative to the file's folder; make them
    absolute, so a run does the same from any working directory."""
    base = Path(base)

    def absolute(p: str | None) -> str | None:
        return None if p is None else str(p if Path(p).is_absolute() else (base / p).resolve())

    def fix(sources: list[SourceConfig]) -> list[SourceConfig]:
        return [
            s.model_copy(
                update={"manifest": str(p if (p := Path(s.manifest)).is_absolute() else (base / p).resolve())}
            )
            for s in sources
        ]

    data = cfg.data.model_copy(
        update={
            "train": fix(cfg.data.train),
            "val": fix(cfg.data.val),
            "damage": fix(cfg.data.damage),
            "probes": fix(cfg.data.probes),
            "fine_val": fix(cfg.data.fine_val),
        }
    )
    return cfg.model_copy(
        update={
            "data": data,
            "run_dir": absolute(cfg.run_dir),
            "resume": absolute(cfg.resume),
            "init_weights": absolute(cfg.init_weights),
        }
    )
