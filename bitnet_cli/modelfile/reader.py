"""Open a GGUF model file: parse with gguf's reader, validate everything up front, map tensors.

gguf's `GGUFReader` parses the header and key/values; we take over where it would need to know
the tensor types (it rejects I2_S/TL1 and misnames TL2), and read arrays in one pass instead of
one numpy view per element, which matters for 128k-token vocabularies.
"""
from __future__ import annotations

import mmap
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np
from gguf.constants import GGUF_MAGIC, GGUFValueType
from gguf.gguf_reader import GGUFReader, ReaderField

from bitnet_cli.errors import ModelFormatError, UnsupportedModelError
from bitnet_cli.residency import POPULATE_READ, populate_in_background
from bitnet_cli.modelfile.types import FileType, GGMLType, tensor_nbytes

__all__ = ["TensorRecord", "ModelFile", "open_model_file", "BITNET_ARCHS"]

SUPPORTED_VERSIONS = (2, 3)
MAX_DIMS = 4
# Archs whose files use the fork's type ids, so ggml type 39 there is TL2, not mainline's MXFP4.
BITNET_ARCHS = ("bitnet", "bitnet-25", "bitnet-b1.58")

_NUMPY_OF = {
    GGUFValueType.UINT8: np.uint8,
    GGUFValueType.INT8: np.int8,
    GGUFValueType.UINT16: np.uint16,
    GGUFValueType.INT16: np.int16,
    GGUFValueType.UINT32: np.uint32,
    GGUFValueType.INT32: np.int32,
    GGUFValueType.FLOAT32: np.float32,
    GGUFValueType.UINT64: np.uint64,
    GGUFValueType.INT64: np.int64,
    GGUFValueType.FLOAT64: np.float64,
    GGUFValueType.BOOL: np.bool_,
}


@dataclass(frozen=True)
class TensorRecord:
    """One tensor of a model file.

    `shape` is numpy order (rows, cols) = (ne1, ne0); `offset` is the absolute byte offset in the
    file; `data` is a zero-copy uint8 view of exactly `nbytes` bytes.
    """

    name: str
    ggml_type: GGMLType
    shape: tuple[int, ...]
    offset: int
    nbytes: int
    data: np.ndarray


class _ParsedArray:
    """A whole metadata array, read at once; stands in for gguf's per-element parts."""

    def __init__(self, value: Any, nbytes: int) -> None:
        self.value = value
        self.nbytes = nbytes


class _Truncated(Exception):
    pass


class _HeaderParser(GGUFReader):
    """gguf's reader with fast whole-array parsing and without its tensor typing."""

    def __init__(self, path: Path) -> None:
        self.tensor_fields: list[ReaderField] = []
        super().__init__(path, "r")

    def _get_field_parts(self, orig_offs: int, raw_type: int) -> tuple[int, list[Any], list[int], list[GGUFValueType]]:
        if raw_type != GGUFValueType.ARRAY:
            size, parts, idxs, types = super()._get_field_parts(orig_offs, raw_type)
            # gguf's views come back short instead of failing when the file ends early
            if parts[0].size != 1 or (raw_type == GGUFValueType.STRING and parts[1].size != int(parts[0][0])):
                raise _Truncated
            return size, parts, idxs, types
        head = self._get(orig_offs, np.uint8, 12)
        if head.size < 12:
            raise _Truncated
        itype, n = struct.unpack("<IQ", head.tobytes())
        sub = GGUFValueType(itype)
        start = orig_offs + 12
        if sub == GGUFValueType.STRING:
            value, end = self._read_strings(start, n)
        elif sub in _NUMPY_OF:
            dtype = np.dtype(_NUMPY_OF[sub]).newbyteorder("<")
            end = start + n * dtype.itemsize
            if end > self.data.size:
                raise _Truncated
            value = np.asarray(self.data[start:end]).view(dtype).view(np.ndarray)
        else:  # arrays of arrays: rare, let gguf walk them element by element
            return super()._get_field_parts(orig_offs, raw_type)
        parts: list[Any] = [head[:4].view("<u4"), head[4:].view("<u8"), _ParsedArray(value, end - start)]
        return end - orig_offs, parts, [2], [GGUFValueType.ARRAY, sub]

    def _read_strings(self, pos: int, n: int) -> tuple[list[str], int]:
        mv = memoryview(self.data)
        size = self.data.size
        out: list[str] = []
        for _ in range(n):
            if pos + 8 > size:
                raise _Truncated
            (ln,) = struct.unpack_from("<Q", mv, pos)
            pos += 8
            if pos + ln > size:
                raise _Truncated
            out.append(str(mv[pos : pos + ln], "utf-8", "replace"))
            pos += ln
        return out, pos

    def _build_tensors(self, start_offs: int, fields: list[ReaderField]) -> None:
        self.tensor_fields = fields  # typed and checked by ModelFile, which knows the fork's ids


def _field_value(field: ReaderField) -> Any:
    """A metadata field as a plain Python value (numeric arrays as numpy arrays)."""
    main = field.types[0]
    last = field.parts[-1]
    if main == GGUFValueType.ARRAY:
        if isinstance(last, _ParsedArray):
            return last.value
        return field.contents()
    if main == GGUFValueType.STRING:
        return str(bytes(last), "utf-8", "replace")
    return last[0].item()


class ModelFile:
    """A validated, memory-mapped GGUF file: `metadata`, `tensors` (in file order) and `arch`."""

    def __init__(self, path: Path, parser: _HeaderParser) -> None:
        self.path = path
        self.version = int(parser.fields["GGUF.version"].parts[0][0])
        self.alignment = int(parser.alignment)
        self.data_offset = int(parser.data_offset)
        self._mmap = parser.data
        self.file_size = int(parser.data.size)
        md: dict[str, Any] = {}
        types: dict[str, tuple[GGUFValueType, GGUFValueType | None]] = {}
        for name, field in parser.fields.items():
            if name.startswith("GGUF."):
                continue
            md[name] = _field_value(field)
            types[name] = (field.types[0], field.types[-1] if field.types[0] == GGUFValueType.ARRAY else None)
        self.metadata: Mapping[str, Any] = MappingProxyType(md)
        self.metadata_types: Mapping[str, tuple[GGUFValueType, GGUFValueType | None]] = MappingProxyType(types)
        arch = md.get("general.architecture")
        if not isinstance(arch, str) or not arch:
            self._fail("has no general.architecture key", "the file is not a model file")
        self.arch: str = arch
        self.tensors: Mapping[str, TensorRecord] = MappingProxyType(self._build_tensors(parser.tensor_fields))

    def _fail(self, what: str, hint: str = "the file is damaged or not a model file; download or convert it again") -> None:
        raise ModelFormatError(f"{self.path}: {what}", hint)

    def typed_metadata(self) -> dict[str, Any]:
        """Metadata as `key -> (value, GGUFValueType)` (arrays: the element type), which
        write_model_file takes as is, so copying a file's keys keeps their exact types."""
        return {k: (v, self.metadata_types[k][1] or self.metadata_types[k][0]) for k, v in self.metadata.items()}

    @property
    def file_type(self) -> int | None:
        """`general.file_type` (see `FileType`), or None when absent."""
        ft = self.metadata.get("general.file_type")
        return None if ft is None else int(ft)

    def _type_of(self, name: str, raw: int) -> GGMLType:
        if raw not in GGMLType._value2member_map_:
            self._fail(f"tensor '{name}' has unknown ggml type id {raw}", "this file needs a newer or different runtime")
        t = GGMLType(raw)
        if t == GGMLType.TL2 and self.arch not in BITNET_ARCHS and self.file_type != FileType.MOSTLY_TL2:
            # Mainline ggml calls 39 MXFP4; only BitNet files (or TL2 file types) use the fork's TL2.
            raise UnsupportedModelError(
                f"{self.path}: tensor '{name}' is MXFP4 (ggml type 39 in mainline llama.cpp)",
                "bitnet-cli runs ternary BitNet models; use llama.cpp for this file",
            )
        return t

    def _build_tensors(self, fields: list[ReaderField]) -> dict[str, TensorRecord]:
        records: dict[str, TensorRecord] = {}
        for field in fields:
            _, name_data, n_dims, dims, raw_dtype, rel_off = field.parts
            name = str(bytes(name_data), "utf-8", "replace")
            if name in records:
                self._fail(f"tensor '{name}' appears twice")
            nd = int(n_dims[0])
            if not 1 <= nd <= MAX_DIMS or len(dims) != nd:
                self._fail(f"tensor '{name}' has {nd} dimensions")
            shape = tuple(int(d) for d in reversed(dims.tolist()))
            t = self._type_of(name, int(raw_dtype[0]))
            try:
                nbytes = tensor_nbytes(t, shape)
            except ValueError as e:
                self._fail(f"tensor '{name}': {e}")
            off = int(rel_off[0])
            if off % self.alignment:
                self._fail(f"tensor '{name}' starts at data offset {off}, not a multiple of the alignment {self.alignment}")
            start = self.data_offset + off
            if start + nbytes > self.file_size:
                self._fail(
                    f"tensor '{name}' ends at byte {start + nbytes} but the file has only {self.file_size} bytes",
                    "the file is truncated; download or convert it again",
                )
            data = self._mmap[start : start + nbytes].view(np.ndarray)
            records[name] = TensorRecord(name, t, shape, start, nbytes, data)
        self._check_overlaps(records)
        return records

    def _check_overlaps(self, records: dict[str, TensorRecord]) -> None:
        spans = sorted((r.offset, r.offset + r.nbytes, r.name) for r in records.values())
        for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
            if start < end:
                self._fail(f"tensors '{a}' and '{b}' overlap (sizes do not match their types and shapes)")

    def array(self, name: str) -> np.ndarray:
        """A typed zero-copy view of an F32/F16/BF16 tensor (BF16 as uint16), in numpy shape."""
        rec = self.tensors[name]
        dtypes = {GGMLType.F32: "<f4", GGMLType.F16: "<f2", GGMLType.BF16: "<u2"}
        if rec.ggml_type not in dtypes:
            raise UnsupportedModelError(f"tensor '{name}' has type {rec.ggml_type.name}, not a float type")
        return rec.data.view(dtypes[rec.ggml_type]).reshape(rec.shape)

    def release(self, name: str) -> None:
        """Tell the OS a tensor's mapped pages are no longer needed (after it was copied or repacked).

        They stay in the page cache but leave this process's resident set, so a weight that was
        repacked once is not counted twice. Reading the view again maps the pages back in.
        """
        mm = getattr(self._mmap, "_mmap", None)
        rec = self.tensors.get(name)
        if mm is None or rec is None or not hasattr(mm, "madvise"):
            return
        page = mmap.PAGESIZE
        start = -(-rec.offset // page) * page  # whole pages inside the tensor only
        end = (rec.offset + rec.nbytes) // page * page
        if end > start:
            mm.madvise(mmap.MADV_DONTNEED, start, end - start)

    def populate(self, names: list[str]) -> threading.Thread | None:
        """Map the named tensors' pages into this process from a background thread
        (`MADV_POPULATE_READ`, see `bitnet_cli.residency`), while the caller goes on importing
        and preparing. Returns the thread (or None where the advice does not exist)."""
        if self._mmap is None:
            return None
        base = self._mmap.ctypes.data
        spans = sorted((base + r.offset, r.nbytes) for n in names if (r := self.tensors.get(n)) is not None)
        return populate_in_background(spans, POPULATE_READ, self._mmap)

    def close(self) -> None:
        """Drop the memory map (views handed out earlier keep it alive until they go)."""
        self.tensors = MappingProxyType({})
        self._mmap = None  # type: ignore[assignment]

    def __enter__(self) -> "ModelFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ModelFile({str(self.path)!r}, arch={self.arch!r}, tensors={len(self.tensors)})"


def _check_prefix(path: Path) -> None:
    """Magic and version, read directly so these errors are specific."""
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 4 or struct.unpack("<I", head[:4])[0] != GGUF_MAGIC:
        raise ModelFormatError(
            f"{path}: not a GGUF file (starts with {head[:4]!r})",
            "pass a .gguf model file (convert checkpoints with `bitnet convert`)",
        )
    if len(head) < 8:
        raise ModelFormatError(f"{path}: the file is truncated inside the GGUF header", "download or convert it again")
    version = struct.unpack("<I", head[4:8])[0]
    if version not in SUPPORTED_VERSIONS:
        if version & 0xFFFF == 0:
            raise ModelFormatError(f"{path}: a big-endian GGUF file", "convert the model again for a little-endian machine")
        raise ModelFormatError(
            f"{path}: GGUF version {version} is not supported (supported: {', '.join(map(str, SUPPORTED_VERSIONS))})",
            "convert the model again with a current converter",
        )


def open_model_file(path: str | Path) -> ModelFile:
    """Open, validate and memory-map a GGUF model file; raises ModelFormatError with one line."""
    path = Path(path)
    if path.is_dir():
        raise ModelFormatError(f"{path} is a folder, not a model file", "pass the path of a .gguf file")
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such file", "check the path")
    _check_prefix(path)
    if path.stat().st_size == 0:
        raise ModelFormatError(f"{path}: the file is empty", "download or convert it again")
    try:
        parser = _HeaderParser(path)
    except (_Truncated, IndexError, struct.error, OverflowError, MemoryError):
        raise ModelFormatError(f"{path}: the file is truncated inside the GGUF header", "download or convert it again") from None
    except KeyError as e:
        raise ModelFormatError(f"{path}: {str(e).strip(chr(39))}", "the file is damaged; convert it again") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelFormatError(f"{path}: bad GGUF header ({e})", "the file is damaged; download or convert it again") from None
    return ModelFile(path, parser)
