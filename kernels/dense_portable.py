"""Dense matrix-vector kernels in plain Numba (any CPU): decode a row exactly, then dot in f32.

The dot keeps 8 partial sums (so LLVM can use one vector register) and adds them in a fixed
order; results do not depend on the thread count or on how many tokens share a call.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import kernel
from .dense_decode import decode_row


@kernel()
def dot8(a, x):  # noqa: ANN001, ANN201
    """f32 dot of a[K] and x[K] with 8 interleaved partial sums (K % 8 handled at the end)."""
    K = a.shape[0]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0.0)
    k8 = K - K % 8
    for k in range(0, k8, 8):
        s0 += a[k] * x[k]
        s1 += a[k + 1] * x[k + 1]
        s2 += a[k + 2] * x[k + 2]
        s3 += a[k + 3] * x[k + 3]
        s4 += a[k + 4] * x[k + 4]
        s5 += a[k + 5] * x[k + 5]
        s6 += a[k + 6] * x[k + 6]
        s7 += a[k + 7] * x[k + 7]
    tail = np.float32(0.0)
    for k in range(k8, K):
        tail += a[k] * x[k]
    return ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7)) + tail


@kernel()
def _rows(W, kind, X, Y, r0, r1, tok_block):  # noqa: ANN001, ANN202
    n, K = X.shape
    buf = np.empty(K, np.float32)
    for t0 in range(0, n, tok_block):
        for r in range(r0, r1):
            decode_row(W[r], kind, buf)
            for i in range(t0, min(n, t0 + tok_block)):
                Y[i, r] = dot8(buf, X[i])


@kernel(parallel=True)
def linear_par(W, kind, X, Y, nchunks, tok_block):  # noqa: ANN001, ANN201
    """Y[n, M] = X[n, K] W[M, K]^T (W as bytes [M, row_bytes]) over row chunks."""
    M = W.shape[0]
    per = (M + nchunks - 1) // nchunks
    for c in prange(nchunks):
        r0 = min(M, c * per)
        _rows(W, kind, X, Y, r0, min(M, r0 + per), tok_block)


@kernel()
def linear_serial(W, kind, X, Y, tok_block):  # noqa: ANN001, ANN201
    _rows(W, kind, X, Y, 0, W.shape[0], tok_block)
