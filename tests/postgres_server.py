"""A throwaway PostgreSQL server for the test session, and database-URL fixtures.

Loaded by ``tests/conftest.py`` as a pytest plugin. Fixtures:

``postgres_server`` (session)
    Starts PostgreSQL from its own binaries (``initdb`` + ``pg_ctl``, found in
    ``$HSBENCH_PG_BIN``, on ``PATH`` or under ``/usr/lib/postgresql/*/bin``) in
    a temporary folder: trust authentication, no TCP (a Unix socket in a
    private temporary folder only, so parallel sessions and xdist workers
    never collide on a port), fsync off. PostgreSQL refuses to run as root
    and CI runs as root: then the server runs as the ``postgres`` system user
    through ``runuser -u postgres --``, its folders owned by that user. It is
    stopped (``pg_ctl stop -m immediate``) and its folder removed whatever
    happens: at the end of the session, at interpreter exit, and, should the
    test process be killed outright, by a detached watchdog that waits for
    that process to end. Without the binaries (or, as root, without
    ``runuser`` or a ``postgres`` user) every test using it is skipped, with
    the reason.

``pg_url`` (function)
    A new, empty database on that server (dropped afterwards):
    ``postgresql+psycopg://postgres@/<name>?host=<socket folder>``.

``db_url`` (function, parametrised ``sqlite`` / ``postgresql``)
    The URL of a new, empty results database on each backend: tests that take
    it run once against a SQLite file and once against the real server.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

#: The OS user the server runs as when the tests run as root.
PG_OS_USER = "postgres"


def _find_bin() -> Path | None:
    candidates = []
    if os.environ.get("HSBENCH_PG_BIN"):
        candidates.append(Path(os.environ["HSBENCH_PG_BIN"]))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


class PostgresServer:
    """One PostgreSQL server in a temporary folder, reached over a Unix socket.

    ``start()`` raises :class:`RuntimeError` with the server's log when it
    cannot start; ``skip_reason()`` says why it cannot even be tried here.
    """

    def __init__(self) -> None:
        self.bin = _find_bin()
        self.as_root = os.geteuid() == 0
        self.base: Path | None = None
        self.running = False

    def skip_reason(self) -> str | None:
        if self.bin is None:
            return ("PostgreSQL server binaries (initdb, pg_ctl) not found: install "
                    "postgresql (Debian: apt-get install postgresql-15) or set HSBENCH_PG_BIN")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "psycopg is not installed (pip install 'hsbench[postgres]')"
        if self.as_root:
            if shutil.which("runuser") is None:
                return "running as root but `runuser` is missing (PostgreSQL refuses root)"
            try:
                pwd.getpwnam(PG_OS_USER)
            except KeyError:
                return f"running as root but there is no {PG_OS_USER!r} user to run PostgreSQL"
        return None

    def _cmd(self, *args: str) -> list[str]:
        assert self.bin is not None
        head = ["runuser", "-u", PG_OS_USER, "--"] if self.as_root else []
        return [*head, str(self.bin / args[0]), *args[1:]]

    @property
    def socket_dir(self) -> Path:
        assert self.base is not None
        return self.base / "socket"

    def start(self) -> None:
        # In /tmp, not $TMPDIR: the postgres user must reach it (a $TMPDIR under /root is
        # closed to it) and a Unix socket's path must stay under 108 bytes.
        self.base = Path(tempfile.mkdtemp(prefix="hsbench-pg-",
                                          dir="/tmp" if os.path.isdir("/tmp") else None))
        os.chmod(self.base, 0o755)  # the postgres user must reach its folders inside
        data, sock = self.base / "data", self.socket_dir
        data.mkdir(mode=0o700)
        sock.mkdir(mode=0o755)
        if self.as_root:
            pw = pwd.getpwnam(PG_OS_USER)
            for p in (data, sock, self.base):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        atexit.register(self.stop)
        log = self.base / "server.log"
        subprocess.run(
            self._cmd("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                      "--locale=C", "--no-sync"),
            check=True, capture_output=True, text=True, timeout=120,
        )
        opts = (f"-k {sock} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=50")
        proc = subprocess.run(
            self._cmd("pg_ctl", "-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "60",
                      "start"),
            capture_output=True, text=True, timeout=120,
        )
        self.running = proc.returncode == 0
        if not self.running:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start: {proc.stderr.strip()}\n{tail}")
        self._watchdog(data)

    def _watchdog(self, data: Path) -> None:
        """A detached shell that stops the server and removes its folder once this process
        is gone, even when it was killed (SIGKILL, a CI timeout) and atexit never ran."""
        stop = shlex.join(self._cmd("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop"))
        script = (f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 2; done; "
                  f"{stop} >/dev/null 2>&1; rm -rf {shlex.quote(str(self.base))}")
        subprocess.Popen(["sh", "-c", script], start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.base is None:
            return
        if self.running:
            subprocess.run(
                self._cmd("pg_ctl", "-D", str(self.base / "data"), "-m", "immediate", "-w",
                          "stop"),
                capture_output=True, timeout=60,
            )
            self.running = False
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL of database ``dbname`` (psycopg 3, over the Unix socket)."""
        return f"postgresql+psycopg://postgres@/{dbname}?host={self.socket_dir}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host=str(self.socket_dir), user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        """A new empty database; its name."""
        name = f"hs_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server():
    """The session's PostgreSQL server (skips the test where it cannot run here)."""
    server = PostgresServer()
    reason = server.skip_reason()
    if reason:
        pytest.skip(reason)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_server):
    """URL of a new, empty PostgreSQL database (dropped after the test)."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """URL of a new, empty results database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hs.db'}"
    else:
        yield request.getfixturevalue("pg_url")
