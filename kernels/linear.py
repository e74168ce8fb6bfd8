"""Ternary (I2_S) linear layers: runtime layout, kernel selection, and the public calls.

On AVX2 CPUs the runtime layout is the file's I2_S bytes with rows interleaved by 4
(`i2s_common.interleave4`: the GEMV then reads one sequential stream), copied once at load;
elsewhere the rows are repacked once into the portable w16 layout.
`BITNET_KERNELS=portable` forces the portable kernels (the tests run both).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import params as P
from ._jit import has_avx2, kernel_isa
from .i2s_common import interleave4
from .reference import I2S_BLOCK, i2s_nbytes
from .threads import get_num_threads, run_threaded
from .tune import SEEN_SHAPES, ensure_loaded

__all__ = ["TernaryWeight", "prepare_i2s", "prepare_i2s_stacked", "ternary_linear", "stack_ternary"]


@dataclass(eq=False)
class TernaryWeight:
    """A ternary matrix ready for `ternary_linear`.

    Attributes:
        M, K: output and input size (numpy order, weight is [M, K]).
        scale: the per-tensor scale (of the first part when stacked).
        row_scale: f32[M] scale of each output row (stacking keeps each part's scale).
        data: AVX2: uint8[M*K/4] I2_S bytes, rows interleaved by 4; portable: uint16[M, K/8] w16 words.
        isa: "avx2" or "portable".
        quant: parameter-table key, "i2_s".
    """

    M: int
    K: int
    scale: np.float32
    row_scale: np.ndarray
    data: np.ndarray
    isa: str
    quant: str = "i2_s"
    parts: tuple[int, ...] = field(default=())
    # (n-kind, threads) -> _Plan; not an init field, so dataclasses.replace starts a fresh one
    _plans: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def nbytes(self) -> int:
        """Bytes streamed per call (weights and row scales)."""
        return int(self.data.nbytes + self.row_scale.nbytes)


def _readonly(a: np.ndarray) -> np.ndarray:
    # One Numba specialization for mapped (read-only) and in-memory weights alike.
    v = a.view()
    v.flags.writeable = False
    return v


def prepare_i2s(raw: np.ndarray, M: int, K: int, *, isa: str | None = None,
                out: np.ndarray | None = None) -> TernaryWeight:
    """Wrap canonical I2_S bytes (`M*K/4 + 32`, scale in the tail) for the kernels.

    Args:
        raw: the tensor's bytes, e.g. a memory-mapped `TensorRecord.data`.
        M, K: weight shape (rows, columns); K must be a multiple of 128.
        isa: force "avx2" or "portable" (default: the best this CPU runs).
        out: AVX2 only: an 8-byte aligned uint8[M*K/4] to hold the runtime layout (e.g. memory
            made resident ahead of time); by default a new array.
    """
    SEEN_SHAPES[("i2_s", M, K)] = None
    return _prepare(raw, M, K, isa, out)


def _prepare(raw: np.ndarray, M: int, K: int, isa: str | None, out: np.ndarray | None) -> TernaryWeight:
    """`prepare_i2s` without recording the shape for tuning (a part of a stacked weight is never
    run alone)."""
    if K % I2S_BLOCK or M <= 0:
        raise ValueError(f"I2_S needs K to be a multiple of {I2S_BLOCK}, got {M}x{K}")
    raw = np.asarray(raw).reshape(-1).view(np.uint8)
    n = M * K // 4
    if raw.size < i2s_nbytes(M, K) - 28:
        raise ValueError(f"I2_S data for {M}x{K} needs {i2s_nbytes(M, K)} bytes, got {raw.size}")
    scale = np.float32(raw[n : n + 4].copy().view("<f4")[0])
    isa = isa or kernel_isa()
    if isa == "avx2" and not has_avx2():
        raise ValueError("prepare_i2s: this CPU has no AVX2; use isa='portable'")
    ensure_loaded()
    if isa == "avx2":
        data = _readonly(interleave4(raw, M, K, out=out))
    else:
        from .i2s_portable import repack_w16

        data = _readonly(repack_w16(raw, M, K))
    row_scale = _readonly(np.full(M, scale, np.float32))
    return TernaryWeight(M, K, scale, row_scale, data, isa, parts=(M,))


def prepare_i2s_stacked(raws: list[np.ndarray], Ms: list[int], K: int, *, isa: str | None = None,
                        out: np.ndarray | None = None) -> TernaryWeight:
    """`stack_ternary([prepare_i2s(raw, M, K) for raw, M in zip(raws, Ms)])`, copying the bytes
    once: on AVX2 each part goes straight to its place in the stacked layout (`out`, an 8-byte
    aligned uint8[sum(Ms)*K/4], or a new array). Parts that would split a 4-row group, and the
    portable layout, take the two-copy way and leave `out` unused. Only the stacked shape is
    recorded for tuning."""
    isa = isa or kernel_isa()
    if isa != "avx2" or any(M % 4 for M in Ms[:-1]):
        return stack_ternary([_prepare(r, M, K, isa, None) for r, M in zip(raws, Ms)])
    n = sum(Ms) * K // 4
    if out is not None and out.size != n:
        raise ValueError(f"prepare_i2s_stacked: out must be a uint8[{n}]")
    buf = np.empty(n, np.uint8) if out is None else out
    parts, at = [], 0
    for r, M in zip(raws, Ms):
        parts.append(_prepare(r, M, K, isa, buf[at : at + M * K // 4]))
        at += M * K // 4
    SEEN_SHAPES[("i2_s", sum(Ms), K)] = None
    row_scale = np.concatenate([w.row_scale for w in parts])
    return TernaryWeight(sum(Ms), K, parts[0].scale, _readonly(row_scale), _readonly(buf), isa, parts=tuple(Ms))


def stack_ternary(weights: list[TernaryWeight]) -> TernaryWeight:
    """One weight holding several [M_i, K] matrices (e.g. Q, K, V) row after row.

    One call then computes all of them in one parallel region; each part keeps its own scale.
    The output columns are the parts' outputs side by side. Copies the weights once.
    """
    if not isinstance(weights[0], TernaryWeight):  # TL2 weights stack into a TL2Stack
        from .tl2 import stack_tl2

        return stack_tl2(weights)
    K, isa = weights[0].K, weights[0].isa
    if any(w.K != K or w.isa != isa for w in weights):
        raise ValueError("stack_ternary: all parts need the same K and layout")
    M = sum(w.M for w in weights)
    if isa == "avx2" and any(w.M % 4 for w in weights[:-1]):  # a part would split a 4-row group
        data = interleave4(np.concatenate([interleave4(w.data, w.M, K, inverse=True) for w in weights]), M, K)
    else:
        data = np.concatenate([np.asarray(w.data) for w in weights], axis=0)
    row_scale = np.concatenate([w.row_scale for w in weights])
    parts = tuple(p for w in weights for p in w.parts)
    SEEN_SHAPES[("i2_s", M, K)] = None
    return TernaryWeight(M, K, weights[0].scale, _readonly(row_scale), _readonly(data), isa, parts=parts)


_kernels: dict[str, object] = {}


def _mod(name: str) -> object:
    """A kernel module, imported on first use (the AVX2 ones only ever on AVX2 CPUs)."""
    m = _kernels.get(name)
    if m is None:
        m = _kernels[name] = importlib.import_module(f"{__package__}.{name}")
    return m


def ternary_linear(w: TernaryWeight, q: np.ndarray, s: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """y[n, M] = float32(sum_k t[m, k] q[n, k]) / s[n] * scale[m], bit-exact with the reference.

    Args:
        w: from `prepare_i2s` or `stack_ternary`.
        q: int8[n, K] quantized activations; s: f32[n] their scales (`quantize_activations`).
        out: optional f32[n, M] C-contiguous output buffer.
    """
    if not isinstance(w, TernaryWeight):  # TL1/TL2 weights and TL2 stacks
        return _tl_linear(w, q, s, out)
    n = q.shape[0]
    if q.shape[1] != w.K or q.dtype != np.int8:
        raise ValueError(f"ternary_linear: expected int8[n, {w.K}], got {q.dtype}{list(q.shape)}")
    if out is None:
        out = np.empty((n, w.M), np.float32)
    elif out.shape != (n, w.M) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32[{n}, {w.M}] array")
    if not q.flags.c_contiguous:
        q = np.ascontiguousarray(q)
    if s.dtype != np.float32 or not s.flags.c_contiguous:
        s = np.ascontiguousarray(s, dtype=np.float32)
    threads = get_num_threads()
    kind = P.n_kind(n)
    plan = w._plans.get((kind, threads))
    if plan is None or plan.version != P.version:
        plan = w._plans[(kind, threads)] = _Plan(w, kind, threads)
    run_threaded(plan.key, plan.parallel, plan.serial, q, s, out)
    return out


def kernel_call(w: TernaryWeight, n: int) -> Callable[[np.ndarray, np.ndarray, np.ndarray], None]:
    """`call(q, s, out)`: the kernel `ternary_linear` runs for `n` tokens at the current thread
    count, without its argument checks and thread choice. For benchmarks: it shows what the
    Python around a call costs."""
    threads = get_num_threads()
    plan = _Plan(w, P.n_kind(n), threads)
    return plan.parallel if threads > 1 else plan.serial


class _Plan:
    """One weight's kernels and parameters for an (n-kind, thread count), looked up once: a
    decode step makes a hundred calls of a few µs, so the per-call Python matters."""

    def __init__(self, w: TernaryWeight, kind: str, threads: int) -> None:
        self.version = P.version
        self.key = (w.quant, w.M, w.K, kind) if w.isa == "avx2" else (w.quant, w.M, w.K, kind, "w16")
        self.params = prm = P.lookup(w.quant, w.M, w.K, kind, threads)
        chunks = P.chunks_for(prm, threads)
        data, K, rs = w.data, w.K, w.row_scale
        if w.isa != "avx2":
            W16 = _mod("i2s_portable")
            self.serial = lambda q, s, out: W16.linear_w16_serial(data, q, s, rs, out)
            self.parallel = lambda q, s, out: W16.linear_w16_par(data, q, s, rs, out, chunks)
        elif kind == "gemv":
            A, pf = _mod("i2s_avx2"), prm["pf"]
            self.serial = lambda q, s, out: A.gemv_serial(data, K, q, s, rs, out, pf)
            self.parallel = lambda q, s, out: A.gemv_par(data, K, q, s, rs, out, chunks, pf)
        else:
            par, ser = _mod("i2s_gemm_avx2").GEMM_KERNELS[prm["block"]]
            tb = prm["tok_block"]
            self.serial = lambda q, s, out: ser(data, K, q, s, rs, out, tb)
            self.parallel = lambda q, s, out: par(data, K, q, s, rs, out, chunks, tb)


def _tl_linear(w: object, q: np.ndarray, s: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    from .tl2 import TL2Stack, tl2_linear_stack
    from .tl_common import tl_linear

    y = tl2_linear_stack(w, q, s) if isinstance(w, TL2Stack) else tl_linear(w, q, s)
    if out is None:
        return y
    out[...] = y
    return out
