"""The bundled fine network rebuilt from its ONNX file, so `train-fine --init` can start from it.

`models/default.fine.onnx` is the only copy of the fine network's weights (`runs/` is not kept), as
`models/default.onnx` is of the coarse one's (`training.from_onnx`). The fine exporter folded each
BatchNorm into the convolution before it and, unlike the coarse file, left the folded tensors with
anonymous names (`onnx::Conv_521`), so they cannot be looked up by module name. They are matched by
position instead: the same architecture exported again gives the same graph, its convolutions in the
same order, and a fresh network whose every convolution is filled with its own index (BatchNorms the
identity) says, through its own export, which module each convolution node is. The file's weights then
go into those modules, each folded BatchNorm becomes the identity plus the folded bias, and
`training.from_onnx.restore_batch_statistics` gives it the statistics of what reaches it on training patches:
the same function in evaluation mode, and batches normalised about where the network learnt them in
training mode. Checked against ONNX Runtime before and after the statistics. `training.fine_train` calls
it for `train-fine --init models/default.fine.onnx`.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

from model.export import export_fine_onnx
from model.fine_network import HEADS, FineNet
from model.fine_pass import FineCard
from training.from_onnx import PARITY, RebuildError, identity_plus, restore_batch_statistics

ENCODERS = ("lite0", "tiny")  # model.fine_network.FineNet's


def _conv_weights(m: onnx.ModelProto, biases: bool = True) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Each Conv node's (weight, bias) in graph order; `biases` False reads weights only (the probe's
    zero biases are shared by the exporter, not one initializer each)."""
    inits = {i.name: i for i in m.graph.initializer}
    out = []
    for node in m.graph.node:
        if node.op_type != "Conv":
            continue
        if node.input[1] not in inits:
            raise RebuildError(f"Conv {node.name}: its weight is not an initializer")
        w = numpy_helper.to_array(inits[node.input[1]])
        b = None
        if biases and len(node.input) > 2 and node.input[2]:
            if node.input[2] not in inits:
                raise RebuildError(f"Conv {node.name}: its bias is not an initializer")
            b = numpy_helper.to_array(inits[node.input[2]])
        out.append((w, b))
    return out


def _card(m: onnx.ModelProto, path: Path) -> FineCard:
    meta = {p.key: p.value for p in m.metadata_props}
    try:
        return FineCard.from_metadata(meta, str(path))
    except Exception as exc:  # a missing or broken card: not a fine file
        raise RebuildError(f"{path}: not an exported fine network ({type(exc).__name__}: {exc})") from exc


def _network(weights: list, path: Path) -> FineNet:
    """The FineNet (encoder and head) that holds a convolution of each of the file's shapes (the tiny
    encoder keeps stages past stride 8 that never run, so the export has fewer than the module)."""
    want = Counter(w.shape for w, _ in weights)
    for encoder, head in itertools.product(ENCODERS, HEADS):
        net = FineNet(pretrained=False, encoder=encoder, head=head)
        if not want - Counter(tuple(c.weight.shape) for c in net.modules() if isinstance(c, nn.Conv2d)):
            return net
    raise RebuildError(
        f"{path}: its {len(weights)} convolutions fit no FineNet (encoders {ENCODERS}, heads {HEADS})"
    )


def _order(net: FineNet, card: FineCard) -> list[int]:
    """For each Conv node of `net`'s export, the index of its module among the convolutions in
    `modules()` order: read from the export of a copy whose convolution i is filled with i + 1."""
    net = copy.deepcopy(net).eval()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for i, c in enumerate(convs):
            c.weight.fill_(float(i + 1))
            if c.bias is not None:
                c.bias.zero_()
    for bn in net.modules():
        if isinstance(bn, nn.BatchNorm2d):  # identity: the folded weight stays i + 1 exactly
            identity_plus(bn, np.zeros(bn.num_features, np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "probe.onnx"
        tiles = np.zeros((1, 3, card.tile_px, card.tile_px), np.uint8)
        # The probe's constant weights may fail export's check against PyTorch; its graph is what matters.
        with contextlib.suppress(Exception):
            export_fine_onnx(net, out, card, tiles)
        probe = out if out.exists() else out.with_suffix(".failed.onnx")
        weights = _conv_weights(onnx.load(str(probe)), biases=False)
    order = []
    for w, _ in weights:
        idx = round(float(w.flat[0])) - 1
        if not np.all(w == w.flat[0]) or not 0 <= idx < len(convs):
            raise RebuildError("the probe export did not keep one constant per convolution")
        order.append(idx)
    if len(set(order)) != len(order):
        raise RebuildError("the probe export's convolutions do not map one to one onto the network's")
    return order


def rebuild_fine(path: str | Path) -> tuple[FineNet, FineCard]:
    """The file's FineNet (eval mode) with its weights, each folded BatchNorm the identity plus its bias;
    its outputs equal the file's. Raises RebuildError naming the file and the mismatch."""
    path = Path(path)
    try:
        m = onnx.load(str(path))
    except Exception as exc:  # onnx's DecodeError, an unreadable file: not an exported network
        raise RebuildError(f"{path}: not an ONNX file ({type(exc).__name__}: {exc})") from exc
    card = _card(m, path)
    weights = _conv_weights(m)
    net = _network(weights, path)
    modules = list(net.modules())
    convs = [(i, mod) for i, mod in enumerate(modules) if isinstance(mod, nn.Conv2d)]
    order = _order(net, card)
    with torch.no_grad():
        for (w, b), j in zip(weights, order, strict=True):
            pos, conv = convs[j]
            if tuple(conv.weight.shape) != w.shape:
                raise RebuildError(
                    f"{path}: a convolution of {w.shape}, its module {tuple(conv.weight.shape)}"
                )
            conv.weight.copy_(torch.from_numpy(w.copy()))
            if conv.bias is not None:
                conv.bias.copy_(torch.from_numpy(b.copy()))
                continue
            bn = next((mod for mod in modules[pos + 1 :] if isinstance(mod, nn.BatchNorm2d)), None)
            if bn is None or bn.num_features != w.shape[0] or b is None:
                raise RebuildError(f"{path}: convolution {j} has no BatchNorm of {w.shape[0]} to unfold")
            identity_plus(bn, b)
    return net.eval(), card


def _max_diff(net: FineNet, sess: ort.InferenceSession, tiles: np.ndarray) -> float:
    with torch.no_grad():
        want = net(torch.from_numpy(tiles))
    got = sess.run(None, {sess.get_inputs()[0].name: tiles})
    return max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True))


def rebuilt_fine_net(path: str | Path, tiles: np.ndarray) -> tuple[FineNet, dict]:
    """The file's network to train on (`train-fine --init FILE.onnx`): rebuilt, its BatchNorm statistics
    restored on `tiles` (N x 3 x T x T uint8), both steps checked against ONNX Runtime on them. Returns
    (network, report: tiles, head, version, max |diff| before and after the statistics)."""
    path = Path(path)
    net, card = rebuild_fine(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    before = _max_diff(net, sess, tiles)
    restore_batch_statistics(net, tiles)
    after = _max_diff(net, sess, tiles)
    if max(before, after) > PARITY:
        raise RebuildError(f"{path}: rebuilt network differs from ONNX Runtime by {max(before, after):.2g}")
    report = {"tiles": len(tiles), "head": net.head_kind, "version": card.version}
    return net, {**report, "max_diff_identity": before, "max_diff_statistics": after}
