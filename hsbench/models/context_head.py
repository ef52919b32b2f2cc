"""The context head h (paper Sec. 3.1, Fig. 2c): a small U-Net over the stride-32 signal.

Each pixel of the last feature map encodes one patch; h mixes information
across patches so that objects spanning several patches are seen whole.
Structure (the paper's text, with widths that reproduce its parameter counts):
a 1x1 layer halves the C_n channels; ``levels - 1`` 2x2 convolutions with stride
2 go down (cheaper than 3x3, whose padding would enlarge the tiny maps); the
bottom map is average-pooled to one pixel (the highest-level context) and
upsampled back with nearest-neighbour interpolation; on the way up each level
concatenates its map with the upsampled one and applies a fully connected
(1x1) layer; the output concatenates the top level's two halves: phi has C_n
channels at stride 32, as Eq. 2 states.

The paper's PASCAL VOC model (voc-l) is of the authors' earlier design and its
39.6 M parameters need a full-width head (``full_width=True``): no input
layer, 2x2 convolutions that keep all C_n channels, the bottom map replaced by
its average, and at every level on the way up the upsampled map concatenated
with the skip and fused back to C_n channels by a 1x1 layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hsbench.models.backbones import conv_bn_act


class ContextHead(nn.Module):
    """h: (B, C_n, h, w) -> phi (B, C_n, h, w), for any h, w >= 1.

    Odd-sized maps are padded (replicate) by one row/column before a 2x2
    stride-2 convolution, so no pixel is dropped, and the upsampled map is
    resized to its skip's exact size.

    Args:
        channels: C_n (even).
        levels: number of resolutions in the U-Net (>= 1; 1 = no down path).
        full_width: the voc-l variant described above.
        last_relu: ReLU after the last fusion layer (the one that outputs phi's
            upsampled part); the release's voc-l (hyperseg_v0_1) has none there.

    Raises:
        ValueError: if ``channels`` is odd or ``levels < 1``.
    """

    def __init__(self, channels: int, levels: int = 2, *, full_width: bool = False, last_relu: bool = True):
        super().__init__()
        if channels % 2 or levels < 1:
            raise ValueError(f"context head needs an even channel count and levels >= 1, got {channels}, {levels}")
        self.full_width = full_width
        width = channels if full_width else channels // 2
        self.inp = nn.Identity() if full_width else conv_bn_act(channels, width)
        self.down = nn.ModuleList(conv_bn_act(width, width, kernel=2, stride=2) for _ in range(levels - 1))
        self.up = nn.ModuleList(conv_bn_act(2 * width, width, act=last_relu or i > 0) for i in range(levels - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_n, h, w) -> phi (B, C_n, h, w)."""
        feats = [self.inp(x)]
        for down in self.down:
            f = feats[-1]
            f = F.pad(f, (0, f.shape[-1] % 2, 0, f.shape[-2] % 2), mode="replicate")
            feats.append(down(f))
        bottom = feats.pop()
        y = F.interpolate(F.adaptive_avg_pool2d(bottom, 1), bottom.shape[-2:], mode="nearest")
        if self.full_width:  # the pooled bottom replaces the bottom map; fuse at every level
            for up in reversed(self.up):
                skip = feats.pop()
                y = up(torch.cat([skip, F.interpolate(y, skip.shape[-2:], mode="nearest")], dim=1))
            return y
        for up in reversed(self.up):
            y = up(torch.cat([bottom, y], dim=1))
            bottom = feats.pop()
            y = F.interpolate(y, bottom.shape[-2:], mode="nearest")
        return torch.cat([bottom, y], dim=1)
