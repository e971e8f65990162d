"""SCRA, Selective Channel Recalibration Attention (report 004): a 1x1 convolution over a
stage's feature map, a sigmoid, and the result multiplied into that same feature map.

    y = x * sigmoid(conv1x1(x))        conv: C -> C channels, with bias

It adds C*C + C parameters and keeps the feature map's shape. Feature maps are NCHW;
channels-last outputs ([..., C], e.g. ViT tokens or NHWC stages) get the same 1x1
convolution as a linear map over the last dimension.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainers.model.inserts import register


class SCRA(nn.Module):
    """Sigmoid gate from a 1x1 convolution, multiplied into the input feature map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.shape[1] == self.channels:
            return x * torch.sigmoid(self.conv(x))
        if x.shape[-1] == self.channels:
            weight = self.conv.weight.view(self.channels, self.channels)
            return x * torch.sigmoid(F.linear(x, weight, self.conv.bias))
        raise ValueError(f"SCRA({self.channels}): stage output {list(x.shape)} has no {self.channels}-channel axis")


@register("scra")
def scra(channels: int) -> nn.Module:
    """SCRA over a `channels`-channel feature map."""
    return SCRA(channels)
