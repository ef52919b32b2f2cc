"""Measured runs as flat records, and which paper row each one compares to.

A *measured record* is one finished run (the latest finished run of each
``(variant, seed)``) turned into plain values with their units:

========================  =====================================================
``miou``                  mIoU, percent (the store keeps a fraction)
``split``                 evaluation split ("val"/"test"/None)
``gmacs``                 thop GMACs (fvcore's when thop is missing; ``gmacs_counter`` says)
``params``                learned parameters, millions
``theta_w``               weight mapper parameters, millions (Table S3's |theta^w|)
``fps``                   frames/s on ``fps_device`` (kind "cpu"/"cuda"/...), label ``device``
``latency_ms``            median end-to-end latency, ms
``budget``                "<iters> iters" or "<max> of <budget> iters"
``dataset``               dataset name and version
``dataset_name``          dataset name alone ("camvid"); ``dataset_version`` what was read
``resolution``            "WxH" of training/evaluation
``run``                   the stored :class:`~hsbench.record.RunRecord` (every field)
========================  =====================================================

Matching (:func:`match_row`): a measured variant compares to a paper row when
every knob in the row's ``match`` equals the variant's resolved knob:
``template``, ``backbone`` (the template's when None: EfficientNet-B3 for
voc-l, B1 otherwise), ``dynamic`` (False = "w/o DPWConv"),
``positional_encoding``, ``grid`` ("native", or N for an N x N grid; a
"native" grid counts as N = width/32 for square inputs, 16 for voc-l at its
512x512) and ``groups`` (the variant's weight_groups reversed, i.e. fine to
coarse as Table S3 prints them). A variant whose decoder ``fusion`` is not
HyperSeg's ``concat`` (:mod:`hsbench.models.aggregation`) matches no paper
row (the paper only has concatenation); its method reads
``HyperSeg-S, fusion=pred_op``. Resolution and budget are not part of the
match: they are shown next to every measured row instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hsbench.errors import StoreError
from hsbench.record import RunRecord, SpeedRecord
from hsbench.reporting.paper import TABLES, PaperRow, PaperTable, normalize_table_id
from hsbench.store import RunDetail, Store, normalize_resolution

#: Template -> its default backbone (supplement Table S1).
TEMPLATE_BACKBONE = {
    "voc-l": "efficientnet_b3",
    "cityscapes-s": "efficientnet_b1",
    "cityscapes-m": "efficientnet_b1",
    "camvid-s": "efficientnet_b1",
    "camvid-l": "efficientnet_b1",
}
#: Template -> paper model name.
TEMPLATE_METHOD = {
    "voc-l": "HyperSeg-L",
    "cityscapes-s": "HyperSeg-S",
    "cityscapes-m": "HyperSeg-M",
    "camvid-s": "HyperSeg-S",
    "camvid-l": "HyperSeg-L",
}
#: Dataset name -> the paper table its runs belong to when the study names none.
DATASET_TABLE = {"camvid": "4", "cityscapes": "3", "voc": "2", "pascal_voc": "2", "voc2012": "2"}
#: Device kinds that are GPUs (their FPS may sit next to the paper's GPU FPS).
GPU_KINDS = ("cuda", "rocm", "hip")


@dataclass
class MeasuredRecord:
    """One finished run in report units; see the module docstring."""

    run_id: int
    seed: int
    variant_id: str
    label: str
    studies: list[str]
    tables: set[str]
    knobs: dict[str, Any]
    method: str
    backbone: str | None
    miou: float | None
    split: str | None
    gmacs: float | None
    gmacs_counter: str | None
    params: float | None
    theta_w: float | None
    fps: float | None
    latency_ms: float | None
    fps_device: str | None
    device: str
    train_device: str | None
    budget: str
    budget_iters: int | None
    max_iters: int | None
    dataset: str
    resolution: str | None
    extras: dict[str, Any] = field(default_factory=dict)
    #: mean class accuracy, pixel accuracy and trimap mIoU, percent (None when not stored).
    macc: float | None = None
    pixel_acc: float | None = None
    trimap_miou: float | None = None
    #: class name -> IoU, percent (None = undefined for that class).
    class_iou: dict[str, float | None] = field(default_factory=dict)
    #: the run's own FPS bootstrap interval over repeats (low, high), frames/s.
    fps_ci: tuple[float, float] | None = None
    #: the variant's resolved config (nested dicts, as stored).
    config: dict[str, Any] = field(default_factory=dict)
    #: The dataset's name alone ("camvid", "cityscapes", "voc", "synthetic").
    dataset_name: str | None = None
    #: What the data loader reported it read, e.g. "CamVid 480x360 (SegNet layout)".
    dataset_version: str | None = None
    #: The stored :class:`hsbench.record.RunRecord` of this run (every metric, the
    #: speed settings and provenance), for readers that need more than the columns above.
    run: RunRecord | None = None

    @property
    def fps_on_gpu(self) -> bool:
        """True when the FPS was measured on a GPU (never compare a CPU FPS with a GPU column)."""
        return self.fps_device in GPU_KINDS

    def cite(self) -> str:
        return f"run {self.run_id} (seed {self.seed})"


def _model_cfg(config: dict[str, Any]) -> dict[str, Any]:
    m = config.get("model")
    return m if isinstance(m, dict) else config


def _data_cfg(config: dict[str, Any]) -> dict[str, Any]:
    d = config.get("data")
    return d if isinstance(d, dict) else {}


def _parse_res(res: str | None) -> tuple[int, int] | None:
    if not res or "x" not in res:
        return None
    w, h = res.split("x", 1)
    return (int(w), int(h)) if w.isdigit() and h.isdigit() else None


def variant_knobs(config: dict[str, Any], resolution: str | None = None) -> dict[str, Any]:
    """The matching knobs of a resolved variant config (see module docstring)."""
    m = _model_cfg(config)
    template = m.get("template")
    backbone = m.get("backbone") or TEMPLATE_BACKBONE.get(template)
    grid = m.get("grid_size", "native")
    if isinstance(grid, str) and grid.isdigit():
        grid = int(grid)
    if grid == "native":
        wh = _parse_res(resolution)
        if wh is not None and wh[0] == wh[1] and wh[0] % 32 == 0:
            grid_n: Any = wh[0] // 32
        elif wh is None and template == "voc-l":
            grid_n = 16  # voc-l runs at 512x512 (Table S1): a 16x16 grid
        else:
            grid_n = "native"
    else:
        grid_n = grid
    groups = m.get("weight_groups")
    return {
        "template": template,
        "backbone": backbone,
        "dynamic": bool(m.get("dynamic", True)),
        "positional_encoding": bool(m.get("positional_encoding", True)),
        "grid": grid,
        "grid_n": grid_n,
        "groups": tuple(int(g) for g in reversed(groups)) if groups else None,
        "fusion": m.get("fusion", "concat"),
    }


def match_row(knobs: dict[str, Any], row: PaperRow) -> bool:
    """Whether a variant with ``knobs`` reproduces paper ``row`` (module docstring)."""
    if row.match is None:
        return False
    if knobs.get("fusion", "concat") != row.match.get("fusion", "concat"):
        return False
    for key, want in row.match.items():
        if key == "grid":
            if want == "native":
                if knobs["grid"] != "native":
                    return False
            elif knobs["grid_n"] != want:
                return False
        elif key == "groups":
            if knobs.get("groups") != tuple(want):
                return False
        elif knobs.get(key) != want:
            return False
    return True


def find_paper_row(table: PaperTable, knobs: dict[str, Any]) -> PaperRow | None:
    """The first HyperSeg row of ``table`` the variant matches, or None."""
    for row in table.hyperseg_rows:
        if match_row(knobs, row):
            return row
    return None


def _pick_speed(speeds: list[SpeedRecord]) -> SpeedRecord | None:
    """A GPU measurement if there is one, else the first with an FPS, else the first."""
    for sp in speeds:
        if sp.device_kind in GPU_KINDS and sp.fps is not None:
            return sp
    for sp in speeds:
        if sp.fps is not None:
            return sp
    return speeds[0] if speeds else None


def device_label(kind: str | None, name: str | None) -> str:
    """``"cuda: NVIDIA H100 80GB HBM3"``, ``"cpu: AMD EPYC 7B13"``, ``"cpu"``, ``"unknown device"``."""
    if kind and name and name.lower() != kind.lower():
        return f"{kind}: {name}"
    return kind or (f"unknown kind: {name}" if name else "unknown device")


def budget_text(budget_iters: int | None, max_iters: int | None) -> str:
    """``"240,000 iters"``, ``"200 of 240,000 iters (--max-iters)"``, or ``"unknown budget"``."""
    if max_iters is not None and budget_iters is not None and max_iters < budget_iters:
        return f"{max_iters:,} of {budget_iters:,} iters (--max-iters)"
    if max_iters is not None and budget_iters is None:
        return f"{max_iters:,} iters (--max-iters)"
    if budget_iters is not None:
        return f"{budget_iters:,} iters"
    return "unknown budget"


def to_record(d: RunDetail) -> MeasuredRecord:
    """A finished run in report units (its stored records, read by field name)."""
    r = d.run
    data = _data_cfg(d.config)
    cx = d.complexity
    sp = _pick_speed(d.speed)
    resolution = r.resolution or (cx.resolution if cx else None) or (sp.resolution if sp else None)
    if resolution is None and data.get("eval_resolution") is not None:
        try:
            resolution = normalize_resolution(data["eval_resolution"])  # (W, H)
        except StoreError:
            resolution = None
    knobs = variant_knobs(d.config, resolution)
    tables = {normalize_table_id(s["paper_table"]) for s in d.studies if s.get("paper_table")}
    dataset_name = r.dataset or data.get("dataset") or data.get("name")
    if not tables and dataset_name:
        t = DATASET_TABLE.get(str(dataset_name).lower())
        if t:
            tables.add(t)
    met = d.metrics
    miou = met.miou if met else None
    gmacs, counter = (cx.gmacs_thop if cx else None), "thop"
    if gmacs is None and cx is not None and cx.gmacs_fvcore is not None:
        gmacs, counter = cx.gmacs_fvcore, "fvcore"
    if gmacs is None:
        counter = None
    params = cx.params_learned if cx else None
    theta_w = cx.params_weight_mapper if cx else None
    fps_kind = sp.device_kind if sp else None
    label = r.label or next((s["label"] for s in d.studies if s.get("label")), None)
    template = knobs["template"]
    method = TEMPLATE_METHOD.get(template, template or "?")
    if not knobs["dynamic"]:
        method += " w/o DPWConv"
    if knobs["fusion"] != "concat":
        method += f", fusion={knobs['fusion']}"
    dataset = " ".join(str(x) for x in (dataset_name, r.dataset_version) if x) or "unknown dataset"
    train_device = d.training.device if d.training is not None and d.training.device else r.device

    def pct(x: float | None) -> float | None:
        return None if x is None else 100.0 * x

    class_iou = (met.per_class_iou if met else None) or {}
    fps_ci = (sp.fps_ci_low, sp.fps_ci_high) if sp else (None, None)
    return MeasuredRecord(
        macc=pct(met.macc) if met else None,
        pixel_acc=pct(met.pixel_acc) if met else None,
        trimap_miou=pct(met.trimap_miou) if met else None,
        class_iou={str(k): pct(v) for k, v in class_iou.items()},
        fps_ci=None if None in fps_ci else (float(fps_ci[0]), float(fps_ci[1])),
        config=d.config,
        run_id=r.id,
        seed=r.seed,
        variant_id=r.variant_id,
        label=label or r.variant_id[:10],
        studies=[s["name"] for s in d.studies],
        tables=tables,
        knobs=knobs,
        method=method,
        backbone=knobs["backbone"],
        miou=None if miou is None else 100.0 * miou,
        split=met.split if met else None,
        gmacs=gmacs,
        gmacs_counter=counter,
        params=None if params is None else params / 1e6,
        theta_w=None if theta_w is None else theta_w / 1e6,
        fps=sp.fps if sp else None,
        latency_ms=sp.latency_median_ms if sp else None,
        fps_device=fps_kind,
        device=device_label(fps_kind, sp.device_name) if sp else (train_device or "unknown device"),
        train_device=train_device,
        budget=budget_text(r.budget_iters, r.max_iters),
        budget_iters=r.budget_iters,
        max_iters=r.max_iters,
        dataset=dataset,
        resolution=resolution,
        dataset_name=str(dataset_name).lower() if dataset_name else None,
        dataset_version=r.dataset_version,
        run=d.record,
    )


def measured_records(
    store: Store, *, table: str | None = None, study: str | None = None
) -> list[MeasuredRecord]:
    """Latest finished run of each (variant, seed), as records.

    With ``study`` only that study's runs (whatever table it targets); else,
    with ``table``, the runs of the studies that reproduce that table (or,
    for studies that name none, of that table's dataset).
    """
    latest: dict[tuple[str, int], RunDetail] = {}
    for d in store.finished_runs(study):
        latest[(d.run.variant_id, d.run.seed)] = d  # runs come oldest first
    records = [to_record(d) for d in sorted(latest.values(), key=lambda d: d.run.id)]
    if study is None and table is not None:
        key = normalize_table_id(table)
        records = [rec for rec in records if key in rec.tables]
    return records


__all__ = [
    "TEMPLATE_BACKBONE",
    "TEMPLATE_METHOD",
    "DATASET_TABLE",
    "GPU_KINDS",
    "MeasuredRecord",
    "variant_knobs",
    "match_row",
    "find_paper_row",
    "device_label",
    "budget_text",
    "to_record",
    "measured_records",
    "TABLES",
]
