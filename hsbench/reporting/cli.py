"""``hsbench report``, ``hsbench plot`` and ``hsbench runs list|show``.

Thin commands over :mod:`hsbench.reporting.tables`, :mod:`hsbench.reporting.plots`
and :class:`hsbench.store.Store`. Every command reads the database given by
``--db URL``, else ``$HSBENCH_DB``, else ``sqlite:///results/hsbench.db``, and
never writes to it (a missing database is an error, not an empty new file).
User mistakes raise :class:`hsbench.errors.ConfigError` / ``StoreError``;
:func:`hsbench.cli.main` prints them as one ``error: ...`` line and exits 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from hsbench.errors import ConfigError, StoreError
from hsbench.outputs import check_output_path, sqlite_file, write_text_atomic
from hsbench.values import INT64_MAX, check_int

_DB_HELP = "results database URL (default: $HSBENCH_DB, else sqlite:///results/hsbench.db)"


def _open_readonly(db: str | None, hint: str | None = None):
    from hsbench.store import MissingDatabaseError, Store

    try:
        return Store.open(db, create=False)
    except MissingDatabaseError as exc:
        if hint:
            raise StoreError(f"{str(exc).split(';')[0]}; {hint}") from None
        raise


def _write_text(text: str, out: Path | None) -> None:
    """Print ``text``, or write it atomically to ``out`` (already checked by ``check_output_path``)."""
    if out is None:
        typer.echo(text, nl=False)
        return
    write_text_atomic(out, text)
    typer.echo(f"wrote {out}", err=True)


def report(
    table: Optional[str] = typer.Option(
        None, "--table", "-t", help="paper table: 2, 3, 4, S2 or S3 (omit with --study for the study table)"),
    study: Optional[str] = typer.Option(
        None, "--study", help="only this study's runs; without --table: the study table over seeds"),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", help="study table: pair variants with this one (default: the study's "
        "[study] baseline, else the variant closest to the paper's configuration)"),
    fmt: str = typer.Option("markdown", "--format", "-f",
                            help="markdown, latex, csv, json or html"),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write to this file"),
) -> None:
    """A paper table beside the measured runs, or (--study without --table) a study's table.

    The study table aggregates every variant over its seeds (mean ± sd, n) and
    pairs each variant with the baseline per seed (Δ with a 95% interval).
    Before any database exists (no SQLite file at ``--db``), a paper table
    shows the paper's rows alone and names the study that measures them;
    no file is created.
    """
    if out is not None:  # never the results database or its side files (hsbench.outputs)
        out = check_output_path(out, db_url=db)
    if table is None:
        if study is None:
            raise ConfigError("give --table 2|3|4|S2|S3 for a paper table, or --study NAME for "
                              "a study's table (see `hsbench runs list` for stored studies)")
        _study_report(study, baseline=baseline, fmt=fmt, db=db, out=out)
        return
    if baseline is not None:
        raise ConfigError("--baseline applies to the study table: drop --table to get it")
    from hsbench.reporting.paper import get_table
    from hsbench.reporting.tables import FORMATS, build_report, render

    paper_table = get_table(table)  # ConfigError before touching the database
    if fmt.lower() not in FORMATS and fmt.lower() != "md":
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    first, *others = paper_table.studies
    runs = f"`hsbench run {first}`" + (f" (or {', '.join(others)})" if others else "")
    missing = sqlite_file(db)
    if study is None and missing is not None and not missing.exists():
        # A newcomer's first report: the paper's rows, and the study that measures them; no file made.
        rep = build_report(paper_table.id, None)
        rep.notes[:] = [n for n in rep.notes if not n.startswith("No measured rows")]
        rep.notes.append(f"No results database at {missing} yet, so only the paper's rows are shown: "
                         f"run {runs} to measure them (or pass --db URL).")
    else:
        with _open_readonly(db, hint=f"run {runs} first, or pass --db URL") as store:
            if study is not None:
                store.get_study(study)
            rep = build_report(paper_table.id, store, study=study)
    text = render(rep, fmt)
    _write_text(text, out)
    if fmt.lower() == "csv":  # the notes (and the hint) are not part of the CSV
        for note in rep.notes:
            typer.echo(f"note: {note}", err=True)


def _study_report(study: str, *, baseline: str | None, fmt: str, db: str | None,
                  out: Path | None) -> None:
    """``hsbench report --study NAME``: the study table (hsbench.reporting.study_report)."""
    from hsbench.reporting.measured import measured_records
    from hsbench.reporting.study_report import STUDY_FORMATS, build_study_report, render_study

    fmt = "markdown" if fmt.lower() == "md" else fmt.lower()
    if fmt not in STUDY_FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(STUDY_FORMATS)}")
    with _open_readonly(db, hint=f"run `hsbench run studies/{study}.toml` first, or pass --db URL"
                        ) as store:
        info = store.get_study(study)
        rep = build_study_report(study, measured_records(store, study=study),
                                 baseline=baseline or declared_baseline(info.spec_toml))
        figures = _study_figures(store, study) if fmt == "html" else ()
    _write_text(render_study(rep, fmt, figures=figures), out)


def declared_baseline(spec_toml: str | None) -> str | None:
    """``[study] baseline`` of a stored study's TOML text (None when it declares none).

    The study's text is stored verbatim with it (``hsbench run`` validated it,
    including that the baseline names one of its variants).
    """
    import tomllib

    if not spec_toml:
        return None
    try:
        study = tomllib.loads(spec_toml).get("study", {})
    except tomllib.TOMLDecodeError:
        return None
    value = study.get("baseline") if isinstance(study, dict) else None
    return value if isinstance(value, str) else None


def _study_figures(store, study: str) -> list[str]:
    """The trade-off plots of a study as SVG documents (for the HTML report)."""
    from hsbench.reporting.plots import PLOT_KINDS, figure_svg

    return [figure_svg(kind, store, study=study) for kind in PLOT_KINDS]


def plot(
    kind: str = typer.Argument(..., help="fps-vs-miou, gmacs-vs-miou or params-vs-miou"),
    study: Optional[str] = typer.Option(None, "--study", help="only this study's runs"),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o",
        help="FILE.png, .svg or .pdf (default results/<kind>[-<study>].<format>)",
    ),
    fmt: Optional[str] = typer.Option(
        None, "--format", "-f", help="png, svg or pdf (default: --out's suffix, else png)"
    ),
    width: str = typer.Option(
        "page", "--width", help="column (3.3 in), page (6.9 in) or a width in inches"
    ),
    dpi: int = typer.Option(200, "--dpi", help="resolution of png output, dots per inch"),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
) -> None:
    """Plot mIoU against speed, compute or size: one panel per dataset, one speed axis per device."""
    from hsbench.reporting.plots import (
        check_dpi,
        check_kind,
        check_width,
        resolve_out,
        save_plot,
    )

    check_kind(kind)
    check_width(width)
    check_dpi(dpi)
    path = resolve_out(kind, study, out, fmt)
    path = check_output_path(path, db_url=db)
    with _open_readonly(db) as store:
        written = save_plot(kind, store, study=study, out=path, width=width, dpi=dpi)
    typer.echo(f"wrote {written}")


def runs_list(
    study: Optional[str] = typer.Option(None, "--study", help="only this study's runs"),
    status: Optional[str] = typer.Option(
        None, "--status", help="pending, running, finished or failed"
    ),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
    fmt: str = typer.Option("table", "--format", "-f", help="table or json"),
    as_json: bool = typer.Option(False, "--json", help="same as --format json"),
) -> None:
    """List runs: id, study, variant, status, seed, device, dataset, budget, mIoU."""
    if fmt.lower() not in ("table", "json"):
        raise ConfigError(f"unknown format {fmt!r}; choose table or json")
    as_json = as_json or fmt.lower() == "json"
    from tabulate import tabulate

    from hsbench.reporting.measured import budget_text

    with _open_readonly(db) as store:
        runs = store.list_runs(study=study, status=status)
        where = store.url
        details = ({d.run.id: d for d in store.finished_runs(study)}
                   if as_json and status in (None, "finished") else {})
    if as_json:
        typer.echo(json.dumps([_run_json(r, details.get(r.id)) for r in runs], indent=2,
                              default=str))
        return
    if not runs:
        typer.echo(f"no runs{f' for study {study!r}' if study else ''} in {where}")
        return
    rows = []
    for r in runs:
        err = (r.error or "").splitlines()[0][:40] if r.error else ""
        rows.append([
            r.id, r.study or "", r.label or "", r.variant_id[:12], r.status, r.seed,
            r.device or "", " ".join(x for x in (r.dataset, r.dataset_version) if x),
            r.resolution or "", budget_text(r.budget_iters, r.max_iters),
            "" if r.miou is None else f"{100 * r.miou:.2f}",
            (r.finished_at or r.started_at or "")[:19], err,
        ])
    headers = ["id", "study", "label", "variant", "status", "seed", "device", "dataset",
               "resolution", "budget", "mIoU [%]", "finished/started (UTC)", "error"]
    typer.echo(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


def _run_json(summary, detail) -> dict:
    """A run for ``runs list --format json``: its summary plus, once finished, its stored
    metrics, complexity and speed records (the per-seed values that reports aggregate)."""
    out = summary.to_dict()
    if detail is not None:
        full = detail.to_dict()
        out.update({k: full[k] for k in ("metrics", "complexity", "speed")})
    return out


def runs_show(
    run_id: str = typer.Argument(..., metavar="ID", help="run id (see `hsbench runs list`)"),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Show one run: its config, metrics, complexity, speed with provenance, and error."""
    try:
        rid = check_int(int(run_id), "run id", minimum=1)
    except ValueError:
        shown = run_id if len(run_id) <= 30 else f"{run_id[:12]}... ({len(run_id)} characters)"
        raise ConfigError(
            f"run id must be a whole number from 1 to {INT64_MAX}, got {shown!r}; "
            "`hsbench runs list` shows the ids"
        ) from None
    with _open_readonly(db) as store:
        detail = store.get_run(rid)
    data = detail.to_dict()
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    typer.echo(format_run(data))


def format_run(data: dict) -> str:
    """Human-readable ``runs show``: sections run, studies, config, metrics, complexity, speed."""
    r = data["run"]
    lines = [f"run {r['id']}  status: {r['status']}"]
    for key in ("variant_id", "study", "label", "seed", "device", "dataset", "dataset_version",
                "resolution", "budget_iters", "max_iters", "checkpoint_path", "run_dir", "host",
                "executor", "job_id", "wall_time_s", "claimed_by", "heartbeat_at", "created_at",
                "started_at", "finished_at"):
        if r.get(key) is not None:
            lines.append(f"  {key}: {r[key]}")
    if r.get("error"):
        lines.append("error:")
        lines.extend(f"  {ln}" for ln in str(r["error"]).splitlines())
    lines.append("studies: " + (", ".join(
        f"{s['name']} (table {s['paper_table'] or '-'}, label {s['label'] or '-'})"
        for s in data["studies"]) or "-"))
    lines.append("config:")
    lines.extend("  " + ln for ln in json.dumps(data["config"], indent=2, sort_keys=True)
                 .splitlines())
    met = data.get("metrics")
    if met:
        lines.append("metrics (accuracies as fractions):")
        for key in ("split", "miou", "macc", "pixel_acc", "trimap_miou"):
            if met.get(key) is not None:
                lines.append(f"  {key}: {met[key]}")
        for key in ("per_class_iou", "per_class_acc", "protocol"):
            if met.get(key):
                lines.append(f"  {key}: {json.dumps(met[key])}")
        if met.get("confusion_matrix") is not None:
            cm = met["confusion_matrix"]
            lines.append(f"  confusion_matrix: {len(cm)}x{len(cm[0]) if cm else 0} "
                         f"(rows = label, columns = prediction; --json prints it)")
    tr = data.get("training")
    if tr:
        lines.append("training (s, images/s):")
        lines.extend(f"  {k}: {v}" for k, v in tr.items() if v is not None)
    cx = data.get("complexity")
    if cx:
        lines.append("complexity (counts; GMACs in billions):")
        lines.extend(f"  {k}: {v}" for k, v in cx.items() if v is not None)
    for i, sp in enumerate(data.get("speed") or []):
        lines.append(f"speed [{i}] (fps in frames/s, latencies in ms):")
        for k, v in sp.items():
            if v is None or k in ("provenance", "settings", "config"):
                continue
            lines.append(f"  {k}: {v}")
        for key in ("config", "settings"):
            if sp.get(key):
                lines.append(f"  {key}: {json.dumps(sp[key], sort_keys=True, default=str)}")
        if sp.get("provenance"):
            lines.append("  provenance:")
            lines.extend("    " + ln for ln in json.dumps(sp["provenance"], indent=2,
                                                          sort_keys=True, default=str)
                         .splitlines())
    return "\n".join(lines) + "\n"


def register(app: typer.Typer) -> None:
    """Add ``report``, ``plot`` and the ``runs`` sub-app to the top-level app."""
    app.command("report")(report)
    app.command("plot")(plot)
    runs_app = typer.Typer(
        name="runs", help="Inspect stored runs.", no_args_is_help=True, add_completion=False
    )
    runs_app.command("list")(runs_list)
    runs_app.command("show")(runs_show)
    app.add_typer(runs_app, name="runs")


__all__ = ["register", "report", "plot", "runs_list", "runs_show", "format_run"]
