"""Files that hsbench commands write: never the results database, always atomically.

Every command that takes an output path (``report --out``, ``plot --out``,
``train --run-dir``, ``run --runs-dir``) passes it through
:func:`check_output_path` before anything else is written, and writes through
:func:`atomic_output` (a temporary file in the same folder, then
:func:`os.replace`), so that

* an output path that is the SQLite results database, or one of its side
  files (``-wal``, ``-shm``, ``-journal``), is refused with one line instead
  of overwriting every stored result;
* a crash, a full disk or Ctrl-C while writing leaves the old file (or none),
  never half a file.

This module imports no torch, pandas or SQLAlchemy at import time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hsbench.errors import ConfigError, HsbenchError

#: Files SQLite keeps beside a database file ``X``: ``X``, ``X-wal``, ``X-shm``, ``X-journal``.
SQLITE_SIDE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def sqlite_file(db_url: str | None) -> Path | None:
    """The file of a file-backed SQLite URL, else None (PostgreSQL, ``:memory:``, unparsable).

    Args:
        db_url: a SQLAlchemy URL; None = ``$HSBENCH_DB`` or the default
            ``sqlite:///results/hsbench.db`` (:func:`hsbench.store.resolve_db_url`).
    """
    from hsbench.store.engine import parse_db_url, resolve_db_url, sqlite_path

    try:
        return sqlite_path(parse_db_url(resolve_db_url(db_url)))
    except HsbenchError:  # Store.open reports a bad URL in its own words
        return None


def database_files(db_url: str | None) -> tuple[Path, ...]:
    """The SQLite database file of ``db_url`` and its side files (none for a server database)."""
    db = sqlite_file(db_url)
    if db is None:
        return ()
    return tuple(Path(f"{db}{suffix}") for suffix in SQLITE_SIDE_SUFFIXES)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_output_path(out: str | os.PathLike[str], *, db_url: str | None, option: str = "--out") -> Path:
    """``out`` as a Path, refused if it is the results database or one of its side files.

    Args:
        out: the path the user gave.
        db_url: the ``--db`` value of the command (None = ``$HSBENCH_DB`` or the default).
        option: the option's name, for the message.

    Raises:
        ConfigError: ``<option> X is the results database (sqlite:///X); ...``.
    """
    path = Path(out)
    files = database_files(db_url)
    for f in files:
        if _same_file(path, f):
            what = "the results database" if f == files[0] else (
                f"a side file of the results database {str(files[0])!r}"
            )
            raise ConfigError(
                f"{option} {str(path)!r} is {what}; writing there would destroy the stored results; "
                f"choose another file name"
            )
    return path


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path`` (:func:`os.replace`).

    The temporary file keeps ``path``'s suffix (matplotlib picks the format
    from it). On any exception the temporary file is removed and ``path`` is
    left as it was.

    Raises:
        ConfigError: the folder cannot be created or written (message names the path).
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=f".tmp{target.suffix}")
    except OSError as exc:
        raise ConfigError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_output`; the path.

    Raises:
        ConfigError: the file cannot be written (full disk, no permission, a folder).
    """
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"cannot write {str(target)!r}: it is a folder; give a file name")
    try:
        with atomic_output(target) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
    return target


__all__ = [
    "SQLITE_SIDE_SUFFIXES",
    "atomic_output",
    "check_output_path",
    "database_files",
    "sqlite_file",
    "write_text_atomic",
]
