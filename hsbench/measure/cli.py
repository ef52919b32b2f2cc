"""``hsbench profile`` and ``hsbench bench ...``: thin commands over :mod:`hsbench.measure`.

``hsbench profile [--template camvid-s] [--fps] ...`` prints the learned
parameters, weight mapper parameters, GMACs (thop, fvcore) and GFLOPs of one
HyperSeg variant, and with ``--fps`` its speed under the paper's protocol.
It lives here, not in :mod:`hsbench.models`: measure imports models, never
the other way round.

``hsbench bench dpwconv [--device auto|cpu|cuda] [--backend auto|torch|triton]
[--format table|json]`` times the reference and fast dynamic patch-wise
convolutions (and fused meta blocks) and ordinary convolutions of the same
shapes on the layers of ``build_model(template)`` (default camvid-s and
cityscapes-m).
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated, Optional

import typer

from hsbench.errors import ConfigError
from hsbench.values import parse_resolution

bench_app = typer.Typer(
    name="bench",
    help="Micro-benchmarks of hsbench's operators (times in ms, traffic in GB/s).",
    no_args_is_help=True,
)

_FORMATS = ("table", "json")


class Format(str, Enum):
    json = "json"
    table = "table"


def parse_grid_size(text: str) -> int | str:
    """``"native"`` or a positive int.

    Raises:
        ConfigError: for anything else.
    """
    if text == "native":
        return text
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"--grid-size {text!r} is not allowed; use \"native\" or a positive int such as 1, 4, 8, 16") from None
    return value


def parse_groups(text: str) -> tuple[int, ...]:
    """``"4,8,16,16,32"`` -> (4, 8, 16, 16, 32).

    Raises:
        ConfigError: if an entry is not an int.
    """
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--weight-groups {text!r} is not a comma-separated list of ints, e.g. 4,8,16,16,32") from None


def profile(
    template: Annotated[str, typer.Option(help="Table S1 template: voc-l, cityscapes-s, cityscapes-m, camvid-s, camvid-l.")] = "camvid-s",
    backbone: Annotated[Optional[str], typer.Option(help="Backbone; default: the template's.")] = None,
    grid_size: Annotated[str, typer.Option(help='Patch grid: "native" or N for an NxN grid (1 = no context head).')] = "native",
    positional_encoding: Annotated[bool, typer.Option("--positional-encoding/--no-positional-encoding")] = True,
    weight_groups: Annotated[Optional[str], typer.Option(help="g_w per decoder level, coarse to fine, e.g. 32,16,16,8,4.")] = None,
    static: Annotated[bool, typer.Option("--static", help='"w/o DPWConv": ordinary convolutions, no hypernetwork.')] = False,
    fusion: Annotated[str, typer.Option(help="Decoder fusion: concat (HyperSeg) or an aggregation op: param_sum, concat_reduce, pred_op, bilinear_sampling, conv3d, dense_attention (+ _coarse_first orders).")] = "concat",
    num_classes: Annotated[Optional[int], typer.Option(help="Output classes; default: the template's dataset's.")] = None,
    resolution: Annotated[Optional[str], typer.Option(help="WIDTHxHEIGHT; default: the template's (Table S1).")] = None,
    fps: Annotated[bool, typer.Option("--fps", help="Also measure FPS with the paper's protocol (hsbench.measure.speed).")] = False,
    device: Annotated[str, typer.Option(help="FPS device: auto, cpu or cuda.")] = "auto",
    frames: Annotated[int, typer.Option(help="FPS: timed frames per repeat.")] = 100,
    repeats: Annotated[int, typer.Option(help="FPS: repeats of the whole measurement.")] = 5,
    counters: Annotated[str, typer.Option(help="Comma-separated MAC counters to run: thop, fvcore, flop_counter.")] = "thop,fvcore,flop_counter",
    semantics: Annotated[str, typer.Option(help='"paper" (the paper\'s description) or "release" (the authors\' released code).')] = "paper",
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    dpw_backend: Annotated[str, typer.Option("--dpw-backend", help="DPWConv backend: auto, reference, torch, triton.")] = "auto",
    breakdown: Annotated[bool, typer.Option("--breakdown", help="CPU: per-module latency of the template beside its static variant and the timm backbone alone, interleaved, with the two ratios (hsbench.measure.breakdown); nothing else is printed.")] = False,
    breakdown_frames: Annotated[int, typer.Option(help="--breakdown: interleaved frames timed per model.")] = 10,
    threads: Annotated[int, typer.Option(help="--breakdown: CPU threads.")] = 2,
) -> None:
    """Print the complexity of one variant: learned params, weight mapper params, GMACs (thop, fvcore), GFLOPs.

    With ``--fusion`` other than concat, the same counts of the concat model
    (all other knobs equal) are printed beside them (``concat`` in JSON).

    With ``--breakdown``: where the template's CPU time goes (per module), beside
    the static template and the backbone floor, interleaved in one process.
    """
    import torch

    if breakdown:
        from hsbench.measure.breakdown import format_breakdown, profile_breakdown
        from hsbench.ops import BACKENDS

        if dpw_backend not in BACKENDS:
            raise ConfigError(f"--dpw-backend {dpw_backend!r} is not one of {', '.join(BACKENDS)}")
        if breakdown_frames < 1 or threads < 1:
            raise ConfigError("--breakdown-frames and --threads must be positive")
        res = parse_resolution(resolution, "--resolution") if resolution else None
        result = profile_breakdown(template, res, threads=threads, repeats=breakdown_frames, dpw_backend=dpw_backend)
        typer.echo(json.dumps(result.to_dict(), indent=2) if fmt is Format.json else format_breakdown(result))
        return

    from hsbench.measure.complexity import complexity
    from hsbench.models import ModelConfig, build_model, get_template

    tpl = get_template(template)
    cfg = ModelConfig(
        template=template,
        backbone=backbone,
        grid_size=parse_grid_size(grid_size),
        positional_encoding=positional_encoding,
        weight_groups=parse_groups(weight_groups) if weight_groups else None,
        dynamic=not static,
        num_classes=num_classes,
        fusion=fusion,
        semantics=semantics,
    )
    res = parse_resolution(resolution, "--resolution") if resolution else tpl.resolution
    wanted = tuple(c.strip() for c in counters.split(",") if c.strip())
    unknown = sorted(set(wanted) - {"thop", "fvcore", "flop_counter"})
    if unknown:
        raise ConfigError(f"--counters: unknown counter(s) {unknown}; allowed: thop, fvcore, flop_counter")
    torch.manual_seed(0)
    try:
        model = build_model(cfg, dpw_backend=dpw_backend)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if min(res) < model.MIN_SIZE:
        raise ConfigError(f"--resolution {res[0]}x{res[1]} is below the model's minimum of 64x64")
    model.grid_shape(res[1], res[0])  # validates the grid against the resolution
    result = {"template": template, "paper_name": tpl.paper_name, "config": model.config.to_dict()}
    result.update(complexity(model, res, counters=wanted).to_dict())
    result["params_fusion"] = model.fusion_parameters()
    if model.config.fusion != "concat":
        torch.manual_seed(0)
        base = complexity(build_model(cfg.replace(fusion="concat"), dpw_backend=dpw_backend), res, counters=wanted)
        result["concat"] = {k: getattr(base, k) for k in _BESIDE}
    if fps:
        speed_result = _measure_fps(model, res, device, frames, repeats, dpw_backend)
        result["speed"] = speed_result.to_dict(samples=False)
    if fmt is Format.json:
        typer.echo(json.dumps(result, indent=2))
    else:
        typer.echo(_table(result))
        if fps:
            from hsbench.measure.speed import format_speed_result

            typer.echo("")
            typer.echo(format_speed_result(speed_result, "table"))


#: Counts repeated for the concat model beside a non-concat fusion.
_BESIDE = ("params_learned", "params_weight_mapper", "generated_weights", "gmacs_thop", "gmacs_fvcore", "gflops")


def _measure_fps(model, resolution: tuple[int, int], device: str, frames: int, repeats: int, dpw_backend: str = "auto"):
    """The paper's FPS protocol (Sec. 4), BN fused, batch 1: see :func:`hsbench.measure.speed.measure_fps`."""
    from hsbench.measure.config import SpeedConfig
    from hsbench.measure.speed import measure_fps

    cfg = SpeedConfig(device=device, resolution=resolution, timed_frames=frames, repeats=repeats,
                      dpw_backend=dpw_backend)
    cfg.validate()
    return measure_fps(model.eval(), cfg)


def _num(value: float) -> str:
    return "not run" if value != value else f"{value:.3f}"  # NaN: counter not run


def _table(result: dict) -> str:
    from tabulate import tabulate

    c = result["config"]
    rows = [
        ("template", f"{result['template']} ({result['paper_name']})"),
        ("semantics", c.get("semantics", "paper")),
        ("backbone", c["backbone"]),
        ("dynamic (DPWConv)", c["dynamic"]),
        ("decoder fusion", c.get("fusion", "concat")),
        ("grid size", c["grid_size"]),
        ("positional encoding", c["positional_encoding"]),
        ("weight groups g_w (coarse to fine)", c["weight_groups"]),
        ("resolution (W x H)", "x".join(map(str, result["resolution"]))),
        ("weight grid (N_h x N_w)", "x".join(map(str, result["grid"])) if result["grid"] else "-"),
        ("params learned (M)", f"{result['params_learned'] / 1e6:.3f}"),
        ("params weight mapper |theta^w| (M)", f"{result['params_weight_mapper'] / 1e6:.3f}"),
        ("generated weights per image (M)", f"{result['generated_weights'] / 1e6:.3f}"),
        ("GMACs (thop + hsbench rules)", _num(result["gmacs_thop"])),
        ("GMACs (fvcore)", _num(result["gmacs_fvcore"])),
        ("GFLOPs (torch flop_counter, 2/MAC)", _num(result["gflops"])),
        ("  of which DPWConv GMACs", f"{result['gmacs_dpwconv']:.3f}"),
        ("  of which weight mapper GMACs", f"{result['gmacs_weight_mapper']:.3f}"),
        ("params decoder fusion (projections + op)", f"{result['params_fusion']:,}"),
    ]
    base = result.get("concat")
    if base:
        rows += [
            ("concat: params learned (M)", f"{base['params_learned'] / 1e6:.3f}"),
            ("concat: GMACs (thop + hsbench rules)", _num(base["gmacs_thop"])),
            ("concat: GMACs (fvcore)", _num(base["gmacs_fvcore"])),
        ]
    speed = result.get("speed")
    if speed:
        backend = speed.get("settings", {}).get("dpwconv_backend")
        rows.append(("FPS (paper protocol)", f"{speed.get('fps', float('nan')):.2f} on {speed.get('device', '?')}"
                     f" (DPWConv backend {backend})"))
    return tabulate(rows, headers=("quantity", "measured"), tablefmt="github")


@bench_app.command("dpwconv")
def dpwconv(
    device: str = typer.Option("auto", "--device", help="auto (CUDA if available), cpu, cuda or cuda:N."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
    template: Optional[list[str]] = typer.Option(
        None, "--template", help="Table S1 template(s) (repeatable); default camvid-s and cityscapes-m."
    ),
    backend: str = typer.Option("auto", "--backend", help="DPWConv backend of the fast rows: auto, torch, triton, reference."),
    blocks: bool = typer.Option(True, "--blocks/--no-blocks", help="Also time every full meta block fused (pw1 -> dw -> pw2)."),
    iters: int = typer.Option(10, "--iters", min=1, help="Timed calls per implementation and layer."),
    warmup: int = typer.Option(3, "--warmup", min=0, help="Untimed calls before timing."),
    scale: float = typer.Option(1.0, "--scale", help="Feature-map size factor in (0, 2] (< 1 for a quick run)."),
    skip_reference: bool = typer.Option(False, "--skip-reference", help="Do not run the slow reference (no timing, no max|fast-ref| check)."),
) -> None:
    """Time reference vs fast DPWConv vs an ordinary conv on the layer shapes of build_model(template)."""

    from hsbench.device import check_device, resolve_device
    from hsbench.measure.bench import (
        DEFAULT_TEMPLATES,
        MAX_SCALE,
        bench_dpwconv,
        format_bench,
        template_layers,
    )
    from hsbench.measure.provenance import collect_provenance
    from hsbench.ops import BACKENDS

    if not 0 < scale <= MAX_SCALE:  # NaN and inf fail too
        raise ConfigError(
            f"--scale {scale!r} must be a number in (0, {MAX_SCALE:g}]: 1 is the template's size, < 1 a quick run"
        )
    device = str(resolve_device(check_device(device)))
    if fmt not in _FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(_FORMATS)}.")
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r} is not one of {', '.join(BACKENDS)}.")
    templates = template or list(DEFAULT_TEMPLATES)
    layers = [layer for t in templates for layer in template_layers(t, scale=scale, blocks=blocks)]
    try:
        rows = bench_dpwconv(layers, device=device, backend=backend, include_reference=not skip_reference,
                             warmup=warmup, iters=iters)
    except ValueError as exc:  # a backend that cannot run on this device
        raise ConfigError(f"--backend {backend}: {exc}") from None
    typer.echo(format_bench(rows, fmt, provenance=collect_provenance()))


def register(app: typer.Typer) -> None:
    """Add ``profile`` and the ``bench`` sub-app (``hsbench bench dpwconv``) to the top-level app."""
    app.command("profile")(profile)
    app.add_typer(bench_app, name="bench")
