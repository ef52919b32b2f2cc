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

Under ``semantics="release"`` EfficientNet-B1/B3 are the TensorFlow port the
authors' code uses (timm's ``tf_efficientnet_b1/b3`` layout: BN eps 1e-3,
momentum 0.01, drop-path 0.2 and head dropout 0.2/0.3 in training) with
*static* "SAME" padding: every convolution pads what TF's "SAME" needs at the
network's native image size (240 px for B1, 300 px for B3), whatever the input
(:class:`StaticSameConv2d`). timm pads each input dynamically instead; the two
differ where the native size is odd at a stride-2 convolution (B1: the first
5x5 stride-2 conv of stage 6, native 15 px, pads (2, 2) instead of (1, 2)).
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
    "test_efficientnet": BackboneSpec("test_efficientnet", False, None),  # tests only (82 k params)
}
assert set(SPECS) == set(BACKBONES)

#: semantics="release": the TF port and its native image size (px) for static "SAME" padding,
#: and the dropout the release applies to the head's output in training.
RELEASE_SPECS: dict[str, tuple[BackboneSpec, int, float]] = {
    "efficientnet_b1": (BackboneSpec("tf_efficientnet_b1", False, None), 240, 0.2),
    "efficientnet_b3": (BackboneSpec("tf_efficientnet_b3", False, None), 300, 0.3),
}


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF "SAME" padding (before, after) of one axis of ``size`` pixels.

    Total ``max((ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)``,
    the smaller half before (TensorFlow's convention).
    """
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Swish(nn.Module):
    """Swish written as the release writes it, ``x * sigmoid(x)``: (B, C, H, W) -> same.

    Mathematically nn.SiLU; computed this way because fp32 rounding differs by
    about 1e-6 per block, which a deep random-weight network amplifies past the
    1e-4 agreement that release checkpoints are held to.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


def use_release_swish_(model: nn.Module) -> None:
    """Replace every ``nn.SiLU`` inside ``model`` by :class:`Swish`, in place."""
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.SiLU):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, Swish())


class StaticSameConv2d(nn.Conv2d):
    """A convolution with a fixed zero padding (left, right, top, bottom), applied whatever the input size.

    (B, C_in, H, W) -> (B, C_out, H', W'), H' = floor((H + top + bottom - d (K - 1) - 1) / s) + 1.
    """

    def __init__(self, conv: nn.Conv2d, pad: tuple[int, int, int, int]):
        super().__init__(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=0,
            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
        )
        self.static_pad = tuple(int(p) for p in pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.static_pad):
            x = F.pad(x, self.static_pad)
        return super().forward(x)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", static_pad={self.static_pad}"


@torch.no_grad()
def make_static_same_padding_(model: nn.Module, native: int) -> None:
    """Replace every conv of ``model`` by a :class:`StaticSameConv2d` padded for a native x native input.

    Each convolution's input size at the native resolution is recorded with
    forward hooks on one (1, 3, native, native) pass, then its TF "SAME" padding
    for that size is frozen (:func:`same_padding`). In place; weights kept.
    """
    sizes: dict[str, tuple[int, int]] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_pre_hook(lambda mod, inp, name=name: sizes.__setitem__(name, tuple(inp[0].shape[-2:]))))
    was_training = model.training
    try:
        model.eval()(torch.zeros(1, 3, native, native))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    for name, m in list(model.named_modules()):
        if not isinstance(m, nn.Conv2d) or name not in sizes:
            continue
        (h, w), (kh, kw), (sh, sw), (dh, dw) = sizes[name], m.kernel_size, m.stride, m.dilation
        top, bottom = same_padding(h, kh, sh, dh)
        left, right = same_padding(w, kw, sw, dw)
        new = StaticSameConv2d(m, (left, right, top, bottom))
        new.weight = m.weight
        if m.bias is not None:
            new.bias = m.bias
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)


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
        semantics: ``"release"`` builds EfficientNet-B1/B3 as the authors'
            TF port (module docstring); other backbones are the same under both.

    Attributes:
        channels: channels of F_1..F_5.
        signal_channels: C_n, channels of the signal head's output (or 0).

    Raises:
        ValueError: for an unknown backbone name.
    """

    def __init__(self, name: str, *, with_signal_head: bool = True, semantics: str = "paper"):
        super().__init__()
        if name not in SPECS:
            raise ConfigError(f"backbone={name!r} is not supported; allowed: {', '.join(BACKBONES)}")
        release = semantics == "release" and name in RELEASE_SPECS
        spec, native, head_dropout = RELEASE_SPECS[name] if release else (SPECS[name], 0, 0.0)
        self.name = name
        self.spec = spec
        extra = {"drop_path_rate": 0.2} if release else {}
        self.features = timm.create_model(spec.timm_name, features_only=True, out_indices=(0, 1, 2, 3, 4), **extra)
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
                head: list[nn.Module] = [full.conv_head, full.bn2]
                if release:
                    head.append(nn.Dropout(head_dropout))
                self.signal_head = nn.Sequential(*head)
                self.signal_channels = full.conv_head.out_channels
            else:
                c_in = self.psp.out_channels if self.psp is not None else self.channels[-1]
                self.signal_head = conv_bn_act(c_in, spec.signal_channels)
                self.signal_channels = spec.signal_channels
        if release:  # the release's static padding, Swish and TF batch-norm momentum (1 - 0.99)
            make_static_same_padding_(self.features, native)
            use_release_swish_(self)
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.momentum = 0.01

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> [F_1 (B, C_1, H/2, W/2), ..., F_5 (B, C_5, H/32, W/32)] (sizes rounded up)."""
        return self.features(x)

    def stride32_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of F_5 for a ``height`` x ``width`` input.

        ``ceil(H / 32)`` for timm's padding; for the release's static "SAME"
        padding each stride-2 convolution gives ``floor((n + pad - k) / 2) + 1``,
        which is smaller where the input is not a multiple of 32 (CamVid's 360
        rows give 11, not 12).
        """
        statics = [m for m in self.features.modules() if isinstance(m, StaticSameConv2d) and m.stride[0] == 2]
        if not statics:
            return -(-height // 32), -(-width // 32)
        h, w = height, width
        for m in statics:
            left, right, top, bottom = m.static_pad
            h = (h + top + bottom - m.kernel_size[0]) // 2 + 1
            w = (w + left + right - m.kernel_size[1]) // 2 + 1
        return h, w

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
