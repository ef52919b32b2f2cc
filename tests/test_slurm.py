"""SLURM queries (hsbench.slurm), the [launch] table and the fit check (hsbench.resources).

Tests marked ``slurm_cluster`` run against the real single-node cluster of
tests/slurm_cluster.py (skipped, with the reason, where it cannot start).
"""

from __future__ import annotations

import math
import textwrap
import time

import pytest

from hsbench import slurm
from hsbench.errors import ConfigError
from hsbench.resources import DEFAULT_CPUS_PER_TASK, LaunchConfig, resolve
from hsbench.studies import StudyError, parse_study

# one SLURM test cluster per session: under xdist, every test of the group on one worker
pytestmark = pytest.mark.xdist_group("slurm")

# A two-partition GPU cluster as `sinfo --noheader --Node -o <hsbench.slurm format>` prints it.
GPU_SINFO = """\
gpu|gpu*|up|2-00:00:00|g1|64|512000|gpu:a100:8(S:0-1)|a100,ib|mixed
gpu|gpu*|up|2-00:00:00|g2|64|512000|gpu:a100:8(S:0-1)|a100,ib|drained*
gpu|gpu*|up|2-00:00:00|g3|32|256000|gpu:v100:4,shard:8|v100|idle~
cpu|cpu|up|30:00|c1|16|64000|(null)|(null)|idle
"""


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text, minutes", [
    ("infinite", None), ("UNLIMITED", None), ("30", 30), ("30:00", 30), ("2:00:00", 120),
    ("1-00:00:00", 1440), ("2-12", 3600), ("1-02:30", 1590),
])
def test_parse_time_limit(text, minutes):
    assert slurm.parse_time_limit(text) == minutes


def test_parse_time_limit_refuses_garbage():
    with pytest.raises(slurm.SlurmError, match="cannot read SLURM time limit"):
        slurm.parse_time_limit("soon")


@pytest.mark.parametrize("gres, gpus", [
    ("(null)", 0), ("gpu:8", 8), ("gpu:a100:4(S:0-1)", 4), ("gpu:a100:2,gpu:v100:2", 4), ("shard:8", 0),
])
def test_parse_gpus(gres, gpus):
    assert slurm.parse_gpus(gres) == gpus


def test_parse_sinfo_partitions_nodes_states():
    parts = {p.name: p for p in slurm.parse_sinfo(GPU_SINFO)}
    gpu, cpu = parts["gpu"], parts["cpu"]
    assert gpu.default and not cpu.default and gpu.up
    assert gpu.max_time_min == 2880 and cpu.max_time_min == 30
    assert [n.name for n in gpu.nodes] == ["g1", "g2", "g3"]
    assert [n.name for n in gpu.usable_nodes] == ["g1", "g3"]  # g2 is drained
    assert gpu.nodes[2].gpus == 4 and gpu.nodes[2].features == ("v100",) and gpu.nodes[2].state == "idle"
    assert gpu.largest() == (64, 8, 512000) and cpu.largest() == (16, 0, 64000)
    assert slurm.partition(None, known=parts.values()).name == "gpu"
    with pytest.raises(slurm.SlurmError, match="no partition 'gpux'; partitions: gpu, cpu"):
        slurm.partition("gpux", known=parts.values())


# --------------------------------------------------------------------------- resources


def _parts():
    return {p.name: p for p in slurm.parse_sinfo(GPU_SINFO)}


def test_resolve_defaults_fit_the_partition():
    parts = _parts()
    r = resolve(LaunchConfig(), parts["cpu"], device="cpu")
    assert (r.cpus_per_task, r.gpus_per_node, r.tasks_per_node) == (DEFAULT_CPUS_PER_TASK, 0, 1)
    assert r.timeout_min == 30 and r.mem_gb is None and r.partition == "cpu"
    r = resolve(LaunchConfig(gpus_per_node=4), parts["gpu"], device="cuda")
    assert (r.gpus_per_node, r.tasks_per_node, r.cpus_per_task) == (4, 4, 8)
    assert r.timeout_min == 2880  # 72 h default capped by the partition's 48 h
    # a small partition lowers the CPU default instead of asking for what no node has
    small = slurm.parse_sinfo("p|p*|up|infinite|n1|2|4000|(null)|(null)|idle\n")[0]
    assert resolve(LaunchConfig(), small, device="cpu").cpus_per_task == 2
    assert resolve(LaunchConfig(tasks_per_node=2), small, device="cpu").cpus_per_task == 1


def test_resolve_refuses_what_no_node_offers():
    parts = _parts()
    with pytest.raises(ConfigError) as e:
        resolve(LaunchConfig(gpus_per_node=16), parts["gpu"], device="cuda")
    msg = str(e.value)
    assert "\n" not in msg
    assert "--gpus-per-node 16" in msg and "partition gpu" in msg and "64 CPUs, 8 GPUs, 500.0 GB" in msg
    # the drained 8-GPU node g2 does not count; g3 has only v100s
    with pytest.raises(ConfigError, match="features a100,ib,v100"):
        resolve(LaunchConfig(gpus_per_node=8, constraint="v100"), parts["gpu"], device="cuda")
    assert resolve(LaunchConfig(gpus_per_node=8, constraint="a100&ib"), parts["gpu"], device="cuda").gpus_per_node == 8
    with pytest.raises(ConfigError, match="time limit of 30 min"):
        resolve(LaunchConfig(timeout_min=60), parts["cpu"], device="cpu")
    with pytest.raises(ConfigError, match="with --device cpu"):
        resolve(LaunchConfig(gpus_per_node=1), parts["gpu"], device="cpu")
    with pytest.raises(ConfigError, match="17 CPUs|--cpus-per-task 17"):
        resolve(LaunchConfig(cpus_per_task=17), parts["cpu"], device="cpu")


@pytest.mark.parametrize("fields, message", [
    ({"cpus_per_task": 0}, "cpus_per_task must be an integer in [1,"),
    ({"cpus_per_task": 2 ** 63}, "cpus_per_task must be an integer"),
    ({"gpus_per_node": -1}, "gpus_per_node must be an integer in [0,"),
    ({"mem_gb": math.nan}, "mem_gb must be a number of GB"),
    ({"mem_gb": 0}, "mem_gb must be a number of GB"),
    ({"timeout_min": True}, "timeout_min must be an integer"),
    ({"partition": "gpu; rm -rf /"}, "partition must be a SLURM partition name"),
    ({"partition": ""}, "partition must be a SLURM partition name"),
    ({"gpus_per_node": 4, "tasks_per_node": 2}, "one task per GPU"),
])
def test_launch_config_refuses_bad_values(fields, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        LaunchConfig(**fields)


def test_launch_config_merge_command_line_over_study():
    study = LaunchConfig(cpus_per_task=4, partition="gpu", qos="high")
    merged = study.merged(cpus_per_task=2, partition=None, mem_gb=8.0)
    assert (merged.cpus_per_task, merged.partition, merged.qos, merged.mem_gb) == (2, "gpu", "high", 8.0)


STUDY = """
[study]
name = "s"

[base.data]
dataset = "synthetic"

[launch]
{launch}
"""


def _study(launch: str):
    return parse_study(textwrap.dedent(STUDY.format(launch=launch)), file="s.toml", check_data=False)


def test_study_launch_table():
    st = _study('cpus_per_task = 4\ngpus_per_node = 2\nmem_gb = 16\npartition = "gpu"\narray_parallelism = 3')
    assert st.launch == LaunchConfig(cpus_per_task=4, gpus_per_node=2, mem_gb=16, partition="gpu",
                                     array_parallelism=3)
    assert parse_study("[study]\nname='t'\n[base.data]\ndataset='synthetic'\n", check_data=False).launch \
        == LaunchConfig()


@pytest.mark.parametrize("launch, message", [
    ("cpus_per_tsk = 4", r"s.toml:9: launch.cpus_per_tsk: unknown \[launch\] key 'cpus_per_tsk'; did you mean 'cpus_per_task'\?"),
    ('cpus_per_task = "4"', r"s.toml:9: launch.cpus_per_task: launch.cpus_per_task must be an integer"),
    ("mem_gb = nan", r"s.toml:9: launch.mem_gb: launch.mem_gb must be a number of GB"),
    ("timeout_min = 0", r"s.toml:9: launch.timeout_min: launch.timeout_min must be an integer in \[1,"),
    ("gpus_per_node = 4\ntasks_per_node = 3", r"s.toml:8: launch: .*one task per GPU"),
])
def test_study_launch_errors_name_file_line_key(launch, message):
    with pytest.raises(StudyError, match=message):
        _study(launch)


# --------------------------------------------------------------------------- the real cluster


def test_partitions_of_the_real_cluster(slurm_cluster):
    part = slurm.partition()
    assert part.name == slurm_cluster.partition and part.default and part.up
    (node,) = part.nodes
    assert (node.name, node.cpus, node.memory_mb, node.gpus) == (
        slurm_cluster.node.name, slurm_cluster.node.cpus, slurm_cluster.node.memory_mb, 0)
    assert node.usable and part.max_time_min is None
    res = resolve(LaunchConfig(), part, device="cpu")
    assert res.cpus_per_task == min(DEFAULT_CPUS_PER_TASK, node.cpus) and res.timeout_min == 4320
    with pytest.raises(ConfigError, match=f"largest nodes offer {node.cpus} CPUs, 0 GPUs"):
        resolve(LaunchConfig(cpus_per_task=node.cpus + 1), part, device="cpu")


def test_queue_and_cancel_on_the_real_cluster(slurm_cluster, tmp_path):
    cpus = slurm_cluster.node.cpus
    # the first job takes every CPU, so the second waits for resources
    first = slurm_cluster.cmd("sbatch", "--parsable", f"--cpus-per-task={cpus}", "-o", "/dev/null",
                              "--wrap", "sleep 60").strip()
    second = slurm_cluster.cmd("sbatch", "--parsable", "-o", "/dev/null", "--wrap", "sleep 60").strip()
    deadline = time.monotonic() + 30
    while True:
        q = slurm.queue([first, second, "999999"])
        if q[first].state == "RUNNING" and q[second].reason == "Resources" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert set(q) == {first, second}  # unknown ids are left out
    assert q[first].state == "RUNNING" and q[first].nodes == slurm_cluster.node.name
    assert q[second].state == "PENDING" and q[second].reason == "Resources"
    assert q[second].describe() == "PENDING (Resources)" and not q[second].ended
    slurm.cancel([first, second])
    deadline = time.monotonic() + 30
    while not all(j.ended for j in slurm.queue([first, second]).values()) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert {j.state for j in slurm.queue([first, second]).values()} == {"CANCELLED"}
    assert slurm.queue(["999999"]) == {}
