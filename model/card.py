"""The model card: everything serving needs to know about a model, carried inside the ONNX file.

Export writes it as JSON into the ONNX metadata (key `MODEL_CARD_KEY`); serving reads it back and never
looks at training code. Unknown or missing fields are errors, so a card from a newer or broken
exporter fails loudly instead of being half-understood.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from model.damage import GLASS_ZONES, ZoneDamageModel
from model.damage import NEEDS as DAMAGE_NEEDS
from model.outputs import (
    DEFECT_CHANNELS,
    FEATURE_OUTPUTS,
    OUTPUT_NAMES,
    QUALITY_CLASSES,
    VIEW_CLASSES,
    ZONE_CHANNELS,
)
from model.probes import PhotoProbe, check_classes
from model.rules.calibration import GradeCalibration

MODEL_CARD_KEY = "refurbgrade.model_card"
CARD_SCHEMA_VERSION = 1


class Taxonomy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    defect_types: tuple[str, ...] = DEFECT_CHANNELS
    zones: tuple[str, ...] = ZONE_CHANNELS
    views: tuple[str, ...] = VIEW_CLASSES
    qualities: tuple[str, ...] = QUALITY_CLASSES


class FineGrading(BaseModel):
    """How far to trust the grade of a device the fine pass read (at least one of its photos showed the
    device finely enough for native-resolution tiles, `model.fine_pass`): there the fine pass finds
    hairlines the coarse pass cannot, so the rules grade differently, and a grade calibration fitted on
    coarse gradings misdescribes it (ECE 0.22-0.24 on 12 MP synthetic devices against 0.05 at 512 px,
    docs/fine-pass.md). Fitted on validation devices the fine pass read (`training.calibrate`)."""

    model_config = ConfigDict(extra="forbid")

    # Per standard, as `Thresholds.grade_calibration`; a standard without one uses that.
    grade_calibration: dict[str, GradeCalibration] = Field(default_factory=dict)
    needs_review_below: float = Field(ge=0, le=1)
    devices: int = Field(ge=0, description="validation devices the fine pass read, that it was fitted on")


class Thresholds(BaseModel):
    """Decision thresholds, calibrated on validation data (never on test data)."""

    model_config = ConfigDict(extra="forbid")

    # Per defect type: a pixel belongs to a defect when its probability reaches this.
    defect_pixel: dict[str, float]
    # Per defect type, Platt scaling of an instance's peak: confidence =
    # sigmoid((logit(peak) - logit(defect_pixel)) / temperature + offset). Measured from the pixel
    # threshold because the maps are coverage maps: a hairline's peak is its share of a mask cell
    # (often 0.2-0.4), so a raw peak says how thin a defect is, not how likely it is to be real.
    confidence_temperature: dict[str, float] = Field(default_factory=dict)
    confidence_offset: dict[str, float] = Field(default_factory=dict)
    # Instances whose calibrated confidence is below this are dropped before grading.
    min_instance_confidence: float = Field(default=0.05, ge=0, le=1)
    # needs_review is raised when the top grade's probability is below this.
    needs_review_below: float = Field(default=0.8, ge=0, le=1)
    # Per standard: how often each grade is right given the rules' probabilities, fitted on
    # validation devices (`model.rules.calibration`). A standard without one reports the rules'
    # probabilities as they are.
    grade_calibration: dict[str, GradeCalibration] = Field(default_factory=dict)
    # The grade calibration and review threshold for devices the fine pass read (None: these above).
    fine_grading: FineGrading | None = None
    # Per glass zone ("screen", "body"): P(the zone is cracked) from its whole crack map
    # (`model.damage`), fitted on validation photos. A zone with one is judged as a whole: its crack
    # fragments become evidence and the zone gets one crack with that probability.
    zone_damage: dict[str, ZoneDamageModel] = Field(default_factory=dict)
    # Per photo verdict ("view", "quality", "kind"): a probe on the encoder's features that replaces the
    # network's head, or for the device's kind adds an output (`model.probes`), fitted on synthetic and
    # real photos.
    photo_probes: dict[str, PhotoProbe] = Field(default_factory=dict)

    @field_validator("photo_probes")
    @classmethod
    def _probed_verdicts(cls, value: dict[str, PhotoProbe]) -> dict[str, PhotoProbe]:
        check_classes(value)
        return value

    def grading(self, fine: bool) -> tuple[dict[str, GradeCalibration], float]:
        """The grade calibrations (by standard) and the review threshold for a device the fine pass read
        (`fine`) or not."""
        if fine and self.fine_grading is not None:
            return (
                {**self.grade_calibration, **self.fine_grading.grade_calibration},
                self.fine_grading.needs_review_below,
            )
        return dict(self.grade_calibration), self.needs_review_below

    @field_validator("zone_damage")
    @classmethod
    def _glass_zones(cls, value: dict[str, ZoneDamageModel]) -> dict[str, ZoneDamageModel]:
        unknown = set(value) - {z.value for z in GLASS_ZONES}
        if unknown:
            raise ValueError(f"zone_damage for zones that are not glass: {sorted(unknown)}")
        return value

    @field_validator("defect_pixel")
    @classmethod
    def _in_unit_interval(cls, value: dict[str, float]) -> dict[str, float]:
        for name, t in value.items():
            if not 0.0 < t < 1.0:
                raise ValueError(f"defect_pixel[{name}] must be in (0, 1), got {t}")
        return value


class Int8Parity(BaseModel):
    """An INT8 file's check against its FP32 file, as `model.export.quantize_int8` measured it at
    quantization (`INT8_TOLERANCE` on the decisions FP32 is sure of). Serving serves an INT8 sibling by
    default only when this says it passed (`serving.predictor.choose_model_file`)."""

    model_config = ConfigDict(extra="forbid")

    passed: bool
    fp32_version: str  # the card version of the FP32 file it was checked against
    images: int = Field(ge=0)  # verification photos
    mean_abs: dict[str, float] = Field(default_factory=dict)  # per output, mean |INT8 - FP32|
    agreement: dict[str, float] = Field(default_factory=dict)  # per output, decisions kept
    problems: list[str] = Field(default_factory=list)  # why it failed, empty when it passed


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = CARD_SCHEMA_VERSION
    name: str
    version: str
    architecture: str
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    input_size: int = Field(gt=0, description="square letterbox side in pixels")
    mask_stride: int = Field(gt=0)
    # Run a second pass on the device's crop (model.inference); the thresholds were calibrated that way.
    crop_to_device: bool = False
    # With the crop pass: a device lying wide is turned long side up for it (`model.crop.upright_turns`);
    # the thresholds were calibrated that way too.
    crop_upright: bool = False
    # Outputs beyond the contract that the file has (`model.outputs.FEATURE_OUTPUTS`).
    feature_outputs: tuple[str, ...] = ()
    taxonomy: Taxonomy = Field(default_factory=Taxonomy)
    output_names: tuple[str, ...] = OUTPUT_NAMES
    thresholds: Thresholds
    metrics: dict[str, float] = Field(default_factory=dict)
    training_data_hash: str
    git_commit: str
    quantized: bool = False
    # INT8 files only: the parity check against the FP32 file (None: quantized before it was recorded).
    int8_parity: Int8Parity | None = None
    # INT8 files only: its thresholds were fitted on its own outputs (`refurbgrade calibrate --alone`),
    # not shared with its FP32 file: what the card builds on the encoder's features (zone damage, photo
    # probes) must be fitted on the features this file computes.
    calibrated_alone: bool = False
    notes: str = ""

    @model_validator(mode="after")
    def _matches_contract(self) -> ModelCard:
        if self.schema_version != CARD_SCHEMA_VERSION:
            raise ValueError(
                f"model card schema_version {self.schema_version}, expected {CARD_SCHEMA_VERSION}"
            )
        unknown_features = set(self.feature_outputs) - set(FEATURE_OUTPUTS)
        if unknown_features:
            raise ValueError(f"unknown feature outputs {sorted(unknown_features)}")
        # A zone-damage model whose features the file cannot give would silently judge nothing.
        for zone, zd in self.thresholds.zone_damage.items():
            lacking = set(DAMAGE_NEEDS[zd.features]) - set(self.feature_outputs)
            if lacking:
                raise ValueError(f"zone_damage {zone} reads {sorted(lacking)}, not in feature_outputs")
        if set(self.output_names) != set(OUTPUT_NAMES):
            raise ValueError(f"output_names {self.output_names} do not match the contract {OUTPUT_NAMES}")
        unknown = set(self.thresholds.defect_pixel) - set(self.taxonomy.defect_types)
        if unknown:
            raise ValueError(f"thresholds for unknown defect types: {sorted(unknown)}")
        return self

    @property
    def run_outputs(self) -> tuple[str, ...]:
        """Every output to ask the file for: the contract's, then its feature outputs."""
        return (*OUTPUT_NAMES, *self.feature_outputs)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str, source: str = "model card") -> ModelCard:
        try:
            return cls.model_validate(json.loads(text))
        except (ValidationError, json.JSONDecodeError) as exc:
            raise ValueError(f"{source}: invalid model card: {exc}") from exc

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str = "model") -> ModelCard:
        """The card in an ONNX file's metadata (`onnx`'s metadata_props or ONNX Runtime's
        custom_metadata_map, as a dict); ValueError when it is missing or invalid."""
        if MODEL_CARD_KEY not in metadata:
            raise ValueError(f"{source}: no model card in the ONNX metadata (key {MODEL_CARD_KEY!r})")
        return cls.from_json(metadata[MODEL_CARD_KEY], source=source)
