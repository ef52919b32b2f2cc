"""The bundled HyperSeg: Table S1 structure, every knob, BN fusion, bad values."""

import pytest
import torch
from torch import nn

from hsbench.models import TEMPLATES, ModelConfig, build_model, divide_channels, get_template
from hsbench.models.context_head import ContextHead
from hsbench.models.meta_block import DynamicConv2d, positional_encoding

torch.set_num_threads(1)

# Table S1 m_i channel rows, coarse to fine: (C_in, C_hidden or None, C_out).
# The finest output of CamVid is printed as 12 (the authors predicted void as a class).
TABLE_S1 = {
    "voc-l": (21, [(98, None, 96), (132, None, 34), (48, 96, 12), (22, 44, 8), (16, 32, 6), (11, 22, 21)]),
    "cityscapes-s": (19, [(130, None, 32), (62, None, 16), (26, None, 8), (14, 28, 8), (26, 52, 19)]),
    "cityscapes-m": (19, [(82, None, 64), (94, None, 32), (44, None, 16), (24, 48, 16), (34, 68, 19)]),
    "camvid-s": (12, [(82, None, 64), (94, None, 32), (44, None, 16), (24, 48, 16), (22, 44, 12)]),
    "camvid-l": (12, [(82, None, 64), (94, None, 32), (44, None, 16), (24, 48, 16), (22, 44, 16), (21, 42, 12)]),
}


def _block_rows(model):
    rows = []
    for block in model.blocks:
        specs = block.specs
        hidden = specs[0].c_out if len(specs) == 3 else None
        rows.append((specs[0].c_in, hidden, specs[-1].c_out))
    return rows


def test_divide_channels_matches_the_papers_worked_example():
    assert divide_channels(1280, 16, [7298, 4070, 760, 270, 156]) == [736, 400, 64, 16, 64]
    # order of the weights does not matter; parts follow the input order
    assert divide_channels(1280, 16, [156, 270, 760, 4070, 7298]) == [64, 16, 64, 400, 736]


@pytest.mark.parametrize("channels,unit,weights", [(1280, 64, [5248, 3008, 704, 2352, 1848]), (640, 32, [1, 1, 1]), (96, 32, [10, 1, 1])])
def test_divide_channels_invariants(channels, unit, weights):
    parts = divide_channels(channels, unit, weights)
    assert sum(parts) == channels
    assert all(p >= unit and p % unit == 0 for p in parts)


def test_divide_channels_errors():
    with pytest.raises(ValueError, match="multiple of the unit"):
        divide_channels(100, 16, [1, 2])
    with pytest.raises(ValueError, match="fewer than"):
        divide_channels(32, 16, [1, 2, 3])


@pytest.mark.parametrize("name", list(TABLE_S1))
def test_templates_reproduce_table_s1_channel_rows(name):
    num_classes, rows = TABLE_S1[name]
    model = build_model(ModelConfig(template=name, num_classes=num_classes))
    assert _block_rows(model) == rows
    assert len(model.config.weight_groups) == get_template(name).num_levels


def test_cityscapes_reductions_read_from_the_m_rows():
    m = build_model(ModelConfig(template="cityscapes-s"))
    assert isinstance(m.reduce[0], nn.Identity)  # F_1 not reduced
    assert [r[0].out_channels for r in m.reduce[1:]] == [4, 8, 28, 128]  # 24/6, 40/5, 112/4, 320*2/5
    m = build_model(ModelConfig(template="cityscapes-m"))
    assert isinstance(m.reduce[0], nn.Identity)


@pytest.mark.parametrize("size", [(64, 64), (360, 480), (70, 100), (97, 131)])
def test_any_size_from_64_gives_logits_of_the_input_size(size, tiny_model_config):
    model = build_model(tiny_model_config).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 11, *size)
    assert torch.isfinite(out).all()


def test_l_model_decodes_to_stride_one_and_s_model_upsamples():
    s = build_model(ModelConfig(template="camvid-s"))
    lm = build_model(ModelConfig(template="camvid-l"))
    assert s.levels == [5, 4, 3, 2, 1] and lm.levels == [5, 4, 3, 2, 1, 0]
    assert lm.blocks[-1].c_in == 3 + 16 + 2  # the image joins m_0


def test_grid_of_one_has_no_context_head_and_one_weight_set():
    model = build_model(ModelConfig(template="camvid-s", grid_size=1)).eval()
    assert model.context_head is None
    assert model.grid_shape(360, 480) == (1, 1)
    native = build_model(ModelConfig(template="camvid-s"))
    assert isinstance(native.context_head, ContextHead)
    assert native.grid_shape(360, 480) == (12, 15)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 96)).shape == (1, 11, 64, 96)


def test_grid_size_sets_the_number_of_patches():
    model = build_model(ModelConfig(template="voc-l", grid_size=4)).eval()
    seen = []
    hooks = [m.register_forward_hook(lambda mod, i, o: seen.append(i[1].shape[-2:])) for m in model.modules() if isinstance(m, DynamicConv2d)]
    with torch.no_grad():
        model(torch.randn(1, 3, 128, 128))
    for h in hooks:
        h.remove()
    assert seen and all(tuple(s) == (4, 4) for s in seen)
    assert model.generated_weights(128, 128) == sum(b.num_weights for b in model.blocks) * 16


def test_static_model_has_no_hypernetwork_and_same_output_shape():
    model = build_model(ModelConfig(template="camvid-s", dynamic=False)).eval()
    assert model.context_head is None
    assert all(b.mapper is None for b in model.blocks)
    assert model.weight_mapper_parameters() == 0 and model.generated_weights(360, 480) == 0
    assert not any(isinstance(m, DynamicConv2d) for m in model.modules())
    dyn = build_model(ModelConfig(template="camvid-s"))
    assert _block_rows(model) == _block_rows(dyn)  # same conv shapes
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 128)).shape == (1, 11, 96, 128)


def test_positional_encoding_off_removes_two_channels_per_level():
    on = build_model(ModelConfig(template="camvid-l"))
    off = build_model(ModelConfig(template="camvid-l", positional_encoding=False))
    assert [a[0] - b[0] for a, b in zip(_block_rows(on), _block_rows(off))] == [2] * 6


def test_positional_encoding_formula():
    p = positional_encoding(5, 3)
    assert p.shape == (1, 2, 5, 3)
    h, w = 5, 3
    for i in range(h):
        for j in range(w):
            assert p[0, 0, i, j].item() == pytest.approx((2 * i - h + 1) / (h - 1))
            assert p[0, 1, i, j].item() == pytest.approx((2 * j - w + 1) / (w - 1))


def test_weight_groups_knob_changes_the_mappers():
    model = build_model(ModelConfig(template="cityscapes-m", weight_groups=(64, 32, 32, 16, 8)))
    assert [b.mapper.groups for b in model.blocks] == [64, 32, 32, 16, 8]
    assert all(c % 64 == 0 for c in model.signal_split)  # s_u = max(g_w), Eq. 5


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"grid_size": 0}, "grid_size=0"),
        ({"grid_size": "big"}, "grid_size='big'"),
        ({"weight_groups": (4, 8, 16)}, "weight_groups=.*3 entries"),
        ({"weight_groups": (3, 8, 16, 16, 32)}, "power of two"),
        ({"weight_groups": (2048, 1, 1, 1, 1)}, "weight_groups=.*cannot be split"),
        ({"backbone": "vgg16"}, "backbone='vgg16'"),
        ({"template": "camvid-xl"}, "template='camvid-xl'"),
        ({"num_classes": 0}, "num_classes=0"),
    ],
)
def test_bad_knob_values_raise_value_error_naming_the_knob(overrides, match):
    with pytest.raises(ValueError, match=match):
        build_model(ModelConfig(), **overrides)


def test_grid_larger_than_the_feature_map_and_tiny_inputs_are_refused():
    model = build_model(ModelConfig(grid_size=16)).eval()
    with pytest.raises(ValueError, match="grid_size=16"):
        model(torch.randn(1, 3, 360, 480))
    with pytest.raises(ValueError, match="minimum"):
        model(torch.randn(1, 3, 32, 480))


def test_unknown_config_key_is_refused():
    with pytest.raises(ValueError, match="unknown model option"):
        ModelConfig.from_dict({"template": "camvid-s", "gridsize": 4})
    cfg = ModelConfig(template="voc-l", weight_groups=(16,) * 6)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def _randomise_bn_statistics(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(template="camvid-s"),
        ModelConfig(template="camvid-l", backbone="tf_efficientnet_lite1"),
        ModelConfig(template="camvid-s", dynamic=False),
        ModelConfig(template="camvid-s", backbone="resnet18", grid_size=1),
        ModelConfig(template="camvid-s", backbone="pspnet18"),
        ModelConfig(template="voc-l", grid_size=2),
    ],
    ids=["camvid-s", "camvid-l-lite1", "static", "resnet18-grid1", "pspnet18", "voc-l"],
)
def test_bn_fusion_keeps_the_logits(cfg):
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    _randomise_bn_statistics(model)
    x = torch.randn(1, 3, 96, 128)
    fused = model.fuse_bn()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules()), "a BN was left unfused"
    with torch.no_grad():
        ref, out = model(x), fused(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched


@pytest.mark.slow
@pytest.mark.parametrize("template", ["camvid-s", "camvid-l"])
@pytest.mark.parametrize("backbone", ["resnet18", "pspnet18", "pspnet50"])
def test_table4_backbone_variants_build_and_run(template, backbone):
    model = build_model(ModelConfig(template=template, backbone=backbone)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 96)).shape == (1, 11, 64, 96)
    assert model.backbone.signal_channels == (2048 if backbone == "pspnet50" else 1280)


def test_templates_registry():
    assert set(TEMPLATES) == {"voc-l", "cityscapes-s", "cityscapes-m", "camvid-s", "camvid-l"}
    assert get_template("voc-l").backbone == "efficientnet_b3"
    assert get_template("camvid-s").resolution == (768, 576)


def test_static_models_ignore_the_grid_knob():
    a = build_model(ModelConfig(dynamic=False, grid_size=4)).config
    b = build_model(ModelConfig(dynamic=False)).config
    assert a == b and a.grid_size == "native"
