"""``hsbench train``: train and evaluate one variant (a thin wrapper over :func:`run_variant`).

Registered on the main app by :func:`register`. Example (CPU, a few minutes)::

    hsbench train --template camvid-s --backbone tf_efficientnet_lite1 --pretrained \\
        --dataset camvid --data-root ../shared/data --train-split train --eval-split test \\
        --crop 320x240 --iterations 100 --batch-size 4 --run-dir runs/lite1 --device cpu

On several GPUs of one machine (DDP; ``--batch-size`` is the global batch)::

    torchrun --nproc-per-node 2 "$(which hsbench)" train --run-dir runs/x --batch-size 16 ...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from hsbench.errors import ConfigError
from hsbench.values import check_float, check_int, parse_resolution




def train_command(
    run_dir: Annotated[str, typer.Option(help="Folder for checkpoint.pt, config.json, result.json; resumed if present.")],
    template: Annotated[str, typer.Option(help="Table S1 template.")] = "camvid-s",
    backbone: Annotated[Optional[str], typer.Option(help="Backbone (default: the template's).")] = None,
    pretrained: Annotated[bool, typer.Option(help="ImageNet weights for the backbone.")] = False,
    dataset: Annotated[str, typer.Option(help="camvid, cityscapes, voc or synthetic.")] = "camvid",
    data_root: Annotated[Optional[str], typer.Option(help="Data root (else $HSBENCH_DATA, else ./data).")] = None,
    train_split: Annotated[Optional[str], typer.Option(help="Training split (default: the dataset's).")] = None,
    eval_split: Annotated[Optional[str], typer.Option(help="Evaluation split (default: the dataset's).")] = None,
    crop: Annotated[Optional[str], typer.Option(help="Training crop WIDTHxHEIGHT (default: the dataset's).")] = None,
    eval_resolution: Annotated[Optional[str], typer.Option(help="Evaluation image size WIDTHxHEIGHT (default native).")] = None,
    iterations: Annotated[Optional[int], typer.Option(help="Budget in iterations (default: Table 1's t / batch).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Global batch size (default: Table 1's).")] = None,
    lr0: Annotated[Optional[float], typer.Option(help="Initial learning rate (default: Table 1's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of init, data order and augmentation.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint period in iterations (0 = final only).")] = 1000,
    workers: Annotated[int, typer.Option(help="DataLoader workers.")] = 0,
    amp: Annotated[bool, typer.Option(help="Mixed precision on CUDA.")] = True,
    hflip_tta: Annotated[bool, typer.Option(help="Horizontal-flip test-time augmentation.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, ...")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole RunResult as JSON.")] = False,
) -> None:
    """Train one HyperSeg variant with the paper's recipe, evaluate it, print mIoU & co."""
    from hsbench.data import DataConfig
    from hsbench.engine.config import EvalConfig, TrainConfig
    from hsbench.engine.run import run_variant
    from hsbench.models.config import ModelConfig

    for value, what, low in ((iterations, "--iterations", 1), (batch_size, "--batch-size", 1), (seed, "--seed", 0),
                             (checkpoint_every, "--checkpoint-every", 0), (workers, "--workers", 0)):
        if value is not None:
            check_int(value, what, minimum=low)
    if lr0 is not None and not check_float(lr0, "--lr0") > 0:
        raise ConfigError(f"--lr0 must be a positive number, got {lr0}")
    model_cfg = ModelConfig(template=template, backbone=backbone, pretrained=pretrained)
    data_kw: dict = {"dataset": dataset, "root": data_root}
    if train_split:
        data_kw["train_split"] = train_split
    if eval_split:
        data_kw["eval_split"] = eval_split
    if crop:
        w, h = parse_resolution(crop, "--crop")
        data_kw["crop_size"] = (h, w)
    if eval_resolution:
        data_kw["eval_resolution"] = parse_resolution(eval_resolution, "--eval-resolution")
    data_cfg = DataConfig(**data_kw)
    overrides = {k: v for k, v in {"iterations": iterations, "batch_size": batch_size, "lr0": lr0}.items() if v is not None}
    preset = "voc" if dataset == "voc" else ("cityscapes" if dataset == "cityscapes" else "camvid")
    train_cfg = TrainConfig.preset(
        preset, seed=seed, checkpoint_every=checkpoint_every, num_workers=workers, amp=amp, **overrides
    )
    check_run_dir(run_dir)  # last: every other check has passed before the folder is made
    result = run_variant(model_cfg, data_cfg, train_cfg, EvalConfig(hflip=hflip_tta), run_dir=run_dir, device=device)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    m = result.metrics

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}"

    typer.echo(
        f"{template}/{result.configs['model'].get('backbone')} on {result.dataset_version} "
        f"({result.protocol['split']}, {result.protocol['num_images']} images), {result.iterations_done} "
        f"iterations x {train_cfg.batch_size} on {result.device}"
    )
    typer.echo(
        f"mIoU {pct(m['miou'])}  mAcc {pct(m['macc'])}  pixel acc {pct(m['pixel_acc'])}  "
        f"trimap mIoU (w={result.protocol['trimap_width_px']}px) {pct(m['trimap_miou'])}"
    )
    typer.echo(f"result: {run_dir}/result.json  checkpoint: {result.checkpoint_path}")


def check_run_dir(run_dir: str) -> Path:
    """``run_dir`` as a Path once it is (or can be made) a folder hsbench can write in.

    Raises:
        ConfigError: it is an existing file, or the folder cannot be created or written.
    """
    import tempfile

    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--run-dir {run_dir!r} is an existing file; give a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot write in --run-dir {run_dir!r}: {exc.strerror or exc}; give a writable folder"
        ) from None
    return path


def register(app: typer.Typer) -> None:
    """Add ``hsbench train`` to ``app``."""
    app.command("train")(train_command)


__all__ = ["check_run_dir", "register", "train_command"]
