"""Where a measurement was taken: hardware, drivers, library versions, code version.

An FPS figure without its machine is not a result (DESIGN.md, "a measured
number always carries its device"). :func:`collect_provenance` gathers what is
needed to compare a figure with another one, e.g. with the paper's GTX 1080 Ti
figures (paper Sec. 4: "we measure FPS on a NVIDIA GeForce GTX 1080TI GPU
(i7-5820k CPU and 32GB DDR4 RAM)").
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

#: Keys always present in :func:`collect_provenance`'s dict (values may be ``None``).
PROVENANCE_KEYS = (
    "date_utc",
    "hostname",
    "platform",
    "python_version",
    "cpu_model",
    "cpu_count",
    "hsbench_version",
    "git_commit",
    "git_dirty",
    "torch_version",
    "timm_version",
    "numpy_version",
    "cuda_available",
    "cuda_version",
    "cudnn_version",
    "gpu_name",
    "gpu_capability",
    "gpu_memory_gib",
    "gpu_count",
    "driver_version",
)


def _run(cmd: list[str], cwd: str | None = None, timeout: float = 5.0) -> str | None:
    """stdout of ``cmd`` stripped, or ``None`` if it fails in any way."""
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=True)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return out.stdout.strip()


def cpu_model() -> str | None:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else :mod:`platform`; never raises."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Processor", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        name = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        if name:
            return name
    return platform.processor() or platform.machine() or None


def git_commit() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the hsbench checkout this package is imported from.

    ``(None, None)`` when hsbench is not imported from a git checkout (e.g. an
    installed wheel, even one inside somebody else's repository), or git is
    missing. ``dirty`` is True when tracked files differ from the commit.
    Never raises.
    """
    try:
        import hsbench

        pkg_dir = Path(hsbench.__file__).resolve().parent
        top = _run(["git", "rev-parse", "--show-toplevel"], cwd=str(pkg_dir))
        if not top:
            return None, None
        # the repository must be hsbench's own, not one that happens to contain the install
        if not (Path(top) / "hsbench" / "__init__.py").resolve() == pkg_dir / "__init__.py":
            return None, None
        commit = _run(["git", "rev-parse", "HEAD"], cwd=top)
        if not commit:
            return None, None
        status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=top)
        return commit, (None if status is None else bool(status))
    except Exception:  # provenance must never break a measurement
        return None, None


def _driver_version() -> str | None:
    """NVIDIA driver version via NVML (pynvml) or ``nvidia-smi``; ``None`` if unavailable."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
            return v.decode() if isinstance(v, bytes) else str(v)
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        pass
    out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    if out:
        return out.splitlines()[0].strip()
    return None


def _version(dist: str) -> str | None:
    """Installed version of a distribution, from its metadata (without importing it)."""
    mod = sys.modules.get(dist)
    if mod is not None and getattr(mod, "__version__", None):
        return str(mod.__version__)
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return None


def collect_provenance(device_index: int | None = None) -> dict[str, Any]:
    """The environment of a measurement, as a JSON-serialisable dict.

    Args:
        device_index: CUDA device whose name and properties are recorded;
            ``None`` = the current device.

    Returns:
        A dict with every key of :data:`PROVENANCE_KEYS`: ``date_utc`` (ISO 8601,
        UTC), ``hostname``, ``platform``, ``python_version``, ``cpu_model``,
        ``cpu_count``, ``hsbench_version``, ``git_commit`` (``None`` outside a
        git checkout of hsbench), ``git_dirty``, ``torch_version``,
        ``timm_version``, ``numpy_version``, ``cuda_available``,
        ``cuda_version`` (torch's CUDA runtime), ``cudnn_version``,
        ``gpu_name``, ``gpu_capability`` (``"8.9"``), ``gpu_memory_gib``,
        ``gpu_count``, ``driver_version``. GPU fields are ``None`` without CUDA.

    Never raises: a field that cannot be determined is ``None``.
    """
    info: dict[str, Any] = dict.fromkeys(PROVENANCE_KEYS)
    info["date_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    try:
        info["hostname"] = socket.gethostname()
    except OSError:
        pass
    info["platform"] = platform.platform()
    info["python_version"] = platform.python_version()
    info["cpu_model"] = cpu_model()
    info["cpu_count"] = os.cpu_count()
    info["hsbench_version"] = _version("hsbench")
    info["git_commit"], info["git_dirty"] = git_commit()
    info["timm_version"] = _version("timm")
    info["numpy_version"] = _version("numpy")
    try:
        import torch

        info["torch_version"] = str(torch.__version__)
        info["cuda_version"] = torch.version.cuda
        info["cuda_available"] = bool(torch.cuda.is_available())
        if info["cuda_available"]:
            idx = torch.cuda.current_device() if device_index is None else device_index
            props = torch.cuda.get_device_properties(idx)
            info["gpu_name"] = props.name
            info["gpu_capability"] = f"{props.major}.{props.minor}"
            info["gpu_memory_gib"] = round(props.total_memory / 2**30, 2)
            info["gpu_count"] = torch.cuda.device_count()
            cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
            info["cudnn_version"] = cudnn
            info["driver_version"] = _driver_version()
        else:
            info["gpu_count"] = 0
    except Exception:
        pass
    return info
