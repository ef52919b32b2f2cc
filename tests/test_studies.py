"""Study files: parsing, resolution, variant ids, line numbers, and the shipped studies/*.toml."""

from __future__ import annotations

import glob
import textwrap
from pathlib import Path

import pytest

from hsbench.config import Variant
from hsbench.engine.config import TABLE1
from hsbench.studies import KeyLines, StudyError, format_path, load_study, parse_study

REPO = Path(__file__).resolve().parents[1]
STUDIES = sorted(glob.glob(str(REPO / "studies" / "*.toml")))
DATA_ROOT = REPO.parent / "shared" / "data"

BASE = """
[study]
name = "t"

[base.model]
template = "camvid-s"
backbone = "tf_efficientnet_lite0"

[base.data]
dataset = "synthetic"
synthetic_size = [64, 64]

[base.train]
iterations = 2
batch_size = 2
"""


def parse(text: str, **kw) -> object:
    return parse_study(textwrap.dedent(text), file="s.toml", **kw)


def test_axes_times_rows_and_names():
    s = parse(BASE + """
[axes]
"model.grid_size" = [1, 2]
model.positional_encoding = [false, true]

[[variants]]
name = "a"

[[variants]]
name = "b"
backbone = "resnet18"
""")
    assert len(s.variants) == 8
    assert s.variants[0].name == "a,grid_size=1,positional_encoding=false"
    assert s.variants[-1].name == "b,grid_size=2,positional_encoding=true"
    assert all(v.model.backbone == "resnet18" for v in s.variants[4:])
    assert len({v.variant_id() for v in s.variants}) == 8
    assert s.seeds == (0,)
    assert len(s.jobs()) == 8


def test_static_variants_differing_only_in_grid_are_duplicates():
    # "w/o DPWConv" has no weight grid: resolve() normalises grid_size, so these are one network
    with pytest.raises(StudyError, match="resolve to the same config"):
        parse(BASE + """
[axes]
"model.grid_size" = [1, 2]

[[variants]]
dynamic = false
""")


def test_spellings_give_the_same_variant():
    dotted = parse(BASE + "\n[[variants]]\nmodel.grid_size = 2\n").variants[0]
    quoted = parse(BASE + '\n[[variants]]\n"model.grid_size" = 2\n').variants[0]
    bare = parse(BASE + "\n[[variants]]\ngrid_size = 2\n").variants[0]
    table = parse(BASE + "\n[[variants]]\n[variants.model]\ngrid_size = 2\n").variants[0]
    assert dotted.variant_id() == quoted.variant_id() == bare.variant_id() == table.variant_id()
    assert dotted.model.grid_size == 2


def test_variant_id_is_hash_of_resolved_config():
    a = parse(BASE).variants[0]
    # writing out a default does not change the id (the config is resolved)
    b = parse(BASE.replace('backbone = "tf_efficientnet_lite0"',
                           'backbone = "tf_efficientnet_lite0"\ngrid_size = "native"')).variants[0]
    assert a.variant_id() == b.variant_id()
    assert len(a.variant_id()) == 16 and int(a.variant_id(), 16) >= 0
    # execution-only fields are not hashed; knobs are
    assert a.with_data_root("/elsewhere").variant_id() == a.variant_id()
    assert a.for_seed(7).variant_id() == a.variant_id()
    c = parse(BASE + "\n[[variants]]\nmodel.grid_size = 2\n").variants[0]
    assert c.variant_id() != a.variant_id()
    assert "root" not in a.config_dict()["data"] and "seed" not in a.config_dict()["train"]
    # resolution filled in: classes from the dataset, backbone/groups from the template
    assert a.model.num_classes == 4 and a.model.weight_groups is not None
    assert a.resolution == (64, 64)


def test_defaults_are_table1_for_real_datasets(tmp_path):
    s = parse("""
[study]
name = "c"
[base.model]
template = "camvid-s"
[base.data]
dataset = "camvid"
eval_resolution = "480x360"
""", check_data=False)
    v = s.variants[0]
    assert (v.train.iterations, v.train.batch_size, v.train.lr0, v.train.poly_power) == (15000, 16, 1e-3, 2.0)
    assert v.speed.resolution == (480, 360)  # from data.eval_resolution
    assert v.data.eval_resolution == (480, 360)


def test_seeds_top_level_or_study():
    s = parse("seeds = [0, 3]\n" + BASE)
    assert s.seeds == (0, 3) and len(s.jobs()) == 2
    s = parse(BASE.replace('name = "t"', 'name = "t"\nseeds = [5]'))
    assert s.seeds == (5,)


def test_table_is_normalised():
    s = parse(BASE.replace('name = "t"', 'name = "t"\ntable = "s3"'))
    assert s.table == "S3"
    s = parse(BASE.replace('name = "t"', "name = \"t\"\ntable = 4"))
    assert s.table == "4"


@pytest.mark.parametrize(
    "extra, fragment, at",
    [
        ("\n[[variants]]\nmodel.grid_sise = 2\n", "did you mean 'grid_size'", "model.grid_sise"),
        ("\n[axes]\n\"model.grid_size\" = 4\n", "an axis must be a list", '"model.grid_size"'),
        ("\n[[variants]]\nname = \"x\"\n[[variants]]\nname = \"y\"\nmodel.grid_size = 99\n", "grid_size=99",
         "model.grid_size = 99"),
        ("\n[axes]\ngrid_size = [1, 2]\n[[variants]]\ngrid_size = 1\n", "also an axis", "grid_size = 1"),
        ("\n[[variants]]\nname = \"same\"\n[[variants]]\nname = \"same\"\ngrid_size = 2\n", "two variants are named",
         None),
        ("\n[[variants]]\nname = \"a\"\n[[variants]]\nname = \"b\"\n", "resolve to the same config", None),
        ("\n[[variants]]\nbatch_size = 4\n", "several sections", "batch_size = 4"),
    ],
)
def test_errors_name_key_and_line(extra, fragment, at):
    text = BASE + extra
    with pytest.raises(StudyError) as info:
        parse(text)
    err = info.value
    assert fragment in str(err)
    assert "\n" not in str(err)
    assert str(err).startswith("s.toml")
    if at is not None:
        lines = text.splitlines()
        expected = max(i for i, ln in enumerate(lines, start=1) if ln.startswith(at))
        assert err.line == expected, str(err)


def test_syntax_error_has_line():
    with pytest.raises(StudyError) as info:
        parse("[study]\nname = \"x\"\n\n[base.model\n")
    assert info.value.line == 4 and "invalid TOML" in str(info.value)


def test_wrong_type_message():
    with pytest.raises(StudyError, match=r"train\.iterations must be an integer, got a string \"many\""):
        parse(BASE.replace("iterations = 2", 'iterations = "many"'))
    with pytest.raises(StudyError, match=r'must be an integer or "native"'):
        parse(BASE + '\n[[variants]]\ngrid_size = "big"\n')


def test_grid_larger_than_feature_map():
    with pytest.raises(StudyError, match=r"grid_size=4 needs a stride-32 feature map of at least 4x4"):
        parse(BASE + "\n[[variants]]\ngrid_size = 4\n")


def test_keylines_paths():
    text = textwrap.dedent("""\
        [study]
        name = "x"
        [axes]
        "model.grid_size" = [1,
          2]
        [[variants]]
        model.grid_size = 1
        [[variants]]
        [variants.model]
        grid_size = 2
        """)
    kl = KeyLines(text)
    assert kl.find(("study", "name")) == 2
    assert kl.find(("axes", "model.grid_size")) == 4
    assert kl.find(("axes", "model.grid_size", 1)) == 4
    assert kl.find(("variants", 0, "model", "grid_size")) == 7
    assert kl.find(("variants", 1, "model", "grid_size")) == 10
    assert format_path(("variants", 1, "model", "grid_size")) == "variants[1].model.grid_size"
    assert format_path(("axes", "model.grid_size")) == 'axes."model.grid_size"'


def test_missing_data_folder_is_reported(tmp_path):
    text = BASE.replace('dataset = "synthetic"\nsynthetic_size = [64, 64]',
                        'dataset = "camvid"\neval_resolution = [480, 360]')
    with pytest.raises(StudyError, match=r"camvid") as info:
        parse(text, data_root=str(tmp_path / "nowhere"))
    assert "--data-root" in str(info.value)


# --------------------------------------------------------------------------- shipped studies


#: Smoke-budget studies beyond the quickstart ones that go past the paper's tables (their rows match no paper row).
#: release.toml evaluates the authors' checkpoints without training (its rows do match paper rows,
#: tests/test_eval_only.py); semantics.toml compares paper and release semantics at the quickstart budget.
NON_PAPER = {"fusion.toml", "release.toml", "semantics.toml"}


def _paper_studies():
    """Studies that reproduce a paper table at its Table 1 budget (smoke and beyond-the-paper studies excluded)."""
    return [p for p in STUDIES if not Path(p).name.startswith("quickstart") and Path(p).name not in NON_PAPER]


def test_every_paper_table_has_its_study():
    names = {Path(p).name for p in STUDIES}
    assert {"quickstart.toml", "voc.toml", "cityscapes.toml", "camvid.toml", "backbones.toml",
            "dpwconv.toml", "grid_size.toml", "groups.toml"} <= names


@pytest.mark.parametrize("path", _paper_studies(), ids=lambda p: Path(p).name)
def test_paper_study_matches_its_table_and_budget(path):
    from hsbench.reporting.measured import find_paper_row, variant_knobs
    from hsbench.reporting.paper import get_table

    s = load_study(path, check_data=False)
    assert s.table is not None
    table = get_table(s.table)
    assert f"studies/{Path(path).name}" in table.studies
    rows = set()
    for v in s.variants:
        row = find_paper_row(table, variant_knobs(v.config_dict(), v.resolution_text))
        assert row is not None, f"{v.name} matches no row of Table {s.table}"
        rows.add(row.label)
        # Table 1 budget: t counts images, iterations = t / batch
        t1 = TABLE1[v.data.dataset]
        assert v.train.batch_size == t1["batch_size"]
        assert v.train.iterations * v.train.batch_size == t1["t_images"]
        assert (v.train.lr0, v.train.poly_power, v.train.loss) == (t1["lr0"], t1["poly_power"], t1["loss"])
        assert v.model.pretrained
        # each study states its resolution; CamVid runs at the SegNet copy's 480x360
        assert v.data.eval_resolution is not None
        if v.data.dataset == "camvid":
            assert v.resolution == (480, 360) == tuple(v.data.eval_resolution)
    assert len(rows) == len(s.variants)  # one paper row per variant


def test_table_s2_and_s3_rows():
    s2 = load_study(REPO / "studies" / "grid_size.toml", check_data=False)
    assert [(v.model.grid_size, v.model.positional_encoding) for v in s2.variants] == [
        (1, False), (4, False), (8, False), (16, False), (16, True)]
    s3 = load_study(REPO / "studies" / "groups.toml", check_data=False)
    fine_to_coarse = [tuple(reversed(v.model.weight_groups)) for v in s3.variants]
    assert fine_to_coarse == [(1, 2, 4, 4, 8), (2, 4, 8, 8, 16), (4, 8, 16, 16, 32),
                              (8, 16, 32, 32, 64), (16, 32, 64, 64, 128)]
    assert all(v.resolution == (1536, 768) and v.model.template == "cityscapes-m" for v in s3.variants)


def test_dpwconv_shares_runs_with_camvid():
    camvid = {v.variant_id() for v in load_study(REPO / "studies" / "camvid.toml", check_data=False).variants}
    dpw = load_study(REPO / "studies" / "dpwconv.toml", check_data=False).variants
    assert {v.variant_id() for v in dpw if v.model.dynamic} == camvid
    assert sum(not v.model.dynamic for v in dpw) == 2


@pytest.mark.skipif(not (DATA_ROOT / "camvid").is_dir(), reason="no CamVid data root")
def test_quickstart_validates_with_real_data():
    s = load_study(REPO / "studies" / "quickstart.toml", data_root=str(DATA_ROOT))
    assert s.table == "4" and len(s.variants) == 2
    assert {v.model.grid_size for v in s.variants} == {"native", 1}
    for v in s.variants:
        assert v.model.backbone == "tf_efficientnet_lite1" and v.model.pretrained
        assert v.resolution == (480, 360) and v.data.dataset == "camvid"
        assert isinstance(v, Variant)


def test_fusion_study_has_one_variant_per_op_and_shares_concat_with_quickstart():
    s = load_study(REPO / "studies" / "fusion.toml", check_data=False)
    assert [v.model.fusion for v in s.variants] == [
        "concat", "param_sum", "concat_reduce", "pred_op", "bilinear_sampling", "conv3d", "dense_attention"]
    assert s.seeds == (0, 1, 2) and s.table == "4"
    assert len({v.variant_id() for v in s.variants}) == 7
    quick = load_study(REPO / "studies" / "quickstart.toml", check_data=False)
    native = next(v for v in quick.variants if v.model.grid_size == "native")
    assert s.variants[0].variant_id() == native.variant_id()
    with pytest.raises(StudyError, match=r"fusion='sum' is not supported") as info:
        parse(BASE + '\n[axes]\n"model.fusion" = ["concat", "sum"]\n')
    assert "model.fusion" in str(info.value)
