"""`bitnet bench --compare llama.cpp`: mainline llama.cpp (through llama-cpp-python) on the same weights.

Mainline llama.cpp has no I2_S/TL types, so our file's ternary matrices are re-encoded losslessly as
TQ2_0 / TQ1_0 (or F16) by the converter's encoder, under mainline's `bitnet` architecture. The
embedding/head, norms, token ids and shapes stay as they are. Mainline's `bitnet` graph uses a SiLU
gate where `bitnet-b1.58` uses ReLU²: an element-wise op that does not move the timings.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bitnet_cli.bench import BenchTest, ModelInfo, decode_bytes, synthetic_tokens
from bitnet_cli.errors import UserError

PEER_TYPES = ("tq2_0", "tq1_0", "f16")
_FTYPE = {"tq2_0": 37, "tq1_0": 36, "f16": 1}
_FTYPE_DESC = {"tq2_0": "TQ2_0 - 2.06 bpw ternary", "tq1_0": "TQ1_0 - 1.69 bpw ternary", "f16": "F16"}
_DENSE_OK = {"F32", "F16", "Q8_0", "Q6_K", "Q4_K", "Q5_K", "Q4_0"}  # head/embedding types mainline reads


def require_llama_cpp() -> Any:
    """Import llama_cpp, or say how to install it."""
    try:
        import llama_cpp
    except ImportError:
        raise UserError(
            "--compare llama.cpp needs the llama-cpp-python package",
            "pip install 'bitnet-cli[compare]' (it builds llama.cpp from source with CMake, several minutes)",
        ) from None
    return llama_cpp


def peer_path(src: Path, qtype: str, cache_dir: Path) -> Path:
    """Where the mainline copy of `src` in `qtype` is cached (keyed by size and mtime)."""
    st = src.stat()
    return cache_dir / f"{src.stem}-{st.st_size}-{int(st.st_mtime)}-mainline-{qtype}.gguf"


def _metadata(mf: Any, qtype: str) -> dict[str, Any]:
    """Our file's metadata under mainline's `bitnet` architecture, with GGUF value types kept."""
    from gguf.constants import GGUFValueType

    arch = mf.arch
    out: dict[str, Any] = {"general.architecture": "bitnet"}
    for key, value in mf.metadata.items():
        if key == "general.architecture":
            continue
        if key == "general.file_type":
            value = _FTYPE[qtype]
        vtype, sub = mf.metadata_types[key]
        key = "bitnet." + key[len(arch) + 1:] if key.startswith(arch + ".") else key
        out[key] = (value, sub if vtype == GGUFValueType.ARRAY else vtype)
    return out


def write_peer_model(src: Path, dst: Path, qtype: str, progress: Any = None) -> Path:
    """Re-encode our model file `src` for mainline llama.cpp: ternary matrices as `qtype`."""
    from bitnet_cli.convert.encode import encode_float, encode_ternary
    from bitnet_cli.modelfile import TERNARY_TYPES, GGMLType, TensorSpec, open_model_file, write_model_file
    from bitnet_cli.loader import ternary_codes

    if qtype not in PEER_TYPES:
        raise UserError(f"unknown peer type '{qtype}'", f"choose from {', '.join(PEER_TYPES)}")
    mf = open_model_file(src)
    target = {"tq2_0": GGMLType.TQ2_0, "tq1_0": GGMLType.TQ1_0, "f16": GGMLType.F16}[qtype]
    specs = []
    for rec in mf.tensors.values():
        if rec.ggml_type in TERNARY_TYPES:
            # TQ blocks hold 256 values of a row; other rows go as F16, as llama-quantize falls back.
            ttype = target if rec.shape[-1] % 256 == 0 else GGMLType.F16

            def produce(rec=rec, ttype=ttype):  # noqa: ANN001, ANN202 - bound per tensor
                t, scale = ternary_codes(mf, rec)
                return encode_ternary(t, scale, ttype)

            specs.append(TensorSpec(rec.name, rec.shape, ttype, produce))
        elif rec.ggml_type.name in _DENSE_OK:
            specs.append(TensorSpec(rec.name, rec.shape, rec.ggml_type, lambda rec=rec: rec.data))
        else:  # BF16 and anything mainline's CPU path reads slowly or not at all: F16 keeps it exact enough
            specs.append(TensorSpec(rec.name, rec.shape, GGMLType.F16,
                                    lambda rec=rec: encode_float(_as_float(mf, rec), GGMLType.F16)))
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_model_file(dst, _metadata(mf, qtype), specs, progress=progress)
    return dst


def _as_float(mf: Any, rec: Any) -> np.ndarray:
    from bitnet_cli.loader import float_array

    return float_array(mf, rec)


class LlamaCppRunner:
    """Times mainline llama.cpp the way llama-bench does, through llama-cpp-python's low-level eval."""

    def __init__(self, path: Path, qtype: str, source: ModelInfo, n_ctx: int, threads: int, n_batch: int = 512) -> None:
        llama_cpp = require_llama_cpp()
        self.path, self.n_ctx, self.n_batch = path, n_ctx, n_batch
        self._llama_cpp = llama_cpp
        self.llm = self._open(threads)
        self.n_vocab = int(self.llm.n_vocab())
        bpt = _decode_bytes_of(path)
        desc = source.model_type.split(" ")
        self.info = ModelInfo(
            filename=str(path), model_type=" ".join(["bitnet"] + desc[1:2] + [_FTYPE_DESC[qtype]]),
            size=path.stat().st_size, n_params=source.n_params, bytes_per_token=bpt, backend="llama.cpp",
            source=source.filename,
        )
        self.threads = threads

    def _open(self, threads: int) -> Any:
        return self._llama_cpp.Llama(
            model_path=str(self.path), n_ctx=self.n_ctx, n_batch=self.n_batch, n_ubatch=self.n_batch, n_threads=threads,
            n_threads_batch=threads, n_gpu_layers=0, verbose=False, logits_all=False,
        )

    def set_threads(self, n: int) -> None:
        if n != self.threads:
            del self.llm
            self.llm, self.threads = self._open(n), n

    def run(self, test: BenchTest) -> int:
        llm = self.llm
        llm.reset()  # the next eval drops every KV cell past position 0
        if test.n_depth:
            llm.eval(synthetic_tokens(test.n_depth, self.n_vocab, 1))
        prompt = synthetic_tokens(test.n_prompt, self.n_vocab, 2)
        gen = synthetic_tokens(test.n_gen, self.n_vocab, 3)
        t0 = time.perf_counter_ns()
        if prompt:
            llm.eval(prompt)
        for tok in gen:
            llm.eval([tok])
        return time.perf_counter_ns() - t0


def _decode_bytes_of(path: Path) -> int:
    from bitnet_cli.modelfile import open_model_file

    mf = open_model_file(path)
    try:
        return decode_bytes(mf.tensors)
    finally:
        mf.close()
