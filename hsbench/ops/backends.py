"""Which implementation of DPWConv runs: one name, chosen by argument or environment.

Every DPWConv entry point (:func:`hsbench.ops.patchwise_conv2d`,
:func:`hsbench.ops.meta_block_conv`, the whole model through
:meth:`hsbench.models.HyperSeg.set_dpw_backend`) takes ``backend=``:

``"reference"``
    The slow, obviously correct loop over patches (one ``F.conv2d`` each).
``"torch"``
    Plain PyTorch, any device, differentiable: the batched per-op DPWConv for
    training and the fused, patch-major CPU formulation for inference (see
    :mod:`hsbench.ops.fused`).
``"triton"``
    Triton kernels (:mod:`hsbench.ops.triton_kernels`): CUDA tensors on a GPU,
    CPU tensors only under Triton's interpreter (``TRITON_INTERPRET=1``, used by
    the tests). Inference only (no backward).
``"auto"``
    The fastest exact path for the device: ``"triton"`` for CUDA tensors when
    Triton imports and no gradient is needed, else ``"torch"``.

The environment variable ``HSBENCH_DPW_BACKEND`` replaces ``"auto"`` (an
explicit argument other than ``"auto"`` wins over it).
"""

from __future__ import annotations

import functools
import os

#: Names accepted by ``backend=`` and ``HSBENCH_DPW_BACKEND``.
BACKENDS = ("auto", "reference", "torch", "triton")

#: The environment variable that replaces ``backend="auto"``.
ENV_VAR = "HSBENCH_DPW_BACKEND"


def check_backend(backend: str) -> str:
    """Return ``backend`` if it is one of :data:`BACKENDS`.

    Raises:
        ValueError: naming the value and the allowed ones.
    """
    if backend not in BACKENDS:
        raise ValueError(f"DPWConv backend={backend!r} is not known; allowed: {', '.join(BACKENDS)}")
    return backend


@functools.cache
def triton_available() -> bool:
    """Whether ``import triton`` works (it ships with torch's CUDA wheels on Linux)."""
    try:
        import triton  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the install
        return False
    return True


def triton_interpreted() -> bool:
    """Whether Triton runs kernels on the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def resolve_backend(backend: str = "auto", *, device_type: str = "cpu", needs_grad: bool = False) -> str:
    """The concrete backend (``"reference"``, ``"torch"`` or ``"triton"``) that will run.

    Args:
        backend: one of :data:`BACKENDS`; ``"auto"`` is first replaced by
            ``$HSBENCH_DPW_BACKEND`` when that is set.
        device_type: ``"cpu"`` or ``"cuda"``, the tensors' device.
        needs_grad: a backward pass will follow (Triton kernels have none).

    Raises:
        ValueError: for an unknown name (argument or environment variable), for
            ``"triton"`` without Triton, on CPU tensors without the interpreter,
            or when gradients are needed.
    """
    check_backend(backend)
    if backend == "auto":
        env = os.environ.get(ENV_VAR, "").strip()
        if env:
            if env not in BACKENDS:
                raise ValueError(f"{ENV_VAR}={env!r} is not known; allowed: {', '.join(BACKENDS)}")
            backend = env
    if backend == "auto":
        if device_type == "cuda" and not needs_grad and triton_available():
            return "triton"
        return "torch"
    if backend == "triton":
        if not triton_available():
            raise ValueError("DPWConv backend 'triton' needs the triton package (pip install triton); use 'torch'")
        if needs_grad:
            raise ValueError("DPWConv backend 'triton' has no backward pass; use 'torch' for training")
        if device_type != "cuda" and not triton_interpreted():
            raise ValueError(
                "DPWConv backend 'triton' runs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1); "
                "use 'torch' on CPU"
            )
    return backend
