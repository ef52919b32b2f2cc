"""Complexity figures against the paper (Tables 2, 3, 4, S3) and hand counts."""

import pytest
import torch

from hsbench.cli import main
from hsbench.measure.complexity import complexity
from hsbench.models import ModelConfig, build_model
from hsbench.models.templates import TEMPLATES
from hsbench.reporting.paper import TABLES, template_row

torch.set_num_threads(1)

# template -> its paper row (Tables 2-4) at the template's defaults: Params in M, GFLOPs = thop MACs
PAPER = {t: template_row(t) for t in TEMPLATES}


@pytest.mark.slow
@pytest.mark.parametrize("template", list(PAPER))
def test_params_within_5_percent_and_gmacs_within_10_percent_of_the_paper(template):
    params, gflops = PAPER[template].values["params"], PAPER[template].values.get("gmacs")
    model = build_model(ModelConfig(template=template))
    res = model.template.resolution
    c = complexity(model, res, counters=("thop",) if gflops else ())
    assert c.params_learned / 1e6 == pytest.approx(params, rel=0.05)
    if gflops:
        assert c.gmacs_thop == pytest.approx(gflops, rel=0.10)


def test_dynamic_convolutions_are_counted_never_zero():
    model = build_model(ModelConfig(template="camvid-s"))
    c = complexity(model, (128, 96))
    # hand count: each DPWConv output value costs C_in/G * K^2 MACs
    sizes = {5: (3, 4), 4: (6, 8), 3: (12, 16), 2: (24, 32), 1: (48, 64)}
    expected = 0
    for level, block in zip(model.levels, model.blocks):
        h, w = sizes[level]
        expected += sum(s.c_out * h * w * (s.c_in // s.groups) * s.kernel**2 for s in block.specs)
    assert c.gmacs_dpwconv * 1e9 == pytest.approx(expected)
    # weight mapper MACs follow Eq. 7 (with the output rounded up to a multiple of g_w)
    n = 3 * 4
    eq7 = sum(b.mapper.conv.out_channels * c_phi // b.mapper.groups * n for b, c_phi in zip(model.blocks, model.signal_split))
    assert c.gmacs_weight_mapper * 1e9 == pytest.approx(eq7)
    # thop includes the DPWConv rule; fvcore traces the op: both see it
    static = complexity(build_model(ModelConfig(template="camvid-s", dynamic=False)), (128, 96))
    assert c.gmacs_dpwconv > 0
    assert c.gmacs_thop == pytest.approx(c.gmacs_fvcore, rel=0.1)
    assert c.gflops == pytest.approx(2 * c.gmacs_fvcore, rel=0.1)
    assert static.gmacs_dpwconv == 0 and static.params_weight_mapper == 0


@pytest.mark.slow
def test_table_s3_weight_mapper_shrinks_as_groups_grow():
    rows = [r.match["groups"] for r in TABLES["S3"].rows]  # g_w1..g_w5 as Table S3 prints them
    assert len(rows) == 5
    figures = []
    for g in rows:  # Table S3 lists g_w1..g_w5 (fine to coarse); hsbench takes coarse to fine
        model = build_model(ModelConfig(template="cityscapes-m", weight_groups=tuple(reversed(g))))
        figures.append(complexity(model, (768, 384), counters=("thop",)))  # |theta^w| is resolution-free
    theta_w = [f.params_weight_mapper for f in figures]
    gmacs = [f.gmacs_thop for f in figures]
    assert theta_w == sorted(theta_w, reverse=True) and len(set(theta_w)) == 5
    assert gmacs == sorted(gmacs, reverse=True)
    # A direct reading of Eq. 6 gives about twice the paper's 1.2 M in the first row.
    assert 1.5e6 < theta_w[0] < 3.0e6


def test_profile_command_prints_json(capsys):
    import json

    code = main(["profile", "--template", "camvid-s", "--resolution", "128x96", "--counters", "thop", "--format", "json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("template", "resolution", "params_learned", "params_weight_mapper", "generated_weights", "gmacs_thop", "gmacs_fvcore", "gflops"):
        assert key in out
    assert out["resolution"] == [128, 96] and out["gmacs_thop"] > 0


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--grid-size", "0"], "grid_size=0"),
        (["--weight-groups", "4,8"], "weight_groups"),
        (["--weight-groups", "a,b"], "--weight-groups"),
        (["--template", "nope"], "template='nope'"),
        (["--resolution", "big"], "--resolution"),
        (["--counters", "ptflops"], "--counters"),
    ],
)
def test_profile_bad_input_gives_one_line_error(capsys, args, needle):
    code = main(["profile", "--counters", "thop", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_profile_fps_reports_the_paper_protocol_with_provenance(capsys):
    import json

    code = main(["profile", "--resolution", "96x64", "--counters", "thop", "--fps", "--device", "cpu",
                 "--frames", "3", "--repeats", "2", "--format", "json"])
    assert code == 0
    speed = json.loads(capsys.readouterr().out)["speed"]
    assert speed["device"] == "cpu" and speed["fps"] > 0
    assert speed["bn_fused"] is True
    assert speed["provenance"]["torch_version"] and "gpu_name" in speed["provenance"]
