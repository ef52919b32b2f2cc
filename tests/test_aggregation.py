"""Decoder fusion: the aggregation operations of the dynamic-cells supplement (Sec. 3, Listings 1-3).

Each operation is checked against an independent computation on a tiny tensor
(explicit loops, not the op's own code path), for its output shape and for
gradients reaching both inputs; then inside HyperSeg (BN fusion exact, static
variant, counted MACs against hand counts) and through ``hsbench profile``.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hsbench.cli import main
from hsbench.measure.complexity import complexity
from hsbench.models import ModelConfig, build_model
from hsbench.models.aggregation import (
    OPERATIONS,
    BilinearSampling,
    ConcatReduce,
    Conv3dFusion,
    DenseAttention,
    LevelFusion,
    ParamSum,
    PixelKernelConv,
    PredOP,
)
from hsbench.models.config import FUSIONS

torch.set_num_threads(1)

OPS = {"param_sum": ParamSum, "concat_reduce": ConcatReduce, "pred_op": PredOP,
       "bilinear_sampling": BilinearSampling, "conv3d": Conv3dFusion, "dense_attention": DenseAttention}


def _make(name: str, channels: int) -> nn.Module:
    cls = OPS[name]
    return cls() if cls is DenseAttention else cls(channels)


def _loop_conv_same(t: torch.Tensor, kernel_at, k: int, dilation: int = 1) -> torch.Tensor:
    """out[b, c, h, w] = sum_{i, j} kernel_at(b, c, h, w, i, j) * t[b, c, h + d(i - k//2), w + d(j - k//2)], zero outside."""
    b_, c_, h_, w_ = t.shape
    out = torch.zeros_like(t)
    r = k // 2
    for b in range(b_):
        for c in range(c_):
            for h in range(h_):
                for w in range(w_):
                    acc = 0.0
                    for i in range(k):
                        for j in range(k):
                            hh, ww = h + dilation * (i - r), w + dilation * (j - r)
                            if 0 <= hh < h_ and 0 <= ww < w_:
                                acc += float(kernel_at(b, c, h, w, i, j)) * float(t[b, c, hh, ww])
                    out[b, c, h, w] = acc
    return out


# ----------------------------------------------------------------------------- each operation


@pytest.mark.parametrize("name", list(OPS))
def test_each_op_keeps_the_shape_and_sends_gradients_to_both_inputs(name):
    torch.manual_seed(0)
    op = _make(name, 4).train()
    x = torch.randn(2, 4, 5, 6, requires_grad=True)
    y = torch.randn(2, 4, 5, 6, requires_grad=True)
    out = op(x, y)
    assert out.shape == (2, 4, 5, 6)
    (out * torch.randn_like(out)).sum().backward()
    for t in (x, y):
        assert t.grad is not None and t.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="one shape"):
        op(x, y[:, :, :4])


def test_every_fusion_value_has_an_operation_with_the_supplements_id():
    assert set(OPERATIONS) | {"concat"} == set(FUSIONS)
    ids = {name: OPERATIONS[name][1] for name in OPS}
    assert ids == {"param_sum": 0, "concat_reduce": 1, "pred_op": 2, "bilinear_sampling": 3,
                   "conv3d": 4, "dense_attention": 5}
    assert all(OPERATIONS[n][2] for n in OPS)  # skip first by default
    assert not any(OPERATIONS[f"{n}_coarse_first"][2] for n in ("pred_op", "bilinear_sampling", "dense_attention"))


def test_param_sum_matches_per_channel_weights():
    op = ParamSum(3)
    with torch.no_grad():
        op.a.copy_(torch.tensor([2.0, -1.0, 0.5]))
        op.b.copy_(torch.tensor([0.0, 3.0, 1.0]))
    x, y = torch.randn(1, 3, 2, 2), torch.randn(1, 3, 2, 2)
    out = op(x, y)
    for c, (a, b) in enumerate([(2.0, 0.0), (-1.0, 3.0), (0.5, 1.0)]):
        for h in range(2):
            for w in range(2):
                assert out[0, c, h, w].item() == pytest.approx(a * x[0, c, h, w].item() + b * y[0, c, h, w].item(), abs=1e-6)


def test_concat_reduce_matches_bn_relu_and_pairs_of_channels():
    torch.manual_seed(1)
    op = ConcatReduce(4).eval()
    with torch.no_grad():
        op.bn.running_mean.copy_(torch.randn(8) * 0.2)
        op.bn.running_var.copy_(torch.rand(8) + 0.5)
        op.bn.weight.copy_(torch.rand(8) + 0.5)
        op.bn.bias.copy_(torch.randn(8) * 0.2)
    x, y = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    out = op(x, y)
    bn, wconv = op.bn, op.conv.weight.detach()  # (4, 2, 1, 1)
    z = [x[:, c] for c in range(4)] + [y[:, c] for c in range(4)]  # listing: [x, y], not interleaved
    for g in range(4):
        acc = 0.0
        for j in range(2):
            ch = 2 * g + j
            zn = (z[ch] - bn.running_mean[ch]) / math.sqrt(bn.running_var[ch].item() + bn.eps) * bn.weight[ch] + bn.bias[ch]
            acc = acc + wconv[g, j, 0, 0] * zn.clamp(min=0)
        assert torch.allclose(out[:, g], acc, atol=1e-5)
    # consequence of the listing's grouping: output channels 0-1 read x only, 2-3 y only
    out_y = op(x, y + 1.0)
    assert torch.equal(out[:, :2], out_y[:, :2]) and not torch.allclose(out[:, 2:], out_y[:, 2:])


def test_pixel_kernel_conv_applies_a_hand_built_3x3_field_like_an_explicit_loop():
    torch.manual_seed(2)
    b, c, h, w = 1, 2, 4, 5
    y = torch.randn(b, c, h, w)
    # a hand-built field: pixel (r, s) keeps only kernel tap (r + s) % 9 (weight 1) plus tap 4 (weight 0.5)
    field = torch.zeros(b, 9, h, w)
    for r in range(h):
        for s in range(w):
            field[0, (r + s) % 9, r, s] += 1.0
            field[0, 4, r, s] += 0.5
    out = PixelKernelConv(3, 1)(y, field)
    expected = _loop_conv_same(y, lambda bb, cc, r, s, i, j: field[bb, 3 * i + j, r, s], 3)
    assert torch.allclose(out, expected, atol=1e-6)
    # pixel (0, 0) reads tap 0 = its upper-left neighbour, outside the image: only 0.5 * itself
    assert out[0, 0, 0, 0].item() == pytest.approx(0.5 * y[0, 0, 0, 0].item())
    # pixel (1, 1) reads tap 2 = the upper-right neighbour (0, 2)
    assert out[0, 1, 1, 1].item() == pytest.approx(y[0, 1, 0, 2].item() + 0.5 * y[0, 1, 1, 1].item(), abs=1e-6)


def test_pred_op_predicts_normalised_kernels_from_the_first_input():
    torch.manual_seed(3)
    op = PredOP(3)
    x, y = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    kernels = op.predictor(x)
    assert kernels.shape == (1, 9, 4, 4)
    assert torch.allclose(kernels.sum(1), torch.ones(1, 4, 4), atol=1e-6)
    expected = _loop_conv_same(y, lambda bb, cc, r, s, i, j: kernels[bb, 3 * i + j, r, s], 3)
    assert torch.allclose(op(x, y), expected, atol=1e-5)
    # 5x5 with the listing's dilation k // 2 = 2: the size is kept (hsbench pads by d * (k // 2))
    op5 = PredOP(3, kernel_size=5)
    k5 = op5.predictor(x)
    expected5 = _loop_conv_same(y, lambda bb, cc, r, s, i, j: k5[bb, 5 * i + j, r, s], 5, dilation=2)
    assert torch.allclose(op5(x, y), expected5, atol=1e-5)
    assert sum(p.numel() for p in op.parameters()) == 18 * 3 + 9 * 3


def test_bilinear_sampling_starts_as_identity_and_shifts_by_a_set_translation():
    torch.manual_seed(4)
    op = BilinearSampling(2)
    x, y = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    assert torch.allclose(op(x, y), x + y, atol=1e-6)  # identity warp at initialisation
    with torch.no_grad():  # theta = [[1, 0, 2/W], [0, 1, 0]]: read one pixel to the right
        op.fc.bias.copy_(torch.tensor([1.0, 0.0, 2.0 / 4, 0.0, 1.0, 0.0]))
    shifted = torch.zeros_like(x)
    for w in range(3):
        shifted[..., w] = x[..., w + 1]  # the last column reads outside: zero padding
    assert torch.allclose(op(x, y), shifted + y, atol=1e-5)
    assert sum(p.numel() for p in op.parameters()) == 6 * 2 + 42


def test_conv3d_matches_an_explicit_loop_over_depth_and_taps():
    torch.manual_seed(5)
    op = Conv3dFusion(2)
    x, y = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    wt = op.conv.weight.detach()  # (C, 1, 2, 3, 3)
    expected = _loop_conv_same(x, lambda b, c, h, w, i, j: wt[c, 0, 0, i, j], 3) + _loop_conv_same(
        y, lambda b, c, h, w, i, j: wt[c, 0, 1, i, j], 3
    )
    assert torch.allclose(op(x, y), expected, atol=1e-5)


def test_dense_attention_matches_the_logistic_function():
    x, y = torch.randn(1, 2, 2, 3), torch.randn(1, 2, 2, 3)
    out = DenseAttention()(x, y)
    for idx in [(0, 0, 0, 0), (0, 1, 1, 2), (0, 0, 1, 1)]:
        assert out[idx].item() == pytest.approx(x[idx].item() / (1.0 + math.exp(-y[idx].item())), rel=1e-5)


# ----------------------------------------------------------------------------- one decoder level


def test_level_fusion_projects_the_coarser_output_and_orders_the_inputs():
    torch.manual_seed(6)
    skip, coarse = torch.randn(1, 4, 8, 8), torch.randn(1, 6, 4, 4)
    cat = LevelFusion("concat", 4, 6)
    assert cat.out_channels == 10 and cat.project is None
    assert torch.equal(cat(skip, coarse)[:, :4], skip)
    fused = LevelFusion("dense_attention", 4, 6).eval()
    assert fused.out_channels == 4 and fused.project[0].weight.shape == (4, 6, 1, 1)
    up = F.interpolate(fused.project(coarse), (8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(fused(skip, coarse), skip * torch.sigmoid(up), atol=1e-6)
    swapped = LevelFusion("dense_attention_coarse_first", 4, 6).eval()
    swapped.load_state_dict(fused.state_dict())
    assert torch.allclose(swapped(skip, coarse), up * torch.sigmoid(skip), atol=1e-6)
    assert LevelFusion("param_sum", 4, 4).project is None  # equal widths: no projection
    with pytest.raises(ValueError, match="fusion='sum'"):
        LevelFusion("sum", 4, 4)


# ----------------------------------------------------------------------------- inside HyperSeg


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_fuse_bn_keeps_the_logits_with_each_fusion(fusion):
    torch.manual_seed(0)
    model = build_model(ModelConfig(template="camvid-s", fusion=fusion)).eval()
    _randomise_bn(model)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref, fused = model(x), model.fuse_bn()(x)
    assert ref.shape == (1, 11, 64, 96)
    assert torch.allclose(fused, ref, rtol=1e-4, atol=1e-4)
    if fusion != "concat":  # the projections' BNs are folded
        assert all(f.project[1].__class__ is nn.Identity for f in model.fuse_bn().fusions)


@pytest.mark.parametrize("fusion", ["pred_op", "concat_reduce"])
def test_static_variant_takes_the_fusion_knob(fusion):
    torch.manual_seed(0)
    model = build_model(ModelConfig(template="camvid-s", dynamic=False, fusion=fusion)).eval()
    _randomise_bn(model)
    assert model.context_head is None and model.weight_mapper_parameters() == 0
    skip = [28, 10, 6, 4]  # F_4..F_1 of EfficientNet-B1 reduced by 1/4
    assert [b.c_in for b in model.blocks] == [82] + [c + 2 for c in skip]
    assert [f.out_channels for f in model.fusions] == skip
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.fuse_bn()(x), model(x), rtol=1e-4, atol=1e-4)


def test_fusion_knob_round_trips_and_leaves_concat_ids_alone():
    assert "fusion" not in ModelConfig().to_dict()  # ids of pre-knob variants unchanged
    cfg = ModelConfig(fusion="pred_op_coarse_first")
    assert cfg.to_dict()["fusion"] == "pred_op_coarse_first"
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert ModelConfig.from_dict(ModelConfig().to_dict()).fusion == "concat"
    with pytest.raises(ValueError, match="fusion='add'.*allowed: concat, param_sum"):
        build_model(ModelConfig(fusion="add"))


def _fusion_sizes(model, width, height):
    """(C, H, W) of every fused level of camvid-s, strides 16, 8, 4, 2."""
    return [(f.out_channels, -(-height // 2**lv), -(-width // 2**lv)) for f, lv in zip(model.fusions, model.levels[1:])]


def test_counters_see_each_operation_as_hand_counted():
    width, height = 128, 96
    figures, sizes = {}, None
    for fusion in ("dense_attention", "param_sum", "pred_op", "bilinear_sampling", "conv3d", "concat_reduce"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(template="camvid-s", fusion=fusion))
        figures[fusion] = complexity(model, (width, height))
        sizes = _fusion_sizes(model, width, height)
    chw = sum(c * h * w for c, h, w in sizes)
    hw = sum(h * w for _c, h, w in sizes)

    def diff(fusion, counter):  # everything but the operation is the same as with dense_attention
        return (getattr(figures[fusion], counter) - getattr(figures["dense_attention"], counter)) * 1e9

    # thop: ParamSum 2 MACs per value, dense attention 1
    assert diff("param_sum", "gmacs_thop") == pytest.approx(chw)
    # PredOP: two 3x3 depth-wise convs (18), 1x1 to 9 taps (9), applying the 9 taps (9) per value;
    # thop adds its softmax rule (26 per pixel for 9 taps), fvcore counts the unfold + matmul
    assert diff("pred_op", "gmacs_fvcore") == pytest.approx(36 * chw)
    assert diff("pred_op", "gmacs_thop") == pytest.approx(36 * chw - chw + 26 * hw)
    assert diff("pred_op", "gflops") == pytest.approx(2 * 36 * chw)
    # bilinear sampling: 1x1 to 6 (6), bilinear reads (4) per value, affine grid 6 per pixel, fc 36 per level
    n_levels = len(sizes)
    assert diff("bilinear_sampling", "gmacs_fvcore") == pytest.approx(10 * chw + 6 * hw + 36 * n_levels)
    assert diff("bilinear_sampling", "gmacs_thop") == pytest.approx(10 * chw + 6 * hw + 36 * n_levels - chw)
    # conv3d: 2 x 3 x 3 taps per value
    assert diff("conv3d", "gmacs_fvcore") == pytest.approx(18 * chw)
    assert diff("conv3d", "gmacs_thop") == pytest.approx(18 * chw - chw)
    # concat_reduce: grouped 1x1 conv, 2 per value (plus its BN by each counter's BN rule)
    assert diff("concat_reduce", "gflops") == pytest.approx(2 * 2 * chw)


def test_profile_json_prints_each_op_beside_concat(capsys):
    code = main(["profile", "--template", "camvid-s", "--resolution", "128x96", "--counters", "thop",
                 "--format", "json"])
    assert code == 0
    concat = json.loads(capsys.readouterr().out)
    assert concat["params_fusion"] == 0 and "concat" not in concat
    seen = {}
    for fusion in OPS:
        code = main(["profile", "--template", "camvid-s", "--fusion", fusion, "--resolution", "128x96",
                     "--counters", "thop", "--format", "json"])
        assert code == 0
        out = json.loads(capsys.readouterr().out)
        assert out["config"]["fusion"] == fusion
        assert out["concat"]["params_learned"] == concat["params_learned"]
        assert out["concat"]["gmacs_thop"] == pytest.approx(concat["gmacs_thop"])
        assert out["params_fusion"] > 0 and out["gmacs_thop"] > 0
        seen[fusion] = out
    # the fusion parameters: projections (same for all) + each op's own, as in the docstrings
    proj = seen["dense_attention"]["params_fusion"]
    skip = [28, 10, 6, 4]
    assert seen["param_sum"]["params_fusion"] - proj == sum(2 * c for c in skip)
    assert seen["concat_reduce"]["params_fusion"] - proj == sum(6 * c for c in skip)
    assert seen["pred_op"]["params_fusion"] - proj == sum(18 * c + 9 * c for c in skip)
    assert seen["bilinear_sampling"]["params_fusion"] - proj == sum(6 * c + 42 for c in skip)
    assert seen["conv3d"]["params_fusion"] - proj == sum(18 * c for c in skip)
    assert proj == sum(cin * c + 2 * c for cin, c in zip([64, 32, 16, 16], skip))  # 1x1 conv + BN


def test_profile_refuses_an_unknown_fusion_in_one_line(capsys):
    code = main(["profile", "--fusion", "sum", "--counters", "thop"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "fusion='sum'" in err
    assert len(err.strip().splitlines()) == 1
