"""The weight mapper w = [w_0, ..., w_n] (paper Sec. 3.2, Eq. 5-7; supplement Sec. A).

The context signal phi (C_n channels) is split into parts C_phi_0..C_phi_n in
proportion to the number of dynamic weights |theta^{m_i}| of each meta block
(:func:`divide_channels`, Algorithm 1), and each part is mapped to its block's
weights by a 1x1 convolution with g_{w_i} groups (:class:`WeightMapperHead`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hsbench.errors import ConfigError


def divide_channels(channels: int, unit: int, weights: list[int], *, equal_shares: bool = False) -> list[int]:
    """Split ``channels`` into parts proportional to ``weights`` (supplement Algorithm 1).

    The channels are counted in units of ``unit`` (the paper uses
    s_u = max(g_w), so that every part is divisible by its block's groups).
    Every weight first gets one unit; then, from the largest weight down, weight
    i gets ``floor(w_i * r) - 1`` more units, r = total units / sum(weights). A
    weight whose share rounds down to at most one unit keeps its single unit,
    and the last (smallest) weight takes the remainder. This follows the worked
    example of the authors' presentation (C = 1280, s_u = 16, weights
    [7298, 4070, 760, 270, 156] -> [736, 400, 64, 16, 64]) where it disagrees
    with line 9 of the printed pseudo-code, which would hand the remainder to
    the first weight with a share of at most one unit.

    With ``equal_shares`` (``semantics="release"``) weights that are equal get
    equal parts, as in the authors' released code (``divide_feature`` of
    hyperseg_v1_0.py): equal weights form one group of n members that starts
    with n units and gets ``floor(max(n w r, n) / n) n - n`` more, groups taken
    from the largest ``n w`` down, the last group taking the remainder, and the
    group's units are shared evenly. Without ties both rules give the same split.

    Args:
        channels: C, the signal's channel count.
        unit: s_u, the unit size in channels.
        weights: |theta^{m_i}| per meta block, in any order.
        equal_shares: the release's rule for equal weights (above).

    Returns:
        Channels per weight, in the order of ``weights``; they sum to ``channels``.

    Raises:
        ConfigError: if ``channels`` is not a multiple of ``unit`` or there are
            fewer units than weights.
    """
    if unit < 1 or channels % unit:
        raise ConfigError(f"channels={channels} is not a multiple of the unit size {unit}")
    total_units = channels // unit
    n = len(weights)
    if n == 0 or total_units < n:
        raise ConfigError(
            f"{channels} signal channels make {total_units} units of {unit}, "
            f"fewer than the {n} meta blocks that need one each"
        )
    ratio = total_units / sum(weights)
    if equal_shares:
        return [u * unit for u in _equal_share_units(total_units, weights, ratio)]
    order = sorted(range(n), key=lambda i: weights[i], reverse=True)
    units = [1] * n
    left = total_units - n
    for rank, idx in enumerate(order):
        if left == 0:
            break
        share = math.floor(weights[idx] * ratio)
        extra = left if rank == n - 1 else (share - 1 if share > 1 else 0)
        extra = min(extra, left)
        units[idx] += extra
        left -= extra
    return [u * unit for u in units]


def _equal_share_units(total_units: int, weights: list[int], ratio: float) -> list[int]:
    """Units per weight under the release's rule (see :func:`divide_channels`)."""
    groups: list[tuple[int, list[int]]] = []
    for i in sorted(range(len(weights)), key=lambda i: weights[i]):
        if groups and groups[-1][0] == weights[i]:
            groups[-1][1].append(i)
        else:
            groups.append((weights[i], [i]))
    groups.sort(key=lambda g: g[0] * len(g[1]), reverse=True)
    units = [len(members) for _, members in groups]
    left = total_units - sum(units)
    for g, (value, members) in enumerate(groups):
        m = len(members)
        if g < len(groups) - 1:
            extra = min(int(max(value * m * ratio, m) // m) * m - m, left)
            units[g] += extra
            left -= extra
            if left == 0:
                break
        else:
            units[g] += left
    out = [0] * len(weights)
    for (_, members), u in zip(groups, units):
        for i in members:
            out[i] = u // len(members)
    return out


class WeightMapperHead(nn.Module):
    """w_i: a grouped 1x1 convolution from C_phi_i signal channels to |theta^{m_i}| weights.

    Eq. 6: |theta^{w_i}| = |theta^{m_i}| * C_phi_i / g_{w_i}; Eq. 7: its MACs are
    that times the number of patches. The output channel count is rounded up to
    a multiple of g_{w_i} (the grouped convolution needs it) and the extra
    channels are dropped, as in the authors' code.

    Args:
        signal_channels: C_phi_i.
        num_weights: |theta^{m_i}|.
        groups: g_{w_i}.
        fan_in: mean fan-in of the convolutions that consume the weights, used
            to scale the normal initialisation (paper Sec. 4.1: theta^w is drawn
            from a normal distribution) so that the generated kernels start
            with a He-like variance.

    Raises:
        ConfigError: if ``groups`` does not divide ``signal_channels``.
    """

    def __init__(self, signal_channels: int, num_weights: int, groups: int, fan_in: float = 1.0):
        super().__init__()
        if groups < 1 or signal_channels % groups:
            raise ConfigError(
                f"weight_groups: g_w={groups} does not divide the {signal_channels} signal "
                "channels this meta block receives; use a power of two that divides them"
            )
        self.num_weights = num_weights
        self.groups = groups
        out = -(-num_weights // groups) * groups
        self.conv = nn.Conv2d(signal_channels, out, kernel_size=1, groups=groups, bias=False)
        std = math.sqrt(2.0 / (fan_in * signal_channels / groups))
        nn.init.normal_(self.conv.weight, std=std)

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        """(B, C_phi_i, N_h, N_w) -> (B, |theta^{m_i}|, N_h, N_w)."""
        return self.conv(phi)[:, : self.num_weights]
