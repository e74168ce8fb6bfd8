"""Small kernels shared by the AVX2 and portable I2_S paths, and the AVX2 runtime layout."""
from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import kernel


@kernel()
def row_sums(X):  # noqa: ANN001, ANN201
    """int32[n] = sum of each int8 row of X[n, K] (bitnet.cpp's act_sum; codes are t + 1)."""
    n, K = X.shape
    out = np.empty(n, np.int32)
    for i in range(n):
        acc = np.int32(0)
        for k in range(K):
            acc = np.int32(acc + np.int32(X[i, k]))
        out[i] = acc
    return out


# ---- the AVX2 runtime layout: rows interleaved by 4 at 32-byte blocks -------------------------


@kernel(parallel=True)
def _interleave4(src, dst, groups, kb, forward):  # noqa: ANN001, ANN202
    nblk = kb // 32
    for g in prange(groups):
        base = g * kb // 2  # in 8-byte words: 4 rows of kb bytes
        for i in range(4):
            for b in range(nblk):
                f = base + (i * kb + b * 32) // 8  # word of row i, block b in the file's order
                t = base + (b * 128 + i * 32) // 8  # ... and side by side
                if forward:
                    for k in range(4):
                        dst[t + k] = src[f + k]
                else:
                    for k in range(4):
                        dst[f + k] = src[t + k]


def interleave4(codes: np.ndarray, M: int, K: int, *, inverse: bool = False,
                out: np.ndarray | None = None) -> np.ndarray:
    """The AVX2 runtime layout of M*K/4 canonical I2_S bytes (or back, with `inverse`).

    Rows go in groups of 4 whose 32-byte blocks lie side by side: row 4g + i, block b is at byte
    (4g * K/4) + 128 b + 32 i. The M % 4 last rows keep the file's order after the groups.
    Returns `out` (uint8[M*K/4], 8-byte aligned; memory made resident ahead of time, say) or a
    new array.
    """
    n = M * K // 4
    src = np.ascontiguousarray(codes[:n]).view()
    src.flags.writeable = False  # one Numba specialization for mapped and in-memory bytes alike
    dst = np.empty(n, np.uint8) if out is None else out
    if dst.shape != (n,) or dst.dtype != np.uint8 or not dst.flags.c_contiguous or dst.ctypes.data % 8:
        raise ValueError(f"interleave4: out must be an 8-byte aligned uint8[{n}]")
    m4 = M // 4 * 4
    if m4:
        _interleave4(src.view(np.uint64)[: m4 * K // 32], dst.view(np.uint64), m4 // 4, K // 4, not inverse)
    dst[m4 * K // 4 :] = src[m4 * K // 4 :]
    return dst
