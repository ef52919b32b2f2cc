"""``hsbench run --executor submitit`` against a real SLURM scheduler (tests/slurm_cluster.py).

Tiny studies only: camvid-s with EfficientNet-Lite0 on 4 synthetic 64x64
images, a few iterations, a handful of timed frames, thop only. Each test
prints its wall time. Skipped, with the reason, where the cluster cannot start.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("submitit")

# one SLURM test cluster per session: under xdist, every test of the group on one worker
pytestmark = pytest.mark.xdist_group("slurm")

from hsbench.cli import main
from hsbench.store import Store

STUDY = """
[study]
name = "{name}"
seeds = [{seed}]

[base.model]
template = "camvid-s"
backbone = "tf_efficientnet_lite0"

[base.data]
dataset = "synthetic"
synthetic_size = [64, 64]
synthetic_length = 4

[base.train]
iterations = {iters}
batch_size = 2
amp = false
checkpoint_every = {ckpt}

[base.eval]
max_images = 2

[base.speed]
min_warmup = 1
max_warmup = 2
warmup_window = 1
timed_frames = 2
repeats = 1
bootstrap_samples = 10
cpu_threads = 1

[base.measure]
counters = ["thop"]

[axes]
"model.grid_size" = {grids}
{launch}
"""


def study(folder: Path, name: str, *, seed: int = 0, iters: int = 2, ckpt: int = 1, grids: str = "[1]",
          launch: str = "") -> str:
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(STUDY.format(name=name, seed=seed, iters=iters, ckpt=ckpt, grids=grids,
                                                 launch=launch)))
    return str(path)


@pytest.fixture
def on_slurm(slurm_cluster, tmp_path, monkeypatch):
    """cwd = tmp_path; submitit auto-detects SLURM; the database and runs dir in tmp_path."""
    monkeypatch.chdir(tmp_path)
    for var in ("HSBENCH_DB", "HSBENCH_SUBMITIT_CLUSTER", "HSBENCH_SUBMITIT_FOLDER"):
        monkeypatch.delenv(var, raising=False)
    db = f"sqlite:///{tmp_path / 'db' / 'hsbench.db'}"
    return slurm_cluster, db, ["--executor", "submitit", "--db", db, "--device", "cpu",
                               "--runs-dir", str(tmp_path / "runs")]


def _runs(db: str, name: str):
    """Every run of study ``name``, with its result rows and bookkeeping (RunDetail)."""
    with Store.open(db) as s:
        return [s.get_run(r.id) for r in s.list_runs(study=name)]


def test_tiny_study_with_default_resources(on_slurm, tmp_path, capsys):
    """Two variants, default resources; the first command stops waiting (--wait-timeout) and leaves
    the jobs, the second finds them in the queue by the runs' job ids and stores their records."""
    cluster, db, args = on_slurm
    path = study(tmp_path, "tiny", grids="[1, 2]")
    t0 = time.monotonic()
    code = main(["run", path, *args, "--wait-timeout", "2", "--on-timeout", "leave"])
    first = capsys.readouterr()
    assert code != 0 and first.err.startswith("error: --wait-timeout 2 s reached with 2 job(s) not finished; "
                                               "left job(s) "), first
    jobs = {r.run.job_id for r in _runs(db, "tiny")}
    assert len(jobs) == 2 and all(r.run.status == "running" for r in _runs(db, "tiny"))
    code = main(["run", path, *args, "--queue-interval", "10"])
    wall = time.monotonic() - t0
    out = capsys.readouterr().out
    print(f"tiny study (2 variants) on SLURM with default resources: {wall:.1f} s")
    assert code == 0, out
    assert out.count("is still in the queue; waiting for it") == 2, out
    cpus = min(8, cluster.node.cpus)
    assert (f"asking --cpus-per-task {cpus} --gpus-per-node 0 --timeout-min 4320 on partition "
            f"{cluster.partition}") in out
    # the queue display: each job's state as squeue reports it
    assert re.search(r"\[1/2\] .*: job \d+_0 RUNNING", out), out
    assert "Bypassing sacct" not in out and "accounting storage is disabled" not in out
    runs = _runs(db, "tiny")
    assert len(runs) == 2 and all(r.run.status == "finished" for r in runs)
    assert {r.run.job_id for r in runs} == jobs  # the same jobs, the same rows: nothing resubmitted
    for r in runs:
        launch = r.run.launch  # the resolved request, stored with the run
        assert (launch["cpus_per_task"], launch["gpus_per_node"], launch["partition"]) == (
            cpus, 0, cluster.partition)
        assert r.run.executor == "submitit-slurm" and re.fullmatch(r"\d+_[01]", r.run.job_id)


def test_impossible_request_is_refused_before_submission(on_slurm, tmp_path, capsys):
    cluster, _db, args = on_slurm
    path = study(tmp_path, "big", launch="[launch]\nmem_gb = 4")
    jobs_before = cluster.jobs()
    code = main(["run", path, *args, "--cpus-per-task", str(cluster.node.cpus + 1)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    print(lines[0] if lines else err)
    assert code != 0 and len(lines) == 1 and lines[0].startswith("error: "), err
    line = lines[0]
    assert f"no node of SLURM partition {cluster.partition} can run the request" in line
    assert f"--cpus-per-task {cluster.node.cpus + 1}" in line and "--mem-gb 4" in line
    assert f"its largest nodes offer {cluster.node.cpus} CPUs, 0 GPUs" in line
    assert cluster.jobs() == jobs_before  # nothing submitted
    assert not (tmp_path / "db").exists() and not (tmp_path / "runs").exists()  # nothing stored


def test_two_task_ddp_job_on_cpu(on_slurm, tmp_path, capsys):
    """One variant, one job, two tasks: DDP over gloo with submitit's torchrun-like environment."""
    _cluster, db, args = on_slurm
    path = study(tmp_path, "ddp", seed=3, launch="[launch]\ntasks_per_node = 2\ncpus_per_task = 1")
    t0 = time.monotonic()
    code = main(["run", path, *args])
    out = capsys.readouterr().out
    print(f"2-task DDP job: {time.monotonic() - t0:.1f} s")
    assert code == 0, out
    assert "--cpus-per-task 1 --tasks-per-node 2" in out and ", 2 DDP ranks" in out
    (run,) = _runs(db, "ddp")
    assert run.run.status == "finished" and run.run.launch["tasks_per_node"] == 2
    # both ranks trained (world size 2) and ended with the same parameters (else train() raises)
    assert run.training.world_size == 2
    ck = torch.load(Path(run.run.run_dir) / "checkpoint.pt", weights_only=False)
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2 and ck["iteration"] == 2


def _checkpoint_iteration(run_dir: Path) -> int:
    try:
        return int(torch.load(run_dir / "checkpoint.pt", weights_only=False)["iteration"])
    except Exception:  # noqa: BLE001 - not written yet, or being replaced
        return -1


def _until(pred, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


#: Training iterations of the requeued job: two checkpoints (every 2) must come before the end.
ITERS = 20


def test_requeued_job_resumes_in_the_same_run(on_slurm, tmp_path):
    """``scontrol requeue`` and SIGUSR2 (submitit's checkpoint-and-requeue): the run resumes, same row.

    Each signal follows a new checkpoint within milliseconds (the job is also suspended
    before ``scontrol requeue``), so that training cannot end first, however fast the machine.
    """
    cluster, db, args = on_slurm
    path = study(tmp_path, "requeue", seed=5, iters=ITERS, ckpt=2, launch="[launch]\ncpus_per_task = 1")
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "hsbench.cli", "run", path, *args, "--queue-interval", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cluster.env)
    lines: list[str] = []
    def read() -> None:
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        job = _until(lambda: next((m.group(1) for ln in list(lines)
                                   if (m := re.search(r"submitted as job (\S+)", ln))), None), 60, "submission")
        run_dir = next((tmp_path / "runs").glob("*/seed5"))

        ckpt = run_dir / "checkpoint.pt"

        def requeue_after_checkpoint(after: int, how: str) -> int:
            seen = ckpt.stat().st_mtime_ns if ckpt.exists() else None
            _until(lambda: ckpt.exists() and ckpt.stat().st_mtime_ns != seen, 300, f"a checkpoint after {after}",
                   poll=0.02)
            if how == "usr2":  # what SLURM sends before the time limit; submitit checkpoints and requeues
                cluster.cmd("scancel", "--signal=USR2", job)
            else:
                cluster.cmd("scontrol", "suspend", job)  # stop it here, whatever the machine's speed
                cluster.cmd("scontrol", "requeue", job)
            # SLURM holds a requeued job for a while (BeginTime; a requeued suspended job until
            # released): let it start again at once
            try:
                reason = _until(lambda: next((r for r in ("BeginTime", "JobHeldAdmin") if r in cluster.cmd(
                    "squeue", "-h", "-j", job, "-o", "%r", check=False)), None), 60, "the requeued job to wait")
            except AssertionError as exc:
                raise AssertionError(f"{exc} ({how}):\n{cluster.cmd('scontrol', 'show', 'job', job, check=False)}"
                                     f"\n{''.join(lines)}") from None
            if reason == "JobHeldAdmin":
                cluster.cmd("scontrol", "release", job)
            cluster.cmd("scontrol", "update", f"jobid={job}", "StartTime=now")
            return _checkpoint_iteration(run_dir)

        first = requeue_after_checkpoint(0, "scontrol")
        second = requeue_after_checkpoint(first, "usr2")
        assert proc.wait(timeout=300) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=5)
    out = "".join(lines)
    print(f"requeue test: checkpoints at {first} and {second}; {time.monotonic() - t0:.1f} s")
    assert 0 < first < second < ITERS
    assert "restarted 2x by SLURM" in out, out
    log = (tmp_path / "runs" / "submitit" / f"{job}_0_log.out").read_text()
    assert "Calling checkpoint method" in log  # submitit's checkpointing answered SIGUSR2
    (run,) = _runs(db, "requeue")  # one row: the requeued job finished the same run
    assert run.run.status == "finished"
    assert run.training.start_iteration == second and run.training.iterations_done == ITERS
