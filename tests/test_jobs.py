"""Waiting for submitit jobs on the real SLURM test cluster (hsbench.jobs): queue display, timeout, cancel."""

from __future__ import annotations

import logging
import time

import pytest

submitit = pytest.importorskip("submitit")

# one SLURM test cluster per session: under xdist, every test of the group on one worker
pytestmark = pytest.mark.xdist_group("slurm")

from hsbench import slurm
from hsbench.errors import ConfigError
from hsbench.jobs import (
    TaskResult,
    WaitOptions,
    WaitTimeout,
    Watched,
    WorkerTask,
    wait_for_jobs,
)


def _executor(folder, cpus: int, **extra):
    ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    ex.update_parameters(timeout_min=5, cpus_per_task=cpus, name="hsbench-test", **extra)
    return ex


def _states(ids):
    return {j.job_id: j.state for j in slurm.queue(ids).values()}


def _until(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.2)
    return pred()


def test_wait_options_refuse_bad_values():
    for kw, msg in [({"timeout_s": 0}, "--wait-timeout must be a positive"),
                    ({"timeout_s": float("nan")}, "--wait-timeout must be a positive"),
                    ({"on_timeout": "kill"}, "--on-timeout 'kill' is not one of leave, cancel"),
                    ({"report_s": float("inf")}, "--queue-interval must be a positive")]:
        with pytest.raises(ConfigError, match=msg):
            WaitOptions(**kw)


def test_queue_display_then_timeout_cancels(slurm_cluster, tmp_path, caplog):
    cpus = slurm_cluster.node.cpus
    ex = _executor(tmp_path / "submitit", cpus)
    big = ex.submit(WorkerTask(time.sleep), 60)  # takes every CPU ...
    waiting = ex.submit(WorkerTask(time.sleep), 60)  # ... so this one waits for resources
    watched = [Watched(big, "[1/2] big"), Watched(waiting, "[2/2] waiting")]
    ids = [w.job_id for w in watched]
    assert _until(lambda: _states(ids).get(big.job_id) == "RUNNING")
    lines: list[str] = []
    caplog.set_level(logging.WARNING, logger="submitit")
    with pytest.raises(WaitTimeout) as e:
        for _ in wait_for_jobs(watched, WaitOptions(timeout_s=3, on_timeout="cancel", poll_s=0.5, report_s=1),
                               lines.append, cluster="slurm"):
            pytest.fail("no job can end within the timeout")
    assert f"[1/2] big: job {big.job_id} RUNNING" in "\n".join(lines)
    assert f"[2/2] waiting: job {waiting.job_id} PENDING (Resources)" in lines
    assert any(ln.startswith("waiting for 2 job(s) after ") for ln in lines)  # the periodic summary
    # a line per change of state or reason, not one per poll
    mine = [ln for ln in lines if ln.startswith("[2/2]")]
    assert mine and all(a != b for a, b in zip(mine, mine[1:])) and len(mine) < 3 / 0.5
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("--wait-timeout 3 s reached with 2 job(s) not finished; cancelled")
    assert e.value.cancelled and [w.job_id for w in e.value.jobs] == ids
    assert _until(lambda: set(_states(ids).values()) == {"CANCELLED"})
    assert not [r for r in caplog.records if "Bypassing sacct error" in r.getMessage()]


def test_timeout_leaves_jobs_and_a_job_ended_by_slurm_is_reported(slurm_cluster, tmp_path):
    ex = _executor(tmp_path / "submitit", 1)
    quick = ex.submit(WorkerTask(time.sleep), 0)
    slow = ex.submit(WorkerTask(time.sleep), 120)
    lines: list[str] = []
    ended = list(wait_for_jobs([Watched(quick, "quick")], WaitOptions(poll_s=0.3), lines.append, cluster="slurm"))
    assert [w.job_id for w in ended] == [quick.job_id] and ended[0].ended_state is None
    r = quick.results()[0]
    assert isinstance(r, TaskResult) and (r.rank, r.world_size, r.restarts) == (0, 1, 0)
    assert r.job_id == quick.job_id and r.value is None
    assert _until(lambda: _states([slow.job_id]).get(slow.job_id) == "RUNNING")
    with pytest.raises(WaitTimeout) as e:
        for _ in wait_for_jobs([Watched(slow, "slow")], WaitOptions(timeout_s=2, on_timeout="leave", poll_s=0.3),
                               lines.append, cluster="slurm"):
            pytest.fail("the slow job cannot end within the timeout")
    assert "left job(s) " + slow.job_id in str(e.value) and f"scancel {slow.job_id}" in str(e.value)
    assert not e.value.cancelled and _states([slow.job_id]) == {slow.job_id: "RUNNING"}  # left alone
    # SLURM ends it (as for a node failure or the time limit): reported without waiting forever
    slurm.cancel([slow.job_id])
    (w,) = list(wait_for_jobs([Watched(slow, "slow")], WaitOptions(poll_s=0.3, result_grace_s=1), lines.append,
                              cluster="slurm"))
    assert w.ended_state == "CANCELLED"
