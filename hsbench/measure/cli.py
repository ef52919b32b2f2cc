"""``hsbench bench ...``: operator micro-benchmarks (thin commands over :mod:`hsbench.measure.bench`).

``hsbench bench dpwconv [--device auto|cpu|cuda] [--format table|json]``
times the reference and fast dynamic patch-wise convolutions and an ordinary
convolution of the same shape on the camvid-s and cityscapes-m layer shapes.
"""

from __future__ import annotations

from typing import Optional

import typer

from hsbench.errors import ConfigError

bench_app = typer.Typer(
    name="bench",
    help="Micro-benchmarks of hsbench's operators (times in ms, traffic in GB/s).",
    no_args_is_help=True,
)

_FORMATS = ("table", "json")


@bench_app.command("dpwconv")
def dpwconv(
    device: str = typer.Option("auto", "--device", help="auto (CUDA if available), cpu, cuda or cuda:N."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
    template: Optional[list[str]] = typer.Option(
        None, "--template", help="camvid-s and/or cityscapes-m (repeatable); default both."
    ),
    iters: int = typer.Option(10, "--iters", min=1, help="Timed calls per implementation and layer."),
    warmup: int = typer.Option(3, "--warmup", min=0, help="Untimed calls before timing."),
    scale: float = typer.Option(1.0, "--scale", help="Feature-map size factor (< 1 for a quick run)."),
    skip_reference: bool = typer.Option(False, "--skip-reference", help="Do not run the slow reference (no timing, no max|fast-ref| check)."),
) -> None:
    """Time reference vs fast DPWConv vs an ordinary conv on Table S1 layer shapes."""

    from hsbench.device import check_device, resolve_device
    from hsbench.measure.bench import (
        BENCH_TEMPLATES,
        bench_dpwconv,
        format_bench,
        template_layers,
    )
    from hsbench.measure.provenance import collect_provenance

    device = str(resolve_device(check_device(device)))
    if fmt not in _FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(_FORMATS)}.")
    templates = template or list(BENCH_TEMPLATES)
    layers = [layer for t in templates for layer in template_layers(t, scale=scale)]
    rows = bench_dpwconv(layers, device=device, include_reference=not skip_reference, warmup=warmup, iters=iters)
    typer.echo(format_bench(rows, fmt, provenance=collect_provenance()))


def register(app: typer.Typer) -> None:
    """Add the ``bench`` sub-app (``hsbench bench dpwconv``) to the top-level app."""
    app.add_typer(bench_app, name="bench")
