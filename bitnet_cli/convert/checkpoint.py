"""Lazy, tensor-by-tensor access to a Hugging Face checkpoint directory (safetensors).

The safetensors header is parsed by hand so that every dtype works (numpy has no bfloat16), and
each tensor is read only when it is used, so one tensor at a time is in memory.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bitnet_cli.errors import ModelFormatError, UserError

# safetensors dtype -> numpy dtype (BF16 is kept as its raw uint16 bits)
_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor lives: file, dtype string, shape and byte range inside the data section."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int


def _read_header(path: Path) -> dict[str, TensorRef]:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise ModelFormatError(f"{path.name} is too short to be a safetensors file")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER:
                raise ModelFormatError(f"{path.name} has an implausible safetensors header ({n} bytes)")
            header = json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFormatError(f"{path.name} is not a valid safetensors file ({e})", "re-download it") from e
    size = path.stat().st_size
    refs = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        ref = TensorRef(name, path, info["dtype"], tuple(int(d) for d in info["shape"]), 8 + n + a, 8 + n + b)
        if ref.end > size:
            raise ModelFormatError(f"{path.name} is truncated (tensor '{name}' runs past the end)", "re-download it")
        refs[name] = ref
    return refs


class Checkpoint:
    """A HF model directory: `config.json` plus one or more safetensors shards.

    `get(name)` returns a float32/uint8/... numpy view; BF16 is widened to float32 on request only.
    """

    def __init__(self, src: str | Path) -> None:
        self.path = Path(src)
        if not self.path.is_dir():
            raise UserError(f"{self.path} is not a directory", "pass a Hugging Face model folder or repo id")
        cfg = self.path / "config.json"
        if not cfg.is_file():
            raise UserError(f"no config.json in {self.path}", "pass a Hugging Face model folder (config.json + *.safetensors)")
        try:
            self.config: dict[str, Any] = json.loads(cfg.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ModelFormatError(f"{cfg} is not valid JSON ({e})") from e
        self.refs: dict[str, TensorRef] = {}
        for f in self._shards():
            self.refs.update(_read_header(f))

    def _shards(self) -> list[Path]:
        index = self.path / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            files = sorted({self.path / v for v in weight_map.values()})
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise ModelFormatError(f"checkpoint shard(s) missing: {', '.join(missing[:3])}", "re-download the model")
            return files
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            hint = "this looks like a PyTorch .bin checkpoint; only safetensors is read" if any(self.path.glob("*.bin")) \
                else "download the model's *.safetensors files"
            raise UserError(f"no *.safetensors files in {self.path}", hint)
        return files

    def __contains__(self, name: str) -> bool:
        return name in self.refs

    def names(self) -> Iterator[str]:
        return iter(self.refs)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.refs[name].shape

    def dtype(self, name: str) -> str:
        return self.refs[name].dtype

    def raw(self, name: str, rows: slice | None = None) -> np.ndarray:
        """The tensor (or a range of its rows) in the stored dtype (BF16 as uint16 bits).

        Read with plain file reads, not a memory map: the pages are ours and are freed with the
        array, so converting a large checkpoint keeps the resident size at about one tensor.
        """
        ref = self.refs.get(name)
        if ref is None:
            raise ModelFormatError(f"tensor '{name}' is missing from {self.path}", "the checkpoint is incomplete")
        if ref.dtype not in _DTYPES:
            raise UnsupportedDtype(ref.dtype, name)
        dt = np.dtype(_DTYPES[ref.dtype]).newbyteorder("<")
        shape = ref.shape or (1,)
        count = int(np.prod(shape, dtype=np.int64))
        if (ref.end - ref.start) != count * dt.itemsize:
            raise ModelFormatError(f"tensor '{name}' has {ref.end - ref.start} bytes; its shape needs {count * dt.itemsize}")
        r0, r1 = (0, shape[0]) if rows is None else rows.indices(shape[0])[:2]
        row = count // shape[0] if shape[0] else 0
        n = max(r1 - r0, 0) * row
        with open(ref.file, "rb") as f:
            a = np.fromfile(f, dtype=dt, count=n, offset=ref.start + r0 * row * dt.itemsize)
        if a.size != n:
            raise ModelFormatError(f"{ref.file.name} is truncated (tensor '{name}')", "re-download it")
        out_shape = (max(r1 - r0, 0), *shape[1:]) if ref.shape else ()
        return a.reshape(out_shape)

    def float32(self, name: str, rows: slice | None = None) -> np.ndarray:
        """The tensor (or a row range of it) as float32; only that part is read."""
        return to_float32(self.raw(name, rows), self.refs[name].dtype)


class UnsupportedDtype(ModelFormatError):
    def __init__(self, dtype: str, name: str) -> None:
        super().__init__(f"tensor '{name}' has dtype {dtype}, which is not supported", "use a float or uint8 checkpoint")


def to_float32(a: np.ndarray, dtype: str) -> np.ndarray:
    """Widen a stored array to float32 (BF16 bits are shifted into the high half of a float32)."""
    if dtype == "BF16":
        return (np.asarray(a, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(a, dtype=np.float32)
