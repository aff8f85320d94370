"""An exported fine network rebuilt for training (training/fine_from_onnx.py): the same outputs as the
file, and `train-fine --init FILE.onnx` starts from its weights, not from scratch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from model.export import export_fine_onnx
from model.fine_network import FineNet
from model.fine_pass import FineCard
from training.fine_from_onnx import rebuild_fine, rebuilt_fine_net
from training.fine_train import FineTrainConfig, run_fine_training
from training.from_onnx import PARITY, RebuildError
from training.synth.fine_patches import write_fine_patches

CARD = FineCard(name="tiny-fine", version="0.0.1", tile_px=64, margin_px=8, heat_cut=0.5, max_tiles=2)


def _trained_looking(net: FineNet, seed: int) -> FineNet:
    """Random weights and BatchNorm statistics far from the identity, so that folding them matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return net.eval()


def _convs_that_matter(net: FineNet, tiles: np.ndarray) -> set[str]:
    """The convolutions the outputs depend on (the tiny encoder runs stages past stride 8 that reach no
    output; the export drops them and the rebuild leaves them as they were)."""
    net.zero_grad()
    sum(o.sum() for o in net(torch.from_numpy(tiles[:1]))).backward()
    return {
        n for n, c in net.named_modules()
        if isinstance(c, nn.Conv2d) and c.weight.grad is not None and c.weight.grad.abs().sum() > 0
    }  # fmt: skip


@pytest.fixture(scope="module")
def tiles():
    return np.random.default_rng(0).integers(0, 256, (4, 3, 64, 64), dtype=np.uint8)


@pytest.mark.parametrize(("encoder", "head"), [("tiny", "light"), ("tiny", "full"), ("lite0", "light")])
def test_the_rebuilt_network_gives_the_files_outputs(tmp_path, tiles, encoder, head):
    torch.manual_seed(1)
    net = _trained_looking(FineNet(pretrained=False, encoder=encoder, head=head), seed=2)
    path = tmp_path / "fine.onnx"
    export_fine_onnx(net, path, CARD, tiles)
    rebuilt, card = rebuild_fine(path)
    assert card.version == "0.0.1" and rebuilt.head_kind == head
    with torch.no_grad():
        want, got = net(torch.from_numpy(tiles)), rebuilt(torch.from_numpy(tiles))
    assert max(float((w - g).abs().max()) for w, g in zip(want, got, strict=True)) < PARITY
    # The weights went to the right modules: each convolution the outputs depend on has the original's
    # weights times its BatchNorm's scale (the exporter folded them), not another module's of the same
    # shape.
    ran = {id(c) for n, c in net.named_modules() if n in _convs_that_matter(net, tiles)}
    old, new = list(net.modules()), list(rebuilt.modules())
    checked = 0
    for i, (conv, mine) in enumerate(zip(old, new, strict=True)):
        if isinstance(conv, nn.Conv2d) and conv.bias is None and id(conv) in ran:
            bn = next(m for m in old[i + 1 :] if isinstance(m, nn.BatchNorm2d))
            scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).view(-1, 1, 1, 1)
            assert torch.allclose(mine.weight, conv.weight * scale, atol=1e-5)
            checked += 1
    assert checked >= 15
    # The statistics restored on tiles keep the function, and are the tiles' own, not the identity's.
    trained, rep = rebuilt_fine_net(path, tiles)
    assert rep["max_diff_statistics"] < PARITY
    assert not all(torch.allclose(m.running_var, torch.ones_like(m.running_var), atol=0.01)
                   for m in trained.modules() if isinstance(m, nn.BatchNorm2d))  # fmt: skip


def test_a_file_that_is_not_a_fine_network_is_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(RebuildError, match=r"bad\.onnx: not an ONNX file"):
        rebuild_fine(bad)


def test_train_fine_starts_from_an_exported_file(tmp_path, tiles):
    """`--init FILE.onnx` at learning rate 0: the run's weights are the file's network, rebuilt."""
    write_fine_patches(tmp_path / "a", n=6, seed=3, size=64)
    torch.manual_seed(5)
    net = _trained_looking(FineNet(pretrained=False, encoder="tiny", head="light"), seed=6)
    export_fine_onnx(net, tmp_path / "trained.fine.onnx", CARD, tiles)
    cfg = FineTrainConfig(
        str(tmp_path / "a"), str(tmp_path / "a"), str(tmp_path / "run"), minutes=10, batch=3, crop=None,
        max_epochs=1, pretrained=False, encoder="tiny", head="light", progress=False, lr=0.0,
        init=str(tmp_path / "trained.fine.onnx"),
    )  # fmt: skip
    run = torch.load(run_fine_training(cfg), weights_only=False)["model"]
    rebuilt = rebuild_fine(tmp_path / "trained.fine.onnx")[0].state_dict()
    convs = [f"{n}.weight" for n in _convs_that_matter(net, tiles)]
    assert len(convs) >= 15
    assert all(torch.equal(run[k], rebuilt[k]) for k in convs)
    fresh = FineNet(pretrained=False, encoder="tiny", head="light").state_dict()
    assert not torch.equal(run["head.weight"], fresh["head.weight"])


def test_train_fine_refuses_an_init_file_that_is_no_fine_network(tmp_path):
    from typer.testing import CliRunner

    from refurbgrade.cli import build

    write_fine_patches(tmp_path / "a", n=3, seed=3, size=64)
    bad = tmp_path / "coarse.fine.onnx"
    bad.write_bytes(b"\x08\x07junk")
    args = ["train-fine", "--train", str(tmp_path / "a"), "--val", str(tmp_path / "a"), "--out",
            str(tmp_path / "run"), "--init", str(bad), "--head", "light"]  # fmt: skip
    out = CliRunner().invoke(build(), args)
    assert out.exit_code == 2
    assert "coarse.fine.onnx" in out.output
    assert not (tmp_path / "run").exists()
