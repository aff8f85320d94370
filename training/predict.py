"""Running a model over manifest photos the way serving does: a PyTorch checkpoint or an ONNX file.

`load_predictor(path)` accepts a `.pt` checkpoint or an `.onnx` file and returns a `Predictor`: the
network as a callable on uint8 N x 3 x S x S batches, plus what inference needs of it (input size,
crop pass or not) and the thresholds to use (calibrated ones from the checkpoint or the card; defaults
otherwise). `predict(items, predictor)` yields one `Prediction` per photo: the manifest item and its
`model.inference.Inferred` (outputs and the frame their maps are in). The passes themselves are
`model.inference.infer`, the same function serving calls, so evaluation and calibration see exactly
what serving sees.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.card import ModelCard, Thresholds
from model.inference import Inferred, Outputs, RunNCHW, batched, frame_photo, infer
from model.manifest import resolve
from model.outputs import DEFECT_CHANNELS
from model.preprocess import Letterbox
from training.dataset import Item


@dataclass
class Predictor:
    run: RunNCHW
    input_size: int
    mask_stride: int
    thresholds: Thresholds
    kind: str  # "torch" or "onnx"
    name: str
    crop_to_device: bool = False
    seconds: list[float] = field(default_factory=list)  # per photo, each batch: all passes of it


def default_thresholds() -> Thresholds:
    return Thresholds(defect_pixel={name: 0.5 for name in DEFECT_CHANNELS})


def torch_predictor(
    net, thresholds: Thresholds | None = None, name: str = "model", crop_to_device: bool = False
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
    )


def onnx_predictor(path: str | Path, threads: int = 2) -> Predictor:
    """An ONNX file with its card's thresholds and crop pass (the card read as serving reads it)."""
    from model.export import onnx_runner

    path = Path(path)
    run, meta = onnx_runner(path, threads)
    card = ModelCard.from_metadata(meta, source=str(path))
    return Predictor(
        run, card.input_size, card.mask_stride, card.thresholds, "onnx", path.name, card.crop_to_device
    )


def load_predictor(path: str | Path, threads: int = 2) -> Predictor:
    path = Path(path)
    if path.suffix == ".onnx":
        return onnx_predictor(path, threads)
    from training.checkpoint import load_checkpoint

    net, ckpt = load_checkpoint(path)
    cal = ckpt.get("calibration")
    thresholds = Thresholds.model_validate(cal["thresholds"]) if cal else None
    return torch_predictor(net, thresholds, path.name, bool(ckpt["config"].get("crop_to_device", False)))


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
        # Latency is per photo: both passes of the batch, over its photos.
        predictor.seconds.append(spent / len(chunk))
        for it, inf in zip(chunk, inferred, strict=True):
            yield Prediction(it, inf)
