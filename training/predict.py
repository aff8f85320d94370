"""Running a model over manifest photos the way serving does: a PyTorch checkpoint or an ONNX file.

`load_predictor(path)` accepts a `.pt` checkpoint or an `.onnx` file and returns a `Predictor`: the
network as a callable on uint8 N x 3 x S x S batches, plus what inference needs of it (input size,
crop pass or not) and the thresholds to use (calibrated ones from the checkpoint or the card; defaults
otherwise). `predict(items, predictor)` yields one `Prediction` per photo: the manifest item and its
`model.inference.Inferred` (outputs and the frame their maps are in). The passes themselves are
`model.inference.infer`, the same function serving calls, so evaluation and calibration see exactly
what serving sees; an ONNX file with a fine network beside it (`NAME.fine.onnx`) also gets the fine
pass (`model.inference.with_fine`), with the device's length as serving would take it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.card import ModelCard, Thresholds
from model.detail import NOMINAL_LENGTH_MM
from model.fine_pass import FineCard, FineRun, FineStage, fine_sibling
from model.inference import Inferred, Outputs, RunNCHW, batched, frame_photo, infer, with_fine
from model.manifest import resolve
from model.outputs import DEFECT_CHANNELS
from model.preprocess import Letterbox
from model.taxonomy import DeviceKind
from training.dataset import Item, catalogue_length


@dataclass
class Predictor:
    run: RunNCHW
    input_size: int
    mask_stride: int
    thresholds: Thresholds
    kind: str  # "torch" or "onnx"
    name: str
    crop_to_device: bool = False
    crop_upright: bool = False  # the crop pass turns a device lying wide upright (`model.crop`)
    seconds: list[float] = field(default_factory=list)  # per photo, each batch: all passes of it
    fine_card: FineCard | None = None  # the fine network beside an ONNX file, and its runner
    fine_run: FineRun | None = None


def default_thresholds() -> Thresholds:
    return Thresholds(defect_pixel={name: 0.5 for name in DEFECT_CHANNELS})


def torch_predictor(
    net,
    thresholds: Thresholds | None = None,
    name: str = "model",
    crop_to_device: bool = False,
    crop_upright: bool = False,
) -> Predictor:
    from training.checkpoint import torch_runner

    return Predictor(
        torch_runner(net),
        net.input_size,
        net.mask_stride,
        thresholds or default_thresholds(),
        "torch",
        name,
        crop_to_device,
        crop_upright,
    )


def onnx_predictor(path: str | Path, threads: int = 2, fine: bool = True) -> Predictor:
    """An ONNX file with its card's thresholds and crop pass (the card read as serving reads it), and
    with `fine` the fine network beside it where there is one."""
    from model.export import onnx_runner

    path = Path(path)
    run, meta = onnx_runner(path, threads)
    card = ModelCard.from_metadata(meta, source=str(path))
    pred = Predictor(
        run,
        card.input_size,
        card.mask_stride,
        card.thresholds,
        "onnx",
        path.name,
        card.crop_to_device,
        card.crop_upright,
    )
    sibling = fine_sibling(path)
    if fine and sibling.is_file():
        pred.fine_card, pred.fine_run = fine_runner(sibling, threads)
        pred.name += f" + {sibling.name}"
    return pred


def fine_runner(path: Path, threads: int = 2) -> tuple[FineCard, FineRun]:
    """A fine file's card and its network as a `FineRun`."""
    from model.export import _session
    from model.fine_pass import FINE_OUTPUT_NAMES
    from model.outputs import INPUT_NAME

    sess = _session(path, threads)
    card = FineCard.from_metadata(dict(sess.get_modelmeta().custom_metadata_map), source=str(path))
    names = list(FINE_OUTPUT_NAMES)

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, sess.run(names, {INPUT_NAME: batch}), strict=True))

    return card, run


def fine_stage(predictor, item: Item) -> FineStage:
    """The fine pass for one item's photo as serving runs it for the device its record names."""
    rec = item.record
    kind = DeviceKind(rec.device_kind or "phone")
    name = rec.device_model if catalogue_length(rec) is not None else None
    return FineStage(
        predictor.fine_card, predictor.fine_run, device_length_mm(item), kind=kind, model_name=name
    )


def device_length_mm(item: Item) -> float:
    """The device's length as serving takes it: the catalogue's for a named model, else typical."""
    rec = item.record
    return catalogue_length(rec) or NOMINAL_LENGTH_MM[DeviceKind(rec.device_kind or "phone")]


def load_predictor(path: str | Path, threads: int = 2, fine: bool = True) -> Predictor:
    path = Path(path)
    if path.suffix == ".onnx":
        return onnx_predictor(path, threads, fine)
    from training.checkpoint import load_checkpoint

    net, ckpt = load_checkpoint(path)
    cal = ckpt.get("calibration")
    thresholds = Thresholds.model_validate(cal["thresholds"]) if cal else None
    cfg = ckpt["config"]
    crop = bool(cfg.get("crop_to_device", False))
    return torch_predictor(net, thresholds, path.name, crop, bool(cfg.get("crop_upright", False)))


@dataclass(frozen=True)
class Prediction:
    """One manifest photo through the network: its item and its `Inferred` outputs."""

    item: Item
    inferred: Inferred

    @property
    def image(self) -> np.ndarray:
        return self.inferred.frame.image

    @property
    def lb(self) -> Letterbox:
        return self.inferred.letterbox

    @property
    def outputs(self) -> Outputs:
        return self.inferred.outputs

    @property
    def size(self) -> int:
        """Side of the frame `lb` and the maps are in."""
        return self.inferred.size


def predict(items: Sequence[Item], predictor: Predictor, batch_size: int = 8) -> Iterator[Prediction]:
    run = batched(predictor.run, batch_size)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        frames = [frame_photo(resolve(it.manifest, it.record.image), predictor.input_size) for it in chunk]
        spent = 0.0

        def timed(images: Sequence[np.ndarray]) -> list[Outputs]:
            nonlocal spent
            t0 = time.perf_counter()
            out = run(images)
            spent += time.perf_counter() - t0
            return out

        inferred = infer(frames, predictor, timed)
        if predictor.fine_card is not None and predictor.fine_run is not None:
            t0 = time.perf_counter()
            inferred = [
                with_fine(inf, fine_stage(predictor, it)) for it, inf in zip(chunk, inferred, strict=True)
            ]
            spent += time.perf_counter() - t0
        # Latency is per photo: all passes of the batch, over its photos.
        predictor.seconds.append(spent / len(chunk))
        for it, inf in zip(chunk, inferred, strict=True):
            yield Prediction(it, inf)
