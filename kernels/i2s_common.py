"""Small kernels shared by the AVX2 and portable I2_S paths."""
from __future__ import annotations

import numpy as np

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
