"""A throwaway single-node SLURM cluster for the tests (fixture ``slurm_cluster``, session scope).

It runs the real daemons of Debian's ``slurm-wlm`` and ``munge`` packages
(``apt-get install slurm-wlm munge``; ``.ci/run`` installs them in CI):

* ``munged`` as the ``munge`` user, with a fresh key and its own socket;
* ``slurmctld`` and ``slurmd`` in the foreground, from a temporary
  ``slurm.conf`` whose one node has this machine's sockets, cores, threads and
  memory (read with ``slurmd -C``) and whose one partition, ``debug``, is the
  default; accounting is disabled (no ``slurmdbd``), as on many small clusters;
* every state, spool, log and pid file in one temporary folder; free TCP
  ports, so the cluster never meets a system SLURM or another test run.

The fixture waits until the node is ``idle`` and sets ``SLURM_CONF`` for the
session, so ``sbatch``, ``squeue``, ``sinfo`` and submitit talk to this cluster.
It stops everything whatever the tests do: the session finalizer and an
``atexit`` hook cancel the jobs, then terminate each daemon's process group
and any process that carries this cluster's ``SLURM_CONF`` (job steps); the
daemons also get SIGKILL from the kernel if the test process dies
(``PR_SET_PDEATHSIG``).

Tests that need it are skipped, with the reason, where the binaries are
missing, the tests do not run as root (slurmd and munged need it), or the
daemons do not come up within a minute.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: Binaries the cluster needs (packages slurm-wlm / slurmctld / slurmd / slurm-client, munge).
BINARIES = ("munged", "slurmctld", "slurmd", "sinfo", "squeue", "sbatch", "scontrol", "scancel", "srun")
#: Partition of the test cluster (the default partition).
PARTITION = "debug"
#: Seconds the daemons get to bring the node to ``idle``.
START_TIMEOUT_S = 60.0

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class NodeHardware:
    """This machine as ``slurmd -C`` sees it (memory in MB)."""

    name: str
    cpus: int
    sockets: int
    cores_per_socket: int
    threads_per_core: int
    memory_mb: int

    @classmethod
    def detect(cls) -> NodeHardware:
        """Parse ``slurmd -C``; fall back to ``os.cpu_count`` and ``/proc/meminfo``."""
        out = subprocess.run(["slurmd", "-C"], check=False, capture_output=True, text=True, timeout=30).stdout
        kv = dict(re.findall(r"(\w+)=(\S+)", out))
        name = kv.get("NodeName") or socket.gethostname().split(".")[0]
        try:  # DDP tasks reach rank 0 by the node's name: use one that resolves
            socket.gethostbyname(name)
        except OSError:
            name = "localhost"
        try:
            return cls(name, int(kv["CPUs"]), int(kv["SocketsPerBoard"]),
                       int(kv["CoresPerSocket"]), int(kv["ThreadsPerCore"]), int(kv["RealMemory"]))
        except (KeyError, ValueError):
            cpus = os.cpu_count() or 1
            mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
            return cls(name, cpus, 1, cpus, 1, mem_kb // 1024)


@dataclass
class SlurmCluster:
    """A running single-node cluster (see the module docstring).

    Attributes:
        folder: the temporary folder with ``slurm.conf``, state, spool and logs.
        conf: path of ``slurm.conf`` (also ``$SLURM_CONF`` while the session runs).
        node: the node's hardware (CPUs, memory in MB).
        partition: the default partition's name.
        start_s: seconds from starting munged to the node being idle.
    """

    folder: Path
    conf: Path
    node: NodeHardware
    partition: str = PARTITION
    start_s: float = 0.0
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _stopped: bool = False

    # ---- helpers for tests -----------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """``os.environ`` with ``SLURM_CONF`` pointing at this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def cmd(self, *argv: str, check: bool = True, timeout: float = 30) -> str:
        """Run a SLURM client command against this cluster; its stdout."""
        p = subprocess.run(list(argv), check=False, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and p.returncode:
            raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
        return p.stdout

    def jobs(self) -> list[str]:
        """Ids of the jobs SLURM still lists (any state)."""
        return self.cmd("squeue", "-h", "-t", "all", "-o", "%i", check=False).split()

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of every daemon log (for failure messages)."""
        parts = []
        for p in sorted((self.folder / "log").glob("*")):
            text = p.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"== {p.name}\n" + "\n".join(text))
        return "\n".join(parts)

    # ---- life cycle ------------------------------------------------------------------

    def write_conf(self) -> None:
        n = self.node
        ctld_port, d_port = _free_port(), _free_port()
        f = self.folder
        self.conf.write_text(f"""\
ClusterName=hsbench-test
SlurmctldHost={n.name}(127.0.0.1)
SlurmUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={f}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={f}/state
SlurmdSpoolDir={f}/spool
SlurmctldPidFile={f}/slurmctld.pid
SlurmdPidFile={f}/slurmd.pid
SlurmctldLogFile={f}/log/slurmctld.log
SlurmdLogFile={f}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU={n.memory_mb // n.cpus}
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=5
Waittime=0
NodeName={n.name} NodeAddr=127.0.0.1 CPUs={n.cpus} SocketsPerBoard={n.sockets} \
CoresPerSocket={n.cores_per_socket} ThreadsPerCore={n.threads_per_core} RealMemory={n.memory_mb} State=UNKNOWN
PartitionName={self.partition} Nodes={n.name} Default=YES MaxTime=INFINITE State=UP
""")

    def _spawn(self, name: str, argv: Sequence[str], **kw) -> None:
        log = open(self.folder / "log" / f"{name}.out", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.folder,
            env=self.env, start_new_session=True, preexec_fn=_die_with_parent, **kw,
        )
        log.close()

    def _alive(self, name: str) -> None:
        code = self.procs[name].poll()
        if code is not None:
            raise RuntimeError(f"{name} exited with code {code}")

    def start(self) -> None:
        """Start munged, slurmctld and slurmd; return when the node is idle.

        Raises:
            RuntimeError: a daemon exited or the node was not idle within START_TIMEOUT_S.
        """
        t0 = time.monotonic()
        f = self.folder
        munge = pwd.getpwnam("munge")
        for sub in ("state", "spool", "log"):
            (f / sub).mkdir()
        mdir = f / "munge"
        mdir.mkdir(mode=0o755)
        (mdir / "private").mkdir(mode=0o700)
        key = mdir / "private" / "munge.key"
        key.write_bytes(os.urandom(1024))  # a fresh key: this cluster trusts only itself
        key.chmod(0o400)
        for p in (mdir, mdir / "private", key):
            os.chown(p, munge.pw_uid, munge.pw_gid)
        socket_path = mdir / "munge.socket"
        self._spawn("munged", [
            shutil.which("munged"), "--foreground", f"--socket={socket_path}", f"--key-file={key}",
            f"--log-file={mdir / 'private' / 'munged.log'}", f"--pid-file={mdir / 'munged.pid'}",
            f"--seed-file={mdir / 'private' / 'munged.seed'}",
        ], user=munge.pw_uid, group=munge.pw_gid, extra_groups=[])
        while not socket_path.exists():
            self._alive("munged")
            if time.monotonic() - t0 > START_TIMEOUT_S:
                raise RuntimeError("munged did not create its socket")
            time.sleep(0.05)

        self.write_conf()
        self._spawn("slurmctld", [shutil.which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", [shutil.which("slurmd"), "-D", "-N", self.node.name, "-f", str(self.conf)])
        while True:
            for name in self.procs:
                self._alive(name)
            state = self.cmd("sinfo", "-h", "-n", self.node.name, "-o", "%T", check=False).strip()
            if state == "idle":
                break
            if time.monotonic() - t0 > START_TIMEOUT_S:
                raise RuntimeError(f"node {self.node.name} is {state or 'unknown'!r}, not idle, "
                                   f"after {START_TIMEOUT_S:.0f} s")
            time.sleep(0.2)
        self.start_s = time.monotonic() - t0

    def stop(self) -> None:
        """Cancel every job, stop the daemons and end this cluster's job steps. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        ctld = self.procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None:
            ids = self.jobs()
            if ids:
                self.cmd("scancel", *ids, check=False)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and any(
                    s in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED")
                    for s in self.cmd("squeue", "-h", "-t", "all", "-o", "%T", check=False).split()
                ):
                    time.sleep(0.2)
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        for pid in self.stray_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stray_pids(self) -> list[int]:
        """Processes (slurmstepd, job tasks) whose environment names this cluster's ``slurm.conf``."""
        marker = f"SLURM_CONF={self.conf}".encode()
        me = os.getpid()
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) == me:
                continue
            try:
                if marker in (d / "environ").read_bytes().split(b"\0"):
                    out.append(int(d.name))
            except OSError:
                continue
        return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(root: Path | None = None) -> None:
    """Remove clusters left by a test process that was killed (SIGKILL skips every finalizer).

    The kernel already killed their daemons (``PR_SET_PDEATHSIG``); this ends their job
    steps, found by ``SLURM_CONF`` in their environment, and deletes their folders.
    """
    for folder in (root or Path(tempfile.gettempdir())).glob("hsbench-slurm-*"):
        try:
            owner = int((folder / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        left = SlurmCluster(folder=folder, conf=folder / "slurm.conf", node=None, _stopped=True)  # type: ignore[arg-type]
        for pid in left.stray_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(folder, ignore_errors=True)


def why_not_available() -> str | None:
    """Why no test cluster can be started here (None when it can be tried)."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return (f"SLURM test cluster: {', '.join(missing)} not found; "
                "install Debian's slurm-wlm and munge (apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        return "SLURM test cluster: needs root (slurmd and munged under the munge user)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "SLURM test cluster: no 'munge' user; install the munge package"
    return None


@pytest.fixture(scope="session")
def slurm_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running single-node SLURM cluster with ``SLURM_CONF`` set (see the module docstring)."""
    reason = why_not_available()
    if reason:
        pytest.skip(reason)
    # Not under pytest's tmp path: munged insists that every folder above its socket is
    # traversable and not writable by others, and job steps run from these folders.
    clean_stale()
    folder = Path(tempfile.mkdtemp(prefix="hsbench-slurm-"))
    folder.chmod(0o755)
    (folder / "owner.pid").write_text(str(os.getpid()))
    cluster = SlurmCluster(folder=folder, conf=folder / "slurm.conf", node=NodeHardware.detect())
    atexit.register(cluster.stop)
    old = os.environ.get("SLURM_CONF")

    def finish() -> None:
        cluster.stop()
        atexit.unregister(cluster.stop)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        shutil.rmtree(folder, ignore_errors=True)

    request.addfinalizer(finish)
    try:
        cluster.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        tail = cluster.log_tail(5)
        cluster.stop()
        pytest.skip(f"SLURM test cluster did not start: {exc}\n{tail}")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    yield cluster
