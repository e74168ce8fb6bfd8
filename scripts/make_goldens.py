#!/usr/bin/env python3
"""Make the transformers goldens in tests/goldens/ (needs the `reference` extra: torch, transformers).

For every family of tests/tiny_checkpoints.py this builds the tiny checkpoint, loads it with
transformers in fp32 (eager attention, 1 thread, TorchDynamo off, so the numbers are reproducible
byte for byte) and saves to tests/goldens/<family>/:

  logits.npy   float32 [len(prompt_ids), vocab]: one full causal pass over prompt_ids
  golden.json  prompt ids, greedy continuation (cached decode, temp 0) with its top1-top2 gaps,
               the reorder floor (transformers' cached/chunked logits vs its own full pass),
               versions and the checkpoint's sha256 (the tests check they rebuild the same bytes)

For `bitnet-bf16` it also writes two GGUF files with gguf's own GGUFWriter and an I2_S packer
written here from bitnet-cpp.md §4.1.1 (independent of bitnet_cli): ternarized F32 weights and
I2_S weights, arch `bitnet-b1.58`, the official 2B-4T key set (§6.5).

The 1bitLLM family (`BitnetForCausalLM`, model_type llama, custom code on the hub) is loaded as
`BitNetForCausalLM` with hidden_act silu, online absmean quantization and its sub-norms renamed
(inner_attn_ln -> attn_sub_norm, ffn_layernorm -> ffn_sub_norm): the same math as its own code.

Usage: .venv-ref/bin/python scripts/make_goldens.py [--out tests/goldens] [FAMILY ...]
"""
from __future__ import annotations

import os

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # the quantizer's helpers are torch.compile'd
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import tiny_checkpoints as tc  # noqa: E402

LOGITS_TEXT = (
    "The capital of France is Paris; the capital of Italy is Rome. Once upon a time there was a "
    "little model that ran on a plain CPU."
)
N_LOGITS = 24  # prompt tokens in logits.npy (BOS included)
GREEDY_TEXT = "Once upon a time"
N_GREEDY = 16


def _torch():
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    return torch


# ---------------------------------------------------------------------------------------------
# loading with transformers
# ---------------------------------------------------------------------------------------------
def reference_dir(family: str, ckpt: Path, work: Path) -> Path:
    """A directory transformers can load with its own classes (only 1bitLLM needs rewriting)."""
    if family != "1bitllm":
        return ckpt
    from safetensors.numpy import load_file, save_file

    ref = work / "1bitllm-as-bitnet"
    shutil.copytree(ckpt, ref, dirs_exist_ok=True)
    tensors = load_file(ckpt / "model.safetensors")  # fp16: numpy reads it directly
    renamed = {k.replace("inner_attn_ln", "attn_sub_norm").replace("ffn_layernorm", "ffn_sub_norm"): v
               for k, v in tensors.items()}
    save_file(renamed, ref / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((ckpt / "config.json").read_text())
    for key in ("input_bits", "weight_bits", "pretraining_tp", "rope_scaling"):
        config.pop(key, None)
    config.update(architectures=["BitNetForCausalLM"], model_type="bitnet", hidden_act="silu",
                  quantization_config={"quant_method": "bitnet", "linear_class": "autobitlinear",
                                       "quantization_mode": "online"})
    (ref / "config.json").write_text(json.dumps(config, indent=2))
    return ref


def load_reference(path: Path, attn: str = "eager"):
    """fp32 (eager attention unless told); every checkpoint tensor must be used."""
    torch = _torch()
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation=attn, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        raise RuntimeError(f"{path}: checkpoint and model disagree: {bad}")
    # packed checkpoints keep bf16 embeddings/norms next to fp32 unpacked weights otherwise
    return model.to(torch.float32).eval()


# ---------------------------------------------------------------------------------------------
# reference numbers
# ---------------------------------------------------------------------------------------------
def full_logits(model, ids: list[int]) -> np.ndarray:
    torch = _torch()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()  # [n, vocab]


def full_logits_fp64(path: Path, ids: list[int]) -> np.ndarray:
    """The same full pass in float64 (BitLinear keeps its fp32 integer matmul; exact anyway)."""
    torch = _torch()
    model = load_reference(path).to(torch.float64)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def perturbed_floor(model, ids: list[int], logits: np.ndarray, n: int = 8) -> dict[str, float]:
    """Worst of n full passes with the embeddings moved by one ulp at random (seeded): more
    samples of rounding noise, so a rare int8 step flip is seen here rather than only in a test."""
    torch = _torch()
    emb = model.get_input_embeddings().weight
    orig = emb.detach().clone()
    gen = torch.Generator().manual_seed(1234)
    worst = {"max_abs": 0.0, "mean_abs": 0.0}
    with torch.no_grad():
        for _ in range(n):
            r = torch.randint(-1, 2, orig.shape, generator=gen).to(torch.float32)
            emb.copy_(orig * (1.0 + r * 2.0**-23))
            f = floor_of(logits, full_logits(model, ids))
            worst = {k: max(worst[k], f[k]) for k in worst}
        emb.copy_(orig)
    assert np.array_equal(full_logits(model, ids), logits)
    return worst


def cached_logits(model, ids: list[int], chunks: list[int]) -> np.ndarray:
    """Logits computed chunk by chunk through transformers' KV cache."""
    torch = _torch()
    from transformers import DynamicCache

    cache, out, pos = DynamicCache(config=model.config), [], 0
    with torch.no_grad():
        for n in chunks:
            step = model(torch.tensor([ids[pos:pos + n]]), past_key_values=cache, use_cache=True)
            out.append(step.logits[0].float().numpy())
            pos += n
    assert pos == len(ids)
    return np.concatenate(out)  # [n, vocab]


def greedy(model, ids: list[int], n_new: int) -> tuple[list[int], list[float]]:
    """Cached greedy decode; also returns each step's top1 - top2 logit gap."""
    torch = _torch()
    from transformers import DynamicCache

    cache, tokens, gaps, feed = DynamicCache(config=model.config), [], [], ids
    with torch.no_grad():
        for _ in range(n_new):
            last = model(torch.tensor([feed]), past_key_values=cache, use_cache=True).logits[0, -1]
            top2 = torch.topk(last.float(), 2).values
            tok = int(torch.argmax(last))
            tokens.append(tok)
            gaps.append(float(top2[0] - top2[1]))
            feed = [tok]
    return tokens, gaps


def floor_of(ref: np.ndarray, other: np.ndarray) -> dict[str, float]:
    d = np.abs(ref.astype(np.float64) - other)
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean())}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def measure_floors(model, ref_dir: Path, ids: list[int], logits: np.ndarray) -> dict[str, dict]:
    """How far transformers moves from its own full pass when only the float evaluation order
    changes (cache, chunking, SDPA), when it rounds less (fp64) or by one ulp (perturbed)."""
    return {
        "incremental": floor_of(logits, cached_logits(model, ids, [1] * len(ids))),
        "chunked": floor_of(logits, cached_logits(model, ids, [7, 1, 9, len(ids) - 17])),
        "sdpa": floor_of(logits, full_logits(load_reference(ref_dir, "sdpa"), ids)),
        "fp64": floor_of(logits, full_logits_fp64(ref_dir, ids)),
        "ulp_perturbed": perturbed_floor(model, ids, logits),
    }


def make_family(family: str, out_root: Path, work: Path) -> dict:
    import tokenizers
    import torch
    import transformers

    ckpt = tc.write_checkpoint(family, work / family)
    ref_dir = reference_dir(family, ckpt, work)
    model = load_reference(ref_dir)
    tok = tokenizers.Tokenizer.from_file(str(ckpt / "tokenizer.json"))
    ids = tok.encode(LOGITS_TEXT).ids[:N_LOGITS]
    gids = tok.encode(GREEDY_TEXT).ids
    assert ids[0] == gids[0] == tc.N_BASE_TOKENS and len(ids) == N_LOGITS, (ids, gids)

    logits = full_logits(model, ids)
    floors = measure_floors(model, ref_dir, ids, logits)
    greedy_ids, gaps = greedy(model, gids, N_GREEDY)
    sorted_rows = np.sort(logits, axis=1)
    golden = {
        "family": family,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "numerics": "fp32, eager attention, 1 thread, TORCHDYNAMO_DISABLE=1",
        "prompt_text": LOGITS_TEXT, "prompt_ids": ids,
        "greedy_text": GREEDY_TEXT, "greedy_prompt_ids": gids,
        "greedy_ids": greedy_ids, "greedy_gaps": gaps,
        "floor": {
            "max_abs": max(f["max_abs"] for f in floors.values()),
            "mean_abs": max(f["mean_abs"] for f in floors.values()),
            **floors,
        },
        "min_row_gap": float((sorted_rows[:, -1] - sorted_rows[:, -2]).min()),
        "checkpoint_sha256": {p.name: sha256(p) for p in sorted(ckpt.iterdir())},
    }
    dest = out_root / family
    dest.mkdir(parents=True, exist_ok=True)
    np.save(dest / "logits.npy", logits.astype(np.float32))
    (dest / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    if family == "bitnet-bf16":
        for outtype in ("f32", "i2_s"):
            write_bitnet_gguf(model, ckpt, dest / f"ggml-model-{outtype}.gguf", outtype)
    return golden


# ---------------------------------------------------------------------------------------------
# GGUF files written by another tool: gguf's GGUFWriter + an I2_S packer made from the spec
# ---------------------------------------------------------------------------------------------
GGUF_ARCH = "bitnet-b1.58"
I2_S, FTYPE_I2_S = 36, 40  # ggml type id and LLAMA_FTYPE of bitnet.cpp's I2_S
GGUF_LINEARS = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
                "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


def pack_i2s_spec(t: np.ndarray, scale: np.float32) -> np.ndarray:
    """bitnet-cpp.md §4.1.1, literally: flattened value i, block b = i // 128, j = i % 128, code
    t + 1 at byte 32b + j % 32, bit shift 6 - 2 (j // 32); then the f32 scale and 28 zero bytes."""
    M, K = t.shape
    assert K % 128 == 0, (M, K)
    codes = (t.reshape(-1).astype(np.int16) + 1).astype(np.uint8)  # [M*K]
    i = np.arange(codes.size)
    b, j = i // 128, i % 128
    out = np.zeros(M * K // 4 + 32, dtype=np.uint8)
    np.bitwise_or.at(out, 32 * b + j % 32, (codes << (6 - 2 * (j // 32))).astype(np.uint8))
    out[M * K // 4:M * K // 4 + 4] = np.frombuffer(np.float32(scale).astype("<f4").tobytes(), np.uint8)
    return out


def online_ternary(weight) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """transformers' WeightQuant in fp32: t, the effective weight t / s_w, and its magnitude."""
    torch = _torch()
    w = weight.detach().to(torch.float32)
    s = 1.0 / w.abs().mean().clamp(min=1e-5)
    t = (w * s).round().clamp(-1, 1)
    eff = (t / s).numpy()  # exactly what AutoBitLinear multiplies with
    m = np.float32((1.0 / s).item())
    assert np.all(np.abs(eff[eff != 0]) == m)  # llama-quantize's scale = max|w| = m
    return t.to(torch.int8).numpy(), eff, m


def _tokenizer_kv(ckpt: Path) -> list[tuple[str, object, object, object]]:
    from gguf import GGUFValueType as T

    tj = json.loads((ckpt / "tokenizer.json").read_text())
    vocab = dict(tj["model"]["vocab"])
    specials = {a["id"]: a["content"] for a in tj["added_tokens"]}
    vocab.update({s: i for i, s in specials.items()})
    tokens = [s for s, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    assert len(tokens) == tc.VOCAB
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    types = [3 if i in specials else 1 for i in range(len(tokens))]  # CONTROL / NORMAL
    bos, eos = tc.N_BASE_TOKENS, tc.N_BASE_TOKENS + 1
    chat = json.loads((ckpt / "tokenizer_config.json").read_text())["chat_template"]
    return [
        ("tokenizer.ggml.model", "gpt2", T.STRING, None),
        ("tokenizer.ggml.tokens", tokens, T.ARRAY, T.STRING),
        ("tokenizer.ggml.scores", [0.0] * len(tokens), T.ARRAY, T.FLOAT32),
        ("tokenizer.ggml.token_type", types, T.ARRAY, T.INT32),
        ("tokenizer.ggml.merges", merges, T.ARRAY, T.STRING),
        ("tokenizer.ggml.bos_token_id", bos, T.UINT32, None),
        ("tokenizer.ggml.eos_token_id", eos, T.UINT32, None),
        ("tokenizer.ggml.padding_token_id", eos, T.UINT32, None),
        ("tokenizer.chat_template", chat, T.STRING, None),
    ]


def write_bitnet_gguf(model, ckpt: Path, path: Path, outtype: str) -> None:
    """The official 2B-4T layout (§6.5): F32 norms, token_embd F16 (F32 in the f32 file), tied."""
    import gguf
    from gguf import GGUFValueType as T

    cfg, a = model.config, GGUF_ARCH
    kv = [
        ("general.name", "bitnet2b", T.STRING, None),
        (f"{a}.vocab_size", cfg.vocab_size, T.UINT32, None),
        (f"{a}.context_length", cfg.max_position_embeddings, T.UINT32, None),
        (f"{a}.embedding_length", cfg.hidden_size, T.UINT32, None),
        (f"{a}.block_count", cfg.num_hidden_layers, T.UINT32, None),
        (f"{a}.feed_forward_length", cfg.intermediate_size, T.UINT32, None),
        (f"{a}.rope.dimension_count", cfg.hidden_size // cfg.num_attention_heads, T.UINT32, None),
        (f"{a}.attention.head_count", cfg.num_attention_heads, T.UINT32, None),
        (f"{a}.attention.head_count_kv", cfg.num_key_value_heads, T.UINT32, None),
        ("tokenizer.ggml.add_bos_token", True, T.BOOL, None),
        (f"{a}.attention.layer_norm_rms_epsilon", cfg.rms_norm_eps, T.FLOAT32, None),
        (f"{a}.rope.freq_base", cfg.rope_parameters["rope_theta"], T.FLOAT32, None),
        ("general.file_type", FTYPE_I2_S if outtype == "i2_s" else 0, T.UINT32, None),
        *_tokenizer_kv(ckpt),
        ("general.quantization_version", 2, T.UINT32, None),
    ]
    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), a)
    for key, val, vtype, sub in kv:
        w.add_key_value(key, val, vtype, sub_type=sub)
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    emb = sd["model.embed_tokens.weight"].numpy()
    w.add_tensor("token_embd.weight", emb.astype(np.float16 if outtype == "i2_s" else np.float32))
    for n in range(cfg.num_hidden_layers):
        p, g = f"model.layers.{n}.", f"blk.{n}."
        norms = {"input_layernorm": "attn_norm", "self_attn.attn_sub_norm": "attn_sub_norm",
                 "post_attention_layernorm": "ffn_norm", "mlp.ffn_sub_norm": "ffn_sub_norm"}
        for hf, gg in norms.items():
            w.add_tensor(g + gg + ".weight", sd[p + hf + ".weight"].numpy().astype(np.float32))
        for hf, gg in GGUF_LINEARS.items():
            mod = "self_attn" if gg.startswith("attn") else "mlp"
            t, eff, m = online_ternary(getattr(getattr(model.model.layers[n], mod), hf).weight)
            if outtype == "f32":
                w.add_tensor(g + gg + ".weight", eff.astype(np.float32))
            else:  # gguf knows no I2_S: hand it the bytes as int8 with the logical shape
                raw = pack_i2s_spec(t, m).view(np.int8)
                w.add_tensor(g + gg + ".weight", raw, raw_shape=t.shape, raw_dtype=I2_S)
    w.add_tensor("output_norm.weight", sd["model.norm.weight"].numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("families", nargs="*", default=list(tc.FAMILIES))
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "goldens")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families:
            g = make_family(family, args.out, Path(tmp))
            fl = g["floor"]
            print(f"{family:16s} floor max {fl['max_abs']:.4g} mean {fl['mean_abs']:.4g}  "
                  f"min row gap {g['min_row_gap']:.3g}  greedy {g['greedy_ids']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
