"""The ONNX Runtime predictor: loads a model file, verifies it against the contract, runs batches.

Everything serving knows about a model comes from the file itself: the model card (JSON in the ONNX
metadata under `MODEL_CARD_KEY`) gives the input size, mask stride, taxonomy and calibrated
thresholds; output names come from `model.outputs`. `load_model` refuses a file that does not honour
the contract (missing card, wrong input, missing outputs, wrong output shapes on a test run), so a
broken file never replaces a working one. One `InferenceSession` is shared by all threads.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from model.card import ModelCard
from model.fine_pass import FINE_OUTPUT_NAMES, FineCard, fine_sibling
from model.outputs import FEATURE_STRIDES, INPUT_NAME, QUALITY_CLASSES, VIEW_CLASSES, ZONE_CHANNELS
from model.rules import list_standards, load_standard


class ModelLoadError(ValueError):
    """A model file that cannot be served; the message says why."""


@dataclass(frozen=True)
class FineModel:
    """The fine network beside a model (`NAME.fine.onnx`, `model.fine_pass`): session + its card."""

    path: Path
    sha256: str
    card: FineCard
    session: ort.InferenceSession

    def run(self, batch_nchw: np.ndarray) -> dict[str, np.ndarray]:
        """(N, 3, T, T) uint8 tiles -> heat, width_px, contrast, each N x 1 x T x T."""
        names = list(FINE_OUTPUT_NAMES)
        return dict(zip(names, self.session.run(names, {INPUT_NAME: batch_nchw}), strict=True))


@dataclass(frozen=True)
class Model:
    """A verified, loaded model: session + card (+ the fine network beside it, where there is one).
    Immutable, so swapping one for another is atomic."""

    path: Path
    sha256: str
    card: ModelCard
    session: ort.InferenceSession
    fine: FineModel | None = None

    @property
    def input_size(self) -> int:
        return self.card.input_size

    @property
    def version(self) -> str:
        """The card's version, and the fine network's where one runs beside it ("V+fine-F"): a stored
        grading names every file whose outputs made it."""
        return (
            self.card.version if self.fine is None else f"{self.card.version}+fine-{self.fine.card.version}"
        )

    def run(self, batch_nchw: np.ndarray) -> dict[str, np.ndarray]:
        """(N, 3, S, S) uint8 -> the contract's outputs by name, each with a leading N axis."""
        names = self.card.run_outputs
        return dict(zip(names, self.session.run(list(names), {INPUT_NAME: batch_nchw}), strict=True))


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def session_options(intra_op_threads: int, inter_op_threads: int, spin: bool = False) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    # Spinning worker threads burn the cores that decoding and the other requests need; off by default.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


def _session(path: Path, opts: ort.SessionOptions) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for every kind of broken file
        raise ModelLoadError(f"{path}: ONNX Runtime cannot load it: {exc}") from exc


def load_model(
    path: str | Path,
    intra_op_threads: int = 2,
    inter_op_threads: int = 1,
    spin: bool = False,
    fine: bool = True,
) -> Model:
    """Load and verify a model file, and with `fine` the fine network beside it (`NAME.fine.onnx`)
    where there is one; raises ModelLoadError when either cannot be served (a broken fine file is
    refused, never silently skipped: it would change every grade)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file")
    opts = session_options(intra_op_threads, inter_op_threads, spin)
    session = _session(path, opts)
    try:
        card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map, source=str(path))
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    sibling = fine_sibling(path)
    fine_model = load_fine_model(sibling, opts) if fine and sibling.is_file() else None
    model = Model(path=path, sha256=_file_sha256(path), card=card, session=session, fine=fine_model)
    verify(model)
    return model


def load_fine_model(path: Path, opts: ort.SessionOptions) -> FineModel:
    """Load a fine file and check it on one blank tile (its card, its outputs' names and shapes)."""
    session = _session(path, opts)
    try:
        card = FineCard.from_metadata(session.get_modelmeta().custom_metadata_map, source=str(path))
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    fine = FineModel(path=path, sha256=_file_sha256(path), card=card, session=session)
    t = card.tile_px
    try:
        out = fine.run(np.zeros((1, 3, t, t), np.uint8))
    except Exception as exc:
        raise ModelLoadError(f"{path}: the fine network does not run on a {t} px tile: {exc}") from exc
    for name, value in out.items():
        if value.shape != (1, 1, t, t) or not np.isfinite(value).all():
            raise ModelLoadError(f"{path}: fine output {name} has shape {value.shape}, want (1, 1, {t}, {t})")
    return fine


INT8_SUFFIX = ".int8.onnx"
PRECISIONS = ("auto", "fp32")


@dataclass(frozen=True)
class ModelChoice:
    """The file to serve for a configured model file, and why (logged at start-up)."""

    path: Path
    int8: bool
    reason: str


def int8_sibling(path: str | Path) -> Path | None:
    """`NAME.int8.onnx` beside `NAME.onnx` (None for a file that is itself `*.int8.onnx` or not `.onnx`)."""
    path = Path(path)
    if path.name.endswith(INT8_SUFFIX) or path.suffix != ".onnx":
        return None
    return path.with_name(path.name[: -len(".onnx")] + INT8_SUFFIX)


def read_card(path: str | Path) -> ModelCard:
    """The model card of an ONNX file, through ONNX Runtime without graph optimisation (no test run)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    session = _session(Path(path), opts)
    try:
        return ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map, source=str(path))
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc


def choose_model_file(path: str | Path, precision: str = "auto") -> ModelChoice:
    """Which file serves a configured model `path`. With precision "auto", its INT8 sibling
    (`default.onnx` -> `default.int8.onnx`) when that file's card says it passed the parity check against
    this FP32 file at quantization (`ModelCard.int8_parity`, written by `model.export.quantize_int8`) and
    carries the same thresholds and calibration (a recalibration updates both cards) or its own
    (`ModelCard.calibrated_alone`), and, sharing the FP32 thresholds, the card builds nothing on the
    encoder's features; otherwise, or with "fp32", the configured file as it is. A configured INT8 file
    is served as it is."""
    path = Path(path)
    if precision not in PRECISIONS:
        raise ValueError(f"model precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    sibling = int8_sibling(path)
    if sibling is None:
        return ModelChoice(path, path.name.endswith(INT8_SUFFIX), "the configured file")
    if precision == "fp32":
        return ModelChoice(path, False, "FP32 asked for (REFURBGRADE_MODEL_PRECISION=fp32)")
    if not sibling.is_file():
        return ModelChoice(path, False, f"FP32: no INT8 sibling {sibling.name}")

    def fp32(why: str) -> ModelChoice:
        return ModelChoice(path, False, f"FP32: INT8 sibling {sibling.name} not served: {why}")

    try:
        card, int8_card = read_card(path), read_card(sibling)
    except ModelLoadError as exc:
        return fp32(str(exc))
    parity = int8_card.int8_parity
    if not int8_card.quantized:
        return fp32("its card does not say quantized")
    if parity is None:
        return fp32(
            "its card records no parity check (quantized before it was recorded; `refurbgrade quantize` again)"
        )
    if not parity.passed:
        return fp32("its parity check against FP32 failed: " + "; ".join(parity.problems))
    if parity.fp32_version != card.version:
        return fp32(f"it was checked against FP32 version {parity.fp32_version}, this file is {card.version}")
    if (int8_card.crop_to_device, int8_card.crop_upright) != (card.crop_to_device, card.crop_upright):
        return fp32("its crop pass differs from the FP32 file's (recalibrate both)")
    if int8_card.thresholds != card.thresholds and not int8_card.calibrated_alone:
        return fp32("its thresholds or calibration differ from the FP32 file's (recalibrate both)")
    if reads_encoder(card) and not int8_card.calibrated_alone:
        # The parity check compares the network's outputs, not the decisions the card builds on the
        # encoder's features; INT8 shifts those features (the 2026-12-04 model: 25% of scratched
        # screens graded Unlistable against 5%, docs/operations.md).
        return fp32(
            "the card's zone damage or photo probes read the FP32 file's encoder features, which the "
            "parity check does not compare (calibrate the INT8 file --alone to serve it)"
        )
    agreement = min(parity.agreement.values(), default=1.0)
    return ModelChoice(
        sibling,
        True,
        f"INT8: its card says it passed parity against FP32 {parity.fp32_version} on {parity.images} photos "
        f"(decisions kept >= {agreement:.3f}; REFURBGRADE_MODEL_PRECISION=fp32 serves FP32)",
    )


def reads_encoder(card) -> bool:
    """Whether a card builds decisions on the encoder's features (zone damage, photo probes)."""
    return bool(card.thresholds.zone_damage or card.thresholds.photo_probes)


def load_served_model(
    path: str | Path,
    precision: str = "auto",
    intra_op_threads: int = 2,
    inter_op_threads: int = 1,
    spin: bool = False,
    fine: bool = True,
) -> tuple[Model, ModelChoice]:
    """`choose_model_file`, then `load_model` (`fine`: with the fine network beside it); an INT8 file
    that fails to load falls back to FP32."""
    choice = choose_model_file(path, precision)
    try:
        return load_model(choice.path, intra_op_threads, inter_op_threads, spin, fine), choice
    except ModelLoadError as exc:
        if not choice.int8:
            raise
        choice = ModelChoice(Path(path), False, f"FP32: the INT8 sibling does not load: {exc}")
        return load_model(path, intra_op_threads, inter_op_threads, spin, fine), choice


def verify(model: Model) -> None:
    """The input/outputs match the contract and a test run gives well-formed outputs."""
    inputs = {i.name: i for i in model.session.get_inputs()}
    if INPUT_NAME not in inputs or inputs[INPUT_NAME].type != "tensor(uint8)":
        raise ModelLoadError(f"{model.path}: needs a uint8 input named {INPUT_NAME!r}, has {list(inputs)}")
    outputs = {o.name for o in model.session.get_outputs()}
    missing = set(model.card.run_outputs) - outputs
    if missing:
        raise ModelLoadError(f"{model.path}: missing outputs {sorted(missing)}")
    s, stride = model.card.input_size, model.card.mask_stride
    try:
        out = model.run(np.full((2, 3, s, s), 114, dtype=np.uint8))
    except Exception as exc:
        raise ModelLoadError(f"{model.path}: a test run failed: {exc}") from exc
    m = s // stride
    tax = model.card.taxonomy
    expected = {
        "defect_probs": (2, len(tax.defect_types), m, m),
        "zone_probs": (2, len(ZONE_CHANNELS), m, m),
        "view_probs": (2, len(VIEW_CLASSES)),
        "quality_probs": (2, len(QUALITY_CLASSES)),
    }
    for name in model.card.feature_outputs:
        k = s // FEATURE_STRIDES[name]
        expected[name] = (2, out[name].shape[1], k, k)
    for name, shape in expected.items():
        if out[name].shape != shape:
            raise ModelLoadError(f"{model.path}: output {name} has shape {out[name].shape}, expected {shape}")
        if not np.isfinite(out[name]).all():
            raise ModelLoadError(f"{model.path}: output {name} is not finite on a grey test image")
    verify_grade_calibration(model)


def verify_grade_calibration(model: Model) -> None:
    """Each grade calibration in the card fits the standard of that name that serving grades with
    (same grades, best first): otherwise every grading would fail, so the file is refused up front."""
    known = set(list_standards())
    t = model.card.thresholds
    fine = t.fine_grading.grade_calibration if t.fine_grading is not None else {}
    for name, cal in [*t.grade_calibration.items(), *fine.items()]:
        if name not in known:
            raise ModelLoadError(f"{model.path}: grade calibration for unknown standard {name!r}")
        grades = load_standard(name).grade_names
        if cal.grades != grades:
            raise ModelLoadError(
                f"{model.path}: grade calibration for {name} is for grades {list(cal.grades)}, "
                f"the standard has {list(grades)}"
            )


class ModelSlot:
    """The model in service. Readers take `current` once per unit of work; `swap` replaces it atomically."""

    def __init__(self, model: Model):
        self._model = model
        self._lock = threading.Lock()

    @property
    def current(self) -> Model:
        return self._model

    def swap(self, model: Model) -> Model:
        with self._lock:
            old, self._model = self._model, model
        return old
