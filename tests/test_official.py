"""The authors' released checkpoints: semantics="release", load_official_checkpoint, import-weights (issue 9)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hsbench.cli import main
from hsbench.errors import WeightsError
from hsbench.models import TEMPLATES, build_model, load_official_checkpoint, load_weights
from hsbench.models.meta_block import release_coordinates
from hsbench.models.official import parse_arch, release_arch, release_key_map

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HSBENCH_SHARED", ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures" / "official"
TOOL = SHARED / "tools" / "official_fixture.py"


def _release_file(fixture: Path, out: Path) -> Path:
    subprocess.run([sys.executable, str(TOOL), str(fixture), str(out)], check=True)
    return out


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_release_fixture_logits_reproduced(template, tmp_path):
    """The release's own logits for a random checkpoint of ``template`` (fp32, CPU, eval) within 1e-4."""
    fixture = FIXTURES / f"{template}.pt"
    if not fixture.is_file() or not TOOL.is_file():
        pytest.skip(f"no release fixture {fixture} (../shared is absent or does not hold this template)")
    f = torch.load(fixture, weights_only=True)
    model = load_official_checkpoint(_release_file(fixture, tmp_path / "release.pth"))
    assert model.config.semantics == "release" and model.template.name == template
    with torch.no_grad():
        logits = model(f["input"])
    diff = (logits - f["logits"]).abs().max().item()
    print(f"{template}: max |diff| = {diff:.3g}")
    assert logits.shape == f["logits"].shape
    assert diff <= 1e-4


# The release's own parameter counts (its models built by its code; issue 9).
RELEASE_PARAMS = {
    "camvid-s": 9.949e6,
    "camvid-l": 9.969e6,
    "cityscapes-m": 10.311e6,
    "cityscapes-s": 10.041e6,
    "voc-l": 39.680e6,
}


@pytest.mark.parametrize("template", sorted(RELEASE_PARAMS))
def test_release_semantics_parameter_counts(template):
    model = build_model(template=template, semantics="release")
    params = sum(p.numel() for p in model.parameters())
    assert abs(params - RELEASE_PARAMS[template]) < 0.0005e6
    if template == "cityscapes-s":  # one weight-mapper layer for the two finest levels
        assert model.unified_mapper is not None and abs(model.weight_mapper_parameters() - 0.202e6) < 0.0005e6
        paper = build_model(template=template)
        assert paper.weight_mapper_parameters() > 0.35e6


def _release_layout(model) -> dict[str, torch.Tensor]:
    """``model``'s tensors under the release's names, plus the release's cached coordinate buffers."""
    own = model.state_dict()
    sd = {r: own[k].clone() for k, r in release_key_map(model).items()}
    for h, w in ((64, 64), (32, 32)):
        sd[f"decoder.coord{h}_{w}"] = release_coordinates(h, w)
    return sd


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_release_layout_round_trip(template, tmp_path):
    """Every template's arch is recognised and every tensor lands where it came from."""
    torch.manual_seed(0)
    model = build_model(template=template, semantics="release")
    path = tmp_path / "r.pth"
    torch.save({"state_dict": _release_layout(model), "arch": release_arch(template), "epoch": 3}, path)
    loaded = load_official_checkpoint(path)
    assert loaded.template.name == template and loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.fixture(scope="module")
def camvid_release(tmp_path_factory):
    torch.manual_seed(1)
    model = build_model(template="camvid-s", semantics="release").eval()
    return model, _release_layout(model)


def test_arch_with_code_is_refused_and_never_executed(tmp_path, camvid_release, capsys, monkeypatch):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": camvid_release[1], "arch": f"__import__('os').system('touch {marker}')"}, path)
    with pytest.raises(WeightsError, match="not one of the release's builders"):
        load_official_checkpoint(path)
    code = main(["import-weights", str(path), "--out", str(tmp_path / "out.pt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize(
    "arch,match",
    [
        ("hyperseg.models.hyperseg_v1_0.hyperseg_efficientnet(open('/etc/passwd'))", "not a literal"),
        ("hyperseg.models.hyperseg_v1_0.hyperseg_efficientnet(**{'levels': 2})", "literal"),
        ("[hyperseg_efficientnet() for _ in range(9)]", "not a call"),
        ("os.system('true')", "'os.system'"),
        ("hyperseg.models.hyperseg_v1_0.hyperseg_efficientnet('efficientnet-b1', levels=4, num_classes=12)", "matches no HyperSeg template"),
    ],
)
def test_bad_arch_refused(arch, match):
    with pytest.raises(WeightsError, match=match):
        from hsbench.models.official import match_template

        match_template(parse_arch(arch))


def test_tensor_mismatch_names_the_key(tmp_path, camvid_release):
    _, sd = camvid_release
    arch = release_arch("camvid-s")
    bad = dict(sd)
    del bad["decoder.level_3.0.bn2.running_var"]
    torch.save({"state_dict": bad, "arch": arch}, tmp_path / "a.pth")
    with pytest.raises(WeightsError, match=r"lacks 'decoder\.level_3\.0\.bn2\.running_var'"):
        load_official_checkpoint(tmp_path / "a.pth")
    bad = dict(sd, **{"decoder.level_0.0.0.signal2weights.weight": torch.zeros(5248, 8, 1, 1)})
    torch.save({"state_dict": bad, "arch": arch}, tmp_path / "b.pth")
    with pytest.raises(WeightsError, match=r"signal2weights.weight' has shape \(5248, 8, 1, 1\)"):
        load_official_checkpoint(tmp_path / "b.pth")
    bad = dict(sd, **{"decoder.extra.weight": torch.zeros(3)})
    torch.save({"state_dict": bad, "arch": arch}, tmp_path / "c.pth")
    with pytest.raises(WeightsError, match=r"does not use: 'decoder\.extra\.weight'"):
        load_official_checkpoint(tmp_path / "c.pth")
    bad = dict(sd, **{"decoder.coord32_32": release_coordinates(32, 32).flip(1)})
    torch.save({"state_dict": bad, "arch": arch}, tmp_path / "d.pth")
    with pytest.raises(WeightsError, match="coord32_32"):
        load_official_checkpoint(tmp_path / "d.pth")


def test_import_weights_writes_an_equivalent_hsbench_file(tmp_path, camvid_release, capsys):
    model, sd = camvid_release
    src = tmp_path / "camvid_efficientnet_b1_hyperseg-s.pth"
    torch.save({"state_dict": sd, "arch": release_arch("camvid-s")}, src)
    out = tmp_path / "w" / "camvid-s.pt"
    assert main(["import-weights", str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "camvid-s" in printed and "release" in printed and "tf_efficientnet_b1" in printed and "12" in printed
    again = load_weights(out)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
    assert load_weights(src).config == again.config


def test_release_semantics_differs_from_paper_and_fuses(camvid_release):
    """A checkpoint's logits depend on the semantics knob, and BN fusion keeps the release rule's logits."""
    model, _ = camvid_release
    x = torch.randn(1, 3, 128, 192, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = model(x)
        fused = model.fuse_bn()(x)
    torch.testing.assert_close(fused, y, rtol=1e-4, atol=1e-4)
    assert model.void_logit and y.shape[1] == 12


def test_profile_semantics_release_cityscapes_s(capsys):
    """hsbench profile --template cityscapes-s --semantics release: 10.04 M params, |theta^w| 0.20 M; the halo is counted."""
    import json

    args = ["profile", "--template", "cityscapes-s", "--counters", "thop", "--format", "json", "--resolution", "256x128"]
    assert main([*args, "--semantics", "release"]) == 0
    release = json.loads(capsys.readouterr().out)
    assert round(release["params_learned"] / 1e6, 2) == 10.04
    assert round(release["params_weight_mapper"] / 1e6, 2) == 0.20
    assert release["config"]["semantics"] == "release"
    assert main(args) == 0
    paper = json.loads(capsys.readouterr().out)
    # pw1 on each patch's halo'd window costs more than on the patch alone; the mapper is smaller
    assert release["gmacs_dpwconv"] > paper["gmacs_dpwconv"]
    assert release["gmacs_weight_mapper"] < paper["gmacs_weight_mapper"]
