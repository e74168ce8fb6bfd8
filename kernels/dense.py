"""Dense weights for the embedding and the LM head: F32, F16, BF16, Q8_0, Q6_K.

The file's bytes are used in place (zero copy, memory-mapped), F16 included: rows are decoded
exactly inside the kernels (vcvtph2ps with F16C, integer bit operations elsewhere), so an F16 head
is lossless and streams 2 bytes per weight. Products accumulate in f32 in a fixed order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import params as P
from ._jit import host_features, kernel_isa
from .dense_decode import BF16, F16, F32, Q6_K, Q6_K_BLOCK, Q6_K_BYTES, Q8_0, Q8_0_BLOCK, Q8_0_BYTES, embed
from .linear import _mod, _readonly
from .threads import get_num_threads, run_threaded
from .tune import SEEN_SHAPES, ensure_loaded

__all__ = ["DenseWeight", "prepare_dense", "embed_rows", "dense_linear", "DENSE_TYPES"]

DENSE_TYPES = {F32: "f32", F16: "f16", Q8_0: "q8_0", Q6_K: "q6_k", BF16: "bf16"}


@dataclass(eq=False)
class DenseWeight:
    """A dense [M, K] matrix: `data` is uint8[M, row_bytes], the rows' bytes in the file's format."""

    M: int
    K: int
    ggml_type: int
    data: np.ndarray
    isa: str

    @property
    def quant(self) -> str:
        return DENSE_TYPES[self.ggml_type]

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


def row_bytes(ggml_type: int, K: int) -> int:
    """Bytes of one row of K values in this format."""
    if ggml_type == F32:
        return 4 * K
    if ggml_type in (F16, BF16):
        return 2 * K
    if ggml_type == Q8_0:
        return K // Q8_0_BLOCK * Q8_0_BYTES
    return K // Q6_K_BLOCK * Q6_K_BYTES


def _dense_avx2_ok(K: int) -> bool:
    f = host_features()
    return bool(f.get("avx2") and f.get("fma") and f.get("f16c")) and K % 32 == 0


def _dense_isa(ggml_type: int, K: int) -> str:
    return "avx2" if kernel_isa() == "avx2" and _dense_avx2_ok(K) else "portable"


def prepare_dense(data: np.ndarray, ggml_type: int, shape: tuple[int, int], *, isa: str | None = None) -> DenseWeight:
    """Wrap an embedding / head tensor for `embed_rows` and `dense_linear` (no copy).

    Args:
        data: raw bytes (uint8) or a typed view (float32, float16, uint16 for BF16) of the tensor.
        ggml_type: GGML type id: F32=0, F16=1, Q8_0=8, Q6_K=14, BF16=30.
        shape: (M, K) in numpy order (rows = vocabulary for an embedding).
        isa: force "avx2" or "portable".
    """
    ggml_type = int(ggml_type)
    M, K = (int(v) for v in shape)
    if ggml_type not in DENSE_TYPES:
        raise ValueError(f"prepare_dense: unsupported GGML type {ggml_type}")
    block = {Q8_0: Q8_0_BLOCK, Q6_K: Q6_K_BLOCK}.get(ggml_type, 1)
    if K % block:
        raise ValueError(f"prepare_dense: K={K} is not a multiple of the block size {block}")
    rb = row_bytes(ggml_type, K)
    raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if raw.size < M * rb:
        raise ValueError(f"prepare_dense: {M}x{K} of type {ggml_type} needs {M * rb} bytes, got {raw.size}")
    view = _readonly(raw[: M * rb].reshape(M, rb))
    ensure_loaded()
    if isa == "avx2" and not _dense_avx2_ok(K):
        raise ValueError("prepare_dense: the AVX2 path needs AVX2, FMA, F16C and K % 32 == 0")
    SEEN_SHAPES[(DENSE_TYPES[ggml_type], M, K)] = None
    return DenseWeight(M, K, ggml_type, view, isa or _dense_isa(ggml_type, K))


def embed_rows(w: DenseWeight, ids: np.ndarray) -> np.ndarray:
    """f32[n, K]: rows `ids` decoded exactly (F16/BF16 exact; Q8_0/Q6_K as gguf-py dequantizes)."""
    ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= w.M):
        raise IndexError(f"embed_rows: token id out of range [0, {w.M})")
    out = np.empty((ids.size, w.K), np.float32)
    embed(w.data, w.ggml_type, ids, out)
    return out


def dense_linear(w: DenseWeight, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """y[n, M] = x[n, K] @ W[M, K]^T with f32 accumulation (the LM head)."""
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    n = x.shape[0]
    if x.shape[1] != w.K:
        raise ValueError(f"dense_linear: expected f32[n, {w.K}], got {list(x.shape)}")
    if out is None:
        out = np.empty((n, w.M), np.float32)
    elif out.shape != (n, w.M) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32[{n}, {w.M}] array")
    threads = get_num_threads()
    kind = P.n_kind(n)
    prm = P.lookup(w.quant, w.M, w.K, kind, threads)
    chunks = P.chunks_for(prm, threads)
    key = (w.quant, w.M, w.K, kind, w.isa)
    if w.isa == "avx2":
        D = _mod("dense_avx2")
        X16, DX = D.int16_activations(w.ggml_type, x)
        tok_block, pf = int(prm.get("tok_block", 64)), int(prm.get("pf", 8192))

        def serial() -> None:
            D.linear_serial(w.data, w.ggml_type, x, X16, DX, out, tok_block, pf)

        def parallel() -> None:
            D.linear_par(w.data, w.ggml_type, x, X16, DX, out, chunks, tok_block, pf)
    else:
        DP = _mod("dense_portable")

        tok_block = int(prm.get("tok_block", 64))

        def serial() -> None:
            DP.linear_serial(w.data, w.ggml_type, x, out, tok_block)

        def parallel() -> None:
            DP.linear_par(w.data, w.ggml_type, x, out, chunks, tok_block)
    run_threaded(key, parallel, serial)
    return out
