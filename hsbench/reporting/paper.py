"""The paper's own numbers: THE one place they live, each with its table and row.

Source texts: ``shared/paper/hyperseg_paper.txt`` (Tables 2, 3, 4) and
``shared/paper/hyperseg_supplement.txt`` (Tables S2, S3) of Nirkin, Wolf,
Hassner, "HyperSeg: Patch-wise Hypernetwork for Real-time Semantic
Segmentation", CVPR 2021. Numbers are copied exactly as printed; ``None``
stands for the paper's '-' (not reported).

Rows are numbered from 1 down the body of each printed table, header lines not
counted, so ``Table 4, row 17`` is "HyperSeg-S, EfficientNet-B1, 78.4 mIoU,
38.0 FPS, 9.9 M params".

Units and caveats carried by every column (:class:`Column`):

* mIoU: percent.
* The paper's "GFLOPs" column is what pytorch-OpCounter (thop) counts, which
  is multiply-accumulates: we name it **GMACs (thop)** (paper Sec. 4).
* FPS: frames per second, batch 1, timed from upload to the GPU to prediction
  download (paper Sec. 4). HyperSeg's FPS and the '*' cells were measured by
  the authors on an NVIDIA GeForce GTX 1080 Ti; other methods' FPS are as
  their own papers report them.
* Params: millions of trainable parameters; ``theta_w``: millions of weight
  mapper parameters (supplement Table S3).
* '*' flags a cell "computed by us [the paper's authors] using open source";
  '¹' flags Table 3's BiSeNetV2-L val mIoU, "reported using horizontal
  mirroring and multi-scale".

Each HyperSeg row has a ``match``: the resolved model knobs
(:class:`hsbench.models.config.ModelConfig` names, backbone resolved) a
measured variant must have to be compared with it; prior methods have none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: The GPU of the paper's own FPS figures (paper Sec. 4).
PAPER_GPU = "GTX 1080 Ti"

#: Flag meanings, as the paper's captions give them.
FLAG_NOTES = {
    "*": "computed by the paper's authors using open source (Tables 2, 3, 4 captions)",
    "¹": "reported using horizontal mirroring and multi-scale (Table 3 caption)",
}


@dataclass(frozen=True)
class Column:
    """One column of a paper table.

    ``key`` is hsbench's name (shared by the measured rows), ``header`` the
    paper's heading, ``unit`` what the numbers are, ``numeric`` whether it
    holds numbers (False: labels like the resolution or the groups).
    """

    key: str
    header: str
    unit: str
    numeric: bool = True

    @property
    def title(self) -> str:
        """Header as hsbench prints it: paper heading and unit."""
        return self.header if not self.unit else f"{self.header} [{self.unit}]"


@dataclass(frozen=True)
class PaperValue:
    """One number of the paper with its provenance (table, row, column, unit, flag)."""

    value: float | str | None
    unit: str
    table: str
    row: int
    row_label: str
    column: str
    flag: str | None = None

    def cite(self) -> str:
        flag = f" (marked '{self.flag}': {FLAG_NOTES[self.flag]})" if self.flag else ""
        return f"Table {self.table}, row {self.row} ({self.row_label}), {self.column}{flag}"


@dataclass(frozen=True)
class PaperRow:
    """One printed row: where it is, what it says, and which variants it compares to.

    Attributes:
        table: ``"2"``, ``"3"``, ``"4"``, ``"S2"``, ``"S3"``.
        row: 1-based position in the table body.
        label: short row label, e.g. ``"HyperSeg-S, EfficientNet-B1"``.
        method: method name as printed, without its reference number.
        ref: the paper's reference number, e.g. ``"[56]"``, or ``""``.
        backbone: backbone as printed; None where the paper prints '-'.
        section: Table 4's ``"top"`` (previous methods), ``"middle"``
            (ablation) or ``"bottom"`` (full method); None elsewhere.
        values: column key -> value as printed (None = '-').
        flags: column key -> '*' or '¹'.
        match: knobs a measured variant must have to compare with this row
            (keys: template, backbone, dynamic, grid, positional_encoding,
            groups); None for other methods.
        resolution: the row's input resolution "WxH" where the paper states
            it (Table 3 prints it; HyperSeg rows elsewhere take it from
            supplement Table S1 and Sec. C); None if unknown.
    """

    table: str
    row: int
    label: str
    method: str
    ref: str
    backbone: str | None
    values: Mapping[str, Any]
    flags: Mapping[str, str] = field(default_factory=dict)
    section: str | None = None
    match: Mapping[str, Any] | None = None
    resolution: str | None = None

    @property
    def is_hyperseg(self) -> bool:
        return self.method.startswith("HyperSeg")

    def cite(self) -> str:
        """``"Table 4, row 17 (HyperSeg-S, EfficientNet-B1)"``."""
        return f"Table {self.table}, row {self.row} ({self.label})"

    def cell(self, key: str) -> PaperValue:
        """The value of column ``key`` with its unit and citation."""
        table = TABLES[self.table]
        col = table.column(key)
        return PaperValue(
            value=self.values.get(key),
            unit=col.unit,
            table=self.table,
            row=self.row,
            row_label=self.label,
            column=col.header,
            flag=self.flags.get(key),
        )


@dataclass(frozen=True)
class PaperTable:
    """A table of the paper: caption, columns, rows, and the studies that reproduce it."""

    id: str
    document: str
    caption: str
    dataset: str
    split: str
    columns: tuple[Column, ...]
    rows: tuple[PaperRow, ...]
    studies: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def column(self, key: str) -> Column:
        for c in self.columns:
            if c.key == key:
                return c
        raise KeyError(f"Table {self.id} has no column {key!r}")

    def row(self, n: int) -> PaperRow:
        """Row ``n`` (1-based, as cited)."""
        return self.rows[n - 1]

    @property
    def hyperseg_rows(self) -> tuple[PaperRow, ...]:
        return tuple(r for r in self.rows if r.match is not None)


# --------------------------------------------------------------------------- columns

_MIOU = Column("miou", "mIoU", "%")
_GMACS = Column("gmacs", "GFLOPs", "GMACs, thop")
_PARAMS = Column("params", "Params", "M")
_FPS = Column("fps", "FPS", f"frames/s, {PAPER_GPU}")


def _rows(table: str, specs: list[tuple], keys: tuple[str, ...], **common: Any) -> tuple[PaperRow, ...]:
    """Build rows from (label, method, ref, backbone, values..., extras-dict) tuples."""
    out = []
    for i, spec in enumerate(specs, start=1):
        label, method, ref, backbone, *vals, extra = spec
        if len(vals) != len(keys):
            raise AssertionError(f"Table {table} row {i}: {len(vals)} values for {keys}")
        values: dict[str, Any] = {}
        flags: dict[str, str] = {}
        for k, v in zip(keys, vals):
            if isinstance(v, tuple):  # (value, flag)
                v, flags[k] = v
            values[k] = v
        kw = {**common, **extra}
        out.append(
            PaperRow(
                table=table,
                row=i,
                label=label,
                method=method,
                ref=ref,
                backbone=backbone,
                values=MappingProxyType(values),
                flags=MappingProxyType(flags),
                section=kw.get("section"),
                match=MappingProxyType(kw["match"]) if kw.get("match") else None,
                # Table 3 prints each row's resolution; elsewhere it comes from extras.
                resolution=kw.get("resolution", values.get("resolution")),
            )
        )
    return tuple(out)


def _hs(template: str, backbone: str, *, dynamic: bool = True, grid: Any = "native",
        pe: bool = True) -> dict[str, Any]:
    m: dict[str, Any] = {"template": template, "backbone": backbone, "dynamic": dynamic}
    if dynamic:
        m["grid"] = grid
        m["positional_encoding"] = pe
    return m


# --------------------------------------------------------------------------- Table 2
# Paper Table 2: PASCAL VOC 2012 val. Columns: Method, Backbone, mIoU, GFLOPs, Params.
_T2_KEYS = ("miou", "gmacs", "params")
TABLE_2 = PaperTable(
    id="2",
    document="paper",
    caption="Results on the PASCAL VOC 2012, val. set",
    dataset="voc",
    split="val",
    columns=(_MIOU, _GMACS, _PARAMS),
    rows=_rows("2", [
        ("Auto-DeepLab-L", "Auto-DeepLab-L", "[27]", None, 73.6, (79.3, "*"), 44.42, {}),
        ("DeepLabV3, ResNet-101", "DeepLabV3", "[5]", "ResNet-101", 78.5, (249.2, "*"), (58.6, "*"), {}),
        ("DFN, ResNet-101", "DFN", "[53]", "ResNet-101", 79.7, None, None, {}),
        ("SDN, DenseNet-161", "SDN", "[12]", "DenseNet-161", 79.9, None, 238.5, {}),
        ("DeepLabV3+, Xception-71", "DeepLabV3+", "[6]", "Xception-71", 80.0, 177, 43.48, {}),
        ("HyperSeg-L, EfficientNet-B3", "HyperSeg-L", "", "EfficientNet-B3", 80.6, 8.21, 39.6,
         {"match": _hs("voc-l", "efficientnet_b3", grid=16), "resolution": "512x512"}),
    ], _T2_KEYS),
    studies=("studies/voc.toml",),
)

# --------------------------------------------------------------------------- Table 3
# Paper Table 3: Cityscapes. Columns: Method, Backbone, Resolution, mIoU (%) val,
# test, FPS, GFLOPs, Params (M).
_T3_KEYS = ("resolution", "miou_val", "miou_test", "fps", "gmacs", "params")
TABLE_3 = PaperTable(
    id="3",
    document="paper",
    caption="Real-time semantic segmentation results on Cityscapes",
    dataset="cityscapes",
    split="val/test",
    columns=(
        Column("resolution", "Resolution", "WxH", numeric=False),
        Column("miou_val", "mIoU val", "%"),
        Column("miou_test", "mIoU test", "%"),
        _FPS,
        _GMACS,
        _PARAMS,
    ),
    rows=_rows("3", [
        ("ERFNet", "ERFNet", "[37]", None, "1024x512", None, 69.7, 41.7, (21.7, "*"), (2.0, "*"), {}),
        ("ESPNet", "ESPNet", "[30]", "ESPNet", "1024x512", None, 60.3, 112.9, None, None, {}),
        ("ESPNetV2", "ESPNetV2", "[30]", "ESPNetV2", "1024x512", 66.4, 66.2, (61.9, "*"), 2.7, (1.3, "*"), {}),
        ("ICNet, PSPNet50", "ICNet", "[56]", "PSPNet50", "2048x1024", None, 69.5, 30.3, None, None, {}),
        ("GUNet, DRN-D-22", "GUNet", "[29]", "DRN-D-22", "1024x512", 69.6, 70.4, 33.3, None, None, {}),
        ("DFANet A', Xception A", "DFANet A'", "[25]", "Xception A", "1024x512", None, 70.3, 160.0, 1.7, 7.8, {}),
        ("DFANet A, Xception A", "DFANet A", "[25]", "Xception A", "1024x1024", None, 71.3, 100.0, 3.4, 7.8, {}),
        ("SwiftNetRN-18, ResNet18", "SwiftNetRN-18", "[32]", "ResNet18", "2048x1024", 75.4, 75.5, 39.9, 104.0, 11.8, {}),
        ("BiSeNetV1, ResNet18", "BiSeNetV1", "[52]", "ResNet18", "1536x768", 74.8, 74.7, 65.5, (75.2, "*"), 49.0, {}),
        ("BiSeNetV2", "BiSeNetV2", "[51]", None, "1024x512", 73.4, 72.6, 156.0, 21.2, None, {}),
        ("BiSeNetV2-L", "BiSeNetV2-L", "[51]", None, "1024x512", (75.8, "¹"), 75.3, 47.3, 118.5, None, {}),
        ("TD4-Bise18, BiseNet18", "TD4-Bise18", "[22]", "BiseNet18", "2048x1024", 75.0, 74.9, 47.6, None, None, {}),
        ("HyperSeg-M, EfficientNet-B1", "HyperSeg-M", "", "EfficientNet-B1", "1024x512", 76.2, 75.8, 36.9, 7.5, 10.1,
         {"match": _hs("cityscapes-m", "efficientnet_b1")}),
        ("HyperSeg-S, EfficientNet-B1", "HyperSeg-S", "", "EfficientNet-B1", "1536x768", 78.2, 78.1, 16.1, 17.0, 10.2,
         {"match": _hs("cityscapes-s", "efficientnet_b1")}),
    ], _T3_KEYS),
    studies=("studies/cityscapes.toml",),
    notes=("FPS of other methods as their papers report them; HyperSeg rows on a "
           f"{PAPER_GPU}.",),
)

# --------------------------------------------------------------------------- Table 4
# Paper Table 4: CamVid test set, no outside data. Columns: Method, Backbone,
# mIoU (%), FPS, Params (M). Rows 1-8 top (previous methods), 9-16 middle
# (ablation), 17-18 bottom (full method). HyperSeg-S runs at 768x576 and
# HyperSeg-L at 1024x768 (paper Sec. 4.3, supplement Table S1).
_T4_KEYS = ("miou", "fps", "params")
_S, _L = {"resolution": "768x576"}, {"resolution": "1024x768"}
TABLE_4 = PaperTable(
    id="4",
    document="paper",
    caption="Real-time semantic segmentation results on CamVid (test set; no outside data)",
    dataset="camvid",
    split="test",
    columns=(_MIOU, _FPS, _PARAMS),
    rows=_rows("4", [
        ("ICNet, PSPNet50", "ICNet", "[56]", "PSPNet50", 67.1, 27.8, None, {"section": "top"}),
        ("DFANet A, Xception A", "DFANet A", "[25]", "Xception A", 64.7, 120.0, 7.8, {"section": "top"}),
        ("SwiftNetRN-18, ResNet18", "SwiftNetRN-18", "[32]", "ResNet18", 72.6, (85.8, "*"), 11.8, {"section": "top"}),
        ("BiSeNetV1, ResNet18", "BiSeNetV1", "[52]", "ResNet18", 68.7, 116.2, 49.0, {"section": "top"}),
        ("BiSeNetV2", "BiSeNetV2", "[51]", None, 72.4, 124.5, None, {"section": "top"}),
        ("BiSeNetV2-L", "BiSeNetV2-L", "[51]", None, 73.2, 32.7, None, {"section": "top"}),
        ("TD4-PSP18, PSPNet18", "TD4-PSP18", "[22]", "PSPNet18", 72.6, 25.0, None, {"section": "top"}),
        ("TD2-PSP50, PSPNet50", "TD2-PSP50", "[22]", "PSPNet50", 76.0, 11.1, None, {"section": "top"}),
        ("HyperSeg-S, ResNet18", "HyperSeg-S", "", "ResNet18", 77.0, 32.5, 16.2,
         {"section": "middle", "match": _hs("camvid-s", "resnet18"), **_S}),
        ("HyperSeg-L, ResNet18", "HyperSeg-L", "", "ResNet18", 77.1, 11.5, 16.7,
         {"section": "middle", "match": _hs("camvid-l", "resnet18"), **_L}),
        ("HyperSeg-S, PSPNet18", "HyperSeg-S", "", "PSPNet18", 76.6, 31.3, 17.2,
         {"section": "middle", "match": _hs("camvid-s", "pspnet18"), **_S}),
        ("HyperSeg-L, PSPNet18", "HyperSeg-L", "", "PSPNet18", 77.5, 11.4, 17.6,
         {"section": "middle", "match": _hs("camvid-l", "pspnet18"), **_L}),
        ("HyperSeg-S, PSPNet50", "HyperSeg-S", "", "PSPNet50", 77.1, 9.3, 57.6,
         {"section": "middle", "match": _hs("camvid-s", "pspnet50"), **_S}),
        ("HyperSeg-L, PSPNet50", "HyperSeg-L", "", "PSPNet50", 77.9, 2.2, 67.9,
         {"section": "middle", "match": _hs("camvid-l", "pspnet50"), **_L}),
        ("HyperSeg-S w/o DPWConv, EfficientNet-B1", "HyperSeg-S w/o DPWConv", "", "EfficientNet-B1",
         77.3, 45.5, 9.9,
         {"section": "middle", "match": _hs("camvid-s", "efficientnet_b1", dynamic=False), **_S}),
        ("HyperSeg-L w/o DPWConv, EfficientNet-B1", "HyperSeg-L w/o DPWConv", "", "EfficientNet-B1",
         78.4, 21.6, 10.3,
         {"section": "middle", "match": _hs("camvid-l", "efficientnet_b1", dynamic=False), **_L}),
        ("HyperSeg-S, EfficientNet-B1", "HyperSeg-S", "", "EfficientNet-B1", 78.4, 38.0, 9.9,
         {"section": "bottom", "match": _hs("camvid-s", "efficientnet_b1"), **_S}),
        ("HyperSeg-L, EfficientNet-B1", "HyperSeg-L", "", "EfficientNet-B1", 79.1, 16.6, 10.2,
         {"section": "bottom", "match": _hs("camvid-l", "efficientnet_b1"), **_L}),
    ], _T4_KEYS),
    studies=("studies/camvid.toml", "studies/backbones.toml", "studies/dpwconv.toml"),
    notes=("FPS of other methods as their papers report them; HyperSeg rows on a "
           f"{PAPER_GPU}.",),
)

# --------------------------------------------------------------------------- Table S2
# Supplement Table S2: PASCAL VOC 2012 val, HyperSeg-L (VOC) at 512x512 (Table S1),
# grid size and positional encoding. Columns: Grid size, Positional encoding,
# mIoU (%), FPS.
_S2_KEYS = ("grid", "positional_encoding", "miou", "fps")


def _s2(grid: int, pe: bool) -> dict[str, Any]:
    return {"match": _hs("voc-l", "efficientnet_b3", grid=grid, pe=pe), "resolution": "512x512"}


TABLE_S2 = PaperTable(
    id="S2",
    document="supplement",
    caption="Ablation study on PASCAL VOC 2012, val. set: grid size and positional encoding",
    dataset="voc",
    split="val",
    columns=(
        Column("grid", "Grid size", "", numeric=False),
        Column("positional_encoding", "Positional encoding", "", numeric=False),
        _MIOU,
        _FPS,
    ),
    rows=_rows("S2", [
        ("grid 1x1, no PE", "HyperSeg-L", "", "EfficientNet-B3", "1x1", False, 77.56, 46.8, _s2(1, False)),
        ("grid 4x4, no PE", "HyperSeg-L", "", "EfficientNet-B3", "4x4", False, 78.92, 22.4, _s2(4, False)),
        ("grid 8x8, no PE", "HyperSeg-L", "", "EfficientNet-B3", "8x8", False, 80.23, 26.9, _s2(8, False)),
        ("grid 16x16, no PE", "HyperSeg-L", "", "EfficientNet-B3", "16x16", False, 80.33, 28.2, _s2(16, False)),
        ("grid 16x16, PE", "HyperSeg-L", "", "EfficientNet-B3", "16x16", True, 80.61, 26.8, _s2(16, True)),
    ], _S2_KEYS),
    studies=("studies/grid_size.toml",),
    notes=("The supplement does not name the GPU of Table S2; hsbench assumes the "
           f"paper's protocol (Sec. 4, {PAPER_GPU}).",),
)

# --------------------------------------------------------------------------- Table S3
# Supplement Table S3: Cityscapes val, HyperSeg-M at 1536x768 (supplement Sec. C).
# Columns: Groups (g_w1..g_w5, fine to coarse), mIoU (%), GFLOPs, |theta^w| (M),
# Params (M).
_S3_KEYS = ("groups", "miou", "gmacs", "theta_w", "params")


def _s3(*groups: int) -> dict[str, Any]:
    return {
        "match": {"template": "cityscapes-m", "backbone": "efficientnet_b1", "dynamic": True,
                  "groups": groups},
        "resolution": "1536x768",
    }


TABLE_S3 = PaperTable(
    id="S3",
    document="supplement",
    caption="Ablation study on Cityscapes, val. set: weight mapper groups of HyperSeg-M",
    dataset="cityscapes",
    split="val",
    columns=(
        Column("groups", "Groups g_w1..g_w5", "", numeric=False),
        _MIOU,
        _GMACS,
        Column("theta_w", "|theta^w|", "M"),
        _PARAMS,
    ),
    rows=_rows("S3", [
        ("groups 1, 2, 4, 4, 8", "HyperSeg-M", "", "EfficientNet-B1", "1, 2, 4, 4, 8", 77.1, 18.0, 1.2, 11.1,
         _s3(1, 2, 4, 4, 8)),
        ("groups 2, 4, 8, 8, 16", "HyperSeg-M", "", "EfficientNet-B1", "2, 4, 8, 8, 16", 77.5, 17.3, 0.6, 10.4,
         _s3(2, 4, 8, 8, 16)),
        ("groups 4, 8, 16, 16, 32", "HyperSeg-M", "", "EfficientNet-B1", "4, 8, 16, 16, 32", 78.0, 16.9, 0.3, 10.1,
         _s3(4, 8, 16, 16, 32)),
        ("groups 8, 16, 32, 32, 64", "HyperSeg-M", "", "EfficientNet-B1", "8, 16, 32, 32, 64", 77.8, 16.7, 0.1, 10.0,
         _s3(8, 16, 32, 32, 64)),
        ("groups 16, 32, 64, 64, 128", "HyperSeg-M", "", "EfficientNet-B1", "16, 32, 64, 64, 128", 77.2, 16.6, 0.1,
         9.9, _s3(16, 32, 64, 64, 128)),
    ], _S3_KEYS),
    studies=("studies/groups.toml",),
    notes=("Groups are listed fine to coarse (g_w1..g_w5); hsbench's weight_groups "
           "are coarse to fine, so a variant matches when its reversed weight_groups "
           "equal the row's groups.",),
)

#: Every table by id.
TABLES: Mapping[str, PaperTable] = MappingProxyType(
    {t.id: t for t in (TABLE_2, TABLE_3, TABLE_4, TABLE_S2, TABLE_S3)}
)
#: Table ids accepted by ``hsbench report --table``.
TABLE_IDS = tuple(TABLES)

#: Backbone as printed in the paper -> hsbench backbone name.
BACKBONE_NAMES = {
    "EfficientNet-B1": "efficientnet_b1",
    "EfficientNet-B3": "efficientnet_b3",
    "ResNet18": "resnet18",
    "PSPNet18": "pspnet18",
    "PSPNet50": "pspnet50",
}


def normalize_table_id(value: Any) -> str:
    """``"Table 4"``, ``4``, ``"4"`` -> ``"4"``; ``"s3"``, ``"Table S3"`` -> ``"S3"`` (not checked; see :func:`get_table`)."""
    text = str(value).strip().upper()
    if text.startswith("TABLE"):
        text = text[5:].strip()
    return text


def template_row(template: str) -> PaperRow:
    """The paper's row for a Table S1 template at its defaults (its backbone, DPWConv, PE on).

    Tables 2, 3 and 4 report each template once so: voc-l is Table 2 row 6,
    cityscapes-m/-s Table 3 rows 13/14, camvid-s/-l Table 4 rows 17/18. Tests
    and benchmarks read the paper's Params and GMACs from here instead of
    copying them.

    Raises:
        hsbench.errors.ConfigError: a template without such a row.
    """
    from hsbench.errors import ConfigError
    from hsbench.models.templates import get_template

    backbone = get_template(template).backbone
    for table_id in ("2", "3", "4"):
        for row in TABLES[table_id].hyperseg_rows:
            m = row.match or {}
            if (m.get("template"), m.get("backbone"), m.get("dynamic"), m.get("positional_encoding")) == (
                template, backbone, True, True
            ):
                return row
    raise ConfigError(f"no row of Tables 2-4 reports template {template!r} at its defaults")


def get_table(table_id: Any) -> PaperTable:
    """The paper table ``table_id`` ("2", "3", "4", "S2", "S3"; "Table 4", "s2" accepted).

    Raises:
        hsbench.errors.ConfigError: unknown table.
    """
    from hsbench.errors import ConfigError

    key = normalize_table_id(table_id)
    if key not in TABLES:
        raise ConfigError(
            f"unknown table {str(table_id)!r}; choose one of {', '.join(TABLE_IDS)}"
        )
    return TABLES[key]


__all__ = [
    "PAPER_GPU",
    "FLAG_NOTES",
    "Column",
    "PaperValue",
    "PaperRow",
    "PaperTable",
    "TABLE_2",
    "TABLE_3",
    "TABLE_4",
    "TABLE_S2",
    "TABLE_S3",
    "TABLES",
    "TABLE_IDS",
    "BACKBONE_NAMES",
    "get_table",
    "template_row",
    "normalize_table_id",
]
