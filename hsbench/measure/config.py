"""Settings of one speed measurement: :class:`SpeedConfig`.

Every field changes what an FPS figure means, so every field is stored with the
figure (see :class:`hsbench.measure.speed.SpeedResult`). The defaults are the
paper's protocol (Sec. 4): batch size 1, fp32, inference-time BN fusion
(supplement Sec. E), no test-time augmentation, no compiler tricks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hsbench.errors import ConfigError, check_fields
from hsbench.values import parse_resolution  # noqa: F401  (re-exported; lives in hsbench.values)

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16")
DENORMALS = ("flush", "keep")
DPW_BACKENDS = ("auto", "reference", "torch", "triton")  # hsbench.ops.BACKENDS, without importing torch


@dataclass(frozen=True)
class SpeedConfig:
    """How to time a model: the paper's FPS protocol plus recorded deviations.

    Attributes:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``, resolved by :func:`hsbench.device.resolve_device`.
            A CPU figure is labelled ``cpu`` and never reported as a GPU figure.
        precision: ``"fp32"`` (paper, default); ``"fp16"`` / ``"bf16"`` run the
            forward pass under ``torch.autocast`` with that dtype.
        channels_last: convert the model and the uploaded image to
            ``torch.channels_last`` memory format.
        cudnn_benchmark: value of ``torch.backends.cudnn.benchmark`` while
            timing (CUDA only; recorded either way). Default True: the input
            shape never changes, so the autotuned kernels are the ones a
            deployed model runs; False times PyTorch's default heuristics.
        fuse_bn: call the model's ``fuse_bn()`` (supplement Sec. E) when it has
            one; the result records whether fusion happened.
        tta_hflip: test-time augmentation: the forward pass also runs on the
            horizontally flipped image and averages the logits (two passes).
        resolution: ``(W, H)`` of the input in pixels; ``None`` = take it from
            the ``image`` passed to :func:`~hsbench.measure.speed.measure_fps`
            (one of the two is required).
        batch_size: images per frame; 1 in the paper ("to simulate real-time
            inference"). FPS counts images: ``batch_size / median latency``.
        pinned_memory: keep the host image in page-locked memory and upload
            with ``non_blocking=True`` (CUDA only). Default False: the paper
            does not say, and a plain ``tensor.to("cuda")`` from pageable
            memory is what "without specific optimizations" runs.
        min_warmup: warm-up frames always run before the stability check.
        max_warmup: cap on warm-up frames; reaching it is recorded as
            ``warmup_converged=False``.
        warmup_window: frames per window of the warm-up stability rule.
        warmup_rtol: relative tolerance of the warm-up stability rule.
        timed_frames: ``N``, timed frames per repeat.
        repeats: ``R``, independent repeats of the N timed frames.
        compile: wrap the (fused) model in ``torch.compile`` (default options).
        cuda_graphs: capture the forward pass in a CUDA graph (CUDA only,
            excludes ``compile``).
        denormals: ``"flush"`` = ``torch.set_flush_denormal(True)`` while
            timing (randomly initialised models produce denormal floats that
            slow CPU arithmetic several-fold); ``"keep"`` = leave as is.
        cpu_threads: ``torch.set_num_threads`` while timing; ``None`` = torch's default.
        dpw_backend: DPWConv implementation of models that offer ``set_dpw_backend``
            (``"auto"``, ``"reference"``, ``"torch"``, ``"triton"``;
            :mod:`hsbench.ops.backends`); the one that ran is recorded in the
            result's ``settings["dpwconv_backend"]``. Not part of the variant id.
        bootstrap_samples: resamples of the bootstrap confidence interval.
        seed: seed of the synthetic image and of the bootstrap.
    """

    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    cudnn_benchmark: bool = True
    fuse_bn: bool = True
    tta_hflip: bool = False
    resolution: tuple[int, int] | None = None
    batch_size: int = 1
    pinned_memory: bool = False
    min_warmup: int = 10
    max_warmup: int = 200
    warmup_window: int = 10
    warmup_rtol: float = 0.05
    timed_frames: int = 100
    repeats: int = 5
    compile: bool = False
    cuda_graphs: bool = False
    denormals: str = "flush"
    cpu_threads: int | None = None
    dpw_backend: str = "auto"
    bootstrap_samples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resolution is not None and not isinstance(self.resolution, tuple):
            object.__setattr__(self, "resolution", tuple(self.resolution))
        self.validate()

    def validate(self) -> None:
        """Check every field.

        Raises:
            ConfigError: (a ``ValueError``) naming the bad field and its allowed values.
        """
        if self.device not in DEVICES and not (
            isinstance(self.device, str) and self.device.startswith("cuda:") and self.device[5:].isdigit()
        ):
            raise ConfigError(f"device={self.device!r}; allowed: {', '.join(DEVICES)} or cuda:N")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r}; allowed: {', '.join(PRECISIONS)}")
        if self.denormals not in DENORMALS:
            raise ConfigError(f"denormals={self.denormals!r}; allowed: {', '.join(DENORMALS)}")
        if self.resolution is not None:
            if len(self.resolution) != 2 or not all(isinstance(v, int) and v > 0 for v in self.resolution):
                raise ConfigError(f"resolution={self.resolution!r} must be (W, H), two positive integers")
        for name in ("batch_size", "timed_frames", "repeats", "warmup_window", "bootstrap_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be a positive integer")
        if not isinstance(self.min_warmup, int) or self.min_warmup < 0:
            raise ConfigError(f"min_warmup={self.min_warmup!r} must be a non-negative integer")
        if not isinstance(self.max_warmup, int) or self.max_warmup < self.min_warmup:
            raise ConfigError(
                f"max_warmup={self.max_warmup!r} must be an integer >= min_warmup={self.min_warmup}"
            )
        if not (isinstance(self.warmup_rtol, (int, float)) and self.warmup_rtol > 0):
            raise ConfigError(f"warmup_rtol={self.warmup_rtol!r} must be a positive number")
        if self.cpu_threads is not None and (not isinstance(self.cpu_threads, int) or self.cpu_threads < 1):
            raise ConfigError(f"cpu_threads={self.cpu_threads!r} must be a positive integer or None")
        if self.dpw_backend not in DPW_BACKENDS:
            raise ConfigError(f"dpw_backend={self.dpw_backend!r}; allowed: {', '.join(DPW_BACKENDS)}")
        if self.compile and self.cuda_graphs:
            raise ConfigError("compile and cuda_graphs cannot both be on; choose one")
        if self.cuda_graphs and self.device == "cpu":
            raise ConfigError("cuda_graphs needs device 'cuda' (or 'auto' on a CUDA machine)")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (``resolution`` becomes a list)."""
        d = dataclasses.asdict(self)
        if d["resolution"] is not None:
            d["resolution"] = list(d["resolution"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SpeedConfig":
        """Inverse of :meth:`to_dict`; missing keys take their defaults.

        Raises:
            ValueError: (``ConfigError``) on a key that is not a field, naming
                the allowed keys; on a bad value, naming the field.
        """
        check_fields(cls, d, "speed")
        kwargs = dict(d)
        if kwargs.get("resolution") is not None:
            kwargs["resolution"] = tuple(kwargs["resolution"])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "SpeedConfig":
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)
