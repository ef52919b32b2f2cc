"""hsbench's own errors: mistakes a user can fix. The CLI prints them on one line and exits 2.

Library code raises a subclass of :class:`HsbenchError` for every bad input
(a malformed study, an impossible knob value, a missing dataset folder, a
database that cannot be used). :func:`hsbench.cli.main` prints such an error
as ``error: <message>`` without a traceback and exits with code 2. Any other
exception, a ``ValueError`` from numpy or timm included, is a bug in hsbench:
the CLI prints its traceback and :data:`BUG_REPORT` and exits with code 1.

:class:`ConfigError` also derives from ``ValueError``, so code that guards a
knob with ``except ValueError`` keeps working.
"""

#: The line printed under the traceback of an exception that is not an :class:`HsbenchError`.
BUG_REPORT = (
    "this is a bug in hsbench, not a mistake of yours: please report it with the command you ran, "
    "the traceback above and `pip freeze` (README.md, 'Reporting a bug')"
)


class HsbenchError(Exception):
    """Base class: something the user can fix; the message says what and how, on one line."""


class ConfigError(HsbenchError, ValueError):
    """A study, variant or command-line value is malformed or impossible."""


class DataError(HsbenchError):
    """A dataset folder is missing or does not have the expected layout."""


class WeightsError(HsbenchError):
    """A weights file is missing, unreadable, untrusted, or does not fit the model it names."""


class StoreError(HsbenchError):
    """The results database cannot be opened, is of another schema, or is empty."""


class OutputError(HsbenchError):
    """An output (a file, standard output) cannot be written: full disk, closed pipe, no permission."""


def check_fields(cls: type, d, what: str) -> None:
    """Refuse keys of ``d`` that are not fields of the dataclass ``cls``.

    The one unknown-key check of every config section's ``from_dict``.

    Raises:
        ConfigError: ``unknown <what> option(s) [...]; allowed keys: a, b, ...``.
    """
    import dataclasses

    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown {what} option(s) {unknown}; allowed keys: {', '.join(allowed)}")


__all__ = ["BUG_REPORT", "ConfigError", "DataError", "HsbenchError", "OutputError", "StoreError", "check_fields"]
