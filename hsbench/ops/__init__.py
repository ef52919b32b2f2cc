"""Operators of HyperSeg: the dynamic patch-wise convolution (paper Sec. 3.3) and the meta block (Sec. 3.2).

``patchwise_conv2d`` and ``meta_block_conv`` take ``backend="auto" | "reference" |
"torch" | "triton"`` (or ``$HSBENCH_DPW_BACKEND``); see :mod:`hsbench.ops.backends`.
"""

from hsbench.ops.backends import BACKENDS, ENV_VAR, check_backend, resolve_backend
from hsbench.ops.dispatch import meta_block_conv, patchwise_conv2d
from hsbench.ops.meta_block_ref import (
    BORDERS,
    channel_affine,
    meta_block_reference,
    meta_block_torch,
)
from hsbench.ops.patchwise import (
    patch_bounds,
    patchwise_conv2d_batched,
    patchwise_conv2d_reference,
)

__all__ = [
    "BACKENDS",
    "BORDERS",
    "ENV_VAR",
    "channel_affine",
    "check_backend",
    "meta_block_conv",
    "meta_block_reference",
    "meta_block_torch",
    "patch_bounds",
    "patchwise_conv2d",
    "patchwise_conv2d_batched",
    "patchwise_conv2d_reference",
    "resolve_backend",
]
