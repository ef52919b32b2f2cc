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
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    import typer

    from hsbench.resources import LaunchConfig

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


def launch_options(values: dict[str, Any]) -> LaunchConfig:
    """A :class:`hsbench.resources.LaunchConfig` from ``hsbench run`` options; errors name the option.

    Raises:
        ConfigError: e.g. ``--mem-gb must be a number of GB in (0, 1000000], got nan``.
    """
    from hsbench.errors import ConfigError
    from hsbench.resources import LaunchConfig

    try:
        return LaunchConfig(**values)
    except ConfigError as exc:
        msg = str(exc)
        for key in values:
            msg = msg.replace(f"launch.{key}", "--" + key.replace("_", "-"))
        raise ConfigError(msg) from None


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
        partition: Optional[str] = typer.Option(  # noqa: UP045
            None, "--partition", help="SLURM partition (default: the study's launch table, else the cluster's default)",
            rich_help_panel="SLURM (--executor submitit)"),
        cpus_per_task: Optional[int] = typer.Option(  # noqa: UP045
            None, "--cpus-per-task", help="CPUs per task (default: min(8, the partition's largest node))",
            rich_help_panel="SLURM (--executor submitit)"),
        gpus_per_node: Optional[int] = typer.Option(  # noqa: UP045
            None, "--gpus-per-node", help="GPUs per job; > 1 trains one variant with DDP, one task per GPU",
            rich_help_panel="SLURM (--executor submitit)"),
        tasks_per_node: Optional[int] = typer.Option(  # noqa: UP045
            None, "--tasks-per-node", help="DDP processes per job (default: one per GPU, else 1; > 1 on CPU = gloo)",
            rich_help_panel="SLURM (--executor submitit)"),
        mem_gb: Optional[float] = typer.Option(  # noqa: UP045
            None, "--mem-gb", help="memory per job, GB (default: the cluster's default)", rich_help_panel="SLURM (--executor submitit)"),
        timeout_min: Optional[int] = typer.Option(  # noqa: UP045
            None, "--timeout-min", help="job time limit, minutes (default: min(4320, the partition's limit))",
            rich_help_panel="SLURM (--executor submitit)"),
        account: Optional[str] = typer.Option(None, "--account", help="SLURM account", rich_help_panel="SLURM (--executor submitit)"),  # noqa: UP045
        qos: Optional[str] = typer.Option(None, "--qos", help="SLURM quality of service", rich_help_panel="SLURM (--executor submitit)"),  # noqa: UP045
        constraint: Optional[str] = typer.Option(  # noqa: UP045
            None, "--constraint", help="SLURM node features, e.g. a100", rich_help_panel="SLURM (--executor submitit)"),
        array_parallelism: Optional[int] = typer.Option(  # noqa: UP045
            None, "--array-parallelism", help="jobs of the study running at once (default 256)", rich_help_panel="SLURM (--executor submitit)"),
        wait_timeout: Optional[float] = typer.Option(  # noqa: UP045
            None, "--wait-timeout", metavar="SECONDS", help="stop waiting for the jobs after this long", rich_help_panel="SLURM (--executor submitit)"),
        on_timeout: str = typer.Option(
            "leave", "--on-timeout", help="after --wait-timeout: leave the jobs queued/running, or cancel them",
            rich_help_panel="SLURM (--executor submitit)"),
        queue_interval: float = typer.Option(
            60.0, "--queue-interval", metavar="SECONDS", help="seconds between two summaries of waiting jobs",
            rich_help_panel="SLURM (--executor submitit)"),
    ) -> None:
        """Run a study: complexity, training, evaluation and FPS of each variant, all stored."""
        from hsbench.device import check_device
        from hsbench.errors import ConfigError
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
        cli_launch = dict(partition=partition, cpus_per_task=cpus_per_task, gpus_per_node=gpus_per_node,
                          tasks_per_node=tasks_per_node, mem_gb=mem_gb, timeout_min=timeout_min, account=account,
                          qos=qos, constraint=constraint, array_parallelism=array_parallelism)
        cli_launch = {k: v for k, v in cli_launch.items() if v is not None}
        launch_options(cli_launch)
        if executor != "submitit" and (cli_launch or wait_timeout is not None or on_timeout != "leave"):
            raise ConfigError("SLURM options (--partition, --cpus-per-task, ..., --wait-timeout) need "
                              "--executor submitit")
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
        execute = run_local
        if executor == "submitit":
            from hsbench.jobs import WaitOptions
            from hsbench.launch import plan, submitit_executor

            wait = WaitOptions(timeout_s=wait_timeout, on_timeout=on_timeout, report_s=queue_interval,
                               poll_s=min(5.0, queue_interval))
            # sinfo: a request no node can run is refused here, before anything is written
            launch = plan(launch_options(study.launch.to_dict() | cli_launch), device=device, wait=wait)
            execute = submitit_executor(launch)
        # the workers of submitit resolve the device where they run (a GPU node), not here
        options = check_options(db=db, device=device, max_iters=max_iters_, force=force, runs_dir=runs_dir,
                                executor=executor, resolve_here=executor != "submitit")
        try:
            outcome = run_study(study, options, execute=execute)
        except KeyboardInterrupt:
            # typer would turn this into a return value that hsbench.cli.main drops
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        if outcome.exit_code:
            # SystemExit, not typer.Exit: click swallows Exit's code outside standalone mode
            raise SystemExit(outcome.exit_code)


__all__ = ["EXECUTORS", "check_executor", "launch_options", "register"]
