"""Training and evaluation throughput of one HyperSeg variant (a script, not a test).

Training throughput (images/s) is measured on the engine's own step: forward,
loss (bootstrapped CE by default, supplement Sec. B), backward, Adam step and
poly-lr step, with autocast on CUDA when ``--amp``; the median step time over
``--iters`` timed steps after ``--warmup`` untimed ones. Evaluation throughput
(images/s) is :func:`hsbench.engine.evaluate` end to end (forward, bilinear
resize of the logits to the label size, argmax, confusion matrix and trimap
band) over ``--eval-images`` images at batch 1, after one warm-up pass.

Inputs are random tensors at the given sizes (data loading excluded) unless
``--data-root`` is given, in which case the CamVid loader of :mod:`hsbench.data`
is used for the evaluation pass (PNG decoding included).

Examples::

    python benchmarks/bench_train.py                                  # camvid-s, efficientnet_b1, CPU
    python benchmarks/bench_train.py --backbone tf_efficientnet_lite1 --batch 4 --train-size 360 480
    python benchmarks/bench_train.py --device cuda --amp --batch 16   # on a GPU

Prints one human-readable block and one JSON line (``--json`` for JSON only).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch
from torch.utils.data import Dataset


class RandomSegmentation(Dataset):
    """``n`` random (image (3, H, W), label (H, W)) pairs with K classes and some ignore pixels."""

    def __init__(self, n: int, size: tuple[int, int], k: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, *size, generator=g)
        self.labels = torch.randint(0, k, (n, *size), generator=g)
        self.labels[torch.rand(n, *size, generator=g) < 0.05] = 255

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else platform.processor(), else "cpu"."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_train(model, device, batch, size, k, iters, warmup, amp, loss_name) -> dict:
    """Median seconds per training step and images/s over ``iters`` timed steps."""
    from hsbench.engine.losses import build_loss

    model.to(device).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3, betas=(0.5, 0.999))
    total = warmup + iters
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1 - i / total) ** 2.0)
    use_amp = amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    crit = build_loss(loss_name)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, *size, generator=g).to(device)
    y = torch.randint(0, k, (batch, *size), generator=g).to(device)
    times = []
    for i in range(total):
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            out = model(x)
        loss = crit(out.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        loss.detach().item()  # the engine reads the loss every iteration (NaN check)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {
        "train_step_s_median": med,
        "train_step_s_min": min(times),
        "train_step_s_max": max(times),
        "train_images_per_s": batch / med,
    }


def bench_eval(model, device, dataset, k) -> dict:
    """Images/s of :func:`hsbench.engine.evaluate` over ``dataset`` (after one warm-up image)."""
    from hsbench.engine.config import EvalConfig
    from hsbench.engine.evaluate import evaluate

    evaluate(model, dataset, num_classes=k, cfg=EvalConfig(max_images=1), device=device, progress=False)
    res = evaluate(model, dataset, num_classes=k, cfg=EvalConfig(), device=device, progress=False)
    return {"eval_images": res.num_images, "eval_s": res.wall_time_s, "eval_images_per_s": res.images_per_s}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--template", default="camvid-s")
    ap.add_argument("--backbone", default=None, help="default: the template's (efficientnet_b1 for camvid-s)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--batch", type=int, default=2, help="training batch size")
    ap.add_argument("--train-size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    ap.add_argument("--iters", type=int, default=5, help="timed training steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    ap.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    ap.add_argument("--loss", default="bootstrapped_ce")
    ap.add_argument("--eval-size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    ap.add_argument("--eval-images", type=int, default=10)
    ap.add_argument("--data-root", default=None, help="evaluate on real CamVid test images from this data root")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    a = ap.parse_args(argv)

    if a.threads:
        torch.set_num_threads(a.threads)
    from hsbench.models import build_model
    from hsbench.models.config import ModelConfig

    device = torch.device(a.device)
    k = 11
    mcfg = ModelConfig(template=a.template, backbone=a.backbone, num_classes=k)
    model = build_model(mcfg)
    out = {
        "template": a.template,
        "backbone": model.config.backbone if hasattr(model, "config") else a.backbone,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch": a.batch,
        "train_size_hw": list(a.train_size),
        "amp": bool(a.amp and device.type == "cuda"),
        "loss": a.loss,
    }
    out.update(bench_train(model, device, a.batch, tuple(a.train_size), k, a.iters, a.warmup, a.amp, a.loss))
    if a.data_root:
        from hsbench.data import DataConfig, build_dataset

        dcfg = DataConfig(dataset="camvid", root=a.data_root, eval_resolution=(a.eval_size[1], a.eval_size[0]))
        full = build_dataset(dcfg, dcfg.eval_split, train=False)
        ds = torch.utils.data.Subset(full, range(min(a.eval_images, len(full))))
        out["eval_data"] = f"{full.version}, split {dcfg.eval_split}"
    else:
        ds = RandomSegmentation(a.eval_images, tuple(a.eval_size), k)
        out["eval_data"] = "random tensors"
    out["eval_size_hw"] = list(a.eval_size)
    out.update(bench_eval(model, device, ds, k))

    if not a.json:
        print(f"{out['template']} / {out['backbone']} on {out['device']} ({out['device_name']}, "
              f"{out['threads']} threads, torch {out['torch']})")
        print(f"  train: batch {a.batch} at {a.train_size[0]}x{a.train_size[1]} (HxW), amp={out['amp']}: "
              f"{out['train_step_s_median']:.3f} s/step median "
              f"[{out['train_step_s_min']:.3f}, {out['train_step_s_max']:.3f}] -> "
              f"{out['train_images_per_s']:.2f} images/s")
        print(f"  eval:  {out['eval_images']} images at {a.eval_size[0]}x{a.eval_size[1]} ({out['eval_data']}), "
              f"batch 1: {out['eval_images_per_s']:.2f} images/s")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
