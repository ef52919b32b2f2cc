"""Paper tables regenerated next to the measured runs (``hsbench report``).

:func:`build_report` returns a :class:`Report`: a pandas DataFrame plus notes.
Its rows, in the paper's order:

* ``source = "paper"``: a printed row, values exactly as in the paper, ``cite``
  = ``"Table 4, row 17"``.
* ``source = "measured"``: one per finished (variant, seed) of the table's
  studies (latest run), placed right below the paper row it matches (see
  :mod:`hsbench.reporting.measured`), ``cite`` = ``"run 12 (seed 0)"``, with
  ``Δ`` columns = measured − paper (mIoU in percentage points), and the
  measurement's ``device``, ``budget``, ``dataset`` and ``resolution``.
  Measured rows that match no paper row come last.

Columns carry their units in brackets. The paper's FPS column (GTX 1080 Ti)
holds paper values only; measured FPS goes to ``FPS measured [frames/s]`` with
its ``device``, and ``Δ FPS`` is given only for GPU measurements. The paper's
"GFLOPs" column is thop multiply-accumulates and is titled
``GFLOPs [GMACs, thop]``.

:func:`render` writes the report as markdown or LaTeX (tabulate, with notes
below the table), CSV (pandas, the table only; notes go to stderr from the
CLI) or JSON (``{"table", "title", "notes", "rows"}``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
from tabulate import tabulate

from hsbench.errors import ConfigError
from hsbench.reporting.measured import MeasuredRecord, find_paper_row, measured_records
from hsbench.reporting.study_report import VariantStats, group_variants
from hsbench.reporting.paper import FLAG_NOTES, PAPER_GPU, PaperRow, PaperTable, get_table
from hsbench.store import Store

#: Output formats of ``hsbench report``.
FORMATS = ("markdown", "latex", "csv", "json")

_FPS_MEASURED = "FPS measured [frames/s]"
_DFPS = f"Δ FPS [vs {PAPER_GPU}, GPU only]"
_SEEDS = "n seeds"
_MIOU_SD = "mIoU sd [pp]"


@dataclass
class Report:
    """A paper table next to its measured rows."""

    table: PaperTable
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    n_measured: int = 0
    hint: str | None = None

    @property
    def title(self) -> str:
        t = self.table
        doc = "supplement " if t.document == "supplement" else ""
        return f"HyperSeg {doc}Table {t.id}: {t.caption} — paper vs measured"


def _value_columns(table: PaperTable) -> list[tuple[str, str, bool]]:
    """(key, title, numeric) of the table's columns except FPS."""
    return [(c.key, c.title, c.numeric) for c in table.columns if c.key != "fps"]


def _delta_title(table: PaperTable, key: str) -> str:
    col = table.column(key)
    unit = "pp" if col.unit == "%" else col.unit
    return f"Δ {col.header} [{unit}]"


def _has_fps(table: PaperTable) -> bool:
    return any(c.key == "fps" for c in table.columns)


def _columns(table: PaperTable) -> list[str]:
    cols = ["source", "cite", "method", "backbone"]
    cols += [title for _k, title, _n in _value_columns(table)]
    if _has_fps(table):
        cols += [table.column("fps").title, _FPS_MEASURED]
    cols += [_delta_title(table, k) for k, _t, num in _value_columns(table) if num]
    if _has_fps(table):
        cols.append(_DFPS)
    if not any(c.key == "resolution" for c in table.columns):
        cols.append("resolution [WxH]")
    cols += [_SEEDS, _MIOU_SD, "device", "budget", "dataset", "flags", "notes"]
    return cols


def _res_title(table: PaperTable) -> str:
    for c in table.columns:
        if c.key == "resolution":
            return c.title
    return "resolution [WxH]"


def _label_value(key: str, value: Any) -> Any:
    if key == "positional_encoding" and isinstance(value, bool):
        return "yes" if value else "no"
    return value


def _paper_record(table: PaperTable, row: PaperRow) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "source": "paper",
        "cite": f"Table {row.table}, row {row.row}",
        "method": row.method,
        "backbone": row.backbone or "-",
    }
    for key, title, _num in _value_columns(table):
        rec[title] = _label_value(key, row.values.get(key))
    if _has_fps(table):
        rec[table.column("fps").title] = row.values.get("fps")
    rec[_res_title(table)] = row.resolution
    rec["flags"] = " ".join(
        f"{flag}{table.column(k).header}" for k, flag in row.flags.items()
    )
    return rec


def _measured_value(rec: MeasuredRecord, key: str) -> Any:
    k = rec.knobs
    if key == "miou":
        return rec.miou
    if key == "miou_val":
        return rec.miou if rec.split != "test" else None
    if key == "miou_test":
        return rec.miou if rec.split == "test" else None
    if key in ("gmacs", "params", "theta_w"):
        return getattr(rec, key)
    if key == "resolution":
        return rec.resolution
    if key == "grid":
        n = k["grid_n"]
        return f"{n}x{n}" if isinstance(n, int) else str(n)
    if key == "positional_encoding":
        return _label_value(key, k["positional_encoding"])
    if key == "groups":
        return ", ".join(str(g) for g in k["groups"]) if k.get("groups") else None
    return None


def _variant_record(v: VariantStats) -> MeasuredRecord:
    """The variant's runs as one record: mIoU and FPS are means over its seeds."""
    return replace(v.first, miou=v.metrics["miou"].mean, fps=v.metrics["fps"].mean)


def _cite(v: VariantStats) -> str:
    runs = sorted(v.records, key=lambda r: r.seed)
    if len(runs) == 1:
        return runs[0].cite()
    return (f"runs {', '.join(str(r.run_id) for r in runs)} "
            f"(seeds {', '.join(str(r.seed) for r in runs)})")


def _measured_row(
    table: PaperTable, v: VariantStats, paper: PaperRow | None
) -> dict[str, Any]:
    rec = _variant_record(v)
    n_seeds = v.metrics["miou"].n or len(v.records)
    miou_sd = v.metrics["miou"].sd
    out: dict[str, Any] = {
        "source": "measured",
        "cite": _cite(v),
        "method": f"{rec.method} [{rec.label}]",
        "backbone": rec.backbone or "-",
    }
    notes: list[str] = []
    for key, title, numeric in _value_columns(table):
        val = _measured_value(rec, key)
        out[title] = val
        if numeric and paper is not None:
            pv = paper.values.get(key)
            if key == "miou_test" and val is None:
                continue
            if isinstance(pv, (int, float)) and isinstance(val, (int, float)):
                out[_delta_title(table, key)] = round(val - pv, 4)
    if _has_fps(table):
        out[_FPS_MEASURED] = rec.fps
        if rec.fps is not None:
            if rec.fps_on_gpu and paper is not None and paper.values.get("fps") is not None:
                out[_DFPS] = round(rec.fps - paper.values["fps"], 4)
            elif not rec.fps_on_gpu:
                notes.append(f"FPS on {rec.fps_device or 'unknown device'}, not comparable "
                             f"with the paper's {PAPER_GPU}")
    out[_res_title(table)] = rec.resolution
    out[_SEEDS] = str(n_seeds)
    out[_MIOU_SD] = miou_sd
    out["device"] = rec.device
    out["budget"] = rec.budget
    out["dataset"] = rec.dataset
    if rec.gmacs_counter == "fvcore" and any(c.key == "gmacs" for c in table.columns):
        notes.append("GMACs counted by fvcore (no thop figure stored)")
    if paper is None:
        notes.append("matches no paper row")
    elif paper.resolution and rec.resolution and paper.resolution != rec.resolution:
        notes.append(f"resolution {rec.resolution}, paper {paper.resolution}")
    if rec.train_device and rec.train_device != rec.fps_device:
        notes.append(f"trained on {rec.train_device}")
    if table.id == "3" and rec.split is None:
        notes.append("split not stored; shown as val")
    out["notes"] = "; ".join(notes)
    return out


def build_report(
    table_id: Any,
    store: Store | None = None,
    *,
    study: str | None = None,
) -> Report:
    """The paper's Table ``table_id`` next to the measured runs of ``store``.

    Args:
        table_id: "2", "3", "4", "S2" or "S3".
        store: an open results database; None = paper rows only.
        study: only this study's runs (StoreError if it is not stored).

    Raises:
        ConfigError: unknown table. StoreError: unknown study.
    """
    table = get_table(table_id)
    records = measured_records(store, table=table.id, study=study) if store is not None else []
    by_row: dict[int, list[VariantStats]] = {}
    unmatched: list[tuple[VariantStats, None]] = []
    for v in group_variants(records):
        row = find_paper_row(table, v.first.knobs)
        if row is None:
            unmatched.append((v, None))
        else:
            by_row.setdefault(row.row, []).append(v)
    rows: list[dict[str, Any]] = []
    for prow in table.rows:
        rows.append(_paper_record(table, prow))
        for v in by_row.get(prow.row, []):
            rows.append(_measured_row(table, v, prow))
    for v, _ in unmatched:
        rows.append(_measured_row(table, v, None))
    # object dtype: paper numbers keep their printed form (177 stays an int, 38.0 a float).
    frame = pd.DataFrame(rows, columns=_columns(table), dtype=object)
    frame = frame.where(frame.notna(), None)

    notes = [
        f"Paper rows: values as printed in the {table.document}'s Table {table.id} "
        f"({table.caption}); 'row' counts the table body from 1; '-' = not reported.",
    ]
    if any(c.key == "gmacs" for c in table.columns):
        notes.append(
            "The paper's 'GFLOPs' are multiply-accumulates counted by thop: shown as GMACs; "
            "measured GMACs are thop counts at the measured resolution."
        )
    if _has_fps(table):
        notes.append(
            f"Paper FPS: batch 1, upload to prediction download, {PAPER_GPU} (paper Sec. 4). "
            f"Measured FPS is on the device named in its row; Δ FPS is given only for GPU "
            f"measurements, and then compares different GPUs."
        )
    notes.extend(table.notes)
    flags = {f for r in table.rows for f in r.flags.values()}
    for f in sorted(flags):
        notes.append(f"'{f}' = {FLAG_NOTES[f]}.")
    if any(r.resolution for r in table.rows) and table.id != "3":
        notes.append("Paper resolutions of HyperSeg rows from supplement Table S1 and Sec. C.")
    hint = None
    if records:
        notes.append(
            "Measured rows: one per variant, the mean over its seeds (latest finished run of "
            "each seed; 'n seeds' and the sample sd of mIoU beside it, sd empty for one seed); "
            "Δ = measured mean − paper (mIoU in percentage points); budget = iterations "
            "trained; device = where FPS was measured."
        )
        if unmatched:
            notes.append(f"{len(unmatched)} measured row(s) match no paper row (shown last).")
    else:
        where = f"study {study!r}" if study else "the database"
        first, *others = table.studies
        runs = f"`hsbench run {first}`" + (f" (or {', '.join(others)})" if others else "")
        hint = f"No measured rows for Table {table.id} in {where} yet: run {runs}."
        notes.append(hint)
    return Report(table=table, frame=frame, notes=notes, n_measured=sum(len(v) for v in by_row.values()) + len(unmatched),
                  hint=hint)


def _fmt(value: Any, *, delta: bool = False, paper: bool = False) -> str:
    """Paper numbers as printed (str of the stored int/float); measured ones rounded."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-" if paper else ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if paper:
            return str(value)
        if delta:
            return f"{value:+.2f}"
        value = float(value)
        return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
    return str(value)


def display_frame(report: Report) -> pd.DataFrame:
    """The report as strings: paper '-' kept, deltas signed, floats rounded to 2 decimals."""
    df = report.frame
    out = pd.DataFrame(index=df.index, columns=df.columns, dtype=object)
    paper_only = {"device", "budget", "dataset", "notes", _FPS_MEASURED, _SEEDS, _MIOU_SD}
    for i, row in df.iterrows():
        is_paper = row["source"] == "paper"
        for col in df.columns:
            val = row[col]
            out.at[i, col] = _fmt(
                val,
                delta=col.startswith("Δ"),
                paper=is_paper and not col.startswith("Δ") and col not in paper_only
                and col != "flags",
            )
    # Drop columns that are empty in every row (e.g. notes/Δ without measured rows).
    keep = [c for c in out.columns if (out[c] != "").any()]
    return out[keep]


def render(report: Report, fmt: str = "markdown") -> str:
    """The report as text in ``fmt`` (markdown, latex, csv, json).

    Raises:
        ConfigError: unknown format.
    """
    fmt = (fmt or "").lower()
    if fmt == "md":
        fmt = "markdown"
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return report.frame.to_csv(index=False)
    if fmt == "json":
        rows = json.loads(report.frame.to_json(orient="records", force_ascii=False))
        return json.dumps(
            {"table": report.table.id, "title": report.title, "notes": report.notes,
             "rows": rows},
            indent=2,
            ensure_ascii=False,
        ) + "\n"
    disp = display_frame(report)
    if fmt == "markdown":
        body = tabulate(disp.values.tolist(), headers=list(disp.columns), tablefmt="pipe",
                        disable_numparse=True)
        notes = "\n".join(f"- {n}" for n in report.notes)
        return f"## {report.title}\n\n{body}\n\n{notes}\n"
    body = tabulate(disp.values.tolist(), headers=list(disp.columns), tablefmt="latex_booktabs",
                    disable_numparse=True)
    notes = "\n".join(f"% {n}" for n in report.notes)
    return f"% {report.title}\n{notes}\n{body}\n"


__all__ = ["FORMATS", "Report", "build_report", "display_frame", "render"]
