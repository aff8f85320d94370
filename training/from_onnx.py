"""A training checkpoint rebuilt from an exported ONNX file, so a run can start from the bundled network.

The bundled `models/default.onnx` is the only copy of its network's weights (`runs/` is not kept), and
fine-tuning it (`init_weights`) needs PyTorch's. The exporter folded each BatchNorm into the convolution
before it (ONNX holds `<conv>.weight` and `<conv>.weight_bias`, no BatchNorm), so the weights come back
exactly, the normalisations do not: `rebuild` puts the folded weights in the convolutions and makes each
BatchNorm the identity plus the folded bias, which gives the same outputs in evaluation mode;
`restore_batch_statistics` then gives each BatchNorm the statistics of what reaches it on real photos
(mean mu, variance s2: running stats mu and s2, scale sqrt(s2 + eps), shift bias + mu), the same function
in evaluation mode, and in training mode batches normalised about where the network learnt them, not
rescaled to unit variance at the first step. `checkpoint_from_onnx` checks both against ONNX Runtime.

The ONNX file's extra feature outputs (`model.outputs.FEATURE_OUTPUTS`, ImageNet's tail added at
calibration) are not the network's and are ignored; the card's `architecture` names the recipe.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from model.export import compare, onnx_runner, read_card, torch_outputs
from model.registry import create_model
from training.checkpoint import CHECKPOINT_FORMAT, write_checkpoint

PARITY = 1e-3  # max |diff| on every probability, as export's own check (model.export)


class RebuildError(ValueError):
    """The ONNX file's weights do not fit the network its card names."""


def card_of(path: str | Path):
    """The model card of an exported file; RebuildError for a file that is not one (named, and why)."""
    try:
        return read_card(path)
    except Exception as exc:  # onnx's DecodeError, a missing card, a bad card: all "not an exported model"
        raise RebuildError(
            f"{path}: not an exported refurbgrade model ({type(exc).__name__}: {exc})"
        ) from exc


def _initializers(path: Path) -> dict[str, np.ndarray]:
    m = onnx.load(str(path))
    return {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}


def _take(param: torch.Tensor, value: np.ndarray, name: str) -> None:
    if tuple(param.shape) != value.shape:
        raise RebuildError(f"{name}: ONNX has {value.shape}, the network {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(torch.from_numpy(value.copy()))


def identity_plus(bn: nn.BatchNorm2d, bias: np.ndarray, name: str = "bias") -> None:
    """`bn` made the identity plus `bias` in evaluation mode: what is left of a BatchNorm the exporter
    folded into the convolution before it (its scale went into the weights, its shift into `bias`)."""
    with torch.no_grad():
        bn.weight.fill_(1.0)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)  # + eps in the normalisation: a scale of exactly 1
    _take(bn.bias, bias, name)


def rebuild(path: str | Path, card=None) -> tuple[nn.Module, dict]:
    """The card's network with the ONNX file's weights, each folded BatchNorm made identity plus its
    bias (evaluation outputs as the file's). Returns (network in eval mode, the card's architecture).
    `card`: the file's card where the caller has read it already."""
    path = Path(path)
    card = card or card_of(path)
    if card.quantized:
        raise RebuildError(f"{path}: an INT8 file; rebuild from its FP32 file")
    # The card writes the recipe as "NAME {overrides as JSON}" (`training.packaging.card_for_checkpoint`).
    name, _, rest = card.architecture.partition(" ")
    overrides = json.loads(rest) if rest.strip() else {}
    net = create_model(name, **{**overrides, "pretrained": False})
    inits = _initializers(path)
    used: set[str] = set()
    rebuilt: set[int] = set()  # the BatchNorms given a folded bias (ids)
    modules = list(net.named_modules())
    for i, (mname, mod) in enumerate(modules):
        if isinstance(mod, nn.Conv2d | nn.Linear):
            key = f"{mname}.weight"
            if key not in inits:
                raise RebuildError(f"{path}: no initializer {key}")
            _take(mod.weight, inits[key], key)
            used.add(key)
            if mod.bias is not None:
                _take(mod.bias, inits[f"{mname}.bias"], f"{mname}.bias")
                used.add(f"{mname}.bias")
            elif f"{key}_bias" in inits:
                # The BatchNorm folded into this convolution: the next one in module order, of its width.
                bn = next((m for _, m in modules[i + 1 :] if isinstance(m, nn.BatchNorm2d)), None)
                if bn is None or bn.num_features != mod.weight.shape[0]:
                    raise RebuildError(
                        f"{mname}: a folded bias but no BatchNorm of {mod.weight.shape[0]} after it"
                    )
                identity_plus(bn, inits[f"{key}_bias"], f"{key}_bias")
                rebuilt.add(id(bn))
                used.add(f"{key}_bias")
    for bname, buf in net.named_buffers():
        if bname in inits:  # the in-graph normalisation's mean and 1/std
            _take(buf, inits[bname], bname)
            used.add(bname)
    unfolded = [n for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d) and id(m) not in rebuilt]
    if unfolded:
        raise RebuildError(f"{path}: BatchNorms with no folded bias in the file: {unfolded[:3]}")
    tops = {n.split(".")[0] for n, _ in net.named_parameters()}
    mine = {k for k in inits if k.split(".")[0] in tops}
    if mine - used:
        raise RebuildError(f"{path}: network initializers left unread: {sorted(mine - used)[:5]}")
    return net.eval(), {"name": name, "overrides": overrides}


@torch.no_grad()
def restore_batch_statistics(net: nn.Module, images: np.ndarray, batch: int = 8) -> None:
    """Each BatchNorm of `rebuild` given the mean and variance of what reaches it over `images`
    (N x 3 x S x S uint8) and the scale and shift that keep its evaluation output unchanged."""
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    sums = {id(m): [0.0, 0.0, 0] for m in bns}

    def hook(mod, args):
        x = args[0].double()
        s = sums[id(mod)]
        s[0] = s[0] + x.sum(dim=(0, 2, 3))
        s[1] = s[1] + (x * x).sum(dim=(0, 2, 3))
        s[2] += x.shape[0] * x.shape[2] * x.shape[3]

    handles = [m.register_forward_pre_hook(hook) for m in bns]
    try:
        net.eval()
        for i in range(0, len(images), batch):
            net(torch.from_numpy(images[i : i + batch]))
    finally:
        for h in handles:
            h.remove()
    for m in bns:
        total, squares, n = sums[id(m)]
        mean = total / n
        var = (squares / n - mean * mean).clamp_min(0.0)
        # BN(x) = w (x - mu) / sqrt(var + eps) + b: with w = sqrt(var + eps) and b = b0 + mu it stays x + b0.
        m.running_mean.copy_(mean.float())
        m.running_var.copy_(var.float())
        m.weight.copy_(torch.sqrt(var + m.eps).float())
        m.bias.add_(mean.float())


def _chunked(run, images: np.ndarray, batch: int = 8) -> dict[str, np.ndarray]:
    """`run` (a batch in, outputs by name out) over `images` a few at a time: 80 photos at 384 px in one
    batch took 8 GB."""
    parts = [run(images[i : i + batch]) for i in range(0, len(images), batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _max_diff(net: nn.Module, onnx_out: dict[str, np.ndarray], images: np.ndarray) -> float:
    """The largest |difference| of any contract output between `net` and the file's outputs on `images`."""
    return max(compare(_chunked(partial(torch_outputs, net), images), onnx_out).max_abs.values())


def checkpoint_from_onnx(path: str | Path, out: str | Path, images: np.ndarray, card=None) -> dict:
    """Write a checkpoint (`training.checkpoint` format; `init_weights` reads it) of the ONNX file's
    network, its BatchNorm statistics restored on `images`; both steps checked against ONNX Runtime on
    them. Returns the report: photos, max |diff| before and after the statistics. `card`: as `rebuild`."""
    path, out = Path(path), Path(out)
    card = card or card_of(path)
    net, arch = rebuild(path, card)
    onnx_out = _chunked(onnx_runner(path)[0], images)  # once: the file is the same for both checks
    before = _max_diff(net, onnx_out, images)
    restore_batch_statistics(net, images)
    after = _max_diff(net, onnx_out, images)
    if max(before, after) > PARITY:
        raise RebuildError(f"{path}: rebuilt network differs from ONNX Runtime by {max(before, after):.2g}")
    state = {
        "format": CHECKPOINT_FORMAT,
        "model_name": arch["name"],
        "model_overrides": arch["overrides"],
        "state_dict": net.state_dict(),
        "config": None,  # not trained here: export it from a run that starts from it
        "rebuilt_from": {"file": path.name, "version": card.version, "created": str(card.created)},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(out, state)
    return {"photos": len(images), "max_diff_identity": before, "max_diff_statistics": after}
