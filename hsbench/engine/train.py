"""The training loop: the paper's recipe, resumable, single- or multi-process.

Recipe (paper Sec. 4.1, Table 1; supplement Sec. B), all set by
:class:`~hsbench.engine.config.TrainConfig`:

* Adam, beta1 = 0.5, beta2 = 0.999, no weight decay;
* polynomial decay per iteration ``lr_i = lr0 * (1 - i / t) ** p`` with
  ``t`` = the iteration budget (``torch.optim.lr_scheduler.LambdaLR``);
* bootstrapped cross entropy (Cityscapes, CamVid) or cross entropy (VOC);
* mixed precision (autocast + GradScaler) on CUDA when ``amp`` is on.

Reproducibility and resume:

* The data order comes from :class:`torch.utils.data.DistributedSampler`
  (seeded with ``seed``, ``set_epoch`` per epoch, one shard per process);
  the batches of iteration ``i`` depend only on ``(seed, i)``.
* Each sample's random augmentation runs under RNGs seeded from
  ``(seed, epoch, index)``, so it does not depend on worker count, on which
  process loads it, or on whether the run was resumed.
* A checkpoint (every ``checkpoint_every`` iterations and at the end) holds the
  model, optimizer, scheduler, GradScaler, every process's RNG states and the
  iteration; it is written atomically (temporary file in the same folder,
  then ``os.replace``). Restarting with the same checkpoint path continues at
  that iteration and, on CPU with deterministic settings, ends with the same
  weights as an uninterrupted run.

Multi-process: launch with ``torchrun`` (see :mod:`hsbench.engine.distributed`),
or initialise a process group yourself; the model is wrapped in DDP,
``batch_size`` is the global batch split evenly over processes, and only rank 0
writes checkpoints and shows progress.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from hsbench.engine import distributed as hdist
from hsbench.engine.config import TrainConfig
from hsbench.engine.errors import CheckpointError, TrainingDiverged
from hsbench.engine.losses import build_loss
from hsbench.errors import ConfigError

#: Format version of the checkpoint dict written by :func:`save_checkpoint`.
CHECKPOINT_VERSION = 1

#: TrainConfig fields that may change between a run and its resumption.
_RESUME_FREE_FIELDS = {"checkpoint_every", "num_workers"}


# --------------------------------------------------------------------------- seeding


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any tuple of values (stable across processes and runs)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """This process's RNG states (python, numpy, torch CPU, torch CUDA of ``device``)."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": None,
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Inverse of :func:`get_rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state({
        "bit_generator": n["bit_generator"],
        "state": {"key": n["key"].numpy().astype(np.uint32), "pos": int(n["pos"])},
        "has_gauss": int(n["has_gauss"]),
        "gauss": float(n["gauss"]),
    })
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


class SeededDataset(Dataset):
    """Wraps a dataset so that item ``(index, seed)`` is drawn under RNGs seeded with ``seed``.

    The global RNG states (python, numpy, torch CPU) of the calling process are
    restored afterwards, so loading data never perturbs the training RNG.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        py, npy = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                random.seed(seed)
                np.random.seed(seed % 2**32)
                return self.dataset[index]
        finally:
            random.setstate(py)
            np.random.set_state(npy)


class IterationBatchSampler:
    """Batches of ``(index, sample_seed)`` for iterations ``[start, stop)`` of one process.

    Per epoch, a :class:`DistributedSampler` (shuffle, seeded with ``seed``,
    ``set_epoch(epoch)``) gives this process's shard of a permutation; it is cut
    into batches of ``batch_size`` (the per-process batch) and an incomplete
    last batch is dropped. Iteration ``i`` is batch ``i % per_epoch`` of epoch
    ``i // per_epoch``, so resuming at any iteration reproduces the data order.

    Raises:
        ValueError: the dataset has fewer samples per process than one batch.
    """

    def __init__(
        self, num_samples: int, batch_size: int, seed: int, start: int, stop: int,
        rank: int = 0, world_size: int = 1,
    ) -> None:
        self.sampler = DistributedSampler(
            range(num_samples), num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
        )
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.start, self.stop = int(start), int(stop)
        self.per_epoch = len(self.sampler) // self.batch_size
        if self.per_epoch < 1:
            raise ConfigError(
                f"dataset has {num_samples} samples, {len(self.sampler)} per process: fewer "
                f"than one batch of {self.batch_size}; lower batch_size"
            )

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, order = -1, []
        for i in range(self.start, self.stop):
            e, j = divmod(i, self.per_epoch)
            if e != epoch:
                self.sampler.set_epoch(e)
                order, epoch = list(self.sampler), e
            idx = order[j * self.batch_size:(j + 1) * self.batch_size]
            yield [(int(x), derive_seed(self.seed, e, int(x))) for x in idx]


# --------------------------------------------------------------------------- checkpoints


def atomic_temp(path: Path) -> tuple[int, str]:
    """A temporary file next to ``path`` (same filesystem, so ``os.replace`` is atomic).

    Its mode follows the umask like an ordinary new file (``mkstemp`` would give 0600).

    Returns:
        ``(fd, temp_path)`` as :func:`tempfile.mkstemp` does.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    return fd, tmp


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` atomically: temp file in the same folder, then rename.

    A reader never sees a half-written file; a crash leaves the previous
    checkpoint intact.

    Returns:
        The checkpoint path.
    """
    path = Path(path)
    fd, tmp = atomic_temp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`train`.

    Raises:
        CheckpointError: the file cannot be read or is not an hsbench checkpoint.
    """
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user problem
        raise CheckpointError(
            f"cannot read checkpoint {path}: {exc}; delete it to train from scratch"
        ) from exc
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} is not an hsbench checkpoint (version {CHECKPOINT_VERSION}); "
            "delete it to train from scratch"
        )
    return state


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    now = cfg.to_dict()
    diff = sorted(
        k for k in set(now) | set(saved)
        if k not in _RESUME_FREE_FIELDS and now.get(k) != saved.get(k)
    )
    if diff:
        detail = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {now.get(k)!r}" for k in diff)
        raise CheckpointError(
            f"checkpoint {path} was written by a different training config ({detail}); "
            "use another run folder or delete the checkpoint"
        )


# --------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class TrainResult:
    """What one call of :func:`train` did.

    Attributes:
        iterations_done: iterations completed in total (resumed ones included).
        start_iteration: iteration this call started at (0, or the checkpoint's).
        completed: ``iterations_done == cfg.iterations``.
        wall_time_s: seconds spent in this call's loop (s).
        images_per_s: global images per second over this call's iterations.
        last_loss: loss of the last iteration run (averaged over processes), or
            None when no iteration ran.
        checkpoint_path: where the latest checkpoint lies (None without a path).
        device: the torch device string used.
        world_size: number of training processes.
        params_digests: SHA-256 of the trained parameters on each rank
            (:func:`hsbench.engine.distributed.check_ranks_agree`; all equal).
    """

    iterations_done: int
    start_iteration: int
    completed: bool
    wall_time_s: float
    images_per_s: float
    last_loss: float | None
    checkpoint_path: str | None
    device: str
    world_size: int
    params_digests: tuple[str, ...] = ()


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """Within the block: deterministic torch algorithms and cuDNN (restored after)."""
    if not enabled:
        yield
        return
    prev = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.deterministic = prev[2]
        torch.backends.cudnn.benchmark = prev[3]


def _progress_enabled(progress: bool | None) -> bool:
    if not hdist.is_main():
        return False
    if progress is not None:
        return bool(progress)
    return sys.stderr.isatty()


def _check_labels(target: torch.Tensor, num_classes: int | None, ignore_index: int) -> None:
    if num_classes is None:
        return
    lab = target[target != ignore_index]
    if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= num_classes):
        raise ConfigError(
            f"training labels must lie in [0, {num_classes}) or equal {ignore_index}; "
            f"found [{int(lab.min())}, {int(lab.max())}]: the dataset and the model disagree "
            "on the number of classes"
        )


def train(
    model: nn.Module,
    dataset: Dataset,
    cfg: TrainConfig,
    *,
    device: str | torch.device = "cpu",
    checkpoint_path: str | os.PathLike | None = None,
    ignore_index: int = 255,
    num_classes: int | None = None,
    progress: bool | None = None,
    stop_at: int | None = None,
    meta: dict[str, Any] | None = None,
    find_unused_parameters: bool = False,
) -> TrainResult:
    """Train ``model`` in place on ``dataset`` with the recipe of ``cfg``.

    Args:
        model: maps images (B, 3, H, W) to logits (B, K, H', W'); logits of
            another size than the labels are resized bilinearly to (H, W).
        dataset: items ``(image (3, H, W) float, label (H, W) int64)``, random
            augmentation included (seeded per sample, see the module docstring).
        cfg: the training recipe and budget.
        device: torch device (under DDP on CUDA: this process's GPU).
        checkpoint_path: where checkpoints go; if a checkpoint is there,
            training resumes from it (see :func:`load_checkpoint`).
        ignore_index: label value left out of the loss (255).
        num_classes: K, used to check the first batch's labels (optional).
        progress: show a tqdm bar; ``None`` = only when stderr is a TTY (rank 0).
        stop_at: stop after this iteration count as if interrupted (the lr
            schedule still spans ``cfg.iterations``); a checkpoint is written there.
        meta: JSON-friendly extra data stored in the checkpoint (configs, ...).
        find_unused_parameters: passed to DDP.

    Returns:
        A :class:`TrainResult`.

    Raises:
        TrainingDiverged: the loss became NaN or infinite (names the iteration).
        CheckpointError: the checkpoint is unreadable or from another config.
        ValueError: batch size not divisible by the process count, a dataset
            smaller than one batch, or labels outside ``[0, K)``.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    world, rank = hdist.world_size(), hdist.rank()
    if cfg.batch_size % world:
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by {world} processes")
    per_rank = cfg.batch_size // world
    total = int(cfg.iterations)
    stop = total if stop_at is None else max(0, min(int(stop_at), total))
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    use_amp = bool(cfg.amp) and device.type == "cuda"
    amp_dtype = torch.float16 if cfg.amp_dtype == "float16" else torch.bfloat16

    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(
        params, lr=cfg.lr0, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
    )
    t, p = float(total), float(cfg.poly_power)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: max(0.0, 1.0 - i / t) ** p
    )
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    criterion = build_loss(cfg.loss, cfg.loss_kwargs, ignore_index=ignore_index)

    start = 0
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt)
        _check_resumable(state["train_config"], cfg, ckpt)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start = int(state["iteration"])
        rngs = state.get("rng") or []
        if len(rngs) == world:
            set_rng_state(rngs[rank], device)
        else:  # another process count: data order still matches; dropout streams restart
            seed_everything(derive_seed(cfg.seed, "train", rank, start))
    else:
        seed_everything(derive_seed(cfg.seed, "train", rank))

    if cfg.sync_bn and hdist.is_distributed():
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net: nn.Module = model
    if hdist.is_distributed():
        net = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=find_unused_parameters,
        )

    def checkpoint(iteration: int) -> None:
        if ckpt is None:
            return
        rng = get_rng_state(device)
        rngs = [rng]
        if hdist.is_distributed():
            rngs = [None] * world
            dist.all_gather_object(rngs, rng)
        if not hdist.is_main():
            return
        save_checkpoint(ckpt, {
            "version": CHECKPOINT_VERSION,
            "iteration": iteration,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "rng": rngs,
            "train_config": cfg.to_dict(),
            "world_size": world,
            "meta": dict(meta or {}),
        })

    sampler = IterationBatchSampler(
        len(dataset), per_rank, cfg.seed, start, stop, rank=rank, world_size=world  # type: ignore[arg-type]
    )
    # A private generator: creating the loader's iterator must not draw from the
    # global RNG, or a resumed run's dropout stream would shift by one draw.
    loader = DataLoader(
        SeededDataset(dataset), batch_sampler=sampler, num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(derive_seed(cfg.seed, "loader", rank, start)),
    )

    from tqdm.auto import tqdm

    bar = tqdm(
        total=total, initial=start, desc="train", unit="it", disable=not _progress_enabled(progress),
        dynamic_ncols=True,
    )
    last_loss: float | None = None
    model.train()
    t0 = time.perf_counter()
    with deterministic_mode(cfg.deterministic):
        for i, (images, labels) in enumerate(loader, start=start):
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True).long()
            if i == start:
                _check_labels(labels, num_classes, ignore_index)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                logits = net(images)
            logits = logits.float()
            if logits.shape[-2:] != labels.shape[-2:]:
                logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
            loss = criterion(logits, labels)

            value = loss.detach().clone()
            if hdist.is_distributed():
                dist.all_reduce(value)
                value /= world
            last_loss = float(value)
            if not np.isfinite(last_loss):
                bar.close()
                raise TrainingDiverged(i, last_loss, lr=scheduler.get_last_lr()[0])

            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()

            done = i + 1
            bar.update(1)
            if done % 10 == 0 or done == stop:
                bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done != stop:
                checkpoint(done)
        ran = max(0, stop - start)
        if ran > 0:
            checkpoint(stop)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - t0
    bar.close()
    digests = hdist.check_ranks_agree(model)  # DDP: every rank ends with the same parameters
    return TrainResult(
        iterations_done=max(start, stop),
        start_iteration=start,
        completed=max(start, stop) >= total,
        wall_time_s=wall,
        images_per_s=(ran * cfg.batch_size / wall) if ran > 0 and wall > 0 else 0.0,
        last_loss=last_loss,
        checkpoint_path=str(ckpt) if ckpt is not None and ckpt.exists() else None,
        device=str(device),
        world_size=world,
        params_digests=tuple(digests),
    )


__all__ = [
    "CHECKPOINT_VERSION", "TrainResult", "train", "save_checkpoint", "load_checkpoint",
    "SeededDataset", "IterationBatchSampler", "seed_everything", "derive_seed",
    "get_rng_state", "set_rng_state", "deterministic_mode",
]
