"""A small C kernel for the one step PyTorch has no fast CPU op for: the per-patch 3x3 depth-wise conv.

On patch-major buffers (P, L_h, L_w, C) (:mod:`hsbench.ops.patch_major`) a
3x3 depth-wise DPWConv is, for patch ``p``, output pixel ``(y, x)`` and channel ``c``::

    out[p, y, x, c] = act(b[c] + sum_{dy, dx} tile_p[y + dy, x + dx, c] * w[p, 3 dy + dx, c])

where ``tile_p`` is the patch with a one-pixel halo. PyTorch's grouped
convolution with ``P * C`` groups is slow on CPU, and nine broadcast
multiply-adds cost nine passes over memory (or, in cache-sized chunks,
hundreds of small ops). This C function assembles each patch's halo'd tile in
a thread-local buffer (from the neighbouring patches under the paper's rule,
from the patch's own halo under the release's rule, zero outside the image,
ReLU6 applied on the way) and runs the nine taps on it while it is in cache:
one pass, OpenMP over patches.

The source is compiled on first use with the system C compiler (``cc -O3
-march=native -fopenmp``, about a second) into ``$XDG_CACHE_HOME/hsbench``
(default ``~/.cache/hsbench``), named by a hash of the source and compiler
flags, and loaded with :mod:`ctypes`. Without a compiler
:func:`depthwise3x3_patches` returns None and the caller uses PyTorch ops.
``HSBENCH_NO_C_KERNELS=1`` disables the kernel.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline float relu6f(float v) { return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v); }

/*
 * Per-patch 3x3 depth-wise conv on patch-major float32 buffers, P = nb * nh * nw patches.
 * own_halo = 0: h is (P, lh, lw, c); the halo is read from the neighbouring patches (the paper's
 *               per-op rule), zero outside the image.
 * own_halo = 1: h is (P, lh + 2, lw + 2, c), every patch with its own halo (the release's rule);
 *               halo pixels outside the image are zero.
 * w (P, 9, c) row-major taps; b (c) or NULL; out (P, lh, lw, c).
 * in_relu6 / out_relu6: ReLU6 on the values read / written.
 */
void hsbench_dw3x3_patches(const float *h, const float *w, const float *b, float *out,
                           int64_t nb, int64_t nh, int64_t nw, int64_t lh, int64_t lw, int64_t c,
                           int own_halo, int in_relu6, int out_relu6, int threads) {
    const int64_t np = nb * nh * nw, th = lh + 2, tw = lw + 2;
#pragma omp parallel num_threads(threads)
    {
        float *tile = (float *)malloc(sizeof(float) * th * tw * c);
#pragma omp for schedule(static)
        for (int64_t p = 0; p < np; ++p) {
            const int64_t i = (p / nw) % nh, j = p % nw;
            for (int64_t ty = 0; ty < th; ++ty) {
                for (int64_t tx = 0; tx < tw; ++tx) {
                    float *dst = tile + (ty * tw + tx) * c;
                    const int64_t yy = ty - 1, xx = tx - 1;
                    const int64_t di = yy < 0 ? -1 : (yy >= lh ? 1 : 0), dj = xx < 0 ? -1 : (xx >= lw ? 1 : 0);
                    const float *src = 0;
                    if (i + di >= 0 && i + di < nh && j + dj >= 0 && j + dj < nw) {
                        src = own_halo ? h + ((p * th + ty) * tw + tx) * c
                                       : h + (((p + di * nw + dj) * lh + (yy - di * lh)) * lw + (xx - dj * lw)) * c;
                    }
                    if (!src) {
                        memset(dst, 0, sizeof(float) * c);
                    } else if (in_relu6) {
                        for (int64_t k = 0; k < c; ++k) dst[k] = relu6f(src[k]);
                    } else {
                        memcpy(dst, src, sizeof(float) * c);
                    }
                }
            }
            const float *wp = w + p * 9 * c;
            float *op = out + p * lh * lw * c;
            for (int64_t y = 0; y < lh; ++y) {
                for (int64_t x = 0; x < lw; ++x) {
                    const float *r0 = tile + (y * tw + x) * c, *r1 = r0 + tw * c, *r2 = r1 + tw * c;
                    float *o = op + (y * lw + x) * c;
                    for (int64_t k = 0; k < c; ++k) {
                        float acc = b ? b[k] : 0.0f;
                        acc += r0[k] * wp[k] + r0[k + c] * wp[c + k] + r0[k + 2 * c] * wp[2 * c + k];
                        acc += r1[k] * wp[3 * c + k] + r1[k + c] * wp[4 * c + k] + r1[k + 2 * c] * wp[5 * c + k];
                        acc += r2[k] * wp[6 * c + k] + r2[k + c] * wp[7 * c + k] + r2[k + 2 * c] * wp[8 * c + k];
                        o[k] = out_relu6 ? relu6f(acc) : acc;
                    }
                }
            }
        }
        free(tile);
    }
}
"""

_FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hsbench"


@functools.cache
def _library() -> ctypes.CDLL | None:
    """Compile (once per source hash) and load the kernel; None without a C compiler."""
    if os.environ.get("HSBENCH_NO_C_KERNELS", "0") not in ("", "0"):
        return None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    tag = hashlib.sha256((_SOURCE + " ".join(_FLAGS) + cc).encode()).hexdigest()[:16]
    lib = _cache_dir() / f"dw3x3_{tag}.so"
    if not lib.exists():
        lib.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
            src = Path(tmp) / "dw3x3.c"
            src.write_text(_SOURCE)
            built = Path(tmp) / lib.name
            proc = subprocess.run([cc, *_FLAGS, str(src), "-o", str(built)], check=False, capture_output=True, text=True)
            if proc.returncode != 0:
                return None
            os.replace(built, lib)  # atomic: concurrent processes never load a half-written file
    dll = ctypes.CDLL(str(lib))
    fn = dll.hsbench_dw3x3_patches
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 6 + [ctypes.c_int] * 4
    return dll


def available() -> bool:
    """Whether the C kernel compiled and loaded on this machine."""
    return _library() is not None


def depthwise3x3_patches(
    h: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    grid: tuple[int, int, int],
    *,
    own_halo: bool,
    in_relu6: bool,
    out_relu6: bool,
) -> torch.Tensor | None:
    """Per-patch 3x3 depth-wise conv on patch-major buffers (one pass, one patch per thread step).

    Args:
        h: (P, L_h, L_w, C) patches without halo (``own_halo=False``: the halo is
            read from the neighbouring patches, the paper's per-op rule), or
            (P, L_h + 2, L_w + 2, C) with each patch's own halo (``own_halo=True``,
            the release's rule). P = B N_h N_w; all patches of the same size.
            Halo pixels outside the image are zero either way.
        w: (P, 9, C) row-major taps.
        b: (C,) or None.
        grid: (B, N_h, N_w).
        in_relu6, out_relu6: ReLU6 on the values read from ``h`` / written.

    Returns:
        (P, L_h, L_w, C), or None when the kernel cannot run (no C compiler,
        not float32 CPU tensors): the caller then uses PyTorch ops.
    """
    lib = _library()
    if lib is None or h.dtype != torch.float32 or h.device.type != "cpu":
        return None
    p, th, tw, c = h.shape
    lh, lw = (th - 2, tw - 2) if own_halo else (th, tw)
    h = h.contiguous()
    w = w.to(torch.float32).contiguous()
    if b is not None:
        b = b.to(torch.float32).contiguous()
    out = torch.empty(p, lh, lw, c, dtype=torch.float32)
    lib.hsbench_dw3x3_patches(
        h.data_ptr(), w.data_ptr(), None if b is None else b.data_ptr(), out.data_ptr(),
        *grid, lh, lw, c, int(own_halo), int(in_relu6), int(out_relu6), torch.get_num_threads(),
    )
    return out
