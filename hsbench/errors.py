"""Errors a user can cause. The CLI prints their message on one line and exits non-zero.

Library code raises these (or ``ValueError`` for bad knob values, as the model
issue asks); :func:`hsbench.cli.main` turns both into ``error: <message>``
without a traceback.
"""


class HsbenchError(Exception):
    """Base class: something the user can fix; the message says what and how."""


class ConfigError(HsbenchError, ValueError):
    """A study, variant or command-line value is malformed or impossible."""


class DataError(HsbenchError):
    """A dataset folder is missing or does not have the expected layout."""


class WeightsError(HsbenchError):
    """A weights file is missing, unreadable, untrusted, or does not fit the model it names."""


class StoreError(HsbenchError):
    """The results database cannot be opened, is of another schema, or is empty."""


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
