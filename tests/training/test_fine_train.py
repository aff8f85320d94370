"""The fine network and its training (model/fine_network.py, training/fine_train.py) on tiny patches:
output shapes and ranges, the loss prefers the truth, a few steps lower it, resume continues, and the
CLI refuses a missing manifest."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from model.fine_network import FineNet, FineOutputs
from refurbgrade.cli import build
from training.fine_train import FinePatchDataset, FineTrainConfig, fine_loss, run_fine_training
from training.synth.fine_patches import write_fine_patches


def _tiny_run(train, val, out, **kwargs) -> FineTrainConfig:
    """A one-epoch training config on the tiny encoder, for tests (whole patches, batches of 3)."""
    return FineTrainConfig(
        train, val, str(out), minutes=10, batch=3, crop=None, max_epochs=1, pretrained=False,
        encoder="tiny", progress=False, **kwargs,
    )  # fmt: skip


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    root = tmp_path_factory.mktemp("fine")
    write_fine_patches(root / "a", n=6, seed=3, size=64)
    write_fine_patches(root / "b", n=6, seed=4, size=64)
    return root


def _batch(folder):
    ds = FinePatchDataset(folder)
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([i for i, _ in items]), torch.stack([t for _, t in items]), ds


def test_dataset_width_in_pixels(patches):
    img, tgt, ds = _batch(patches / "a")
    assert img.dtype == torch.uint8 and img.shape == (6, 3, 64, 64)
    assert tgt.shape == (6, 3, 64, 64)
    checked = 0
    for i, rec in enumerate(ds.records):
        on = tgt[i, 0] > 0.5
        if not on.any():
            continue
        truth = torch.tensor([s.width_px for s in rec.scratches])
        got = tgt[i, 1][on].unique()
        # each on-line pixel carries one of the patch's scratch widths in pixels (float16 in mm)
        assert ((got[:, None] - truth[None]).abs() / truth[None]).min(dim=1).values.max() < 0.01
        checked += 1
    assert checked


@pytest.mark.parametrize("head", ["full", "light"])
@pytest.mark.parametrize("encoder", ["lite0", "tiny"])
def test_outputs_shapes_and_ranges(encoder, head):
    net = FineNet(pretrained=False, encoder=encoder, head=head).eval()
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        out = net(x)
    for t in out:
        assert t.shape == (2, 1, 64, 64)
    assert out.heat.min() >= 0 and out.heat.max() <= 1
    assert out.contrast.min() >= 0 and out.contrast.max() <= 1
    assert out.width_px.min() >= 0
    if encoder == "lite0":
        decoder = sum(p.numel() for p in net.parameters()) - sum(p.numel() for p in net.encoder.parameters())
        assert decoder < 1_000_000


def _logits(t: torch.Tensor) -> FineOutputs:
    """Logits whose outputs are the targets themselves."""
    p = t.clamp(1e-4, 1 - 1e-4)
    return FineOutputs(
        torch.logit(p[:, 0:1]), torch.log(torch.expm1(t[:, 1:2].clamp(min=1e-3))), torch.logit(p[:, 2:3])
    )


def test_loss_prefers_the_truth(patches):
    _, tgt, _ = _batch(patches / "a")
    assert (tgt[:, 0] > 0.5).any()
    shifted = tgt.clone()
    shifted[:, 0] = torch.roll(tgt[:, 0], shifts=(5, 5), dims=(1, 2))
    assert fine_loss(_logits(tgt), tgt)[0] < fine_loss(_logits(shifted), tgt)[0]


def test_steps_reduce_the_loss(patches):
    torch.manual_seed(0)
    img, tgt, _ = _batch(patches / "a")
    net = FineNet(pretrained=False, encoder="tiny")
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    net.train()
    losses = []
    for _ in range(4):
        loss, _ = fine_loss(net.forward_logits(img), tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_resume_continues(patches, tmp_path):
    cfg = _tiny_run(str(patches / "a"), str(patches / "b"), tmp_path)
    run_fine_training(cfg)
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").is_file()
    cfg.max_epochs, cfg.resume = 2, True
    run_fine_training(cfg)
    hist = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [0, 1]
    assert torch.load(tmp_path / "last.pt", weights_only=False)["epoch"] == 1


def test_cli_refuses_missing_manifest(tmp_path, patches):
    args = [
        "train-fine",
        "--train",
        str(tmp_path / "nowhere"),
        "--val",
        str(patches / "b"),
        "--out",
        str(tmp_path / "run"),
    ]
    out = CliRunner().invoke(build(), args)
    assert out.exit_code == 2
    assert "no fine manifest" in out.output
    assert not (tmp_path / "run").exists()


def test_benchmark_runs(patches, tmp_path):
    """benchmarks/bench_fine_net.py end to end on a tiny run (no latency: that exports ONNX)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_fine_net.py"
    spec = importlib.util.spec_from_file_location("bench_fine_net", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = _tiny_run(str(patches / "a"), str(patches / "b"), tmp_path)
    best = run_fine_training(cfg)
    out = bench.main(["--checkpoint", str(best), "--manifest", str(patches / "b"), "--no-latency"])
    assert out["baseline"]["n all"] == out["fine"]["n all"] > 0
    assert 0 <= out["fine"]["recall all"] <= 1


def test_training_mixes_folders_and_starts_from_a_checkpoint(patches, tmp_path):
    first = _tiny_run(str(patches / "a"), str(patches / "b"), tmp_path / "one")
    best = run_fine_training(first)
    mixed = _tiny_run(
        [str(patches / "a"), str(patches / "b")], [str(patches / "b")], tmp_path / "two", init=str(best)
    )
    run_fine_training(mixed)
    hist = json.loads((tmp_path / "two" / "history.json").read_text())
    assert hist[0]["steps"] == 4  # 12 patches of both folders, batches of 3
    # --init took the first run's weights: its first validation loss is the first run's best, not a
    # fresh network's (the second folder is the first run's validation set).
    one = json.loads((tmp_path / "one" / "history.json").read_text())
    assert hist[0]["val_loss"] < one[0]["val_loss"] + 0.5


def test_a_light_head_starts_from_a_full_runs_encoder_and_decoder(patches, tmp_path):
    """`--head light --init FULL/best.pt`: every tensor the two heads share (encoder, decoder) starts
    from the full run's, the rest fresh; the checkpoint rebuilds a light net; the benchmark compares
    the two checkpoints in one run."""
    import importlib.util
    from pathlib import Path

    from training.fine_train import load_fine_net

    full_cfg = _tiny_run(str(patches / "a"), str(patches / "b"), tmp_path / "full")
    full = run_fine_training(full_cfg)
    light_cfg = _tiny_run(
        str(patches / "a"), str(patches / "b"), tmp_path / "light", init=str(full), head="light", lr=0.0
    )
    light = load_fine_net(run_fine_training(light_cfg))
    assert light.head_kind == "light"
    before = load_fine_net(full).state_dict()
    after = light.state_dict()
    shared = [k for k in after if k in before and before[k].shape == after[k].shape and "running" not in k]
    assert any(k.startswith("encoder.") for k in shared) and any(k.startswith("lateral.") for k in shared)
    # lr 0: the shared weights are the full run's exactly (batch norm statistics still move in training)
    assert all(torch.equal(before[k], after[k]) for k in shared if not k.endswith("num_batches_tracked"))
    assert "reduce.0.weight" in after and "reduce.0.weight" not in before
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_fine_net.py"
    spec = importlib.util.spec_from_file_location("bench_fine_net", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    light_best, manifest = str(tmp_path / "light" / "best.pt"), str(patches / "b")
    out = bench.main(
        ["--checkpoint", light_best, "--compare", str(full), "--manifest", manifest, "--no-latency"]
    )
    assert out["fine"]["n all"] == out["compare"]["fine"]["n all"] > 0


def test_export_fine_picks_the_cut_on_validation_and_writes_a_card(patches, tmp_path):
    from model.fine_pass import FineCard
    from training.fine_package import CUTS, package_fine

    cfg = _tiny_run(str(patches / "a"), str(patches / "b"), tmp_path / "run")
    best = run_fine_training(cfg)
    card = package_fine(best, patches / "b", tmp_path / "x.fine.onnx", "0.0.1")
    assert card.heat_cut in CUTS
    assert set(card.metrics) == {"val_centreline_precision", "val_centreline_recall", "val_centreline_f1"}
    import onnxruntime as ort

    def card_of(path):
        return FineCard.from_metadata(ort.InferenceSession(str(path)).get_modelmeta().custom_metadata_map)

    def export(out, *extra):
        args = ["export-fine", "--checkpoint", str(best), "--val", str(patches / "b"), "--out", str(out)]
        return CliRunner().invoke(build(), [*args, *extra])

    assert card_of(tmp_path / "x.fine.onnx") == card
    assert not card.fill_critical  # the recipe's choice since card 2026.12.06.1, written into the card
    out = export(tmp_path / "z.fine.onnx", "--fill-critical")
    assert out.exit_code == 0, out.output
    assert card_of(tmp_path / "z.fine.onnx").fill_critical
    out = export(tmp_path / "y.onnx")
    assert out.exit_code == 2 and "NAME.fine.onnx" in out.output
