"""Training loop (issue 3 item 4): recipe, checkpoints, exact resume, divergence, DDP on gloo."""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset

from hsbench.engine.config import TrainConfig
from hsbench.engine.errors import CheckpointError, TrainingDiverged
from hsbench.engine.train import (
    IterationBatchSampler,
    _progress_enabled,
    load_checkpoint,
    save_checkpoint,
    train,
)

torch.set_num_threads(1)
K = 3


class AugmentedToy(Dataset):
    """Learnable toy segmentation (label = argmax of the first K channels), with random
    augmentation drawn from the *global* RNGs (flip, noise), as real transforms do."""

    def __init__(self, n=12, size=(8, 8)):
        g = torch.Generator().manual_seed(11)
        self.x = torch.randn(n, 3, *size, generator=g)
        self.y = self.x[:, :K].argmax(1)
        self.y[:, 0, 0] = 255  # an ignore pixel

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x, y = self.x[i], self.y[i]
        if torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return x + 0.1 * torch.randn_like(x), y


def toy_model(seed=0, bn=True, dropout=True):
    torch.manual_seed(seed)
    layers = [nn.Conv2d(3, 6, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(6))
    layers.append(nn.ReLU())
    if dropout:
        layers.append(nn.Dropout2d(0.2))
    layers.append(nn.Conv2d(6, K, 1))
    return nn.Sequential(*layers)


def small_cfg(**kw):
    base = dict(iterations=6, batch_size=4, lr0=1e-2, poly_power=2.0, checkpoint_every=2, seed=3,
                deterministic=True, loss_params={"k": 16})
    base.update(kw)
    return TrainConfig(**base)


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class Interrupt(Exception):
    pass


class CrashAfter(nn.Module):
    """Wraps a model and raises on forward call number ``n`` (0-based) to simulate a kill."""

    def __init__(self, inner, n):
        super().__init__()
        self.inner, self.n, self.calls = inner, n, 0

    def forward(self, x):
        if self.calls == self.n:
            raise Interrupt
        self.calls += 1
        return self.inner(x)


def test_training_reduces_loss_and_writes_final_checkpoint(tmp_path):
    ds = AugmentedToy(n=16)
    model = toy_model()
    ckpt = tmp_path / "ck.pt"
    first = train(model, ds, small_cfg(iterations=1, checkpoint_every=0), checkpoint_path=tmp_path / "a.pt")
    res = train(model := toy_model(), ds, small_cfg(iterations=40, lr0=2e-2, checkpoint_every=0),
                checkpoint_path=ckpt)
    assert res.completed and res.iterations_done == 40 and res.start_iteration == 0
    assert res.last_loss < first.last_loss
    assert res.images_per_s > 0 and res.world_size == 1 and res.device == "cpu"
    state = load_checkpoint(ckpt)
    assert state["iteration"] == 40
    assert set(state) >= {"model", "optimizer", "scheduler", "rng", "train_config", "iteration"}
    assert same_state(model, _loaded(state))


def _loaded(state):
    m = toy_model(seed=123)
    m.load_state_dict(state["model"])
    return m


def test_adam_betas_and_poly_lr_per_iteration(tmp_path):
    cfg = small_cfg(iterations=10, lr0=1e-3, poly_power=2.0, checkpoint_every=1)
    seen = []

    class Spy(nn.Module):
        """Reads the lr that the optimizer will use, via the checkpoint written one iteration before."""

        def __init__(self):
            super().__init__()
            self.inner = toy_model()

        def forward(self, x):
            p = tmp_path / "ck.pt"
            if p.exists():
                st = torch.load(p, weights_only=True)
                seen.append((st["iteration"], st["optimizer"]["param_groups"][0]["lr"]))
            return self.inner(x)

    train(Spy(), AugmentedToy(), cfg, checkpoint_path=tmp_path / "ck.pt")
    assert [i for i, _ in seen] == list(range(1, 10))
    for i, lr in seen:  # lr used at iteration i = lr0 (1 - i/t)^p
        assert lr == pytest.approx(1e-3 * (1 - i / 10) ** 2.0, rel=1e-9)
    group = load_checkpoint(tmp_path / "ck.pt")["optimizer"]["param_groups"][0]
    assert tuple(group["betas"]) == (0.5, 0.999) and group["weight_decay"] == 0.0


def test_resume_after_kill_gives_same_weights_as_uninterrupted(tmp_path):
    ds, cfg = AugmentedToy(), small_cfg()  # 12 samples / batch 4 -> 3 iterations per epoch
    full = toy_model()
    train(full, ds, cfg, checkpoint_path=tmp_path / "full" / "ck.pt")

    victim = CrashAfter(toy_model(), n=3)  # checkpoint at 2 is written, killed during iteration 3
    with pytest.raises(Interrupt):
        train(victim, ds, cfg, checkpoint_path=tmp_path / "run" / "ck.pt")
    assert load_checkpoint(tmp_path / "run" / "ck.pt")["iteration"] == 2

    torch.manual_seed(999)  # the new process's RNGs are elsewhere; the checkpoint restores them
    resumed = CrashAfter(toy_model(seed=42), n=-1)  # another init: the checkpoint overrides it
    res = train(resumed, ds, cfg, checkpoint_path=tmp_path / "run" / "ck.pt")
    assert res.start_iteration == 2 and res.iterations_done == 6 and res.completed
    assert same_state(full, resumed.inner)
    # running again on a finished checkpoint trains nothing and changes nothing
    again = CrashAfter(toy_model(seed=5), n=-1)
    res2 = train(again, ds, cfg, checkpoint_path=tmp_path / "run" / "ck.pt")
    assert res2.start_iteration == 6 and res2.last_loss is None and same_state(full, again.inner)


def test_stop_at_then_resume_and_worker_count_does_not_change_result(tmp_path):
    ds, cfg = AugmentedToy(), small_cfg(iterations=5, checkpoint_every=0)
    ref = toy_model()
    train(ref, ds, cfg)
    part = toy_model()
    r1 = train(part, ds, cfg, checkpoint_path=tmp_path / "ck.pt", stop_at=3)
    assert (r1.iterations_done, r1.completed) == (3, False)
    resumed = toy_model(seed=9)
    train(resumed, ds, cfg.replace(num_workers=1), checkpoint_path=tmp_path / "ck.pt")
    assert same_state(ref, resumed)  # augmentation seeded per sample, not per worker


def test_resume_with_other_config_is_refused(tmp_path):
    ds = AugmentedToy()
    train(toy_model(), ds, small_cfg(), checkpoint_path=tmp_path / "ck.pt", stop_at=2)
    with pytest.raises(CheckpointError, match="lr0"):
        train(toy_model(), ds, small_cfg(lr0=0.5), checkpoint_path=tmp_path / "ck.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        train(toy_model(), ds, small_cfg(), checkpoint_path=tmp_path / "junk.pt")


def test_nan_loss_names_the_iteration(tmp_path):
    class NanFrom(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.inner, self.n, self.calls = toy_model(), n, 0

        def forward(self, x):
            out = self.inner(x)
            self.calls += 1
            return out * float("nan") if self.calls > self.n else out

    with pytest.raises(TrainingDiverged, match=r"iteration 3\b") as err:
        train(NanFrom(3), AugmentedToy(), small_cfg(), checkpoint_path=tmp_path / "ck.pt")
    assert err.value.iteration == 3 and err.value.loss != err.value.loss  # NaN
    assert load_checkpoint(tmp_path / "ck.pt")["iteration"] == 2  # nothing written after


def test_labels_outside_classes_are_rejected():
    class Bad(AugmentedToy):
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            return x, y + 5

    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        train(toy_model(), Bad(), small_cfg(iterations=1), num_classes=K)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"version": 1, "a": torch.ones(3)})
    before = path.read_bytes()

    def broken_save(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"version": 1, "a": torch.zeros(3)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left


def test_batch_sampler_resumes_at_any_iteration_and_shards_evenly():
    full = list(IterationBatchSampler(10, 4, seed=1, start=0, stop=9))
    assert list(IterationBatchSampler(10, 4, seed=1, start=5, stop=9)) == full[5:]
    assert all(len(b) == 4 for b in full)
    # epochs are different permutations; samples within an epoch never repeat
    per_epoch = 10 // 4
    e0 = [i for b in full[:per_epoch] for i, _ in b]
    assert len(set(e0)) == len(e0)
    # two processes with 2 each see the same global batches as one process with 4
    r0 = list(IterationBatchSampler(10, 2, seed=1, start=0, stop=2, rank=0, world_size=2))
    r1 = list(IterationBatchSampler(10, 2, seed=1, start=0, stop=2, rank=1, world_size=2))
    for i in range(2):
        assert sorted(r0[i] + r1[i]) == sorted(full[i])
    with pytest.raises(ValueError, match="fewer than one batch"):
        IterationBatchSampler(3, 4, seed=0, start=0, stop=1)


def test_progress_is_quiet_without_a_tty():
    assert _progress_enabled(None) is False  # pytest captures stderr
    assert _progress_enabled(True) is True


# ------------------------------------------------------------------ DDP, 2 CPU processes


def _ddp_worker(rank: int, world: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world)
    try:
        model = toy_model(seed=rank, bn=False, dropout=False)  # ranks start different: DDP broadcasts
        cfg = small_cfg(iterations=4, checkpoint_every=2, loss="ce", loss_params={})
        res = train(model, AugmentedToy(), cfg, checkpoint_path=Path(tmp) / f"rank{rank}" / "ck.pt")
        torch.save({"state": model.state_dict(), "world": res.world_size, "digests": res.params_digests},
                   Path(tmp) / f"weights{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_two_gloo_processes_agree_and_only_rank0_writes(tmp_path):
    # fork: the children inherit the imported torch (seconds faster than spawn); gloo on CPU
    # is fork-safe. Import what the optimizer imports lazily, once, before forking.
    import torch._dynamo  # noqa: F401

    mp.start_processes(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True, start_method="fork")
    w0 = torch.load(tmp_path / "weights0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "weights1.pt", weights_only=True)
    assert w0["world"] == w1["world"] == 2
    assert len(w0["digests"]) == 2 and len(set(w0["digests"])) == 1 and w1["digests"] == w0["digests"]
    for k in w0["state"]:
        assert torch.equal(w0["state"][k], w1["state"][k]), k
    assert (tmp_path / "rank0" / "ck.pt").exists()
    assert not (tmp_path / "rank1").exists()  # rank 1 never writes
    ck = load_checkpoint(tmp_path / "rank0" / "ck.pt")
    assert ck["iteration"] == 4 and ck["world_size"] == 2 and len(ck["rng"]) == 2
    # same global batches as one process with the full batch -> same weights up to rounding
    single = toy_model(seed=0, bn=False, dropout=False)
    train(single, AugmentedToy(), small_cfg(iterations=4, checkpoint_every=2, loss="ce", loss_params={}))
    for k, v in single.state_dict().items():
        torch.testing.assert_close(w0["state"][k], v, rtol=1e-5, atol=1e-6)


def _disagree_worker(rank: int, world: int, tmp: str) -> None:
    from hsbench.engine.distributed import check_ranks_agree

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world)
    try:
        same = check_ranks_agree(toy_model(seed=0, bn=False, dropout=False))
        try:
            check_ranks_agree(toy_model(seed=rank, bn=False, dropout=False))  # no DDP: ranks differ
            outcome = "agreed"
        except RuntimeError as exc:
            outcome = str(exc)
        (Path(tmp) / f"rank{rank}.txt").write_text(f"{len(same)} {len(set(same))}\n{outcome}")
    finally:
        dist.destroy_process_group()


def test_check_ranks_agree_catches_different_parameters(tmp_path):
    mp.start_processes(_disagree_worker, args=(2, str(tmp_path)), nprocs=2, join=True, start_method="fork")
    for rank in (0, 1):
        counts, outcome = (tmp_path / f"rank{rank}.txt").read_text().split("\n", 1)
        assert counts == "2 1"  # two digests, equal, for the same model
        assert outcome.startswith("DDP ranks disagree on the trained parameters (rank 0: ")
