"""Backbones b (paper Sec. 3.1, 4.4): timm feature extractors giving F_1..F_5.

Each backbone returns five feature maps at strides 2, 4, 8, 16, 32 (timm
``features_only=True``) and comes with a *signal head* that maps the last map
to the C_n channels the context head consumes:

* EfficientNet family: the network's own head (1x1 ``conv_head`` + BN + act,
  320 -> 1280 for B1/Lite0-2, 384 -> 1536 for B3), which HyperSeg keeps when it
  replaces the classifier by the context head (Sec. 3.1).
* ResNet18 / PSPNet18 / PSPNet50: "a fully connected layer transforms the last
  feature map before it is fed to the context head, to 1280 channels for the
  ResNet18 and PSPNet18 backbones, and 2048 channels for the PSPNet50" (Sec.
  4.4): a 1x1 conv + BN + ReLU. The PSPNet backbones are ResNet-18/50 without
  dilation followed by the pyramid pooling module of PSPNet (Zhao et al., CVPR
  2017: bins 1, 2, 3, 6, each a 1x1 conv to C/4, concatenated with the input and
  fused by a 3x3 conv to 512 channels).
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from torch import nn

from hsbench.models.config import BACKBONES
from hsbench.errors import ConfigError


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone: timm model, PSP module or not, signal channels C_n."""

    timm_name: str
    psp: bool
    signal_channels: int | None  # None: the EfficientNet's own conv_head width


SPECS: dict[str, BackboneSpec] = {
    "efficientnet_b1": BackboneSpec("efficientnet_b1", False, None),
    "efficientnet_b3": BackboneSpec("efficientnet_b3", False, None),
    "tf_efficientnet_lite0": BackboneSpec("tf_efficientnet_lite0", False, None),
    "tf_efficientnet_lite1": BackboneSpec("tf_efficientnet_lite1", False, None),
    "tf_efficientnet_lite2": BackboneSpec("tf_efficientnet_lite2", False, None),
    "resnet18": BackboneSpec("resnet18", False, 1280),
    "pspnet18": BackboneSpec("resnet18", True, 1280),
    "pspnet50": BackboneSpec("resnet50", True, 2048),
}
assert set(SPECS) == set(BACKBONES)


def conv_bn_act(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, act: bool = True) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU, the building block of the static layers."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=0 if stride > 1 else kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module: (B, C, h, w) -> (B, 512, h, w)."""

    def __init__(self, channels: int, bins: tuple[int, ...] = (1, 2, 3, 6), out_channels: int = 512):
        super().__init__()
        self.bins = bins
        self.branches = nn.ModuleList(conv_bn_act(channels, channels // len(bins)) for _ in bins)
        self.fuse = conv_bn_act(channels * 2, out_channels, kernel=3)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [
            F.interpolate(branch(F.adaptive_avg_pool2d(x, b)), size, mode="bilinear", align_corners=False)
            for b, branch in zip(self.bins, self.branches)
        ]
        return self.fuse(torch.cat([x, *pooled], dim=1))


class Backbone(nn.Module):
    """b: image (B, 3, H, W) -> [F_1, ..., F_5] at strides 2..32, plus the signal head.

    Args:
        name: a :data:`hsbench.models.config.BACKBONES` name.
        with_signal_head: build the head that feeds the context head (not
            needed by the "w/o DPWConv" models, which have no hypernetwork).

    Attributes:
        channels: channels of F_1..F_5.
        signal_channels: C_n, channels of the signal head's output (or 0).

    Raises:
        ValueError: for an unknown backbone name.
    """

    def __init__(self, name: str, *, with_signal_head: bool = True):
        super().__init__()
        if name not in SPECS:
            raise ConfigError(f"backbone={name!r} is not supported; allowed: {', '.join(BACKBONES)}")
        spec = SPECS[name]
        self.name = name
        self.spec = spec
        self.features = timm.create_model(spec.timm_name, features_only=True, out_indices=(0, 1, 2, 3, 4))
        self.channels: list[int] = list(self.features.feature_info.channels())
        reductions = list(self.features.feature_info.reduction())
        if reductions != [2, 4, 8, 16, 32]:  # pragma: no cover - guards a timm change
            raise RuntimeError(f"{name}: expected strides 2..32, timm gives {reductions}")
        self.psp = PyramidPooling(self.channels[-1]) if (spec.psp and with_signal_head) else None
        self.signal_head: nn.Module | None = None
        self.signal_channels = 0
        if with_signal_head:
            if spec.signal_channels is None:  # EfficientNet: keep its own 1x1 head
                full = timm.create_model(spec.timm_name)
                self.signal_head = nn.Sequential(full.conv_head, full.bn2)
                self.signal_channels = full.conv_head.out_channels
            else:
                c_in = self.psp.out_channels if self.psp is not None else self.channels[-1]
                self.signal_head = conv_bn_act(c_in, spec.signal_channels)
                self.signal_channels = spec.signal_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> [F_1 (B, C_1, H/2, W/2), ..., F_5 (B, C_5, H/32, W/32)] (sizes rounded up)."""
        return self.features(x)

    def signal(self, f5: torch.Tensor) -> torch.Tensor:
        """F_5 (B, C_5, h, w) -> the context head's input (B, C_n, h, w)."""
        if self.signal_head is None:
            raise RuntimeError("this backbone was built without a signal head")
        if self.psp is not None:
            f5 = self.psp(f5)
        return self.signal_head(f5)

    def load_imagenet(self, state: dict[str, torch.Tensor]) -> None:
        """Load a full timm model's state dict (see :mod:`hsbench.models.pretrained`).

        The feature extractor takes its keys strictly; for EfficientNets the
        signal head takes ``conv_head.*`` and ``bn2.*``; the classifier is dropped.

        Raises:
            ValueError: if a key the feature extractor needs is missing.
        """
        own = self.features.state_dict()
        missing = sorted(k for k in own if k not in state)
        if missing:
            raise ValueError(f"ImageNet weights for {self.name} lack {len(missing)} keys, e.g. {missing[:3]}")
        self.features.load_state_dict({k: state[k] for k in own}, strict=True)
        if self.spec.signal_channels is None and self.signal_head is not None:
            head = {f"0.{k[len('conv_head.'):]}": v for k, v in state.items() if k.startswith("conv_head.")}
            head.update({f"1.{k[len('bn2.'):]}": v for k, v in state.items() if k.startswith("bn2.")})
            self.signal_head.load_state_dict(head, strict=True)
