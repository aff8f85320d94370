"""Micro-batching: photos from concurrent requests share one ONNX Runtime run.

A single worker thread owns the model runs. It takes the first waiting photo, then waits at most
`max_wait_s` (from that photo's arrival) for more, up to `max_batch` photos, and runs them as one batch;
it does not wait at all when `expect_more()` says no other request is in flight.
Under load the queue fills while a batch runs, so batches form without any waiting. The queue is
bounded (in photos): `submit` raises `QueueFullError` instead of letting requests time out, and the
API turns that into 503 + Retry-After. Each photo carries the model it was prepared for, so a model
swap never mixes input sizes inside a batch.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from model.preprocess import to_nchw
from serving.predictor import Model


class QueueFullError(RuntimeError):
    """The batch queue has no room for a request's photos."""


class BatcherStoppedError(RuntimeError):
    """The batcher was stopped before the photo ran."""


@dataclass
class _Item:
    model: Model
    image: np.ndarray  # (S, S, 3) uint8, letterboxed
    future: Future
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    def __init__(
        self,
        max_batch: int = 8,
        max_wait_s: float = 0.003,
        max_queue: int = 64,
        on_batch: Callable[[int, float], None] | None = None,
        on_queue_depth: Callable[[int], None] | None = None,
        expect_more: Callable[[], bool] | None = None,
    ):
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._on_depth = on_queue_depth
        # Whether more photos may arrive soon (other requests in flight); when not, waiting is pure latency.
        self._expect_more = expect_more
        self._items: deque[_Item] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="refurbgrade-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._items)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, model: Model, images: Sequence[np.ndarray]) -> list[Future]:
        """Queue all of one request's photos, or none of them (QueueFullError)."""
        with self._cv:
            if self._stopping:
                raise BatcherStoppedError("the service is shutting down")
            if len(self._items) + len(images) > self.max_queue:
                raise QueueFullError(f"{len(self._items)} photos already waiting for the model")
            items = [_Item(model, img, Future()) for img in images]
            self._items.extend(items)
            self._notify_depth()
            self._cv.notify()
        return [i.future for i in items]

    def run(self, model: Model, images: Sequence[np.ndarray], timeout: float | None = 60) -> list[dict]:
        """Submit and wait: per photo, the model outputs without the batch axis."""
        return [f.result(timeout) for f in self.submit(model, images)]

    def _notify_depth(self) -> None:
        if self._on_depth is not None:
            self._on_depth(len(self._items))

    def _take(self) -> list[_Item] | None:
        with self._cv:
            while not self._items and not self._stopping:
                self._cv.wait()
            if not self._items:
                return None
            deadline = self._items[0].arrived + self.max_wait_s
            if self._expect_more is not None and not self._expect_more():
                deadline = 0.0
            while len(self._items) < self.max_batch and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cv.wait(remaining)
            model = self._items[0].model
            batch: list[_Item] = []
            rest: deque[_Item] = deque()
            while self._items and len(batch) < self.max_batch:
                item = self._items.popleft()
                (batch if item.model is model else rest).append(item)
            self._items.extendleft(reversed(rest))
            self._notify_depth()
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            started = time.perf_counter()
            try:
                out = batch[0].model.run(to_nchw(np.stack([i.image for i in batch])))
            except Exception as exc:
                for item in batch:
                    item.future.set_exception(exc)
                continue
            if self._on_batch is not None:
                self._on_batch(len(batch), time.perf_counter() - started)
            for k, item in enumerate(batch):
                item.future.set_result({name: value[k] for name, value in out.items()})

    def stop(self) -> None:
        """Finish what is queued, then end the worker thread."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join(timeout=30)
