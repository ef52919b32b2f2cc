"""The one device resolution of hsbench: training, evaluation and FPS all use it.

A device is named as the user gives it on the command line or in a study:
``auto``, ``cpu``, ``cuda`` or ``cuda:N``. :func:`check_device` validates the
text without importing torch (the CLI calls it before anything is written);
:func:`resolve_device` turns it into the ``torch.device`` every phase of a run
uses:

==========  ==============================================================
``auto``    ``cuda:<LOCAL_RANK>`` when CUDA is available, else ``cpu``
``cpu``     ``cpu``
``cuda``    ``cuda:<LOCAL_RANK>`` (``LOCAL_RANK`` from torchrun, else 0)
``cuda:N``  GPU ``N`` exactly; an error when there are not ``N + 1`` GPUs
==========  ==============================================================

The worker resolves once and passes the resolved ``cuda:N`` to training,
evaluation *and* the FPS measurement, so ``--device cuda:1`` never times GPU 0.
The string the user gave is stored with the run (``runs.device``), the
resolved one with the training and speed rows.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from hsbench.errors import ConfigError

if TYPE_CHECKING:  # torch is imported only where a device is resolved
    import torch

#: What ``--device`` accepts, for messages.
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def check_device(name: object) -> str:
    """Validate a device name without importing torch; the name, stripped and lower-cased.

    Raises:
        ConfigError: not one of ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
    """
    text = str(name).strip().lower()
    if not _DEVICE_RE.match(text):
        raise ConfigError(f"--device {name!r} is not one of {DEVICE_CHOICES} (e.g. --device cuda:1)")
    return text


def _local_rank() -> int:
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The ``torch.device`` for ``name`` (see the module docstring's table).

    Args:
        name: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, or a ``torch.device``.

    Returns:
        ``torch.device("cpu")`` or ``torch.device("cuda", N)``, always with an index on CUDA.

    Raises:
        ConfigError: an unknown name; CUDA asked for where torch sees none; ``cuda:N``
            with ``N`` beyond the GPUs torch sees.
    """
    import torch

    if isinstance(name, torch.device):
        text = str(name)
    else:
        text = check_device(name)
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", _local_rank())
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not text.startswith("cuda"):
        raise ConfigError(f"device {text!r} is not one of {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {text!r} was asked for, but CUDA is not available here (torch sees no CUDA device); use --device cpu")
    index = int(text.split(":", 1)[1]) if ":" in text else _local_rank()
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(
            f"device {text!r} was asked for, but torch sees {count} CUDA device(s) (cuda:0 .. cuda:{count - 1})"
        )
    return torch.device("cuda", index)


__all__ = ["DEVICE_CHOICES", "check_device", "resolve_device"]
