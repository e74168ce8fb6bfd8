"""Dummy BitNet models of every size preset, with random ternary weights, streamed to disk.

The presets are those of bitnet.cpp's generate-dummy-bitnet-model.py (spec §2.5: arch `bitnet`,
SiLU, kv heads = heads, vocab 32002, rope θ 1e4) plus `2B-4T`, the shape and the 24 metadata keys
of the official BitNet b1.58 2B-4T file. Ternary codes are drawn directly as random I2_S bytes
(one draw in [0, 81) is four uniform trits), so the same seed gives the same model in every
output type, and nothing larger than one tensor is ever in memory.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from bitnet_cli.errors import UserError
from bitnet_cli.modelfile import FILE_TYPE_OF, GGMLType, ProgressFn, TensorSpec, write_model_file

__all__ = [
    "Preset",
    "PRESETS",
    "OUTTYPES",
    "dummy_metadata",
    "dummy_tensor_specs",
    "dummy_model_nbytes",
    "official_2b4t_metadata",
    "write_dummy_model",
]

OUTTYPES = ("f32", "f16", "i2_s", "tl1", "tl2")
_SLAB_VALUES = 1 << 24  # values decoded at a time when writing f32/f16 weights
_LINEAR_TYPE = {"f32": GGMLType.F32, "f16": GGMLType.F16, "i2_s": GGMLType.I2_S, "tl1": GGMLType.TL1, "tl2": GGMLType.TL2}


@dataclass(frozen=True)
class Preset:
    """A model shape; `official` selects the 2B-4T file's exact metadata key set."""

    hidden: int
    ffn: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int = 32002
    arch: str = "bitnet"
    rope_theta: float = 10000.0
    ctx: int = 2048
    eps: float = 1e-5
    official: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def _mha(hidden: int, ffn: int, layers: int, heads: int) -> Preset:
    return Preset(hidden, ffn, layers, heads, heads)


PRESETS: dict[str, Preset] = {
    "125M": _mha(768, 3072, 11, 12),
    "350M": _mha(1024, 3072, 24, 16),
    "1B": _mha(2048, 3584, 24, 32),
    "1.5B": _mha(1536, 9216, 28, 32),
    "2.7B": _mha(3072, 7680, 24, 32),
    "3.8B": _mha(3840, 8192, 24, 32),
    "7B": _mha(4096, 12032, 32, 32),
    "13B": _mha(5120, 13824, 40, 40),
    "30B": _mha(6656, 16384, 60, 52),
    "70B": _mha(8192, 24576, 80, 64),
    "100B": _mha(8192, 45568, 72, 64),
    "2B-4T": Preset(2560, 6912, 30, 20, 5, 128256, "bitnet-b1.58", 500000.0, 4096, official=True),
}
# Not shown in --help: tiny shapes for tests and quick checks.
HIDDEN_PRESETS: dict[str, Preset] = {
    "test-tiny": Preset(256, 384, 2, 4, 4, vocab=512, ctx=256),
    "test-tiny-b158": Preset(256, 384, 2, 4, 2, vocab=512, arch="bitnet-b1.58", rope_theta=500000.0, ctx=256),
    "test-tiny-2b4t": replace(PRESETS["2B-4T"], hidden=256, ffn=384, layers=2, heads=2, kv_heads=1, vocab=512, ctx=256),
}


def get_preset(size: str) -> Preset:
    """The preset called `size` (case-insensitive), or a UserError listing the choices."""
    table = {k.lower(): v for k, v in {**PRESETS, **HIDDEN_PRESETS}.items()}
    preset = table.get(size.lower())
    if preset is None:
        raise UserError(f"unknown model size '{size}'", f"choose one of {', '.join(PRESETS)}")
    return preset


def official_2b4t_metadata(n_vocab: int = 128256, preset: Preset | None = None, outtype: str = "i2_s") -> dict[str, Any]:
    """The official 2B-4T file's 24 key/value pairs, in its order (spec §6.5), with the dummy vocab."""
    from bitnet_cli.tokenizer import build_dummy_tokenizer_metadata

    p = preset or replace(PRESETS["2B-4T"], vocab=n_vocab)
    a = p.arch
    tok = build_dummy_tokenizer_metadata(p.vocab, official=True)
    md: dict[str, Any] = {
        "general.architecture": a,
        "general.name": "bitnet2b",
        f"{a}.vocab_size": p.vocab,
        f"{a}.context_length": p.ctx,
        f"{a}.embedding_length": p.hidden,
        f"{a}.block_count": p.layers,
        f"{a}.feed_forward_length": p.ffn,
        f"{a}.rope.dimension_count": p.head_dim,
        f"{a}.attention.head_count": p.heads,
        f"{a}.attention.head_count_kv": p.kv_heads,
        "tokenizer.ggml.add_bos_token": tok.pop("tokenizer.ggml.add_bos_token"),
        f"{a}.attention.layer_norm_rms_epsilon": p.eps,
        f"{a}.rope.freq_base": p.rope_theta,
        "general.file_type": int(FILE_TYPE_OF[_LINEAR_TYPE[outtype]]),
    }
    md.update(tok)
    md["general.quantization_version"] = 2
    return md


def dummy_metadata(preset: Preset, outtype: str, name: str = "dummy") -> dict[str, Any]:
    """GGUF metadata of a dummy model (the official key set for `official` presets)."""
    if preset.official:
        return official_2b4t_metadata(preset=preset, outtype=outtype)
    from bitnet_cli.tokenizer import build_dummy_tokenizer_metadata

    a = preset.arch
    md: dict[str, Any] = {
        "general.architecture": a,
        "general.name": f"bitnet-dummy-{name}",
        f"{a}.vocab_size": preset.vocab,
        f"{a}.context_length": preset.ctx,
        f"{a}.embedding_length": preset.hidden,
        f"{a}.block_count": preset.layers,
        f"{a}.feed_forward_length": preset.ffn,
        f"{a}.rope.dimension_count": preset.head_dim,
        f"{a}.attention.head_count": preset.heads,
        f"{a}.attention.head_count_kv": preset.kv_heads,
        f"{a}.attention.layer_norm_rms_epsilon": preset.eps,
        f"{a}.rope.freq_base": preset.rope_theta,
        "general.file_type": int(FILE_TYPE_OF[_LINEAR_TYPE[outtype]]),
    }
    md.update(build_dummy_tokenizer_metadata(preset.vocab))
    md["general.quantization_version"] = 2
    return md


@lru_cache(maxsize=1)
def _trits_to_i2s_byte() -> np.ndarray:
    """uint8[81]: the I2_S byte holding four trits (v in base 3), built with pack_i2s itself."""
    from bitnet_kernels import pack_i2s

    v = np.arange(81)
    trits = np.stack([v // 27 % 3, v // 9 % 3, v // 3 % 3, v % 3], axis=1) - 1  # [81, 4]
    t = np.zeros((81, 128), np.int8)
    t[:, [0, 32, 64, 96]] = trits  # values 0, 32, 64, 96 of a block share byte 0
    return pack_i2s(t, 1.0)[: 81 * 32 : 32].copy()


@lru_cache(maxsize=1)
def _normal_f16_table() -> np.ndarray:
    """float16[256]: quantiles of N(0, 0.02²) at the 256 byte midpoints."""
    from statistics import NormalDist

    nd = NormalDist(0.0, 0.02)
    return np.array([nd.inv_cdf((i + 0.5) / 256) for i in range(256)], np.float16)


def _random_i2s(rng: np.random.Generator, M: int, K: int, scale: float) -> np.ndarray:
    """Canonical I2_S bytes of a uniform random ternary (M, K) matrix with `scale`."""
    n = M * K // 4
    # Random bytes are ~5x faster to draw than integers(0, 81); b % 81 is uniform for b < 243 = 3·81
    # and the ~5% of bytes above are drawn again, so every byte holds four uniform trits.
    draws = np.frombuffer(rng.bytes(n + 32), np.uint8)  # [n + 32]
    idx = draws % 81
    redo = np.flatnonzero(draws >= 243)
    idx[redo] = rng.integers(0, 81, size=redo.size, dtype=np.uint8)
    out = _trits_to_i2s_byte()[idx]  # [n + 32]
    out[n:] = 0
    out[n : n + 4] = np.frombuffer(np.float32(scale).tobytes(), np.uint8)
    return out


def _linear_producer(seed: int, index: int, M: int, K: int, outtype: str) -> Callable[[], np.ndarray]:
    def produce() -> np.ndarray:
        rng = np.random.default_rng([seed, index])
        # f16-exact scale, so f32, f16 and i2_s files hold the same weights
        scale = float(np.float16(rng.uniform(0.5, 1.5) / np.sqrt(K)))
        raw = _random_i2s(rng, M, K, scale)
        if outtype == "i2_s":
            return raw
        if outtype in ("f32", "f16"):
            return _i2s_to_float(raw, M, K, scale, np.float32 if outtype == "f32" else np.float16)
        from bitnet_kernels import unpack_i2s

        t, _ = unpack_i2s(raw, M, K)  # [M, K] int8
        del raw
        return _pack_tl(outtype, t, scale)

    return produce


def _i2s_to_float(raw: np.ndarray, M: int, K: int, scale: float, dtype: type) -> np.ndarray:
    """t · scale as `dtype`, decoded a slab of rows at a time to keep temporaries small."""
    from bitnet_kernels import unpack_i2s

    out = np.empty((M, K), dtype)  # [M, K]
    rows = max(1, _SLAB_VALUES // K)
    for r in range(0, M, rows):
        n = min(rows, M - r)
        slab = np.concatenate([raw[r * K // 4 : (r + n) * K // 4], raw[-32:]])  # the slab's codes + tail
        t, _ = unpack_i2s(slab, n, K)  # [n, K] int8
        out[r : r + n] = t
        out[r : r + n] *= dtype(scale)
    return out


def _pack_tl(outtype: str, t: np.ndarray, scale: float) -> np.ndarray:
    M, K = t.shape
    kinds = _tl_packers()
    if outtype not in kinds:
        raise UserError(f"--outtype {outtype} is not available in this build", "use --outtype i2_s")
    choose, pack = kinds[outtype]
    try:
        c = choose(outtype, M, K)
    except ValueError as e:
        raise UserError(f"--outtype {outtype}: {e}", "use --outtype i2_s") from None
    return pack(t, scale, c.BM, c.BK, c.bm)


def _tl_packers() -> dict[str, tuple[Callable[..., Any], Callable[..., np.ndarray]]]:
    """TL packers from bitnet_kernels, where present."""
    out: dict[str, tuple[Callable[..., Any], Callable[..., np.ndarray]]] = {}
    try:
        from bitnet_kernels.tl_common import choose_tile_config
    except ImportError:
        return out
    for kind in ("tl1", "tl2"):
        try:
            module = __import__(f"bitnet_kernels.{kind}", fromlist=[f"pack_{kind}"])
            out[kind] = (choose_tile_config, getattr(module, f"pack_{kind}"))
        except (ImportError, AttributeError):
            pass
    return out


def _float_producer(seed: int, index: int, shape: tuple[int, ...], kind: str) -> Callable[[], Any]:
    def norm() -> np.ndarray:  # RMS-norm gains around 1
        rng = np.random.default_rng([seed, index])
        return (1.0 + 0.05 * rng.standard_normal(shape)).astype(np.float32)

    def embedding() -> Iterator[np.ndarray]:
        # One random byte per value through a table of normal quantiles (~20x faster than
        # standard_normal), streamed in slabs of rows so the embedding is never whole in memory.
        rng = np.random.default_rng([seed, index])
        rows = max(1, _SLAB_VALUES // shape[1])
        for r in range(0, shape[0], rows):
            n = min(rows, shape[0] - r)
            draws = np.frombuffer(rng.bytes(n * shape[1]), np.uint8)
            yield _normal_f16_table()[draws]  # [n * hidden] f16

    return norm if kind == "norm" else embedding


# bytes per 256 values and where the f16 block scale sits, for the --quant-embd types
_EMBD_BLOCKS = {"q8_0": (32, 34, 0), "q6_k": (256, 210, 208)}  # values, bytes, offset of d


def _quant_embedding_producer(seed: int, index: int, shape: tuple[int, ...], qtype: str) -> Callable[[], Any]:
    """Random but valid Q8_0 / Q6_K blocks: random quants, one small f16 block scale."""
    values, nbytes, d_at = _EMBD_BLOCKS[qtype]
    # |w| stays below ~0.04 like the F16 dummy embedding: Q8_0 d·q, q ≤ 128; Q6_K d·scale·(q-32), ≤ 127·32.
    d = np.array([0.04 / (128 if qtype == "q8_0" else 127 * 32)], np.float16).view(np.uint8)

    def embedding() -> Iterator[np.ndarray]:
        rng = np.random.default_rng([seed, index])
        rows = max(1, _SLAB_VALUES // shape[1])
        for r in range(0, shape[0], rows):
            n = min(rows, shape[0] - r)
            blocks = np.frombuffer(rng.bytes(n * shape[1] // values * nbytes), np.uint8).reshape(-1, nbytes).copy()
            blocks[:, d_at : d_at + 2] = d
            yield blocks.reshape(-1)

    return embedding


def check_outtype(outtype: str) -> None:
    """A UserError unless `outtype` is known and, for tl1/tl2, its packer is present."""
    if outtype not in OUTTYPES:
        raise UserError(f"unknown --outtype '{outtype}'", f"choose one of {', '.join(OUTTYPES)}")
    if outtype in ("tl1", "tl2") and outtype not in _tl_packers():
        raise UserError(f"--outtype {outtype} is not available in this build", "use --outtype i2_s")


def dummy_tensor_specs(preset: Preset, outtype: str = "i2_s", seed: int = 0,
                       quant_embd: str = "f16") -> list[TensorSpec]:
    """Every tensor of the model, in file order, with lazy producers (nothing is generated here).

    `quant_embd` is the tied embedding / LM head type: f16 (as the official file), q8_0 or q6_k.
    """
    check_outtype(outtype)
    if quant_embd not in ("f16", *_EMBD_BLOCKS):
        raise UserError(f"unknown --quant-embd '{quant_embd}'", "choose f16, q8_0 or q6_k")
    p, lt = preset, _LINEAR_TYPE[outtype]
    kv = p.kv_heads * p.head_dim
    specs: list[TensorSpec] = []

    def add(name: str, shape: tuple[int, ...], kind: str) -> None:
        i = len(specs)
        if kind == "linear":
            specs.append(TensorSpec(name, shape, lt, _linear_producer(seed, i, shape[0], shape[1], outtype)))
        elif kind == "embed" and quant_embd != "f16":
            gtype = GGMLType.Q8_0 if quant_embd == "q8_0" else GGMLType.Q6_K
            specs.append(TensorSpec(name, shape, gtype, _quant_embedding_producer(seed, i, shape, quant_embd)))
        else:
            gtype = GGMLType.F16 if kind == "embed" else GGMLType.F32
            specs.append(TensorSpec(name, shape, gtype, _float_producer(seed, i, shape, kind)))

    add("token_embd.weight", (p.vocab, p.hidden), "embed")
    for layer in range(p.layers):
        b = f"blk.{layer}."
        add(b + "attn_norm.weight", (p.hidden,), "norm")
        add(b + "attn_q.weight", (p.hidden, p.hidden), "linear")
        add(b + "attn_k.weight", (kv, p.hidden), "linear")
        add(b + "attn_v.weight", (kv, p.hidden), "linear")
        add(b + "attn_sub_norm.weight", (p.hidden,), "norm")
        add(b + "attn_output.weight", (p.hidden, p.hidden), "linear")
        add(b + "ffn_norm.weight", (p.hidden,), "norm")
        add(b + "ffn_gate.weight", (p.ffn, p.hidden), "linear")
        add(b + "ffn_up.weight", (p.ffn, p.hidden), "linear")
        add(b + "ffn_sub_norm.weight", (p.ffn,), "norm")
        add(b + "ffn_down.weight", (p.hidden, p.ffn), "linear")
    add("output_norm.weight", (p.hidden,), "norm")
    if outtype in ("tl1", "tl2"):  # fail before writing when a shape has no tile layout
        choose = _tl_packers()[outtype][0]
        for shape in {s.shape for s in specs if s.ggml_type == lt}:
            try:
                choose(outtype, *shape)
            except ValueError as e:
                raise UserError(f"--outtype {outtype}: {e}", "use --outtype i2_s") from None
    return specs


def dummy_model_nbytes(size: str, outtype: str = "i2_s", quant_embd: str = "f16") -> int:
    """Tensor data bytes of a dummy model (what the file needs, give or take the header)."""
    from bitnet_cli.modelfile import pad_to

    return sum(pad_to(s.nbytes) for s in dummy_tensor_specs(get_preset(size), outtype, quant_embd=quant_embd))


def write_dummy_model(
    path: str | Path,
    size: str = "2B-4T",
    outtype: str = "i2_s",
    seed: int = 0,
    *,
    progress: ProgressFn | None = None,
    name: str | None = None,
    vocab_only: bool = False,
    quant_embd: str = "f16",
) -> Path:
    """Write a dummy model of preset `size`; tensors are generated one at a time while writing.

    `name` overrides `general.name`; `vocab_only` writes the metadata (tokenizer included) only;
    `quant_embd` is the embedding / LM head type (f16, q8_0, q6_k).
    """
    preset = get_preset(size)
    check_outtype(outtype)
    specs = [] if vocab_only else dummy_tensor_specs(preset, outtype, seed, quant_embd)
    md = dummy_metadata(preset, outtype, size)
    if name:
        md["general.name"] = name
    return write_model_file(path, md, specs, progress=progress)
