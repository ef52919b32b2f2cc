"""Decoder fusion: how a meta block joins the coarser output with its skip feature.

HyperSeg's decoder level i concatenates the skip feature F_i (reduced by r_i),
the bilinearly upsampled output of the coarser meta block and the positional
encoding P, and feeds the result to m_i (paper Sec. 3.2, Fig. 3a). The
``fusion`` knob of :class:`hsbench.models.ModelConfig` replaces the first of
those joins by one of the six *aggregation operations* of the supplement of
Nekrasov et al., "Architecture Search of Dynamic Cells for Semantic Video
Segmentation" (Sec. 3, Listings 1-3; text in ``shared/paper/``):

=================================  ===  ==========================================================
``fusion``                         ID   output (x = first input, y = second input, both (B, C, H, W))
=================================  ===  ==========================================================
``concat`` (HyperSeg, default)     -    [F_i, up(y_coarse)], C_skip + C_coarse channels
``param_sum``                      0    a * x + b * y, a, b in R^C                       (Listing 1)
``concat_reduce``                  1    conv1x1_{groups=C}(ReLU(BN([x, y])))             (Listing 1)
``pred_op``                        2    sum_j K_j(x) * unfold_j(y), K = softmax_j(g(x))  (Listing 2)
``bilinear_sampling``              3    grid_sample(x, affine_grid(theta(y))) + y        (Listing 2)
``conv3d``                         4    conv3d_{2 x k x k, groups=C}(stack([x, y]))      (Listing 3)
``dense_attention``                5    x * sigmoid(y)                                   (Listing 3)
=================================  ===  ==========================================================

How the two decoder inputs meet an operation (:class:`LevelFusion`):

* **Widths.** Every operation takes two inputs of C channels and returns C
  channels. When the coarser output's width differs from the skip's, a 1x1
  convolution + BN brings the coarser output to the skip's width C = C_skip
  (run at the coarser level's resolution, before upsampling; in eval mode the
  two commute, as both act per pixel and per channel). Its parameters and MACs
  are part of the variant's counts. So with an operation the meta block sees
  C_skip + 2 channels (fused feature + P) instead of C_skip + C_coarse + 2.
* **Sizes.** The coarser output is bilinearly upsampled to the skip's size,
  as for ``concat`` (the listings' ``resize``, align_corners=False).
* **Positional channels** stay concatenated after the fusion, as today.
* **Order.** The listings' first input is x, the second y. For every
  operation hsbench passes the skip F_i first and the (projected, upsampled)
  coarser output second, the order of HyperSeg's own concatenation. For the
  three asymmetric operations both orders make sense, and the reversed one
  is its own knob value: ``pred_op_coarse_first`` (the coarser output predicts
  the kernels that filter the skip), ``bilinear_sampling_coarse_first`` (the
  skip predicts the warp of the coarser output, the skip is the residual),
  ``dense_attention_coarse_first`` (the coarser output gated by the skip).
* The first level (m_n) has no coarser output and no fusion.

Deviations from the listings, each for a stated reason:

* PredOP: the listing pads the dilated im2col by ``k // 2`` while dilating by
  ``k // 2``, which keeps the size only for k = 3; hsbench pads by
  ``dilation * (k // 2)`` (identical for the default k = 3, dilation 1).
* BilSampling: the listing leaves the 6 -> 6 affine layer at PyTorch's default
  initialisation, i.e. a random warp at step 0; hsbench starts it at the
  identity transform (zero weight, bias (1, 0, 0, 0, 1, 0)), as spatial
  transformer networks do, and uses ``align_corners=False`` explicitly (the
  listing relies on the since-changed default).
* The listings' ``resize`` (upsampling the smaller input) lives in
  :class:`LevelFusion`; the operations themselves require equal shapes.

Counting (:mod:`hsbench.measure.complexity`): the parameter-free leaf modules
(:class:`PixelKernelConv`, :class:`AffineResample`, :class:`ParamSum`,
:class:`DenseAttention`) carry a ``macs(output)`` method that the thop rules
call; the convolutions, BN and Linear inside the operations are counted by
thop's own rules. fvcore counts PredOP's matmul and the bilinear grid sampling
with its own handlers, the affine grid with hsbench's, and, by its
convention, no element-wise products (ParamSum, DenseAttention).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hsbench.errors import ConfigError
from hsbench.models.config import FUSIONS


def _check_pair(name: str, x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(
            f"{name} fuses two inputs of one shape (B, C, H, W); got {tuple(x.shape)} and {tuple(y.shape)}"
        )


class ParamSum(nn.Module):
    """ID 0 (Listing 1): per-channel learnable weights per input, summed.

    ``a * x + b * y`` with a, b in R^C, both initialised to ones.

    Args:
        channels: C.

    Shapes: x, y (B, C, H, W) -> (B, C, H, W). 2 C extra parameters.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.a = nn.Parameter(torch.ones(channels))
        self.b = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_pair("param_sum", x, y)
        return self.a.view(1, -1, 1, 1) * x + self.b.view(1, -1, 1, 1) * y

    def macs(self, output: torch.Tensor) -> int:
        """Two MACs per output value (a * x, then + b * y)."""
        return 2 * output.numel()


class ConcatReduce(nn.Module):
    """ID 1 (Listing 1): concatenation, BN, ReLU, grouped 1x1 convolution with C groups.

    ``conv1x1(ReLU(BN([x, y])))``, 2C -> C channels, C groups of two input
    channels each, no bias. As in the listing, the concatenation is [x, y]
    (not interleaved), so group g reads channels 2g and 2g+1 of [x, y]: the
    first C/2 output channels mix channels of x only, the last C/2 channels
    of y only (C odd: the middle group reads one of each). The BN precedes a
    ReLU, so BN fusion leaves it in place (as an eval-mode affine).

    Args:
        channels: C (also the number of groups).

    Shapes: x, y (B, C, H, W) -> (B, C, H, W). 6C extra learned parameters
    (2C conv weights, 4C BN scale and shift) and the BN's 4C running statistics.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(2 * channels)
        self.act = nn.ReLU()
        self.conv = nn.Conv2d(2 * channels, channels, 1, groups=channels, bias=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_pair("concat_reduce", x, y)
        return self.conv(self.act(self.bn(torch.cat([x, y], dim=1))))


class PixelKernelConv(nn.Module):
    """Applies a per-pixel k x k kernel, shared by all channels, through a dilated im2col.

    ``out[b, c, h, w] = sum_{i, j} K[b, i k + j, h, w] * y[b, c, h + d (i - k//2), w + d (j - k//2)]``
    with zero padding. This is the second half of PredOP (Listing 2): the
    im2col (``F.unfold``) and the batched matrix product.

    Args:
        kernel_size: k.
        dilation: d.

    Shapes: y (B, C, H, W), kernels (B, k*k, H, W) -> (B, C, H, W).
    """

    def __init__(self, kernel_size: int, dilation: int):
        super().__init__()
        self.kernel_size, self.dilation = kernel_size, dilation

    def forward(self, y: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        b, c, h, w = y.shape
        kk = self.kernel_size**2
        if kernels.shape != (b, kk, h, w):
            raise ValueError(f"kernels must be (B, k*k, H, W) = {(b, kk, h, w)}, got {tuple(kernels.shape)}")
        cols = F.unfold(y, self.kernel_size, dilation=self.dilation, padding=self.dilation * (self.kernel_size // 2))
        cols = cols.view(b, c, kk, h * w).permute(0, 3, 1, 2)  # (B, HW, C, k*k)
        k = kernels.view(b, kk, h * w).permute(0, 2, 1).unsqueeze(-1)  # (B, HW, k*k, 1)
        out = torch.matmul(cols, k)  # (B, HW, C, 1)
        return out.squeeze(-1).permute(0, 2, 1).reshape(b, c, h, w)

    def macs(self, output: torch.Tensor) -> int:
        """k*k MACs per output value (the matmul; the im2col is a copy)."""
        return output.numel() * self.kernel_size**2

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, dilation={self.dilation}"


class PredOP(nn.Module):
    """ID 2 (Listing 2): the first input predicts, per pixel, a k x k kernel applied to the second.

    ``K = softmax_j(conv1x1(ReLU(dw3x3(ReLU(dw3x3(ReLU(x)))))))`` gives k*k
    weights per pixel that sum to 1; each output channel of y is filtered by
    that pixel's kernel (:class:`PixelKernelConv`, one kernel shared by all
    channels). The kernel predictor's convolutions have no bias (listing).
    A per-pixel cousin of HyperSeg's patch-wise weight prediction.

    Args:
        channels: C.
        kernel_size: k (listing default 3).
        dilation: the im2col's dilation; ``None`` = k // 2, the listing's (1 for k = 3).

    Shapes: x, y (B, C, H, W) -> (B, C, H, W). 18 C + C k^2 extra parameters.
    """

    def __init__(self, channels: int, kernel_size: int = 3, dilation: int | None = None):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"pred_op kernel_size={kernel_size} must be odd and positive")
        dilation = max(1, kernel_size // 2) if dilation is None else dilation
        c = channels
        self.predictor = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
            nn.ReLU(),
            nn.Conv2d(c, kernel_size**2, 1, bias=False),
            nn.Softmax(dim=1),
        )
        self.apply_kernels = PixelKernelConv(kernel_size, dilation)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_pair("pred_op", x, y)
        return self.apply_kernels(y, self.predictor(x))


class AffineResample(nn.Module):
    """Bilinear resampling of x on the grid of a per-image affine map (the core of Listing 2's BilSampling).

    ``grid_sample(x, affine_grid(theta, x.shape))``, bilinear, zero padding,
    align_corners=False: output pixel p reads x at theta [p; 1] in normalised
    coordinates ([-1, 1] across the image).

    Shapes: x (B, C, H, W), theta (B, 2, 3) -> (B, C, H, W).
    """

    def forward(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def macs(self, output: torch.Tensor) -> int:
        """4 MACs per output value (bilinear weights) + 6 per output pixel (the affine grid)."""
        b, _, h, w = output.shape
        return 4 * output.numel() + 6 * b * h * w


class BilinearSampling(nn.Module):
    """ID 3 (Listing 2): x resampled on an affine grid predicted from y, plus y.

    ``theta = fc(mean_{h,w} ReLU(conv1x1_{C -> 6}(y)))`` (B, 2, 3), then
    ``AffineResample(x, theta) + y``. ``fc`` starts at the identity transform
    (module docstring: deviation from the listing).

    Args:
        channels: C.

    Shapes: x, y (B, C, H, W) -> (B, C, H, W). 6 C + 42 extra parameters.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.loc = nn.Sequential(nn.Conv2d(channels, 6, 1, bias=False), nn.ReLU())
        self.fc = nn.Linear(6, 6)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
        self.resample = AffineResample()

    def theta(self, y: torch.Tensor) -> torch.Tensor:
        """The affine map predicted from y (B, C, H, W): (B, 2, 3)."""
        return self.fc(self.loc(y).mean(dim=(2, 3))).view(-1, 2, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_pair("bilinear_sampling", x, y)
        return self.resample(x, self.theta(y)) + y


class Conv3dFusion(nn.Module):
    """ID 4 (Listing 3): the inputs stacked on a new depth axis, a grouped 2 x k x k 3-D convolution.

    ``conv3d(stack([x, y], dim=2))`` with C groups, no bias, padding
    (0, k//2, k//2): output channel c = sum over (t, i, j) of
    w[c, 0, t, i, j] * [x_c, y_c][t] shifted by (i, j). Depth 2 collapses to 1.

    Args:
        channels: C (also the number of groups).
        kernel_size: k (listing default 3).

    Shapes: x, y (B, C, H, W) -> (B, C, H, W). 2 C k^2 extra parameters.
    """

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        p = kernel_size // 2
        self.conv = nn.Conv3d(
            channels, channels, (2, kernel_size, kernel_size), padding=(0, p, p), groups=channels, bias=False
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_pair("conv3d", x, y)
        return self.conv(torch.stack([x, y], dim=2)).squeeze(2)


class DenseAttention(nn.Module):
    """ID 5 (Listing 3): ``x * sigmoid(y)``, element-wise. No parameters.

    Shapes: x, y (B, C, H, W) -> (B, C, H, W).
    """

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_pair("dense_attention", x, y)
        return x * torch.sigmoid(y)

    def macs(self, output: torch.Tensor) -> int:
        """One MAC per output value (the product; the sigmoid is an activation, uncounted as elsewhere)."""
        return output.numel()


#: fusion knob value -> (operation class, supplement ID, the skip is the first input).
OPERATIONS: dict[str, tuple[type[nn.Module], int, bool]] = {
    "param_sum": (ParamSum, 0, True),
    "concat_reduce": (ConcatReduce, 1, True),
    "pred_op": (PredOP, 2, True),
    "pred_op_coarse_first": (PredOP, 2, False),
    "bilinear_sampling": (BilinearSampling, 3, True),
    "bilinear_sampling_coarse_first": (BilinearSampling, 3, False),
    "conv3d": (Conv3dFusion, 4, True),
    "dense_attention": (DenseAttention, 5, True),
    "dense_attention_coarse_first": (DenseAttention, 5, False),
}
assert set(OPERATIONS) | {"concat"} == set(FUSIONS), "hsbench.models.config.FUSIONS and OPERATIONS disagree"

#: Leaf modules whose MACs thop cannot see; each has ``macs(output) -> int``.
COUNTED_LEAVES: tuple[type[nn.Module], ...] = (ParamSum, PixelKernelConv, AffineResample, DenseAttention)


class LevelFusion(nn.Module):
    """Joins a decoder level's skip with the coarser level's output (module docstring).

    Args:
        fusion: a value of :data:`hsbench.models.config.FUSIONS`.
        skip_channels: C_skip of the skip F_i (after the r_i reduction).
        coarse_channels: C_coarse of the coarser meta block's output.

    Attributes:
        out_channels: C_skip + C_coarse for ``concat``, else C_skip.
        project: 1x1 conv + BN, C_coarse -> C_skip (None for ``concat`` or equal widths).
        op: the aggregation operation (None for ``concat``).

    Raises:
        ConfigError: for an unknown ``fusion``.
    """

    def __init__(self, fusion: str, skip_channels: int, coarse_channels: int):
        super().__init__()
        if fusion not in FUSIONS:
            raise ConfigError(f"fusion={fusion!r} is not supported; allowed: {', '.join(FUSIONS)}")
        self.fusion = fusion
        self.project: nn.Module | None = None
        self.op: nn.Module | None = None
        if fusion == "concat":
            self.out_channels = skip_channels + coarse_channels
            self.skip_first = True
            return
        cls, _id, self.skip_first = OPERATIONS[fusion]
        if coarse_channels != skip_channels:
            self.project = nn.Sequential(
                nn.Conv2d(coarse_channels, skip_channels, 1, bias=False), nn.BatchNorm2d(skip_channels)
            )
        self.op = cls(skip_channels) if cls is not DenseAttention else cls()
        self.out_channels = skip_channels

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """skip (B, C_skip, H, W), coarse (B, C_coarse, h, w) -> (B, out_channels, H, W)."""
        if self.project is not None:
            coarse = self.project(coarse)
        coarse = F.interpolate(coarse, skip.shape[-2:], mode="bilinear", align_corners=False)
        if self.op is None:
            return torch.cat([skip, coarse], dim=1)
        first, second = (skip, coarse) if self.skip_first else (coarse, skip)
        return self.op(first, second)

    def extra_repr(self) -> str:
        return f"fusion={self.fusion!r}, out_channels={self.out_channels}"


__all__ = [
    "COUNTED_LEAVES",
    "OPERATIONS",
    "AffineResample",
    "BilinearSampling",
    "ConcatReduce",
    "Conv3dFusion",
    "DenseAttention",
    "LevelFusion",
    "ParamSum",
    "PixelKernelConv",
    "PredOP",
]
