"""Operators of HyperSeg: the dynamic patch-wise convolution (paper Sec. 3.3) and the meta block (Sec. 3.2)."""

from hsbench.ops.meta_block_ref import meta_block_reference, meta_block_torch
from hsbench.ops.patchwise import (
    patch_bounds,
    patchwise_conv2d,
    patchwise_conv2d_reference,
)

__all__ = [
    "meta_block_reference",
    "meta_block_torch",
    "patch_bounds",
    "patchwise_conv2d",
    "patchwise_conv2d_reference",
]
