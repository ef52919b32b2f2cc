"""The study table: every variant of a study aggregated over seeds, with paired deltas.

``hsbench report --study NAME`` (without ``--table``) builds a
:class:`StudyReport` from the study's finished runs (:func:`build_study_report`):

* one row per variant: the knobs that differ from the baseline, n seeds, the
  aggregated metrics (mean ± sample sd over seeds, :mod:`hsbench.reporting.stats`)
  for mIoU, mAcc, pixel accuracy and trimap mIoU (percent), params (M), GMACs
  (thop), FPS (frames/s, with its device; each run also keeps its own bootstrap
  interval over repeats);
* for each non-baseline variant the paired Δ against the baseline per metric
  (variant − baseline on the same seed), with a 95% interval and its method, and
  "not distinguishable" when the interval contains 0; unpaired seeds are counted;
* per-class IoU aggregated per class (JSON and CSV carry it; markdown, LaTeX and
  HTML print it as a second table).

The baseline is the study's declared ``[study] baseline`` (a variant name) or,
when none is declared, the variant closest to the paper's configuration
(:func:`closest_to_paper`: fewest knobs away from supplement Table S1's
template defaults), and the report says which rule chose it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from hsbench.errors import ConfigError
from hsbench.reporting.measured import TEMPLATE_BACKBONE, MeasuredRecord
from hsbench.reporting.stats import Aggregate, PairedDelta, aggregate, paired_delta

#: Output formats of the study table.
STUDY_FORMATS = ("markdown", "latex", "csv", "json", "html")

#: Aggregated metrics: key (MeasuredRecord attribute) -> column title with unit.
METRICS: dict[str, str] = {
    "miou": "mIoU [%]",
    "macc": "mAcc [%]",
    "pixel_acc": "pixel acc [%]",
    "trimap_miou": "trimap mIoU [%]",
    "fps": "FPS [frames/s]",
}
#: Complexity columns: identical for every seed of a variant (the same network).
COMPLEXITY: dict[str, str] = {"params": "params [M]", "gmacs": "GMACs"}
#: Metrics whose paired Δ is printed in the text formats (JSON carries all of METRICS).
PRINTED_DELTAS = ("miou", "fps")
#: Config keys that never make two variants different ablations.
_IGNORED_KEYS = ("seed", "data.root", "data.data_root")


@dataclass(frozen=True)
class VariantStats:
    """One variant of a study over its seeds.

    Attributes:
        label: the variant's name in the study.
        variant_id: the hash of its resolved config.
        records: its finished runs, one per seed (latest run of each seed).
        metrics: metric key (see :data:`METRICS`) -> aggregate over seeds.
        class_iou: class name -> aggregate of its IoU (percent) over seeds.
    """

    label: str
    variant_id: str
    records: tuple[MeasuredRecord, ...]
    metrics: dict[str, Aggregate]
    class_iou: dict[str, Aggregate]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(sorted(r.seed for r in self.records))

    @property
    def first(self) -> MeasuredRecord:
        return min(self.records, key=lambda r: r.run_id)

    def by_seed(self, key: str) -> dict[int, float | None]:
        """seed -> value of metric ``key`` (percent / frames/s as in MeasuredRecord)."""
        return {r.seed: getattr(r, key) for r in self.records}


@dataclass
class StudyReport:
    """A study's variants aggregated over seeds, and their deltas against the baseline."""

    study: str
    variants: list[VariantStats]
    baseline: VariantStats
    baseline_rule: str
    deltas: dict[str, dict[str, PairedDelta]]  # variant label -> metric -> Δ
    differs: dict[str, dict[str, Any]]  # variant label -> {config key: value} unlike the baseline
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"Study {self.study}: {len(self.variants)} variant(s), baseline {self.baseline.label}"


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"grid_size": 1}}`` -> ``{"model.grid_size": 1}`` (lists kept as values)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_config(value, path + "."))
        else:
            out[path] = value
    return out


def config_differences(config: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """The flattened config entries of ``config`` that differ from ``baseline``'s."""
    a, b = flatten_config(config), flatten_config(baseline)
    return {
        k: a.get(k) for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k) and not k.endswith(_IGNORED_KEYS)
    }


def paper_distance(rec: MeasuredRecord) -> int:
    """Number of knobs in which a variant departs from its template's paper configuration.

    The paper configuration (supplement Table S1) is: the template's backbone,
    dynamic DPWConv, positional encoding, the native patch grid, the
    template's g_w row and concatenation as the decoder fusion.
    """
    k = rec.knobs
    return sum((
        k.get("backbone") != TEMPLATE_BACKBONE.get(k.get("template")),
        not k.get("dynamic", True),
        not k.get("positional_encoding", True),
        k.get("grid", "native") != "native",
        k.get("groups") is not None,
        k.get("fusion", "concat") != "concat",
    ))


def closest_to_paper(variants: Sequence[VariantStats]) -> VariantStats:
    """The variant with the fewest knobs away from Table S1 (the first of a tie)."""
    return min(variants, key=lambda v: (paper_distance(v.first), v.first.run_id))


def group_variants(records: Iterable[MeasuredRecord]) -> list[VariantStats]:
    """Group finished runs by variant (study order = first run id) and aggregate them."""
    groups: dict[str, list[MeasuredRecord]] = {}
    for rec in sorted(records, key=lambda r: r.run_id):
        groups.setdefault(rec.variant_id, []).append(rec)
    out = []
    for vid, recs in groups.items():
        latest = {r.seed: r for r in recs}  # runs come oldest first: the latest per seed wins
        recs = sorted(latest.values(), key=lambda r: r.seed)
        metrics = {key: aggregate({r.seed: getattr(r, key) for r in recs}) for key in METRICS}
        classes = sorted({c for r in recs for c in (r.class_iou or {})}, key=_class_order)
        class_iou = {c: aggregate({r.seed: (r.class_iou or {}).get(c) for r in recs})
                     for c in classes}
        out.append(VariantStats(recs[0].label, vid, tuple(recs), metrics, class_iou))
    return out


def _class_order(name: str) -> tuple[int, Any]:
    return (0, int(name)) if name.isdigit() else (1, name)


def build_study_report(
    study: str,
    records: Sequence[MeasuredRecord],
    *,
    baseline: str | None = None,
    confidence: float = 0.95,
) -> StudyReport:
    """Aggregate a study's finished runs and pair every variant with the baseline.

    Args:
        study: the study's name (for the title).
        records: its finished runs (:func:`hsbench.reporting.measured.measured_records`).
        baseline: the declared baseline variant's name; None = closest to the paper.
        confidence: coverage of the paired-Δ intervals.

    Raises:
        ConfigError: no finished runs, or ``baseline`` names no variant of the study.
    """
    variants = group_variants(records)
    if not variants:
        raise ConfigError(f"study {study!r} has no finished runs yet; "
                          f"run `hsbench run studies/{study}.toml` first")
    if baseline is not None:
        chosen = next((v for v in variants if v.label == baseline), None)
        if chosen is None:
            names = ", ".join(v.label for v in variants)
            raise ConfigError(f"baseline {baseline!r} is not a variant with finished runs in "
                              f"study {study!r}; choose one of: {names}")
        rule = "declared in the study"
    else:
        chosen = closest_to_paper(variants)
        d = paper_distance(chosen.first)
        rule = ("closest to the paper's configuration (supplement Table S1; "
                f"{d} knob(s) away); declare [study] baseline to choose another")
    deltas: dict[str, dict[str, PairedDelta]] = {}
    differs: dict[str, dict[str, Any]] = {}
    for v in variants:
        differs[v.label] = config_differences(v.first.config, chosen.first.config)
        if v is chosen:
            continue
        deltas[v.label] = {key: paired_delta(v.by_seed(key), chosen.by_seed(key),
                                             confidence=confidence) for key in METRICS}
    notes = [
        f"Baseline: {chosen.label} ({rule}).",
        "Metrics: mean ± sample sd over seeds (n = seeds); '(n=1)' = one seed, no spread.",
        f"Δ = variant − baseline per seed (same seed, same data order), mean with a "
        f"{100 * confidence:g}% interval: Student's t for fewer than 10 pairs, a percentile "
        "bootstrap over seeds (scipy.stats.bootstrap) from 10; 'not distinguishable' = the "
        "interval contains 0. Seeds that one side lacks are left out and counted.",
    ]
    devices = sorted({r.device for v in variants for r in v.records if r.fps is not None})
    if devices:
        notes.append(f"FPS measured on {', '.join(devices)} (batch 1, paper Sec. 4 protocol); "
                     "not comparable with the paper's GPU figures unless the device is a GPU.")
    budgets = sorted({r.budget for v in variants for r in v.records})
    datasets = sorted({r.dataset for v in variants for r in v.records})
    notes.append(f"Budget: {', '.join(budgets)}; dataset: {', '.join(datasets)}.")
    unpaired = sum(d["miou"].n_unpaired for d in deltas.values())
    if unpaired:
        notes.append(f"{unpaired} run(s) had no partner seed on the other side and were left "
                     "out of the paired deltas.")
    return StudyReport(study, variants, chosen, rule, deltas, differs, notes)


def _num(x: float | None, digits: int = 2) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _differs_text(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in d.items()) or "-"


def study_rows(rep: StudyReport) -> list[dict[str, Any]]:
    """One plain row per variant (text cells), the shape of the markdown/LaTeX/HTML table."""
    rows = []
    for v in rep.variants:
        first = v.first
        row: dict[str, Any] = {
            "variant": v.label + (" (baseline)" if v is rep.baseline else ""),
            "differs from baseline": "-" if v is rep.baseline else _differs_text(
                rep.differs[v.label]),
            "seeds": ", ".join(str(s) for s in v.seeds),
        }
        for key, title in METRICS.items():
            row[title] = v.metrics[key].text()
        row[COMPLEXITY["params"]] = _num(first.params)
        row[COMPLEXITY["gmacs"]] = _num(first.gmacs)
        row["FPS device"] = first.device if first.fps is not None else ""
        for key in PRINTED_DELTAS:
            title = f"Δ {METRICS[key].split(' [')[0]}"
            row[title] = "" if v is rep.baseline else rep.deltas[v.label][key].text()
        rows.append(row)
    return rows


def class_iou_rows(rep: StudyReport) -> list[dict[str, Any]]:
    """Per-class IoU [%] (mean ± sd over seeds): one row per class, one column per variant."""
    classes: list[str] = []
    for v in rep.variants:
        classes += [c for c in v.class_iou if c not in classes]
    return [{"class": c, **{v.label: (v.class_iou[c].text() if c in v.class_iou else "")
                            for v in rep.variants}} for c in classes]


def study_json(rep: StudyReport) -> dict[str, Any]:
    """Everything, machine-readable: per-seed values (with run ids), aggregates and deltas."""
    variants = []
    for v in rep.variants:
        variants.append({
            "variant": v.label,
            "variant_id": v.variant_id,
            "baseline": v is rep.baseline,
            "differs_from_baseline": rep.differs[v.label],
            "runs": {str(r.seed): r.run_id for r in v.records},
            "metrics": {k: a.to_dict() for k, a in v.metrics.items()},
            "class_iou": {c: a.to_dict() for c, a in v.class_iou.items()},
            "params_m": v.first.params,
            "gmacs": v.first.gmacs,
            "gmacs_counter": v.first.gmacs_counter,
            "fps_device": v.first.device if v.first.fps is not None else None,
            "fps_ci_per_run": {str(r.seed): list(r.fps_ci) if r.fps_ci else None
                               for r in v.records},
            "budget": sorted({r.budget for r in v.records}),
            "dataset": sorted({r.dataset for r in v.records}),
            "deltas": {k: d.to_dict() for k, d in rep.deltas.get(v.label, {}).items()},
        })
    return {
        "study": rep.study,
        "title": rep.title,
        "baseline": rep.baseline.label,
        "baseline_rule": rep.baseline_rule,
        "units": {**METRICS, **COMPLEXITY, "class_iou": "IoU [%]", "deltas": "metric units"},
        "notes": rep.notes,
        "variants": variants,
    }


def render_study(rep: StudyReport, fmt: str = "markdown", *, figures: Sequence[str] = ()) -> str:
    """The study report as ``fmt``: markdown, latex, csv, json or html.

    Args:
        figures: for html only, SVG documents (strings) to embed below the tables.

    Raises:
        ConfigError: unknown format.
    """
    import pandas as pd
    from tabulate import tabulate

    fmt = "markdown" if (fmt or "").lower() == "md" else (fmt or "").lower()
    if fmt not in STUDY_FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(STUDY_FORMATS)}")
    if fmt == "json":
        return json.dumps(study_json(rep), indent=2, ensure_ascii=False) + "\n"
    rows = study_rows(rep)
    if fmt == "csv":
        flat = []
        for v, row in zip(rep.variants, rows):
            rec = {"variant": v.label, "baseline": v is rep.baseline,
                   "differs from baseline": row["differs from baseline"],
                   "seeds": row["seeds"]}
            for key, title in METRICS.items():
                a = v.metrics[key]
                rec[f"{title} mean"], rec[f"{title} sd"], rec[f"{title} n"] = a.mean, a.sd, a.n
                d = rep.deltas.get(v.label, {}).get(key)
                rec[f"Δ {title} mean"] = d.mean if d else None
                rec[f"Δ {title} low"] = d.low if d else None
                rec[f"Δ {title} high"] = d.high if d else None
            rec[COMPLEXITY["params"]], rec[COMPLEXITY["gmacs"]] = v.first.params, v.first.gmacs
            rec["FPS device"] = row["FPS device"]
            for c, a in v.class_iou.items():
                rec[f"IoU {c} [%] mean"] = a.mean
            flat.append(rec)
        return pd.DataFrame(flat).to_csv(index=False)
    headers = list(rows[0])
    classes = class_iou_rows(rep)
    if fmt == "markdown":
        body = tabulate([list(r.values()) for r in rows], headers=headers, tablefmt="pipe",
                        disable_numparse=True)
        text = f"## {rep.title}\n\n{body}\n"
        if classes:
            ctab = tabulate([list(r.values()) for r in classes], headers=list(classes[0]),
                            tablefmt="pipe", disable_numparse=True)
            text += f"\n### Per-class IoU [%]\n\n{ctab}\n"
        return text + "\n" + "\n".join(f"- {n}" for n in rep.notes) + "\n"
    if fmt == "latex":
        body = tabulate([list(r.values()) for r in rows], headers=headers,
                        tablefmt="latex_booktabs", disable_numparse=True)
        return f"% {rep.title}\n" + "\n".join(f"% {n}" for n in rep.notes) + f"\n{body}\n"
    return html_page(rep, rows, classes, figures)


def html_page(rep: StudyReport, rows: list[dict[str, Any]], classes: list[dict[str, Any]],
              figures: Sequence[str]) -> str:
    """One self-contained HTML page: tables, notes and inline SVG figures, no external resource."""
    import html

    from tabulate import tabulate

    def table(data: list[dict[str, Any]]) -> str:
        return tabulate([[html.escape(str(x)) for x in r.values()] for r in data],
                        headers=[html.escape(h) for h in data[0]], tablefmt="unsafehtml",
                        disable_numparse=True)

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(rep.title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:80em}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
        "th,td{border:1px solid #bbb;padding:0.25em 0.5em;text-align:left}"
        "th{background:#eee}figure{margin:1em 0}svg{max-width:100%;height:auto}</style>",
        "</head><body>",
        f"<h1>{html.escape(rep.title)}</h1>",
        table(rows),
    ]
    if classes:
        parts += ["<h2>Per-class IoU [%]</h2>", table(classes)]
    parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in rep.notes) + "</ul>")
    for svg in figures:
        start = svg.find("<svg")
        parts.append(f"<figure>{svg[start:] if start >= 0 else svg}</figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


__all__ = [
    "STUDY_FORMATS",
    "METRICS",
    "VariantStats",
    "StudyReport",
    "build_study_report",
    "render_study",
    "study_json",
    "study_rows",
    "class_iou_rows",
    "group_variants",
    "closest_to_paper",
    "paper_distance",
    "config_differences",
    "flatten_config",
]
