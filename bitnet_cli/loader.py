"""Turn a GGUF model file into ready-to-run weights: the hot path sees only kernel layouts."""
from __future__ import annotations

import dataclasses

import numpy as np

import bitnet_kernels as K
from bitnet_cli.config import ModelConfig
from bitnet_cli.errors import ModelFormatError, UnsupportedModelError
from bitnet_cli.model import Layer, Weights
from bitnet_cli.modelfile import DENSE_TYPES, FLOAT_TYPES, GGMLType, ModelFile, TensorRecord
from bitnet_cli.residency import WeightArena


def _tensor(mf: ModelFile, name: str, required: bool = True) -> TensorRecord | None:
    rec = mf.tensors.get(name)
    if rec is None and required:
        raise ModelFormatError(f"tensor '{name}' is missing from {mf.path}", "the file is not a complete model")
    return rec


def float_array(mf: ModelFile, rec: TensorRecord) -> np.ndarray:
    """An F32/F16/BF16 tensor as float32 (exact: every F16 and BF16 value is an f32)."""
    if rec.ggml_type not in FLOAT_TYPES:
        raise UnsupportedModelError(f"tensor '{rec.name}' has type {rec.ggml_type.name}; expected F32/F16/BF16")
    a = mf.array(rec.name)
    if rec.ggml_type == GGMLType.BF16:
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def ternary_codes(mf: ModelFile, rec: TensorRecord) -> tuple[np.ndarray, np.float32]:
    """(t int8[M, K] in {-1, 0, 1}, scale) of a projection, whatever its stored type."""
    M, Kdim = rec.shape
    t = rec.ggml_type
    if t == GGMLType.I2_S:
        codes, scale = K.unpack_i2s(rec.data, M, Kdim)
        return codes, np.float32(scale)
    if t in FLOAT_TYPES:
        # llama-quantize's rule: weights of a BitNet file are already ternary (0 or ±scale).
        return K.ternarize_sign(float_array(mf, rec).reshape(M, Kdim))
    if t in (GGMLType.TQ1_0, GGMLType.TQ2_0):
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize

        w = dequantize(np.asarray(rec.data), GGMLQuantizationType(int(t))).reshape(M, Kdim)
        # Blocks of a ternarized tensor share one scale; all-zero blocks store 0.
        return K.ternarize_sign(w.astype(np.float32))
    if t in (GGMLType.TL1, GGMLType.TL2):
        from bitnet_cli.modelfile import unpack_tl

        return unpack_tl(rec)
    raise UnsupportedModelError(
        f"tensor '{rec.name}' has type {t.name}, which is not a ternary type",
        "convert the model with `bitnet convert --outtype i2_s`",
    )


def _tl2_kernels() -> bool:
    from bitnet_kernels.tl_common import resolve_isa

    return resolve_isa(None) == "avx2"


def _linear(mf: ModelFile, names: list[str], out_features: list[int], in_features: int,
            allow_tl2: bool = True, arena: WeightArena | None = None) -> object:
    """One ternary weight holding the named projections' rows, in order."""
    recs = []
    for name, rows in zip(names, out_features):
        rec = _tensor(mf, f"{name}.weight")
        if tuple(rec.shape) != (rows, in_features):
            raise ModelFormatError(f"tensor '{rec.name}' has shape {tuple(rec.shape)}; expected {(rows, in_features)}")
        recs.append(rec)
    # the `bitnet` arch's optional per-matrix output multipliers
    extras = [float_array(mf, r).reshape(-1)[0] if (r := mf.tensors.get(f"{n}.scale")) is not None else None
              for n in names]
    if (allow_tl2 and all(r.ggml_type == GGMLType.TL2 for r in recs) and all(e is None for e in extras)
            and _tl2_kernels()):
        # TL2 reads 1.67 bits per weight: where DRAM is the limit (all cores decoding) its LUT
        # kernel matches or beats I2_S (docs/formats-tl.md); the file asked for it. Read in place.
        from bitnet_kernels.tl_common import prepare_tl

        parts = [prepare_tl(r.data, int(r.ggml_type), r.shape[0], in_features) for r in recs]
        try:
            return parts[0] if len(parts) == 1 else K.stack_ternary(parts)
        except ValueError:  # TL2 parts tiled differently cannot share a call: run them as I2_S
            return _linear(mf, names, out_features, in_features, allow_tl2=False, arena=arena)
    # Everything else runs as I2_S, copied once into the kernels' layout (into `arena`, which is
    # sized for the file's I2_S tensors); the mapped originals need not stay resident.
    in_place = all(r.ggml_type == GGMLType.I2_S for r in recs)
    raws = [r.data if r.ggml_type == GGMLType.I2_S else K.pack_i2s(*ternary_codes(mf, r)) for r in recs]
    out = arena.take(sum(out_features) * in_features // 4) if arena is not None and in_place else None
    w = K.prepare_i2s_stacked(raws, out_features, in_features, out=out)
    for r in recs:
        mf.release(r.name)
    if any(e is not None for e in extras):
        mult = np.concatenate([np.full(m, 1.0 if e is None else e, np.float32) for m, e in zip(out_features, extras)])
        w = dataclasses.replace(w, row_scale=w.row_scale * mult)
    return w


def _norm(mf: ModelFile, name: str, size: int, required: bool = True) -> np.ndarray | None:
    rec = _tensor(mf, name, required)
    if rec is None:
        return None
    a = float_array(mf, rec).reshape(-1)
    if a.shape[0] != size:
        raise ModelFormatError(f"tensor '{name}' has {a.shape[0]} values; expected {size}")
    return np.ascontiguousarray(a)


def _dense(mf: ModelFile, rec: TensorRecord, rows: int, cols: int) -> object:
    if rec.ggml_type not in DENSE_TYPES:
        raise UnsupportedModelError(
            f"tensor '{rec.name}' has type {rec.ggml_type.name}; the embedding/head must be F32, F16, BF16, Q8_0 or Q6_K"
        )
    if tuple(rec.shape) != (rows, cols):
        raise ModelFormatError(f"tensor '{rec.name}' has shape {tuple(rec.shape)}; expected {(rows, cols)}")
    data = mf.array(rec.name) if rec.ggml_type in FLOAT_TYPES else rec.data
    return K.prepare_dense(data, int(rec.ggml_type), (rows, cols))


def load_weights(mf: ModelFile, cfg: ModelConfig, arena: WeightArena | None = None) -> Weights:
    """Read and prepare every tensor the forward pass needs; I2_S projections are copied into
    `arena` when one is given (see `weight_arena`)."""
    H, F = cfg.n_embd, cfg.n_ff
    q_out, kv_out = cfg.n_head * cfg.head_dim, cfg.n_head_kv * cfg.head_dim
    layers = []
    for i in range(cfg.n_layer):
        b = f"blk.{i}"
        layers.append(
            Layer(
                attn_norm=_norm(mf, f"{b}.attn_norm.weight", H),
                wqkv=_linear(mf, [f"{b}.attn_q", f"{b}.attn_k", f"{b}.attn_v"], [q_out, kv_out, kv_out], H, arena=arena),
                wo=_linear(mf, [f"{b}.attn_output"], [H], q_out, arena=arena),
                attn_sub_norm=_norm(mf, f"{b}.attn_sub_norm.weight", q_out, cfg.sub_norms),
                ffn_norm=_norm(mf, f"{b}.ffn_norm.weight", H),
                w_gate_up=_linear(mf, [f"{b}.ffn_gate", f"{b}.ffn_up"], [F, F], H, arena=arena),
                w_down=_linear(mf, [f"{b}.ffn_down"], [H], F, arena=arena),
                ffn_sub_norm=_norm(mf, f"{b}.ffn_sub_norm.weight", F, cfg.sub_norms),
            )
        )
    if arena is not None:
        arena.release_rest()
    embd = _dense(mf, _tensor(mf, "token_embd.weight"), cfg.n_vocab, H)
    out_rec = mf.tensors.get("output.weight")
    output = _dense(mf, out_rec, cfg.n_vocab, H) if out_rec is not None else embd
    return Weights(embd, layers, _norm(mf, "output_norm.weight", H), output)


def weight_arena(mf: ModelFile) -> WeightArena | None:
    """Memory for the I2_S projections' AVX2 layout, made resident in the background (call
    `.populate()`), or None where the kernels keep another layout or there is nothing to copy."""
    from bitnet_kernels import kernel_isa

    sizes = [r.shape[0] * r.shape[1] // 4 for r in mf.tensors.values() if r.ggml_type == GGMLType.I2_S and len(r.shape) == 2]
    return WeightArena(WeightArena.size_for(sizes)) if sizes and kernel_isa() == "avx2" else None


def read_config(mf: ModelFile) -> ModelConfig:
    embd = _tensor(mf, "token_embd.weight")
    return ModelConfig.from_metadata(mf.metadata, n_vocab=embd.shape[0])
