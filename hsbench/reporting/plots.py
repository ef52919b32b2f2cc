"""Trade-off plots (``hsbench plot``): measured variants beside the paper's methods.

Three kinds, mIoU (%) on the y axis against:

* ``fps-vs-miou``: frames/s. Paper points: Tables 3 and 4 (FPS as printed;
  HyperSeg's on a GTX 1080 Ti); measured points: one series per device
  ("measured (cpu: ...)", "measured (cuda: NVIDIA H100 ...)").
* ``gmacs-vs-miou``: GMACs counted by thop (the paper's "GFLOPs"); paper
  points from Table 3 (Table 4 prints no GFLOPs).
* ``params-vs-miou``: millions of learned parameters; Tables 3 and 4.

Paper points use Table 3's test mIoU (every Table 3 row has one) and Table 4's
CamVid test mIoU; they are grey-blue circles/squares labelled
"paper (GTX 1080 Ti)" (or "paper" when the x axis is not a speed), marker by
table. Measured points are orange-red triangles labelled with their device.
Each point carries its label (method and backbone, or the variant label).

The figure is drawn on a bare :class:`matplotlib.figure.Figure` (Agg canvas;
pyplot and its global backend are never touched) and saved as png, svg or pdf.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from hsbench.errors import ConfigError
from hsbench.outputs import atomic_output, check_output_path
from hsbench.reporting.measured import measured_records
from hsbench.reporting.paper import PAPER_GPU, TABLES, normalize_table_id
from hsbench.store import Store

#: kind -> (x key, x axis label).
PLOT_KINDS: dict[str, tuple[str, str]] = {
    "fps-vs-miou": ("fps", "speed [frames/s], batch 1"),
    "gmacs-vs-miou": ("gmacs", "compute [GMACs, thop]"),
    "params-vs-miou": ("params", "learned parameters [M params]"),
}
#: File types ``--out`` may end with.
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
#: Where plots go without ``--out`` (relative to the current directory).
DEFAULT_PLOT_DIR = Path("results")

_PAPER_COLOUR = "#4C72B0"
_MEASURED_PALETTE = ["#DD4A2B", "#E89A1E", "#8C2D9E", "#2CA02C", "#7F3C0A"]


def check_kind(kind: str) -> str:
    """Validated plot kind. Raises ConfigError naming the valid kinds."""
    if kind not in PLOT_KINDS:
        raise ConfigError(f"unknown plot {kind!r}; choose one of {', '.join(PLOT_KINDS)}")
    return kind


def paper_points(kind: str, tables: tuple[str, ...] = ("3", "4")) -> pd.DataFrame:
    """Paper methods with both mIoU and the kind's x value.

    Columns: label (method, or "HS-S B1" for HyperSeg rows), x, miou (%), table,
    row, cite, group.
    """
    xkey, _ = PLOT_KINDS[check_kind(kind)]
    out = []
    for tid in tables:
        table = TABLES[tid]
        for row in table.rows:
            miou = row.values.get("miou_test") if tid == "3" else row.values.get("miou")
            x = row.values.get(xkey)
            if miou is None or x is None:
                continue
            label = _short_label(row.method, row.backbone)
            group = (
                f"paper Table {tid}: {'Cityscapes test' if tid == '3' else 'CamVid test'}"
            )
            out.append({"label": label, "x": float(x), "miou": float(miou), "table": tid,
                        "row": row.row, "cite": row.cite(), "group": group})
    return pd.DataFrame(out, columns=["label", "x", "miou", "table", "row", "cite", "group"])


_BACKBONE_SHORT = {"EfficientNet-B1": "B1", "EfficientNet-B3": "B3", "ResNet18": "R18",
                   "PSPNet18": "PSP18", "PSPNet50": "PSP50"}


def _short_label(method: str, backbone: str | None) -> str:
    """Point label: prior methods by name; HyperSeg rows as "HS-S B1", "HS-L R18 w/o DPW"."""
    if not method.startswith("HyperSeg"):
        return method
    size = method.split()[0].replace("HyperSeg-", "HS-")
    short = _BACKBONE_SHORT.get(backbone or "", backbone or "")
    tail = " w/o DPW" if "w/o DPWConv" in method else ""
    return f"{size} {short}{tail}"


def measured_points(store: Store | None, kind: str, study: str | None = None) -> pd.DataFrame:
    """Measured runs with both mIoU and the kind's x value.

    Columns: label, x, miou (%), device, dataset, budget, run_id, group.
    """
    xkey, _ = PLOT_KINDS[check_kind(kind)]
    cols = ["label", "x", "miou", "device", "dataset", "budget", "run_id", "group"]
    if store is None:
        return pd.DataFrame([], columns=cols)
    out = []
    for rec in measured_records(store, study=study):
        x = getattr(rec, xkey)
        if rec.miou is None or x is None:
            continue
        out.append({
            "label": rec.label, "x": float(x), "miou": rec.miou, "device": rec.device,
            "dataset": rec.dataset, "budget": rec.budget, "run_id": rec.run_id,
            "group": f"measured ({rec.device})",
        })
    return pd.DataFrame(out, columns=cols)


def _paper_tables_for(store: Store | None, study: str | None) -> tuple[str, ...]:
    if store is not None and study is not None:
        t = store.get_study(study).paper_table
        if t and normalize_table_id(t) in ("3", "4"):
            return (normalize_table_id(t),)
    return ("3", "4")


def default_out(kind: str, study: str | None = None) -> Path:
    """``results/<kind>[-<study>].png``."""
    name = f"{kind}-{study}" if study else kind
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return DEFAULT_PLOT_DIR / f"{safe}.png"


def check_suffix(out: str | os.PathLike[str]) -> Path:
    """``out`` as a Path if it ends in .png/.svg/.pdf; ConfigError otherwise (no side effects)."""
    path = Path(out)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(
            f"cannot write plot {str(path)!r}: the file must end in "
            f"{', '.join(PLOT_SUFFIXES)}"
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


def make_figure(
    kind: str,
    store: Store | None = None,
    *,
    study: str | None = None,
) -> Any:
    """The figure of ``kind`` (a :class:`matplotlib.figure.Figure`)."""
    import seaborn as sns
    from matplotlib.figure import Figure

    check_kind(kind)
    xkey, xlabel = PLOT_KINDS[kind]
    tables = _paper_tables_for(store, study)
    if xkey == "gmacs":
        tables = tuple(t for t in tables if t == "3") or ("3",)
    paper = paper_points(kind, tables)
    meas = measured_points(store, kind, study)
    paper_name = f"paper ({PAPER_GPU})" if xkey == "fps" else "paper"
    paper = paper.assign(series=paper_name)

    fig = Figure(figsize=(8.5, 6.0), layout="constrained")
    ax = fig.subplots()
    ax.grid(True, alpha=0.3)
    markers = {g: m for g, m in zip(sorted(paper["group"].unique()), ["o", "s"])}
    sns.scatterplot(
        data=paper, x="x", y="miou", style="group", markers=markers, color=_PAPER_COLOUR,
        s=55, alpha=0.8, ax=ax, legend=False,
    )
    handles_labels: list[tuple[Any, str]] = []
    from matplotlib.lines import Line2D

    for g, m in markers.items():
        handles_labels.append(
            (Line2D([], [], marker=m, ls="", color=_PAPER_COLOUR), f"{paper_name}: {g[6:]}")
        )
    for _, p in paper.iterrows():
        ax.annotate(p["label"], (p["x"], p["miou"]), fontsize=6, alpha=0.75,
                    xytext=(3, 3), textcoords="offset points", color=_PAPER_COLOUR)
    devices = sorted(meas["group"].unique()) if len(meas) else []
    palette = {g: _MEASURED_PALETTE[i % len(_MEASURED_PALETTE)] for i, g in enumerate(devices)}
    if len(meas):
        sns.scatterplot(
            data=meas, x="x", y="miou", hue="group", palette=palette, marker="^", s=90,
            edgecolor="black", linewidth=0.6, ax=ax, legend=False,
        )
        for g in devices:
            handles_labels.append(
                (Line2D([], [], marker="^", ls="", color=palette[g], markeredgecolor="black"), g)
            )
        for _, p in meas.iterrows():
            ax.annotate(p["label"], (p["x"], p["miou"]), fontsize=7, xytext=(4, -9),
                        textcoords="offset points", color=palette[p["group"]])
    xs = pd.concat([paper["x"], meas["x"]]) if len(meas) else paper["x"]
    xs = xs[xs > 0]
    if len(xs) and xs.max() / xs.min() > 30:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mIoU [%]")
    ax.legend([h for h, _ in handles_labels], [l for _, l in handles_labels],
              loc="lower right", fontsize=8, frameon=True)
    what = {"fps": "speed", "gmacs": "compute", "params": "size"}[xkey]
    dev_text = ", ".join(g[len("measured ("):-1] for g in devices) if devices else "none yet"
    title = f"mIoU vs {what}: paper"
    if xkey == "fps":
        title += f" ({PAPER_GPU})"
    title += f" and measured (device: {dev_text})"
    ax.set_title(title, fontsize=10)
    caption = [
        "Paper: " + "; ".join(
            f"Table {t} ({'Cityscapes test mIoU' if t == '3' else 'CamVid test mIoU'})"
            for t in tables
        ) + (" — paper 'GFLOPs' = thop GMACs" if xkey == "gmacs" else "")
        + (f" — HyperSeg FPS on {PAPER_GPU}, others as reported" if xkey == "fps" else ""),
    ]
    if len(meas):
        budgets = sorted(set(meas["budget"]))
        datasets = sorted(set(meas["dataset"]))
        caption.append(
            f"Measured{f' (study {study})' if study else ''}: dataset {', '.join(datasets)}; "
            f"budget {', '.join(budgets)}"
        )
    else:
        caption.append("Measured: no finished runs with these figures yet")
    fig.text(0.01, 0.005, "\n".join(caption), fontsize=6.5, ha="left", va="bottom", alpha=0.8)
    fig.get_layout_engine().set(rect=(0, 0.05, 1, 0.95))
    return fig


def save_plot(
    kind: str,
    store: Store | None = None,
    *,
    study: str | None = None,
    out: str | os.PathLike[str] | None = None,
) -> Path:
    """Draw ``kind`` and write it to ``out`` (default :func:`default_out`); the path.

    Raises:
        ConfigError: unknown kind, bad suffix, unwritable path.
        StoreError: unknown study.
    """
    check_kind(kind)
    path = check_out_path(out if out is not None else default_out(kind, study))
    if store is not None:
        check_output_path(path, db_url=store.url)
    if store is not None and study is not None:
        store.get_study(study)  # unknown study -> StoreError before drawing
    fig = make_figure(kind, store, study=study)
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=150, format=path.suffix.lower().lstrip("."))
    except OSError as exc:
        raise ConfigError(f"cannot write plot {str(path)!r}: {exc.strerror or exc}") from None
    return path


__all__ = [
    "PLOT_KINDS",
    "PLOT_SUFFIXES",
    "DEFAULT_PLOT_DIR",
    "check_kind",
    "check_suffix",
    "check_out_path",
    "default_out",
    "paper_points",
    "measured_points",
    "make_figure",
    "save_plot",
]
