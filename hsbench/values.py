"""Parsing and range checks of the numbers a user types: one place for every CLI and study file.

Torch-free and cheap to import. Every integer hsbench stores lands in a
64-bit signed column, every float in a double column that must be finite, so
:func:`check_int` and :func:`check_float` are the one gate a value passes
before anything is written (:func:`hsbench.studies.parse_study` runs them on
every number of a study, the CLIs on their options).
"""

from __future__ import annotations

import math
from typing import Any

from hsbench.errors import ConfigError

#: Largest integer a database column (SQLite INTEGER, PostgreSQL BIGINT) holds: 2^63 - 1.
INT64_MAX = 2**63 - 1


def parse_resolution(text: str, what: str = "resolution") -> tuple[int, int]:
    """Parse ``"WxH"`` (e.g. ``"768x576"``) into ``(W, H)`` in pixels.

    The one parser of resolutions for every command and study file; ``what``
    names the option or key in the error (e.g. ``"--crop"``).

    Raises:
        ConfigError: if the text is not two positive integers joined by ``x``,
            or a side is above :data:`INT64_MAX`.
    """
    parts = text.lower().replace("×", "x").split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"{what} {text!r} is not of the form WIDTHxHEIGHT, e.g. 768x576") from None
    if w < 1 or h < 1:
        raise ConfigError(f"{what} {text!r} must have a positive width and height")
    if max(w, h) > INT64_MAX:
        raise ConfigError(f"{what} {text!r} is too large; a side must be at most {INT64_MAX}")
    return w, h


def check_int(value: Any, what: str, *, minimum: int | None = None, maximum: int = INT64_MAX) -> int:
    """``value`` if it is an int in ``[minimum, maximum]`` (default: a 64-bit signed column's range).

    Raises:
        ConfigError: ``<what> must be ... , got <value>`` (bools are refused).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be an integer, got {value!r}")
    lo = -INT64_MAX - 1 if minimum is None else minimum
    if not lo <= value <= maximum:
        shown = str(value) if len(str(value)) <= 30 else f"{str(value)[:12]}...({len(str(value))} digits)"
        raise ConfigError(f"{what} must be an integer from {lo} to {maximum}, got {shown}")
    return value


def check_float(value: Any, what: str) -> float:
    """``value`` as a float if it is a finite number (NaN and +-inf cannot be stored or trained with).

    Raises:
        ConfigError: ``<what> must be a finite number, got nan``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    try:
        f = float(value)
    except OverflowError:
        raise ConfigError(f"{what} is too large to be a number ({len(str(value))} digits)") from None
    if not math.isfinite(f):
        raise ConfigError(f"{what} must be a finite number, got {value}")
    return f


__all__ = ["INT64_MAX", "check_float", "check_int", "parse_resolution"]
