"""``hsbench run STUDY.toml``: the command line of a study run (thin).

What a run does is :mod:`hsbench.orchestrate` (claims runs in the database,
calls workers, stores records; see its docstring for skipping, resuming,
failures and Ctrl-C); what each worker does is :mod:`hsbench.worker`
(Variant -> :class:`~hsbench.record.RunRecord`); ``--executor submitit`` is
:mod:`hsbench.launch`. This module parses and checks the options and calls
:func:`hsbench.orchestrate.run_study`. Heavy libraries (torch, timm, pandas)
are imported inside the command, never when the CLI starts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import typer

#: ``--executor`` values.
EXECUTORS = ("local", "submitit")


def check_executor(executor: str) -> str:
    """Validate ``--executor``; for submitit, check that it is installed.

    Raises:
        ConfigError: unknown executor, or submitit missing.
    """
    from hsbench.errors import ConfigError

    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    if executor == "submitit":
        from hsbench.launch import require_submitit

        require_submitit()
    return executor


def register(app: typer.Typer) -> None:
    """Add ``hsbench run`` to the Typer ``app``."""
    import typer

    @app.command("run")
    def run_cmd(
        study_file: str = typer.Argument(..., metavar="STUDY.toml", help="study file, e.g. studies/quickstart.toml"),
        db: Optional[str] = typer.Option(  # noqa: UP045 - typer reads the annotation
            None, "--db", help="results database URL (default: $HSBENCH_DB, else sqlite:///results/hsbench.db)"
        ),
        data_root: Optional[str] = typer.Option(  # noqa: UP045
            None, "--data-root", help="folder holding camvid/, cityscapes/, voc/ (default: data.root, $HSBENCH_DATA, ./data)"
        ),
        device: str = typer.Option(
            "auto", "--device", help="auto, cpu, cuda or cuda:N: training, evaluation and FPS all run there"
        ),
        max_iters: Optional[int] = typer.Option(  # noqa: UP045
            None, "--max-iters", help="train this many iterations instead of the study's budget (recorded)"
        ),
        executor: str = typer.Option("local", "--executor", help="local (this process) or submitit"),
        force: bool = typer.Option(False, "--force", help="rerun variants that are already finished"),
        runs_dir: Optional[str] = typer.Option(  # noqa: UP045
            None, "--runs-dir", help="run folders (checkpoints, record.json); default: runs/ beside the database"
        ),
        dry_run: bool = typer.Option(False, "--dry-run", help="validate the study and list its variants; run nothing"),
        weights_root: Optional[str] = typer.Option(  # noqa: UP045
            None, "--weights-root", help="folder of relative model.weights files (default: $HSBENCH_WEIGHTS, else .)"
        ),
    ) -> None:
        """Run a study: complexity, training, evaluation and FPS of each variant, all stored."""
        from hsbench.device import check_device
        from hsbench.orchestrate import (
            check_max_iters,
            check_options,
            run_local,
            run_study,
        )
        from hsbench.studies import load_study

        max_iters_ = check_max_iters(max_iters)
        check_executor(executor)
        check_device(device)
        study = load_study(study_file, data_root=data_root)
        if any(v.model.weights for v in study.variants):
            import os

            from hsbench.engine.run import WEIGHTS_ENV, resolve_weights_path

            for v in study.variants:  # a missing file is named before anything runs
                if v.model.weights:
                    resolve_weights_path(v.model.weights, weights_root)
            if weights_root is not None:  # workers (this process or submitit jobs) read it from the environment
                os.environ[WEIGHTS_ENV] = str(Path(weights_root).expanduser().resolve())
        if dry_run:
            typer.echo(f"study {study.name} (table {study.table or '-'}): {len(study.variants)} variant(s), "
                       f"seeds {list(study.seeds)}")
            for v in study.variants:
                iters = max_iters_ if max_iters_ is not None else v.train.iterations
                typer.echo(f"  {v.variant_id()}  {v.name}  {v.model.template}/{v.model.backbone}  "
                           f"grid {v.model.grid_size}  {v.data.dataset} {v.resolution_text}  "
                           f"{iters:,} iters x batch {v.train.batch_size}")
            return
        options = check_options(db=db, device=device, max_iters=max_iters_, force=force, runs_dir=runs_dir,
                                executor=executor)
        if executor == "submitit":
            from hsbench.launch import run_submitit

            execute = run_submitit
        else:
            execute = run_local
        try:
            outcome = run_study(study, options, execute=execute)
        except KeyboardInterrupt:
            # typer would turn this into a return value that hsbench.cli.main drops
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        if outcome.exit_code:
            # SystemExit, not typer.Exit: click swallows Exit's code outside standalone mode
            raise SystemExit(outcome.exit_code)


__all__ = ["EXECUTORS", "check_executor", "register"]
