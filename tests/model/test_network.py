"""The network: pretrained backbone really is ImageNet-trained, outputs follow the contract, and the
encoder uses the package's weights unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from model.network import DefectNet, NetOutputs, Normalise, imagenet_classifier
from model.outputs import DEFECT_CHANNELS, OUTPUT_NAMES, QUALITY_CLASSES, VIEW_CLASSES, ZONE_CHANNELS
from model.preprocess import MEAN, STD, letterbox
from model.registry import create_model


@pytest.fixture(scope="module")
def classifier():
    return imagenet_classifier(pretrained=True).eval()


def _top5(clf, rgb: np.ndarray) -> list[int]:
    x, _ = letterbox(rgb, 224)
    t = Normalise()(torch.from_numpy(x).permute(2, 0, 1)[None])
    with torch.no_grad():
        return clf(t)[0].topk(5).indices.tolist()


def test_pretrained_backbone_ranks_imagenet_classes(classifier):
    cat = _top5(classifier, data.chelsea())
    coffee = _top5(classifier, data.coffee())
    assert cat[0] in range(281, 286), cat  # tabby / tiger cat / Persian / Siamese / Egyptian cat
    assert 967 in coffee[:2] or 968 in coffee[:2], coffee  # espresso / cup
    # A random-init network does not: the weights, not the architecture, carry the knowledge.
    torch.manual_seed(0)
    random_top = _top5(imagenet_classifier(pretrained=False).eval(), data.chelsea())
    assert random_top[0] not in range(281, 286)


def test_encoder_holds_the_package_weights_unchanged(classifier):
    net = create_model("lite0_fpn")
    ours = net.encoder.state_dict()
    theirs = classifier.state_dict()
    mapped = 0
    for key, value in ours.items():
        src = {"conv_stem.": "_conv_stem.", "bn0.": "_bn0.", "blocks.": "_blocks."}
        pkg_key = next(key.replace(a, b, 1) for a, b in src.items() if key.startswith(a))
        assert torch.equal(value, theirs[pkg_key]), key
        mapped += 1
    assert mapped > 200  # every stem and block tensor, not a handful


def test_normalisation_is_inside_the_module():
    x = torch.tensor(MEAN).view(1, 3, 1, 1).round().to(torch.uint8).expand(1, 3, 4, 4)
    out = Normalise()(x)
    assert out.dtype == torch.float32
    assert out.abs().max() < 0.5 / min(STD) + 1e-6  # the mean colour maps to ~0


def test_outputs_are_probabilities_with_contract_names_and_shapes():
    torch.manual_seed(0)
    net = create_model("tiny").eval()
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, NetOutputs) and out._fields == OUTPUT_NAMES
    assert out.defect_probs.shape == (2, len(DEFECT_CHANNELS), 16, 16)
    assert out.zone_probs.shape == (2, len(ZONE_CHANNELS), 16, 16)
    assert out.view_probs.shape == (2, len(VIEW_CLASSES))
    assert out.quality_probs.shape == (2, len(QUALITY_CLASSES))
    assert out.defect_probs.min() >= 0 and out.defect_probs.max() <= 1
    for p in (out.zone_probs, out.view_probs, out.quality_probs):
        torch.testing.assert_close(p.sum(dim=1), torch.ones_like(p.sum(dim=1)))
    # forward is forward_logits through sigmoid/softmax: losses on logits see the same model.
    with torch.no_grad():
        logits = net.forward_logits(x)
    torch.testing.assert_close(torch.sigmoid(logits.defect_probs), out.defect_probs)


def test_mask_stride_sets_mask_resolution():
    for stride in (2, 4, 8):
        net = DefectNet(encoder="tiny", pretrained=False, input_size=64, mask_stride=stride).eval()
        with torch.no_grad():
            out = net(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
        assert out.defect_probs.shape[-1] == 64 // stride
    with pytest.raises(ValueError):
        DefectNet(encoder="tiny", input_size=64, mask_stride=16)
    with pytest.raises(ValueError):
        DefectNet(encoder="tiny", input_size=70)


def test_freezing_keeps_early_blocks_fixed_during_training():
    net = create_model("lite0_fpn", freeze_blocks=3)
    net.train()
    frozen = [p for p in net.encoder.blocks[:3].parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in net.encoder.blocks[3].parameters())
    assert not net.encoder.bn0.training  # frozen BN keeps ImageNet statistics
