"""Convolution + batch-norm fusion for inference (supplement Sec. E, Eq. 4).

:func:`fuse_conv_bn_` walks every module and folds each BatchNorm into the
convolution registered just before it in the same parent (the order in which
timm's EfficientNets and ResNets, and hsbench's own static layers, apply
them). The BN then becomes an identity (or, for timm's ``BatchNormAct2d``, its
activation). The dynamic meta blocks fold their BNs themselves
(:meth:`hsbench.models.meta_block.MetaBlock.fuse_bn_`). Tests compare the
fused model's logits with the unfused ones for every backbone, which is what
guards the registration-order assumption.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights


def _bn_replacement(bn: nn.BatchNorm2d) -> nn.Module:
    # timm's BatchNormAct2d = BN -> drop -> act; keep drop and act.
    drop, act = getattr(bn, "drop", None), getattr(bn, "act", None)
    if drop is None and act is None:
        return nn.Identity()
    return nn.Sequential(drop or nn.Identity(), act or nn.Identity())


@torch.no_grad()
def fuse_conv_bn_(model: nn.Module) -> int:
    """Fold every (Conv2d, BatchNorm2d) sibling pair into the Conv2d, in place.

    A pair is a BatchNorm2d (or subclass) whose nearest preceding sibling
    convolution, with no other convolution in between, has as many output
    channels as the BN has features. Call on an eval-mode model.

    Returns:
        The number of BNs folded.
    """
    folded = 0
    for parent in list(model.modules()):
        last_conv: str | None = None
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d):
                last_conv = name
            elif isinstance(child, nn.BatchNorm2d) and last_conv is not None:
                conv = getattr(parent, last_conv)
                if conv.out_channels == child.num_features and child.track_running_stats:
                    w, b = fuse_conv_bn_weights(
                        conv.weight, conv.bias, child.running_mean, child.running_var,
                        child.eps, child.weight, child.bias,
                    )
                    conv.weight, conv.bias = w, b
                    setattr(parent, name, _bn_replacement(child))
                    folded += 1
                last_conv = None
    return folded
