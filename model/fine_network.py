"""The fine network (torch, issue 19): per-pixel scratch centreline, width and contrast on native-scale
tiles (docs/fine-pass.md, "A first fine network").

Owns the `nn.Module` only: no data, no loss, no training loop (`training.fine_train` has those). The
forward takes uint8 RGB NCHW (normalised inside with `model.network.Normalise`, as the coarse network
does, so an ONNX graph starts from uint8), runs EfficientNet-Lite0's stem and first five MBConv blocks
(strides 2, 4, 8; ImageNet-pretrained from the installed wheel when `pretrained`), a light FPN-style
top-down decoder to stride 2, then upsamples to the input size and mixes with a shallow full-resolution
branch (a sub-pixel line is a one-pixel signal: stride 2 alone would blur it away). Three outputs:

- `heat`: sigmoid, the probability that a pixel is on a scratch's centreline;
- `width_px`: softplus, the scratch's width in input pixels (the net sees pixels, not millimetres:
  mm = width_px x mm_per_px);
- `contrast`: sigmoid, the luminance change at the centre of a fully resolved line (0-1).

Width and contrast are meaningful only where `heat` is high.

Two heads (`HEADS`), i.e. what runs at the tile's full resolution, where a 256 px tile's cost is:
- "full" (the first fine file): the decoder's 32 channels upsampled, a 16-wide two-conv pixel branch and a
  dense 3x3 mix, about 18k multiply-adds a pixel, three quarters of the network's time;
- "light": the decoder reduced to 16 channels at stride 2 before upsampling, an 8-wide two-conv pixel
  branch and a depthwise-separable mix, about 2k a pixel: 2.3-2.4x faster a tile (docs/fine-pass.md).
The encoder and decoder are the same in both, so a light net starts from a full one's weights.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.network import Lite0Encoder, Normalise, TinyEncoder, conv_bn_act, sep_block

FINE_STRIDES = (2, 4, 8)
HEADS = ("full", "light")


class FineOutputs(NamedTuple):
    heat: Tensor  # N x 1 x H x W
    width_px: Tensor  # N x 1 x H x W
    contrast: Tensor  # N x 1 x H x W


class FineNet(nn.Module):
    """Lite0 to stride 8 -> top-down decoder to stride 2 -> full resolution -> heat, width_px, contrast."""

    def __init__(
        self, pretrained: bool = True, decoder_channels: int = 32, encoder: str = "lite0", head: str = "full"
    ):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r} ({', '.join(HEADS)})")
        self.head_kind = head  # `self.head` is the output convolution
        self.normalise = Normalise()
        if encoder == "lite0":
            self.encoder: nn.Module = Lite0Encoder(
                pretrained=pretrained, strides=FINE_STRIDES, drop_connect=0.0
            )
        elif encoder == "tiny":
            self.encoder = TinyEncoder(strides=FINE_STRIDES)
        else:
            raise ValueError(f"unknown encoder {encoder!r} (lite0, tiny)")
        if encoder == "lite0":  # blocks past stride 8 never run: drop them from the module and the file
            self.encoder.blocks = self.encoder.blocks[: self.encoder.last + 1]
        c = decoder_channels
        self.lateral = nn.ModuleList(conv_bn_act(ch, c) for ch in self.encoder.channels)
        self.smooth = nn.ModuleList(sep_block(c) for _ in self.encoder.channels[:-1])
        # Full resolution: a shallow branch from the pixels themselves (a 0.3 px line is one faint pixel).
        # The light head: a layer at full resolution costs 16x the same layer at stride 8, so narrow
        # channels and a 1x1 (not 3x3) first mix; the depthwise 3x3 after it still mixes neighbours.
        f, m, k = (16, c, 3) if head == "full" else (8, c // 2, 1)
        self.reduce: nn.Module = nn.Identity() if head == "full" else conv_bn_act(c, m, 1)
        self.mix = nn.Sequential(
            conv_bn_act(m + f, m, k), conv_bn_act(m, m, 3, groups=m), conv_bn_act(m, m, 1)
        )
        self.full = nn.Sequential(conv_bn_act(3, f, 3), conv_bn_act(f, f, 3))
        self.head = nn.Conv2d(m, 3, 1)
        with torch.no_grad():  # centrelines are a few percent of pixels: start at a low prior
            self.head.bias.copy_(torch.tensor([-3.0, 0.5, -2.0]))

    def forward_logits(self, image: Tensor) -> FineOutputs:
        x = self.normalise(image)
        feats = self.encoder(x)
        top = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):
            top = self.lateral[i](feats[i]) + F.interpolate(top, size=feats[i].shape[-2:], mode="nearest")
            top = self.smooth[i](top)
        up = F.interpolate(self.reduce(top), size=image.shape[-2:], mode="bilinear", align_corners=False)
        y = self.head(self.mix(torch.cat([up, self.full(x)], dim=1)))
        return FineOutputs(y[:, 0:1], y[:, 1:2], y[:, 2:3])

    def forward(self, image: Tensor) -> FineOutputs:
        return to_fine_outputs(self.forward_logits(image))


def to_fine_outputs(logits: FineOutputs) -> FineOutputs:
    return FineOutputs(
        torch.sigmoid(logits.heat), F.softplus(logits.width_px), torch.sigmoid(logits.contrast)
    )


def parameter_counts(net: FineNet) -> dict[str, int]:
    """Parameters in the encoder (the pretrained stem and blocks) and in the rest (decoder and heads)."""
    enc = sum(p.numel() for p in net.encoder.parameters())
    return {"encoder": enc, "decoder": sum(p.numel() for p in net.parameters()) - enc}
