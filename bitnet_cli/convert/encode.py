"""Tensor types per output type, and the bytes of each tensor in its GGUF type.

Policy (bitnet-cpp.md §2.9, §3.3, §5.4): norms and other 1-D tensors stay F32; the token
embedding and an untied LM head are F16 for every ternary output (or `--quant-embd`'s type);
the seven projections get the ternary type. `f16`/`f32` outputs store the dequantized ternary
weights t·scale, which the loader turns back into the same codes and scale.
"""
from __future__ import annotations

import numpy as np

from bitnet_kernels import pack_i2s

from bitnet_cli.convert.checkpoint import Checkpoint
from bitnet_cli.errors import UnsupportedModelError, UserError
from bitnet_cli.modelfile import GGMLType, tensor_nbytes

OUTTYPES: dict[str, GGMLType] = {
    "i2_s": GGMLType.I2_S,
    "tl1": GGMLType.TL1,
    "tl2": GGMLType.TL2,
    "tq2_0": GGMLType.TQ2_0,
    "tq1_0": GGMLType.TQ1_0,
    "f16": GGMLType.F16,
    "f32": GGMLType.F32,
}
EMBD_TYPES: dict[str, GGMLType] = {"f32": GGMLType.F32, "f16": GGMLType.F16, "q8_0": GGMLType.Q8_0, "q6_k": GGMLType.Q6_K}
_CHUNK_ROWS = 4096  # embedding rows converted at a time: bounds the float32 working set


def outtype_of(name: str) -> GGMLType:
    try:
        return OUTTYPES[name.lower()]
    except KeyError:
        raise UserError(f"unknown output type '{name}'", f"choose one of: {', '.join(OUTTYPES)}") from None


def dense_type(outtype: GGMLType, quant_embd: str | None) -> GGMLType:
    """Type of the token embedding / untied LM head for this output type."""
    if quant_embd:
        try:
            return EMBD_TYPES[quant_embd.lower()]
        except KeyError:
            raise UserError(f"unknown embedding type '{quant_embd}'", f"choose one of: {', '.join(EMBD_TYPES)}") from None
    return GGMLType.F32 if outtype == GGMLType.F32 else GGMLType.F16


def shape_problem(ggml_type: GGMLType, M: int, K: int) -> str | None:
    """Why an (M, K) projection cannot be stored as `ggml_type`, or None when it can."""
    if ggml_type == GGMLType.I2_S and K % 128:
        return "I2_S needs input sizes that are multiples of 128"
    if ggml_type in (GGMLType.TQ1_0, GGMLType.TQ2_0) and K % 256:
        return f"{ggml_type.name} needs input sizes that are multiples of 256"
    try:
        tensor_nbytes(ggml_type, (M, K))  # the file format's own limits (e.g. TL2's column count)
        if ggml_type in (GGMLType.TL1, GGMLType.TL2):
            tile_for(ggml_type, M, K)
    except ValueError as e:
        return str(e)
    return None


def tile_for(ggml_type: GGMLType, M: int, K: int) -> object:
    """The TL tile triple for (M, K): the one bitnet.cpp ships for that shape, else a fixed choice.

    The triple is not stored in the file; readers recompute it from the shape the same way.
    """
    from bitnet_kernels.tl_common import choose_tile_config

    return choose_tile_config("tl1" if ggml_type == GGMLType.TL1 else "tl2", M, K)


def encode_ternary(t: np.ndarray, scale: np.float32, ggml_type: GGMLType) -> np.ndarray:
    """Bytes of ternary t[M, K] with per-tensor `scale` in `ggml_type`."""
    M, K = t.shape
    if ggml_type == GGMLType.I2_S:
        return pack_i2s(t, float(scale))
    if ggml_type in (GGMLType.TL1, GGMLType.TL2):
        return _encode_tl(t, scale, ggml_type)
    w = t.astype(np.float32) * np.float32(scale)  # [M, K] dequantized ternary weights
    if ggml_type == GGMLType.F32:
        return w
    if ggml_type == GGMLType.F16:
        return w.astype(np.float16)
    if ggml_type in (GGMLType.TQ1_0, GGMLType.TQ2_0):
        return _gguf_quantize(w, ggml_type)
    raise UserError(f"{ggml_type.name} is not an output type for ternary weights")


def _encode_tl(t: np.ndarray, scale: np.float32, ggml_type: GGMLType) -> np.ndarray:
    M, K = t.shape
    c = tile_for(ggml_type, M, K)
    if ggml_type == GGMLType.TL1:
        from bitnet_kernels.tl1 import pack_tl1

        return pack_tl1(t, float(scale), c.BM, c.BK, c.bm)
    try:
        from bitnet_kernels.tl2 import pack_tl2
    except ImportError:
        raise UnsupportedModelError("TL2 packing is not available in this build", "use --outtype i2_s") from None
    return pack_tl2(t, float(scale), c.BM, c.BK, c.bm)


def _gguf_quantize(w: np.ndarray, ggml_type: GGMLType) -> np.ndarray:
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    return quantize(np.ascontiguousarray(w, dtype=np.float32), GGMLQuantizationType(int(ggml_type)))


def encode_float(a: np.ndarray, ggml_type: GGMLType) -> np.ndarray:
    """A float32 array (any shape) in F32/F16/Q8_0/Q6_K."""
    if ggml_type == GGMLType.F32:
        return np.asarray(a, dtype=np.float32)
    if ggml_type == GGMLType.F16:
        return np.asarray(a, dtype=np.float16)
    if ggml_type == GGMLType.Q8_0:
        return _gguf_quantize(a, ggml_type)
    if ggml_type == GGMLType.Q6_K:
        from bitnet_cli.convert.q6k import quantize_q6_k

        return quantize_q6_k(np.asarray(a, dtype=np.float32))
    raise UserError(f"{ggml_type.name} is not a type for dense tensors")


def encode_dense(ckpt: Checkpoint, hf_name: str, ggml_type: GGMLType) -> np.ndarray:
    """The embedding / LM head in `ggml_type`, converted a block of rows at a time.

    Only the output buffer and one float32 block are held, so a 128k x 4096 bf16 embedding
    needs ~1 GB (F16 output) rather than the 3 GB a whole-tensor float32 copy would.
    """
    rows, cols = ckpt.shape(hf_name)
    nbytes = tensor_nbytes(ggml_type, (rows, cols))
    out = np.empty(nbytes, dtype=np.uint8)
    row_bytes = nbytes // rows
    for r0 in range(0, rows, _CHUNK_ROWS):
        r1 = min(rows, r0 + _CHUNK_ROWS)
        block = encode_float(ckpt.float32(hf_name, slice(r0, r1)), ggml_type)  # [r1 - r0, cols] encoded
        out[r0 * row_bytes : r1 * row_bytes] = np.ascontiguousarray(block).reshape(-1).view(np.uint8)
    return out
