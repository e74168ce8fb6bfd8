"""GGUF model files on the `gguf` package, extended for bitnet.cpp's I2_S, TL1 and TL2 types."""
from __future__ import annotations

from gguf.constants import GGUFValueType

from bitnet_cli.modelfile.reader import BITNET_ARCHS, ModelFile, TensorRecord, open_model_file
from bitnet_cli.modelfile.types import (
    DENSE_TYPES,
    FILE_TYPE_OF,
    FLOAT_TYPES,
    TERNARY_TYPES,
    FileType,
    GGMLType,
    pad_to,
    tensor_nbytes,
    tl2_packed_nbytes,
)
from bitnet_cli.modelfile.tl import unpack_tl
from bitnet_cli.modelfile.writer import ProgressFn, TensorSpec, gguf_value, write_model_file

__all__ = [
    "BITNET_ARCHS",
    "DENSE_TYPES",
    "FILE_TYPE_OF",
    "FLOAT_TYPES",
    "TERNARY_TYPES",
    "FileType",
    "GGMLType",
    "GGUFValueType",
    "ModelFile",
    "ProgressFn",
    "TensorRecord",
    "TensorSpec",
    "gguf_value",
    "open_model_file",
    "pad_to",
    "tensor_nbytes",
    "tl2_packed_nbytes",
    "unpack_tl",
    "write_model_file",
]
