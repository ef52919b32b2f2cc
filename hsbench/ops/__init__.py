"""Operators of HyperSeg: the dynamic patch-wise convolution (paper Sec. 3.3)."""

from hsbench.ops.patchwise import patch_bounds, patchwise_conv2d, patchwise_conv2d_reference

__all__ = ["patch_bounds", "patchwise_conv2d", "patchwise_conv2d_reference"]
