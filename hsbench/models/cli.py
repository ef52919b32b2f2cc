"""``hsbench import-weights``: the authors' released checkpoints into hsbench's weights format.

Torch-free at import (see :mod:`hsbench.cli`): the command body imports
:mod:`hsbench.models.official` and :mod:`hsbench.models.weights`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from hsbench.errors import ConfigError


def import_weights(
    release: Annotated[str, typer.Argument(help="A checkpoint of the authors' release (*.pth).")],
    out: Annotated[str, typer.Option("--out", help="hsbench weights file to write (*.pt).")],
) -> None:
    """Convert a released HyperSeg checkpoint to hsbench's weights format; print the config it was recognised as.

    The checkpoint's 'arch' string is parsed, never executed; its tensors are
    mapped strictly (hsbench.models.official). Use the output as model.weights
    in a study, or evaluate the .pth directly.
    """
    from pathlib import Path

    from tabulate import tabulate

    from hsbench.models.official import load_official_checkpoint
    from hsbench.models.weights import file_sha256, save_weights

    src = Path(release)
    model = load_official_checkpoint(src)
    dest = Path(out)
    if dest.resolve() == src.resolve():
        raise ConfigError("--out must differ from the release checkpoint; give a new file name")
    source = {"file": src.name, "sha256": file_sha256(src)}
    save_weights(model, dest, source=source)
    c = model.config
    rows = [
        ("template", f"{c.template} ({model.template.paper_name})"),
        ("semantics", c.semantics),
        ("backbone", f"{c.backbone} ({model.backbone.spec.timm_name}, static SAME padding)"),
        ("classes", f"{c.num_classes}" + (" (the last is the release's Void; evaluation scores the others)" if model.void_logit else "")),
        ("weight groups g_w (coarse to fine)", list(c.weight_groups)),
        ("params learned (M)", f"{sum(p.numel() for p in model.parameters()) / 1e6:.3f}"),
        ("source", f"{source['file']} sha256 {source['sha256'][:16]}..."),
        ("written", str(dest)),
    ]
    typer.echo(tabulate(rows, headers=("recognised", "value"), tablefmt="github"))


def register(app: typer.Typer) -> None:
    """Add ``import-weights`` to the top-level app."""
    app.command("import-weights")(import_weights)
