"""Write a GGUF model file with gguf's writer, streaming tensor data one tensor at a time.

gguf's `GGUFWriter` lays out the header, key/values and tensor-info table (it accepts any raw
type id, so I2_S and TL ids pass through); we then stream each tensor's bytes from its
`produce()` callback, so a 25 GB file never sits in memory. Output goes to `<path>.tmp…`,
renamed over `path` only when complete; any exception removes the temp file.
"""
from __future__ import annotations

import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import numpy as np
from gguf.constants import GGUFValueType
from gguf.gguf_writer import GGUFValue, GGUFWriter

from bitnet_cli.errors import UserError
from bitnet_cli.modelfile.types import ALIGNMENT, GGMLType, pad_to, tensor_nbytes

__all__ = ["TensorSpec", "write_model_file", "gguf_value", "ProgressFn"]

# progress(bytes_done, bytes_total, tensor_name), called after each tensor is written
ProgressFn = Callable[[int, int, str], None]

_DTYPE_OF = {
    GGUFValueType.UINT8: "<u1",
    GGUFValueType.INT8: "<i1",
    GGUFValueType.UINT16: "<u2",
    GGUFValueType.INT16: "<i2",
    GGUFValueType.UINT32: "<u4",
    GGUFValueType.INT32: "<i4",
    GGUFValueType.FLOAT32: "<f4",
    GGUFValueType.UINT64: "<u8",
    GGUFValueType.INT64: "<i8",
    GGUFValueType.FLOAT64: "<f8",
    GGUFValueType.BOOL: "?",
}
_VTYPE_OF_KIND = {"b": GGUFValueType.BOOL, "f": GGUFValueType.FLOAT32}


@dataclass(frozen=True)
class TensorSpec:
    """A tensor to write: `produce()` returns its bytes (any dtype, exactly tensor_nbytes bytes),
    as one array or as an iterable of arrays written in order (for tensors too big to hold)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLType
    produce: Callable[[], Union[np.ndarray, Iterable[np.ndarray]]]

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.ggml_type, self.shape)


def _int_type(v: int) -> GGUFValueType:
    if 0 <= v < 2**32:
        return GGUFValueType.UINT32
    if -(2**31) <= v < 0:
        return GGUFValueType.INT32
    return GGUFValueType.INT64 if v < 0 else GGUFValueType.UINT64


def _array_sub_type(value: Any) -> GGUFValueType:
    if isinstance(value, np.ndarray):
        kind = value.dtype.kind
        if kind in _VTYPE_OF_KIND:
            return GGUFValueType.FLOAT64 if value.dtype == np.float64 else _VTYPE_OF_KIND[kind]
        for vtype, dt in _DTYPE_OF.items():
            if np.dtype(dt) == value.dtype.newbyteorder("<"):
                return vtype
        raise ValueError(f"no GGUF array type for dtype {value.dtype}")
    first = value[0]
    if isinstance(first, str):
        return GGUFValueType.STRING
    if isinstance(first, bool):
        return GGUFValueType.BOOL
    if isinstance(first, int):
        return GGUFValueType.INT32
    if isinstance(first, float):
        return GGUFValueType.FLOAT32
    raise ValueError(f"no GGUF array type for {type(first).__name__}")


def gguf_value(key: str, value: Any) -> GGUFValue:
    """The GGUF typing of one metadata value (see write_model_file for the rules)."""
    vtype: GGUFValueType | None = None
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], GGUFValueType):
        value, vtype = value
    if isinstance(value, (list, np.ndarray)):
        if len(value) == 0:
            raise ValueError(f"metadata '{key}': GGUF arrays cannot be empty")
        sub = vtype if vtype not in (None, GGUFValueType.ARRAY) else _array_sub_type(value)
        return GGUFValue(value, GGUFValueType.ARRAY, sub)
    if vtype is not None:
        return GGUFValue(value, vtype)
    if isinstance(value, (bool, np.bool_)):
        return GGUFValue(bool(value), GGUFValueType.BOOL)
    if isinstance(value, (int, np.integer)):
        return GGUFValue(int(value), _int_type(int(value)))
    if isinstance(value, (float, np.floating)):
        return GGUFValue(float(value), GGUFValueType.FLOAT32)
    if isinstance(value, str):
        return GGUFValue(value, GGUFValueType.STRING)
    raise ValueError(f"metadata '{key}': cannot store a {type(value).__name__} in GGUF")


class _Writer(GGUFWriter):
    """gguf's writer with whole-array packing (one join instead of one struct call per item)."""

    def _pack_val(self, val: Any, vtype: GGUFValueType, add_vtype: bool, sub_type: GGUFValueType | None = None) -> bytes:
        if vtype != GGUFValueType.ARRAY or sub_type is None or sub_type == GGUFValueType.ARRAY:
            return super()._pack_val(val, vtype, add_vtype, sub_type)
        head = struct.pack("<IQ", sub_type, len(val))
        if add_vtype:
            head = struct.pack("<I", vtype) + head
        if sub_type == GGUFValueType.STRING:
            enc = [s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in val]
            body = b"".join(struct.pack("<Q", len(b)) + b for b in enc)
        else:
            body = np.asarray(val).astype(_DTYPE_OF[sub_type], copy=False).tobytes()
        return head + body


def _check_space(directory: Path, total: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < total:
        raise UserError(
            f"not enough disk space in {directory}: the file needs {total / 1e9:.2f} GB, {free / 1e9:.2f} GB are free",
            "free some space or write the file elsewhere",
        )


def _plan(metadata: Mapping[str, Any], tensors: Sequence[TensorSpec]) -> tuple[_Writer, int]:
    arch = metadata.get("general.architecture")
    arch = arch[0] if isinstance(arch, tuple) else arch
    if not isinstance(arch, str):
        raise ValueError("metadata needs a 'general.architecture' string")
    alignment = metadata.get("general.alignment", ALIGNMENT)
    if (alignment[0] if isinstance(alignment, tuple) else alignment) != ALIGNMENT:
        raise ValueError(f"only the default alignment {ALIGNMENT} is written, got general.alignment = {alignment}")
    w = _Writer(None, arch)
    for key, value in metadata.items():
        if key != "general.architecture":
            v = gguf_value(key, value)
            w.add_key_value(key, v.value, v.type, v.sub_type)
    total = 0
    for spec in tensors:
        try:
            nbytes = spec.nbytes
        except ValueError as e:
            raise ValueError(f"tensor '{spec.name}': {e}") from None
        # A non-uint8 dtype keeps gguf from reinterpreting the shape as a byte shape.
        raw_type: Any = int(spec.ggml_type)  # gguf's enum lacks I2_S/TL1; it writes the int as is
        w.add_tensor_info(spec.name, tuple(spec.shape), np.dtype(np.float32), nbytes, raw_dtype=raw_type)
        total += pad_to(nbytes, ALIGNMENT)
    return w, total


def _write_chunks(fout: Any, spec: TensorSpec) -> None:
    """Write what `produce()` returns: one array, or an iterable of arrays (chunks, in order)."""
    result = spec.produce()
    chunks: Iterable[np.ndarray] = [result] if isinstance(result, np.ndarray) else result
    written = 0
    for chunk in chunks:
        arr = np.ascontiguousarray(chunk)
        written += arr.nbytes
        if written > spec.nbytes:
            break
        fout.write(arr.reshape(-1).view(np.uint8))
    if written != spec.nbytes:
        got = f"more than {spec.nbytes}" if written > spec.nbytes else str(written)
        raise ValueError(f"tensor '{spec.name}': produce() gave {got} bytes, expected {spec.nbytes}")


def _stream_tensors(fout: Any, tensors: Sequence[TensorSpec], total: int, progress: ProgressFn | None) -> None:
    done = 0
    for spec in tensors:
        _write_chunks(fout, spec)  # nothing of the tensor is kept once written
        nbytes = spec.nbytes
        fout.write(b"\0" * (pad_to(nbytes, ALIGNMENT) - nbytes))
        done += pad_to(nbytes, ALIGNMENT)
        if progress is not None:
            progress(done, total, spec.name)


def write_model_file(
    path: str | Path,
    metadata: Mapping[str, Any],
    tensors: Sequence[TensorSpec],
    *,
    progress: ProgressFn | None = None,
) -> Path:
    """Write a GGUF v3 file, streaming each tensor from its `produce()`; returns the final path.

    Metadata values: str, bool, int (u32; i32 if negative; 64-bit if larger), float (f32),
    list[str], lists of int (i32) / float (f32), numpy arrays (their dtype), or `(value, GGUFValueType)`
    to choose the type (for lists and arrays: the element type). Keys keep their order, with
    `general.architecture` first.
    """
    path = Path(path)
    names = [s.name for s in tensors]
    if len(set(names)) != len(names):
        raise ValueError("duplicate tensor names")
    w, data_bytes = _plan(metadata, tensors)
    if path.is_dir():
        raise UserError(f"{path} is a folder", "give the output a file name, e.g. model.gguf")
    directory = path.parent
    if not directory.is_dir():
        raise UserError(f"the folder {directory} does not exist", "create it or choose another output path")
    _check_space(directory, data_bytes)
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f"{path.name}.tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        w.write_header_to_file(tmp)
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        assert w.fout is not None
        fout = w.fout[0]
        w.write_padding(fout, fout.tell())
        _stream_tensors(fout, tensors, data_bytes, progress)
        w.close()
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a model file is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        w.close()
        tmp.unlink(missing_ok=True)
        raise
    return path

