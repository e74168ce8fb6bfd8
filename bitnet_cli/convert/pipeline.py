"""HF checkpoint folder → GGUF model file, one tensor at a time."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from bitnet_cli.convert import names
from bitnet_cli.convert.checkpoint import Checkpoint
from bitnet_cli.convert.encode import dense_type, encode_dense, encode_ternary, outtype_of, shape_problem
from bitnet_cli.convert.families import Family, detect_family
from bitnet_cli.convert.metadata import build_metadata, hparams, model_name
from bitnet_cli.convert.ternary import load_ternary
from bitnet_cli.errors import ModelFormatError, UnsupportedModelError, UserError
from bitnet_cli.modelfile import GGMLType, TensorSpec, write_model_file
from bitnet_cli.tokenizer import tokenizer_metadata_from_hf

# progress(bytes_done, bytes_total, tensor_name), called after each tensor is written
ProgressFn = Callable[[int, int, str], None]


def open_checkpoint(src: str | Path) -> tuple[Checkpoint, Family]:
    """Open a HF folder and detect its family (packed when q_proj of layer 0 is uint8)."""
    ckpt = Checkpoint(src)
    q0 = "model.layers.0.self_attn.q_proj.weight"
    if q0 not in ckpt:
        raise ModelFormatError(f"no '{q0}' in {ckpt.path}", "not a LLaMA-style BitNet checkpoint")
    return ckpt, detect_family(ckpt.config, packed=ckpt.dtype(q0) == "U8")


def _linear_rows(ckpt: Checkpoint, fam: Family, hf: str) -> tuple[int, int]:
    shape = ckpt.shape(hf)
    if len(shape) != 2:
        raise ModelFormatError(f"'{hf}' has shape {shape}; expected a matrix")
    if ckpt.dtype(hf) == "U8":
        if fam.layout != "packed":
            raise ModelFormatError(f"'{hf}' is packed uint8 but the rest of the checkpoint is not")
        return shape[0] * 4, shape[1]
    return shape[0], shape[1]


def _norm_spec(ckpt: Checkpoint, gguf: str, hf: str, size: int) -> TensorSpec:
    if hf not in ckpt:
        raise ModelFormatError(f"tensor '{hf}' is missing from {ckpt.path}", "the checkpoint is incomplete")
    if int(np.prod(ckpt.shape(hf))) != size:
        raise ModelFormatError(f"'{hf}' has shape {ckpt.shape(hf)}; expected ({size},)")
    return TensorSpec(gguf, (size,), GGMLType.F32, lambda: ckpt.float32(hf).reshape(-1))


def _linear_spec(ckpt: Checkpoint, fam: Family, gguf: str, hf: str, expect: tuple[int, int],
                 ttype: GGMLType, perm_heads: int | None) -> TensorSpec:
    if hf not in ckpt:
        raise ModelFormatError(f"tensor '{hf}' is missing from {ckpt.path}", "the checkpoint is incomplete")
    M, K = _linear_rows(ckpt, fam, hf)
    if (M, K) != expect:
        raise ModelFormatError(f"'{hf}' is {M}x{K}; config.json implies {expect[0]}x{expect[1]}")
    problem = shape_problem(ttype, M, K)
    if problem:
        others = ", ".join(t for t in ("i2_s", "tq2_0", "f16") if t != ttype.name.lower())
        raise UnsupportedModelError(f"cannot store '{hf}' ({M}x{K}) as {ttype.name}: {problem}",
                                    f"pick another --outtype ({others})")

    def produce() -> np.ndarray:
        t, scale = load_ternary(ckpt, fam, hf, perm_heads)
        return encode_ternary(t, scale, ttype)

    return TensorSpec(gguf, (M, K), ttype, produce)


def plan_tensors(ckpt: Checkpoint, fam: Family, ttype: GGMLType, dtype_dense: GGMLType) -> list[TensorSpec]:
    """Every output tensor, validated up front so that a bad checkpoint fails before writing."""
    hp = hparams(ckpt.config)
    H, F = hp["embedding_length"], hp["feed_forward_length"]
    n_head, n_kv = hp["attention.head_count"], hp["attention.head_count_kv"]
    hd = hp["rope.dimension_count"]
    expect = {"attn_q": (n_head * hd, H), "attn_k": (n_kv * hd, H), "attn_v": (n_kv * hd, H),
              "attn_output": (H, n_head * hd), "ffn_gate": (F, H), "ffn_up": (F, H), "ffn_down": (H, F)}
    perm = {"attn_q": n_head, "attn_k": n_kv} if fam.permute_qk else {}
    embd_g, embd_hf = names.TOKEN_EMBD
    if embd_hf not in ckpt:
        raise ModelFormatError(f"tensor '{embd_hf}' is missing from {ckpt.path}", "the checkpoint is incomplete")
    vocab, width = ckpt.shape(embd_hf)
    if width != H:
        raise ModelFormatError(f"'{embd_hf}' is {vocab}x{width}; hidden size is {H}")
    specs = [TensorSpec(embd_g, (vocab, H), dtype_dense, lambda: encode_dense(ckpt, embd_hf, dtype_dense))]
    for i in range(hp["block_count"]):
        for gguf, hf, kind in names.layer_tensors(i, fam.sub_norms):
            key = gguf.split(".")[2]
            if kind == "norm":
                size = F if key == "ffn_sub_norm" else (n_head * hd if key == "attn_sub_norm" else H)
                specs.append(_norm_spec(ckpt, gguf, hf, size))
            else:
                specs.append(_linear_spec(ckpt, fam, gguf, hf, expect[key], ttype, perm.get(key)))
    specs.append(_norm_spec(ckpt, *names.OUTPUT_NORM, H))
    out_g, out_hf = names.OUTPUT
    if out_hf in ckpt and not ckpt.config.get("tie_word_embeddings", False):
        if tuple(ckpt.shape(out_hf)) != (vocab, H):
            raise ModelFormatError(f"'{out_hf}' has shape {ckpt.shape(out_hf)}; expected {(vocab, H)}")
        specs.append(TensorSpec(out_g, (vocab, H), dtype_dense, lambda: encode_dense(ckpt, out_hf, dtype_dense)))
    return specs


def convert_checkpoint(src_dir: str | Path, out_path: str | Path, outtype: str = "i2_s",
                       quant_embd: str | None = None, progress: ProgressFn | None = None,
                       *, name: str | None = None) -> Path:
    """Convert a Hugging Face BitNet b1.58 checkpoint folder to a GGUF model file.

    Args:
        src_dir: folder with config.json, *.safetensors and tokenizer files.
        out_path: the .gguf to write (via a temp file renamed at the end).
        outtype: i2_s | tl1 | tl2 | tq2_0 | tq1_0 | f16 | f32 (type of the seven projections).
        quant_embd: f16 | q8_0 | q6_k | f32 for the token embedding and untied head (default F16,
            F32 for outtype f32).
        progress: called as progress(bytes_done, bytes_total, tensor_name) after each tensor.
        name: `general.name` (default: the model folder's or repo's name).

    Returns:
        The path written.
    """
    src = Path(src_dir)
    out = Path(out_path)
    ttype = outtype_of(outtype)
    dtype_dense = dense_type(ttype, quant_embd)
    ckpt, fam = open_checkpoint(src)
    specs = plan_tensors(ckpt, fam, ttype, dtype_dense)
    vocab = specs[0].shape[0]
    config = {**ckpt.config, "vocab_size": vocab}  # the embedding's rows are the model's vocabulary
    metadata = build_metadata(fam, config, name or model_name(src, ckpt.config), ttype, tokenizer_metadata_from_hf(src))
    if out.exists() and out.is_dir():
        raise UserError(f"{out} is a directory", "pass the output file name with -o, e.g. -o model.gguf")
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_model_file(out, metadata, specs, progress=progress)
