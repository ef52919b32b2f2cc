"""Trade-off plots (``hsbench plot``): measured variants beside the paper's methods.

Three kinds, mIoU (%) on the y axis against:

* ``fps-vs-miou``: frames/s, batch 1 (paper Sec. 4). Paper points: Table 3
  (Cityscapes test), Table 4 (CamVid test), supplement Table S2 (VOC val);
  HyperSeg's FPS on the paper's GTX 1080 Ti, other methods' as their papers
  report them.
* ``gmacs-vs-miou``: GMACs counted by thop (the paper's "GFLOPs"). Paper
  points: Table 3, supplement Table S3 (Cityscapes val), Table 2 (VOC val).
* ``params-vs-miou``: millions of learned parameters. Paper points: Tables 2,
  3, 4 and S3.

How the figure reads (issue 13):

* **One panel per dataset** (:data:`DATASETS`): mIoU of different datasets is
  never on one axis. A measured point on another version of the dataset than
  the paper's (CamVid's 480x360 SegNet copy against the paper's 960x720) is
  drawn hollow and named in a note under the figure.
* **One speed axis per device**: FPS measured on a device other than the
  paper's GTX 1080 Ti gets its own row of panels, its x axis labelled with the
  device; a panel row shares its x axis, a dataset column its y axis. GMACs
  and params have no device and all panels share the x axis.
* **The same look in all three kinds**: HyperSeg's paper rows in blue with
  bold labels, other methods muted grey, marker by paper table
  (:data:`TABLE_MARKERS`); measured points are triangles coloured by study
  (Okabe-Ito palette, colour-blind safe); measured variants of one study that
  differ along an ordered ablation axis (grid 1 -> 4 -> 8 -> 16, weight-mapper
  groups g_w) are joined in axis order and labelled with the axis value; the
  paper's own ablation rows (Tables S2, S3) likewise. Error bars: +-1 sd
  where a point aggregates n > 1 seeds, or the interval an :class:`Estimate`
  carries (one run's FPS: its bootstrap interval over timing repeats); the
  note under the figure says which. A dashed step line marks the Pareto
  front of the measured points of each panel (:func:`pareto_front`).
  Labels are moved apart by adjustText.

The plotting input is a list of :class:`MeasuredPoint` (one per variant,
device and dataset version) holding :class:`Estimate` (mean, sd, n) values:
:func:`measured_points` builds them from the store (mean and sample sd over
the seeds of each variant); any other aggregation (the statistics module)
can build them itself and pass ``measured=`` to :func:`make_figure`.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (pyplot's
global state is never touched) in a fixed style (:func:`plot_style`: DejaVu
Sans, which matplotlib ships; TrueType fonts embedded in PDF), 3.3 in
(``column``) or 6.9 in (``page``) wide, and saved as png, svg or pdf.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsbench.errors import ConfigError
from hsbench.outputs import atomic_output, check_output_path
from hsbench.reporting.measured import MeasuredRecord, measured_records
from hsbench.reporting.paper import PAPER_GPU, TABLES, PaperRow, normalize_table_id
from hsbench.reporting.stats import aggregate
from hsbench.store import Store


# --------------------------------------------------------------------------- kinds


@dataclass(frozen=True)
class PlotKind:
    """One plot kind: its x quantity, axis label and which direction is better."""

    name: str
    x: str  #: MeasuredRecord attribute and paper column key: "fps", "gmacs", "params"
    xlabel: str
    higher_is_better: bool
    #: (paper table id, its mIoU column key) drawn in this kind, in legend order.
    paper_tables: tuple[tuple[str, str], ...]


PLOT_KINDS: dict[str, PlotKind] = {
    "fps-vs-miou": PlotKind(
        "fps-vs-miou", "fps", "speed [frames/s, batch 1]", True,
        (("3", "miou_test"), ("4", "miou"), ("S2", "miou")),
    ),
    "gmacs-vs-miou": PlotKind(
        "gmacs-vs-miou", "gmacs", "compute [GMACs, thop]", False,
        (("3", "miou_test"), ("S3", "miou"), ("2", "miou")),
    ),
    "params-vs-miou": PlotKind(
        "params-vs-miou", "params", "learned parameters [M]", False,
        (("3", "miou_test"), ("S3", "miou"), ("4", "miou"), ("2", "miou")),
    ),
}
#: Output formats (``--format``) and the suffixes ``--out`` may end with.
PLOT_FORMATS = ("png", "svg", "pdf")
PLOT_SUFFIXES = tuple(f".{f}" for f in PLOT_FORMATS)
#: ``--width`` presets in inches: a journal column and a full page width.
PLOT_WIDTHS = {"column": 3.3, "page": 6.9}
#: Default raster resolution (dots per inch) of png output.
DEFAULT_DPI = 200
#: Where plots go without ``--out`` (relative to the current directory).
DEFAULT_PLOT_DIR = Path("results")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset panel: its title, the version the paper used, and how to recognise it.

    ``same_version(version)`` says whether a measured run's dataset version
    (what the loader reported, e.g. ``"CamVid 480x360 (SegNet layout)"``) is
    the paper's; None (unknown version) is never the paper's.
    """

    key: str
    title: str
    paper_version: str
    same_version: Callable[[str | None], bool]


def _contains(*needles: str) -> Callable[[str | None], bool]:
    return lambda v: v is not None and any(n.lower() in v.lower() for n in needles)


#: Panels in drawing order. CamVid: paper Sec. 4.4 ("All images share the same
#: resolution, 960x720"); Cityscapes: gtFine (paper Sec. 4.3); VOC 2012 val.
DATASETS: dict[str, DatasetSpec] = {
    "cityscapes": DatasetSpec("cityscapes", "Cityscapes", "Cityscapes gtFine",
                              _contains("gtfine")),
    "camvid": DatasetSpec("camvid", "CamVid", "CamVid 960x720 (paper Sec. 4.4)",
                          _contains("960x720")),
    "voc": DatasetSpec("voc", "VOC 2012", "PASCAL VOC 2012 val",
                       _contains("voc 2012")),
}
_DATASET_ALIASES = {"pascal_voc": "voc", "voc2012": "voc"}

#: Marker of each paper table's points (the same in every plot kind).
TABLE_MARKERS = {"2": "D", "3": "o", "4": "s", "S2": "p", "S3": "h"}
#: Marker of measured points (filled: the paper's dataset version; hollow: another).
MEASURED_MARKER = "^"
#: Okabe-Ito colours (colour-blind safe): HyperSeg's paper rows, and measured studies.
HYPERSEG_COLOUR = "#0072B2"
OTHER_COLOUR = "#8C8C8C"
STUDY_PALETTE = ("#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000")


def check_kind(kind: str) -> PlotKind:
    """The plot kind named ``kind``. Raises ConfigError naming the valid kinds."""
    if kind not in PLOT_KINDS:
        raise ConfigError(f"unknown plot {kind!r}; choose one of {', '.join(PLOT_KINDS)}")
    return PLOT_KINDS[kind]


def check_format(fmt: str) -> str:
    """``fmt`` lower-cased if it is png, svg or pdf; ConfigError otherwise."""
    f = fmt.lower().lstrip(".")
    if f not in PLOT_FORMATS:
        raise ConfigError(f"unknown plot format {fmt!r}; choose one of {', '.join(PLOT_FORMATS)}")
    return f


def check_width(width: str | float) -> float:
    """Figure width in inches: ``"column"`` (3.3), ``"page"`` (6.9) or a number of inches.

    Raises ConfigError for another name or a width outside 2-20 inches.
    """
    if isinstance(width, str) and width.lower() in PLOT_WIDTHS:
        return PLOT_WIDTHS[width.lower()]
    try:
        inches = float(width)
    except (TypeError, ValueError):
        raise ConfigError(
            f"unknown plot width {width!r}; choose column (3.3 in), page (6.9 in) or inches"
        ) from None
    if not 2.0 <= inches <= 20.0:
        raise ConfigError(f"plot width {inches:g} in is outside 2-20 inches")
    return inches


def check_dpi(dpi: int) -> int:
    """``dpi`` if it is between 50 and 1200; ConfigError otherwise."""
    if not isinstance(dpi, int) or not 50 <= dpi <= 1200:
        raise ConfigError(f"--dpi must be a whole number from 50 to 1200, got {dpi!r}")
    return dpi


def dataset_key(name: str | None) -> str | None:
    """Panel key of a dataset name: ``"Cityscapes"`` -> ``"cityscapes"``, ``"voc2012"`` -> ``"voc"``."""
    if not name:
        return None
    key = str(name).lower()
    return _DATASET_ALIASES.get(key, key)


# --------------------------------------------------------------------------- points


@dataclass(frozen=True)
class Estimate:
    """A value over seeds: ``mean``, sample sd (None when n = 1), ``n``, and an optional interval.

    ``low``/``high`` (with ``interval``, what they are, e.g. "95% t-interval
    over seeds" or "95% bootstrap over timing repeats") replace the +-1 sd
    error bar when given.
    """

    mean: float
    sd: float | None = None
    n: int = 1
    low: float | None = None
    high: float | None = None
    interval: str | None = None

    @classmethod
    def of(cls, by_seed: Mapping[int, float | None]) -> Estimate:
        """Mean, sample sd and n over seeds (:func:`hsbench.reporting.stats.aggregate`).

        Raises:
            ValueError: no seed has a finite value.
        """
        agg = aggregate(by_seed)
        if agg.mean is None:
            raise ValueError("an Estimate needs at least one finite value")
        return cls(agg.mean, agg.sd, agg.n)

    @property
    def spread(self) -> bool:
        """True when n > 1 seeds differ (an sd of float rounding noise is no spread)."""
        return self.n > 1 and self.sd is not None and self.sd > 1e-9 * max(1.0, abs(self.mean))

    @property
    def error(self) -> tuple[float, float] | None:
        """(below, above) the mean to draw as an error bar: the interval, else +-sd (n > 1)."""
        if self.low is not None and self.high is not None:
            return (max(0.0, self.mean - self.low), max(0.0, self.high - self.mean))
        if self.spread:
            return (self.sd, self.sd)
        return None

    @property
    def bar_text(self) -> str | None:
        """What the error bar shows ("+-1 sd over 3 seeds", the interval's name), or None."""
        if self.low is not None and self.high is not None:
            return self.interval or "interval"
        if self.spread:
            return f"+-1 sd over {self.n} seeds"
        return None


@dataclass(frozen=True)
class PaperPoint:
    """One paper row in a plot: x in the kind's unit, mIoU in %, and its citation.

    ``series``/``order``/``axis_label`` join the paper's own ablation rows
    (Table S2's grid sizes without positional encoding, Table S3's groups).
    """

    label: str
    x: float
    miou: float
    dataset: str
    table: str
    row: int
    split: str
    hyperseg: bool
    cite: str
    series: str | None = None
    order: float | None = None


@dataclass(frozen=True)
class MeasuredPoint:
    """One measured variant in a plot, aggregated over its seeds.

    Attributes:
        label: the variant's label in its study.
        x: FPS (frames/s), GMACs or M params, over seeds.
        miou: mIoU in %, over seeds.
        dataset: panel key (``"camvid"``).
        dataset_version: what the loader read, e.g. ``"CamVid 480x360 (SegNet layout)"``.
        split: evaluation split ("val"/"test"/None).
        device: where the FPS was measured (``"cpu: AMD EPYC 7B13"``); None for
            GMACs and params.
        study: the study the variant is drawn for (colour and ablation line).
        budget: training budget text (``"50 iters"``).
        knobs: the variant's matching knobs (:func:`hsbench.reporting.measured.variant_knobs`).
        variant_id: hash of the resolved config.
        run_ids: the runs aggregated.
    """

    label: str
    x: Estimate
    miou: Estimate
    dataset: str
    dataset_version: str | None
    split: str | None
    device: str | None
    study: str
    budget: str
    knobs: Mapping[str, Any] = field(default_factory=dict)
    variant_id: str = ""
    run_ids: tuple[int, ...] = ()

    @property
    def on_paper_gpu(self) -> bool:
        """True when the FPS was measured on the paper's GPU (it may share the paper's axis)."""
        return self.device is not None and PAPER_GPU.lower() in self.device.lower()

    @property
    def paper_version(self) -> bool:
        """True when the run read the paper's version of its dataset."""
        spec = DATASETS.get(self.dataset)
        return spec is not None and spec.same_version(self.dataset_version)


_BACKBONE_SHORT = {"EfficientNet-B1": "B1", "EfficientNet-B3": "B3", "ResNet18": "R18",
                   "PSPNet18": "PSP18", "PSPNet50": "PSP50"}


def _short_label(row: PaperRow) -> str:
    """Point label: other methods by name; HyperSeg rows as "S B1", "L B1 w/o DPW" (blue)."""
    if not row.is_hyperseg:
        return row.method
    size = row.method.split()[0].replace("HyperSeg-", "")
    short = _BACKBONE_SHORT.get(row.backbone or "", row.backbone or "")
    tail = " w/o DPW" if "w/o DPWConv" in row.method else ""
    return f"{size} {short}{tail}"


def paper_points(kind: str, datasets: Sequence[str] | None = None) -> list[PaperPoint]:
    """The paper rows drawn in ``kind``: every row with both an mIoU and the kind's x value.

    Sources are :attr:`PlotKind.paper_tables`; ``datasets`` keeps only those
    panels (None: all). Table S2 rows without positional encoding form the
    series "S2 grid" (ordered by grid size), Table S3 rows the series "S3 g_w"
    (ordered by g_w1); they are labelled with the axis value ("grid 1", "4",
    ..., "16 +PE"; "g_w1=1", "2", ...).
    """
    pk = check_kind(kind)
    out: list[PaperPoint] = []
    for tid, miou_key in pk.paper_tables:
        table = TABLES[tid]
        ds = dataset_key(table.dataset)
        if datasets is not None and ds not in datasets:
            continue
        split = "test" if miou_key == "miou_test" else table.split
        first_in_series: set[str] = set()
        for row in table.rows:
            miou, x = row.values.get(miou_key), row.values.get(pk.x)
            if miou is None or x is None:
                continue
            label, series, order = _short_label(row), None, None
            match = row.match or {}
            if tid == "S2":
                grid = int(match["grid"])
                pe = bool(match.get("positional_encoding"))
                series = None if pe else "S2 grid"
                order = float(grid)
                label = f"{grid}{' +PE' if pe else ''}"
            elif tid == "S3":
                groups = tuple(match["groups"])
                series, order, label = "S3 g_w", float(groups[0]), str(groups[0])
            if series is not None and series not in first_in_series:
                first_in_series.add(series)
                label = ("grid " if tid == "S2" else "g_w1=") + label
            out.append(PaperPoint(
                label=label, x=float(x), miou=float(miou), dataset=ds, table=tid,
                row=row.row, split=split, hyperseg=row.is_hyperseg, cite=row.cite(),
                series=series, order=order,
            ))
    return out


def points_from_records(records: Sequence[MeasuredRecord], kind: str,
                        study: str | None = None) -> list[MeasuredPoint]:
    """Group ``records`` into one :class:`MeasuredPoint` per variant (mean, sd, n over seeds).

    ``records`` hold the latest finished run of each (variant, seed), as
    :func:`hsbench.reporting.measured.measured_records` returns them. Runs group when they share variant, study, dataset and version, FPS
    device (fps kind only) and budget; runs without mIoU or the kind's x are
    left out. ``study`` names the study the points are drawn for (else each
    record's first study by name).
    """
    pk = check_kind(kind)
    groups: dict[tuple, list[MeasuredRecord]] = {}
    for rec in records:
        x = getattr(rec, pk.x)
        if rec.miou is None or x is None:
            continue
        st = study or (sorted(rec.studies)[0] if rec.studies else "(no study)")
        ds = dataset_key(rec.dataset_name) or dataset_key(rec.dataset.split(" ", 1)[0]) or "?"
        device = rec.device if pk.x == "fps" else None
        key = (rec.variant_id, st, ds, rec.dataset_version, device, rec.budget)
        groups.setdefault(key, []).append(rec)
    out = []
    for (vid, st, ds, version, device, budget), recs in groups.items():
        first = recs[0]
        out.append(MeasuredPoint(
            label=first.label,
            x=_fps_with_interval(recs) if pk.x == "fps" and len(recs) == 1
            else Estimate.of({r.seed: getattr(r, pk.x) for r in recs}),
            miou=Estimate.of({r.seed: r.miou for r in recs}),
            dataset=ds, dataset_version=version, split=first.split, device=device,
            study=st, budget=budget, knobs=dict(first.knobs), variant_id=vid,
            run_ids=tuple(r.run_id for r in recs),
        ))
    return out


def _fps_with_interval(recs: Sequence[MeasuredRecord]) -> Estimate:
    """One run's FPS with its own bootstrap interval over timing repeats (when stored)."""
    (rec,) = recs
    est = Estimate.of({rec.seed: rec.fps})
    if rec.fps_ci is None:
        return est
    return Estimate(est.mean, None, 1, rec.fps_ci[0], rec.fps_ci[1],
                    "one run's 95% bootstrap interval over timing repeats")


def measured_points(store: Store | None, kind: str, study: str | None = None) -> list[MeasuredPoint]:
    """The store's finished runs (of ``study``, or all) as plot points; [] without a store."""
    check_kind(kind)
    if store is None:
        return []
    return points_from_records(measured_records(store, study=study), kind, study)


# --------------------------------------------------------------------------- geometry


def pareto_front(points: Sequence[tuple[float, float]], *, x_higher_is_better: bool) -> list[int]:
    """Indices of the Pareto-optimal ``(x, mIoU)`` points, ordered by x (ascending).

    mIoU is always better higher; x (FPS) better higher when
    ``x_higher_is_better``, else (GMACs, params) lower. A point is on the
    front when no other point is at least as good in both and strictly
    better in one; equal points are all kept.
    """
    sign = 1.0 if x_higher_is_better else -1.0
    front = []
    for i, (xi, yi) in enumerate(points):
        dominated = any(
            sign * xj >= sign * xi and yj >= yi and (sign * xj > sign * xi or yj > yi)
            for j, (xj, yj) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], points[i][1]))


#: Ordered ablation axes, in preference order: knob -> short name.
ABLATION_AXES = {"grid_n": "grid", "groups": "g_w1="}
_KNOBS = ("template", "backbone", "dynamic", "positional_encoding", "grid_n", "groups")


def _axis_order(knob: str, value: Any) -> float:
    if knob == "grid_n":
        return float(value) if isinstance(value, (int, float)) else math.inf  # native: finest
    return float(value[0]) if value else math.inf


def _axis_text(knob: str, value: Any) -> str:
    if knob == "groups":
        return str(value[0]) if value else "?"
    return str(value)


@dataclass(frozen=True)
class AblationSeries:
    """Measured points of one study joined along an ordered axis, with their axis labels."""

    axis: str  #: "grid" or "g_w1="
    points: tuple[MeasuredPoint, ...]
    labels: tuple[str, ...]


def ablation_series(points: Sequence[MeasuredPoint]) -> list[AblationSeries]:
    """Join the measured variants of each study along their ordered ablation axis.

    Points group by study, dataset, dataset version and device; within a
    group the knobs that vary are found, and when one is ordered (grid size,
    then weight-mapper groups) the points that agree on every other knob are
    joined in axis order ("native" grid last) when there are two or more.
    Labels are the axis value, the first prefixed with the axis name
    ("grid 1", "4", "native").
    """
    by_group: dict[tuple, list[MeasuredPoint]] = {}
    for p in points:
        by_group.setdefault((p.study, p.dataset, p.dataset_version, p.device), []).append(p)
    out = []
    for group in by_group.values():
        varying = [k for k in _KNOBS
                   if len({repr(p.knobs.get(k)) for p in group}) > 1]
        axis = next((k for k in ABLATION_AXES if k in varying), None)
        if axis is None:
            continue
        rest = [k for k in varying if k != axis]
        series: dict[tuple, list[MeasuredPoint]] = {}
        for p in group:
            series.setdefault(tuple(repr(p.knobs.get(k)) for k in rest), []).append(p)
        for members in series.values():
            if len(members) < 2:
                continue
            members.sort(key=lambda p: _axis_order(axis, p.knobs.get(axis)))
            name = ABLATION_AXES[axis]
            texts = [_axis_text(axis, p.knobs.get(axis)) for p in members]
            texts[0] = f"{name}{'' if name.endswith('=') else ' '}{texts[0]}"
            out.append(AblationSeries(name, tuple(members), tuple(texts)))
    return out


# --------------------------------------------------------------------------- style


def _style(width_in: float) -> dict[str, Any]:
    base = _font_size(width_in)
    return {
        "font.family": "DejaVu Sans",
        "font.size": base,
        "axes.titlesize": base,
        "axes.labelsize": base,
        "xtick.labelsize": base - 1,
        "ytick.labelsize": base - 1,
        "legend.fontsize": base - 1,
        "axes.linewidth": 0.6,
        "axes.grid": True,
        "axes.grid.which": "major",
        "grid.linewidth": 0.4,
        "grid.alpha": 0.35,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "xtick.major.width": 0.6,
        "ytick.major.width": 0.6,
        "xtick.minor.width": 0.4,
        "ytick.minor.width": 0.4,
        "lines.linewidth": 0.9,
        "pdf.fonttype": 42,  # TrueType fonts embedded in PDF (journals reject Type 3)
        "ps.fonttype": 42,
        "svg.fonttype": "path",  # text as paths: the SVG needs no installed font
        "svg.hashsalt": "hsbench",  # stable ids in the SVG
        "figure.dpi": 100,
        # Unhinted glyphs, as matplotlib's own image tests use: text extents (and so
        # the label layout) do not depend on the FreeType build's hinter.
        "text.hinting": "none",
    }


@contextlib.contextmanager
def plot_style(width: str | float = "page") -> Iterator[None]:
    """matplotlib's defaults plus hsbench's house style for a figure ``width`` wide.

    Independent of the user's matplotlibrc: DejaVu Sans (shipped with
    matplotlib), unhinted, 6.5 pt (column) or 7.5 pt (page) text, PDF fonts
    embedded as TrueType (``pdf.fonttype`` 42). :func:`make_figure` and
    :func:`save_figure` use it; measure text extents of a drawn figure inside it.
    """
    import matplotlib as mpl
    import matplotlib.style

    with mpl.style.context("default"), mpl.rc_context(_style(check_width(width))):
        yield


# --------------------------------------------------------------------------- drawing


@dataclass
class _Panel:
    dataset: str
    group: str  # "paper" or a device label
    paper: list[PaperPoint]
    measured: list[MeasuredPoint]
    ax: Any = None


def _datasets_for(kind: PlotKind, store: Store | None, study: str | None,
                  measured: Sequence[MeasuredPoint]) -> list[str]:
    """Panels to draw: with a study, its measured datasets and its paper table's; else all."""
    ordered = list(DATASETS)
    have = {p.dataset for p in measured}
    if store is not None and study is not None:
        keep = set(have)
        t = store.get_study(study).paper_table
        if t and normalize_table_id(t) in TABLES:
            keep.add(dataset_key(TABLES[normalize_table_id(t)].dataset))
        if not keep:
            keep = set(ordered)
    else:
        keep = set(ordered) | have
    drawable = {dataset_key(TABLES[t].dataset) for t, _ in kind.paper_tables} | have
    keep &= drawable
    return [d for d in ordered if d in keep] + sorted(keep - set(ordered))


def _study_colours(measured: Sequence[MeasuredPoint]) -> dict[str, str]:
    studies = sorted({p.study for p in measured})
    return {s: STUDY_PALETTE[i % len(STUDY_PALETTE)] for i, s in enumerate(studies)}


def _dataset_title(ds: str) -> str:
    spec = DATASETS.get(ds)
    return spec.title if spec else ds


def make_figure(
    kind: str,
    store: Store | None = None,
    *,
    study: str | None = None,
    measured: Sequence[MeasuredPoint] | None = None,
    width: str | float = "page",
    label_iterations: int = 200,
) -> Any:
    """Draw plot ``kind`` (see the module docstring); a :class:`matplotlib.figure.Figure`.

    Args:
        kind: ``fps-vs-miou``, ``gmacs-vs-miou`` or ``params-vs-miou``.
        store: where the measured runs come from (None: paper only, unless ``measured``).
        study: only this study's runs; its panels are its measured datasets and its paper table's.
        measured: the measured points to draw (default :func:`measured_points`);
            pass aggregated points here to draw another aggregation.
        width: ``"column"`` (3.3 in), ``"page"`` (6.9 in) or inches.
        label_iterations: adjustText iterations (fixed, so that a figure is reproducible).

    The figure is drawn in :func:`plot_style`; save it with :func:`save_figure`
    (which renders in the same style).

    Raises:
        ConfigError: unknown kind or width.
        StoreError: unknown study.
    """
    with plot_style(width):
        return _make_figure(kind, store, study=study, measured=measured, width=width,
                            label_iterations=label_iterations)


def _make_figure(kind: str, store: Store | None, *, study: str | None,
                 measured: Sequence[MeasuredPoint] | None, width: str | float,
                 label_iterations: int) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pk = check_kind(kind)
    width_in = check_width(width)
    if measured is None:
        measured = measured_points(store, kind, study)
    measured = list(measured)
    datasets = _datasets_for(pk, store, study, measured)
    measured = [p for p in measured if p.dataset in datasets]
    paper = paper_points(kind, datasets)
    colours = _study_colours(measured)

    # Rows of panels: the paper's GPU, then each other FPS device (fps only).
    if pk.x == "fps":
        devices = sorted({p.device for p in measured if not p.on_paper_gpu})
        groups = ["paper"] + devices
    else:
        groups = ["paper"]

    def members(ds: str, grp: str) -> _Panel:
        pp = [p for p in paper if p.dataset == ds] if grp == "paper" else []
        if pk.x != "fps":
            mm = [p for p in measured if p.dataset == ds]
        elif grp == "paper":
            mm = [p for p in measured if p.dataset == ds and p.on_paper_gpu]
        else:
            mm = [p for p in measured if p.dataset == ds and p.device == grp]
        return _Panel(ds, grp, pp, mm)

    cells = {(ds, g): members(ds, g) for ds in datasets for g in groups}
    present = {k: c for k, c in cells.items() if c.paper or c.measured}
    if width_in >= 5:
        ncols, nrows = max(1, len(datasets)), len(groups)
        where = {(ds, g): (groups.index(g), datasets.index(ds)) for ds, g in present}
    else:  # a column: one panel per row, dataset-major
        keys = [(ds, g) for ds in datasets for g in groups if (ds, g) in present]
        ncols, nrows = 1, max(1, len(keys))
        where = {k: (i, 0) for i, k in enumerate(keys)}
    panel_w = width_in / ncols
    panel_h = min(3.0, max(2.2, 0.95 * panel_w)) if width_in >= 5 else 2.4

    size = _font_size(width_in)
    notes = _wrap(_notes(pk, paper, measured, datasets), width_in, size - 1.5)
    legend_items = _legend_items(pk, paper, measured, colours)
    legend_cols = 3 if width_in >= 5 else 2
    legend_rows = math.ceil(len(legend_items) / legend_cols)
    line_in = size / 72
    legend_h = legend_rows * 1.45 * line_in
    notes_h = len(notes) * 1.25 * (size - 1.5) / 72
    footer_h = legend_h + notes_h + 0.3
    fig_h = nrows * panel_h + footer_h
    fig = Figure(figsize=(width_in, fig_h), layout="constrained")
    FigureCanvasAgg(fig)  # label placement measures text with Agg's renderer
    fig.get_layout_engine().set(rect=(0, footer_h / fig_h, 1, 1 - footer_h / fig_h),
                                w_pad=0.03, h_pad=0.03)
    gs = fig.add_gridspec(nrows, ncols)
    for key, (r, c) in where.items():
        present[key].ax = fig.add_subplot(gs[r, c])

    # Axis sharing: panels of one speed device share x; GMACs and params share x
    # across every panel. mIoU is never shared: each panel is one dataset (and a
    # smoke-budget panel would squash the paper's range).
    first_x: dict[str, Any] = {}
    for (ds, g), panel in sorted(present.items(), key=lambda kv: where[kv[0]]):
        xgroup = g if pk.x == "fps" else "all"
        if xgroup in first_x:
            panel.ax.sharex(first_x[xgroup])
        else:
            first_x[xgroup] = panel.ax
    for xgroup, ax0 in first_x.items():
        xs = [p.x for (ds, g), c in present.items()
              if (g if pk.x == "fps" else "all") == xgroup for p in c.paper]
        xs += [p.x.mean for (ds, g), c in present.items()
               if (g if pk.x == "fps" else "all") == xgroup for p in c.measured]
        xs = [x for x in xs if x > 0]
        if xs and max(xs) / min(xs) > 20:
            ax0.set_xscale("log")

    texts_by_ax: dict[Any, tuple[list, list, list]] = {}
    for (ds, g), panel in present.items():
        texts_by_ax[panel.ax] = _draw_panel(panel, pk, colours)
        ax = panel.ax
        title = _dataset_title(ds)
        if pk.x == "fps":
            title += " (paper GPU)" if g == "paper" else f" - {g.split(':')[0]}"
        if g == "paper" and not panel.paper:
            title += " (no paper values)"
        ax.set_title(title, loc="left", fontsize=size, fontweight="bold")
        if pk.x == "fps":
            dev = PAPER_GPU if g == "paper" else g
            xlabel = f"frames/s on {dev}"
        else:
            xlabel = pk.xlabel
        ax.set_xlabel("\n".join(_wrap([xlabel], panel_w, size)))
        splits = sorted({p.split for p in panel.paper} | {p.split or "?" for p in panel.measured})
        ax.set_ylabel(f"mIoU [%], {'/'.join(splits)}")

    # The footer: legend, then notes, below the panels.
    if legend_items:
        leg = fig.legend([h for h, _ in legend_items], [t for _, t in legend_items],
                         loc="upper left", bbox_to_anchor=(0.01, (footer_h - 0.1) / fig_h),
                         bbox_transform=fig.transFigure, ncols=legend_cols, frameon=False,
                         borderaxespad=0.0, handletextpad=0.4, columnspacing=1.0,
                         borderpad=0.0, handlelength=1.6, fontsize=size - 0.5)
        leg.set_in_layout(False)
    note = fig.text(0.01, 0.06 / fig_h, "\n".join(notes), ha="left", va="bottom",
                    fontsize=size - 1.5, color="#333333")
    note.set_in_layout(False)

    # Labels last, once the layout and the axis limits are fixed.
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    for ax in fig.axes:
        ax.set_autoscale_on(False)
    _place_labels(texts_by_ax, label_iterations)
    return fig


def _font_size(width_in: float) -> float:
    """Base text size in points for a figure ``width_in`` inches wide."""
    return 6.5 if width_in < 5 else 7.5


def _wrap(lines: Sequence[str], width_in: float, size_pt: float) -> list[str]:
    """``lines`` wrapped to a figure ``width_in`` wide at ``size_pt`` (DejaVu Sans ~0.55 em/char)."""
    import textwrap

    chars = max(20, int((width_in - 0.1) * 72 / (0.56 * size_pt)))
    return [w for line in lines for w in textwrap.wrap(line, chars)]


def _draw_panel(panel: _Panel, pk: PlotKind, colours: Mapping[str, str]):
    """Points, lines, error bars and Pareto front of one panel; (texts, xs, ys) to place."""
    ax = panel.ax
    texts, xs, ys = [], [], []
    small = ax.figure.get_figwidth() < 5
    lab_size = LABEL_SIZES[1 if small else 0]
    # Paper: other methods muted under HyperSeg's rows.
    for hyperseg in (False, True):
        pts = [p for p in panel.paper if p.hyperseg == hyperseg]
        colour = HYPERSEG_COLOUR if hyperseg else OTHER_COLOUR
        for table in TABLE_MARKERS:
            tp = [p for p in pts if p.table == table]
            if not tp:
                continue
            ax.scatter([p.x for p in tp], [p.miou for p in tp], marker=TABLE_MARKERS[table],
                       s=22 if hyperseg else 14, c=colour, alpha=1.0 if hyperseg else 0.55,
                       edgecolors="white" if hyperseg else "none", linewidths=0.4,
                       zorder=3 if hyperseg else 2)
        for p in pts:
            texts.append(ax.text(p.x, p.miou, p.label, fontsize=lab_size,
                                 color=colour, alpha=1.0 if hyperseg else 0.8,
                                 fontweight="bold" if hyperseg else "normal", zorder=5))
            xs.append(p.x)
            ys.append(p.miou)
    for series in sorted({p.series for p in panel.paper if p.series}):
        sp = sorted((p for p in panel.paper if p.series == series), key=lambda p: p.order)
        ax.plot([p.x for p in sp], [p.miou for p in sp], color=HYPERSEG_COLOUR, lw=0.7,
                alpha=0.6, zorder=1)
    # Measured: ablation lines, error bars, points, labels.
    series = ablation_series(panel.measured)
    joined: dict[int, str] = {}
    for s in series:
        c = colours[s.points[0].study]
        ax.plot([p.x.mean for p in s.points], [p.miou.mean for p in s.points], color=c,
                lw=0.9, alpha=0.85, zorder=3)
        for p, text in zip(s.points, s.labels):
            joined[id(p)] = text
    for p in panel.measured:
        c = colours[p.study]
        xerr, yerr = p.x.error, p.miou.error
        if xerr or yerr:
            ax.errorbar(p.x.mean, p.miou.mean,
                        xerr=None if xerr is None else [[xerr[0]], [xerr[1]]],
                        yerr=None if yerr is None else [[yerr[0]], [yerr[1]]],
                        fmt="none", ecolor=c, elinewidth=0.7, capsize=1.5, zorder=3)
        ax.scatter([p.x.mean], [p.miou.mean], marker=MEASURED_MARKER, s=30,
                   c=c if p.paper_version else "white", edgecolors=c, linewidths=0.9,
                   zorder=4)
        texts.append(ax.text(p.x.mean, p.miou.mean, joined.get(id(p), p.label),
                             fontsize=lab_size, color=c, zorder=5))
        xs.append(p.x.mean)
        ys.append(p.miou.mean)
    if len(panel.measured) >= 2:
        pts = [(p.x.mean, p.miou.mean) for p in panel.measured]
        front = [pts[i] for i in pareto_front(pts, x_higher_is_better=pk.higher_is_better)]
        if len(front) >= 2:
            ax.step([x for x, _ in front], [y for _, y in front],
                    where="pre" if pk.higher_is_better else "post",
                    color="#000000", lw=0.7, ls=(0, (3, 2)), alpha=0.7, zorder=2)
    if not panel.paper and not panel.measured:
        ax.text(0.5, 0.5, "no points", transform=ax.transAxes, ha="center")
    ax.margins(*LABEL_MARGINS)
    return texts, xs, ys


#: Axes margins (x, y) that leave room for labels, and adjustText's forces.
LABEL_MARGINS = (0.1, 0.15)
#: Point label sizes in points: (page, column).
LABEL_SIZES = (5.5, 4.5)
LABEL_FORCES: dict[str, Any] = {"expand": (1.1, 1.3), "force_text": (0.3, 0.5)}


def _place_labels(texts_by_ax: Mapping[Any, tuple[list, list, list]], iterations: int) -> None:
    """Move each panel's labels apart, then draw a leader line to each moved label.

    adjustText does the layout (a fixed number of iterations, so a figure is
    reproducible); :func:`_separate` then clears what overlap it leaves in
    crowded panels. Texts are given other methods first, HyperSeg, then
    measured (see :func:`_draw_panel`).
    """
    from adjustText import adjust_text

    for ax, (texts, xs, ys) in texts_by_ax.items():
        if not texts:
            continue
        adjust_text(texts, x=xs, y=ys, ax=ax, iter_lim=iterations, time_lim=None,
                    ensure_inside_axes=True, **LABEL_FORCES)
        renderer = ax.figure.canvas.get_renderer()
        _separate(ax, texts, renderer, points=list(zip(xs, ys)))
        _leader_lines(ax, texts, xs, ys, renderer)


def _separate(ax: Any, texts: Sequence[Any], renderer: Any, *,
              points: Sequence[tuple[float, float]] = (), pad_px: float = 1.0,
              marker_px: float = 4.0) -> None:
    """Move labels that still overlap to the nearest free place inside the axes.

    Markers (a square of +-``marker_px`` around each of ``points``, data
    coordinates) are obstacles. Labels are placed in priority order (the last
    of ``texts`` first: measured, then HyperSeg, then other methods); a label
    that overlaps a marker or a label already placed, or sticks out of the
    axes, moves to the nearest free position on a grid over the whole axes
    (steps of half its height), if there is one.
    """
    from matplotlib.transforms import Bbox

    axbox = ax.get_window_extent(renderer)
    to_data = ax.transData.inverted()
    placed: list[Any] = []
    for x, y in points:
        px, py = ax.transData.transform((x, y))
        placed.append(Bbox.from_extents(px - marker_px, py - marker_px,
                                        px + marker_px, py + marker_px))

    def free(box: Any) -> bool:
        inside = (box.x0 >= axbox.x0 and box.x1 <= axbox.x1
                  and box.y0 >= axbox.y0 and box.y1 <= axbox.y1)
        return inside and not any(box.overlaps(p) for p in placed)

    offsets_by_step: dict[float, list[tuple[float, float]]] = {}
    for text in reversed(texts):
        box = text.get_window_extent(renderer).padded(pad_px)
        if free(box):
            placed.append(box)
            continue
        step = round(max(2.0, box.height / 2), 1)
        if step not in offsets_by_step:  # every offset that stays within the axes, nearest first
            nx, ny = int(axbox.width / step) + 1, int(axbox.height / step) + 1
            offsets_by_step[step] = sorted(
                ((dx * step, dy * step) for dx in range(-nx, nx + 1) for dy in range(-ny, ny + 1)),
                key=lambda d: (d[0] ** 2 + d[1] ** 2, d[1], d[0]),
            )
        for dx, dy in offsets_by_step[step]:
            cand = box.translated(dx, dy)
            if free(cand):
                x, y = ax.transData.transform(text.get_position())
                text.set_position(to_data.transform((x + dx, y + dy)))
                box = cand
                break
        placed.append(box)


def _leader_lines(ax: Any, texts: Sequence[Any], xs: Sequence[float], ys: Sequence[float],
                  renderer: Any, min_px: float = 6.0) -> None:
    """A thin grey line from each point to its label when the label sits away from it."""
    for text, x, y in zip(texts, xs, ys):
        px, py = ax.transData.transform((x, y))
        box = text.get_window_extent(renderer)
        cx, cy = min(max(px, box.x0), box.x1), min(max(py, box.y0), box.y1)
        if math.hypot(cx - px, cy - py) < min_px:
            continue
        (tx, ty) = ax.transData.inverted().transform((cx, cy))
        ax.plot([x, tx], [y, ty], color="#999999", lw=0.4, zorder=1.5,
                solid_capstyle="butt")


def _legend_items(pk: PlotKind, paper: Sequence[PaperPoint],
                  measured: Sequence[MeasuredPoint], colours: Mapping[str, str]):
    from matplotlib.lines import Line2D

    items = []
    if any(p.hyperseg for p in paper):
        items.append((Line2D([], [], ls="", marker="o", color=HYPERSEG_COLOUR, ms=4),
                      "HyperSeg (paper)"))
    if any(not p.hyperseg for p in paper):
        items.append((Line2D([], [], ls="", marker="o", color=OTHER_COLOUR, alpha=0.6, ms=3.5),
                      "other methods (paper)"))
    for tid, miou_key in pk.paper_tables:
        if any(p.table == tid for p in paper):
            split = next(p.split for p in paper if p.table == tid)
            items.append((Line2D([], [], ls="", marker=TABLE_MARKERS[tid], color="#555555",
                                 mfc="none", ms=4), f"Table {tid} ({split} mIoU)"))
    for st, c in colours.items():
        items.append((Line2D([], [], ls="", marker=MEASURED_MARKER, color=c, ms=4.5),
                      f"measured: {st}"))
    if any(not p.paper_version for p in measured):
        items.append((Line2D([], [], ls="", marker=MEASURED_MARKER, color="#555555",
                             mfc="white", ms=4.5), "measured, other dataset version"))
    if len(measured) >= 2:
        items.append((Line2D([], [], color="#000000", lw=0.7, ls=(0, (3, 2))),
                      "Pareto front (measured)"))
    return items


_X_NAMES = {"fps": "FPS", "gmacs": "GMACs", "params": "Params"}


def _notes(pk: PlotKind, paper: Sequence[PaperPoint], measured: Sequence[MeasuredPoint],
           datasets: Sequence[str]) -> list[str]:
    """Caption lines: what the paper's x means, dataset versions, budgets, error bars."""
    notes = []
    if pk.x == "fps":
        notes.append(f"Paper FPS: HyperSeg on a {PAPER_GPU}; other methods as their papers "
                     "report them. Other devices: own axis.")
    elif pk.x == "gmacs":
        notes.append("GMACs = multiply-accumulates counted by thop (the paper's 'GFLOPs').")
    else:
        notes.append("Learned parameters only (generated per-patch weights not counted).")
    other = sorted({(p.dataset, p.dataset_version or "unknown version")
                    for p in measured if not p.paper_version})
    for ds, version in other:
        spec = DATASETS.get(ds)
        if spec is None:
            notes.append(f"Hollow: measured on {version}; the paper has no {ds} results.")
        else:
            notes.append(f"Hollow: measured on {version}, not the paper's {spec.paper_version}.")
    budgets = sorted({p.budget for p in measured})
    if budgets:
        notes.append("Measured budget: " + "; ".join(budgets) + ".")
    for axis, texts in (("mIoU", {p.miou.bar_text for p in measured}),
                        (_X_NAMES[pk.x], {p.x.bar_text for p in measured})):
        texts.discard(None)
        if texts:
            notes.append(f"{axis} error bars: {'; '.join(sorted(texts))}.")
    return notes


# --------------------------------------------------------------------------- files


def default_out(kind: str, study: str | None = None, fmt: str = "png") -> Path:
    """``results/<kind>[-<study>].<fmt>``."""
    name = f"{kind}-{study}" if study else kind
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return DEFAULT_PLOT_DIR / f"{safe}.{check_format(fmt)}"


def check_suffix(out: str | os.PathLike[str]) -> Path:
    """``out`` as a Path if it ends in .png/.svg/.pdf; ConfigError otherwise (no side effects)."""
    path = Path(out)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(
            f"cannot write plot {str(path)!r}: the file must end in "
            f"{', '.join(PLOT_SUFFIXES)}"
        )
    return path


def resolve_out(kind: str, study: str | None, out: str | os.PathLike[str] | None,
                fmt: str | None) -> Path:
    """The output path from ``--out`` and ``--format`` (no side effects).

    Without ``out``: :func:`default_out` in ``fmt`` (png when None). With
    ``out``: its suffix must be .png/.svg/.pdf and agree with ``fmt`` if given.

    Raises:
        ConfigError: unknown format, bad suffix, or suffix and format disagree.
    """
    if out is None:
        return default_out(kind, study, fmt or "png")
    path = check_suffix(out)
    if fmt is not None and check_format(fmt) != path.suffix.lower()[1:]:
        raise ConfigError(
            f"--format {fmt} disagrees with --out {str(path)!r}; drop one or make them match"
        )
    return path


def check_out_path(out: str | os.PathLike[str]) -> Path:
    """A writable output path ending in .png/.svg/.pdf (its folder is created).

    Raises:
        ConfigError: other suffix, folder that cannot be created or written,
            or a path that is a folder.
    """
    path = check_suffix(out)
    if path.is_dir():
        raise ConfigError(f"cannot write plot {str(path)!r}: it is a folder")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot write plot {str(path)!r}: cannot create folder {str(parent)!r} "
            f"({exc.strerror or exc})"
        ) from None
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"cannot write plot {str(path)!r}: the location is not writable")
    return path


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = DEFAULT_DPI) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix), atomically and reproducibly.

    No dates in svg/pdf, so that the same figure gives the same bytes; the
    file appears whole or not at all (:func:`hsbench.outputs.atomic_output`).
    Rendered in :func:`plot_style` (unhinted glyphs, TrueType fonts in PDF).

    Raises:
        ConfigError: unknown suffix or dpi, or the file cannot be written.
    """
    path = Path(path)
    fmt = check_format(path.suffix)
    metadata = {"png": {"Software": None}, "svg": {"Date": None},
                "pdf": {"CreationDate": None, "ModDate": None}}[fmt]
    try:
        with plot_style(fig.get_figwidth()), atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=check_dpi(dpi), format=fmt, metadata=metadata)
    except OSError as exc:
        raise ConfigError(f"cannot write plot {str(path)!r}: {exc.strerror or exc}") from None
    return path


def figure_svg(kind: str, store: Store | None = None, *, study: str | None = None,
               width: str | float = "page") -> str:
    """Plot ``kind`` as an SVG document (text as paths: no font needed), e.g. for HTML reports."""
    import io

    fig = make_figure(kind, store, study=study, width=width)
    buf = io.StringIO()
    with plot_style(fig.get_figwidth()):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def save_plot(
    kind: str,
    store: Store | None = None,
    *,
    study: str | None = None,
    out: str | os.PathLike[str] | None = None,
    fmt: str | None = None,
    width: str | float = "page",
    dpi: int = DEFAULT_DPI,
    measured: Sequence[MeasuredPoint] | None = None,
) -> Path:
    """Draw ``kind`` and write it to ``out`` (default :func:`default_out`); the path.

    Raises:
        ConfigError: unknown kind, format or width, bad suffix, unwritable path,
            or ``out`` is the results database.
        StoreError: unknown study.
    """
    check_kind(kind)
    check_width(width)
    check_dpi(dpi)
    path = check_out_path(resolve_out(kind, study, out, fmt))
    if store is not None:
        check_output_path(path, db_url=store.url)  # never the results database
    if store is not None and study is not None:
        store.get_study(study)  # unknown study -> StoreError before drawing
    fig = make_figure(kind, store, study=study, measured=measured, width=width)
    return save_figure(fig, path, dpi=dpi)


__all__ = [
    "PlotKind",
    "PLOT_KINDS",
    "PLOT_FORMATS",
    "PLOT_SUFFIXES",
    "PLOT_WIDTHS",
    "DEFAULT_DPI",
    "DEFAULT_PLOT_DIR",
    "DatasetSpec",
    "DATASETS",
    "TABLE_MARKERS",
    "MEASURED_MARKER",
    "HYPERSEG_COLOUR",
    "OTHER_COLOUR",
    "STUDY_PALETTE",
    "Estimate",
    "PaperPoint",
    "MeasuredPoint",
    "AblationSeries",
    "check_kind",
    "check_format",
    "check_width",
    "check_dpi",
    "dataset_key",
    "paper_points",
    "points_from_records",
    "measured_points",
    "pareto_front",
    "ablation_series",
    "plot_style",
    "make_figure",
    "default_out",
    "check_suffix",
    "resolve_out",
    "check_out_path",
    "save_figure",
    "figure_svg",
    "save_plot",
]
