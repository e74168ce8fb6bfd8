"""bitnet_kernels: I2_S packing references and Numba kernels for BitNet b1.58 on CPUs.

The NumPy references (`reference.py`) define the numerics; the Numba kernels match them bit for
bit. Kernels that use AVX2 are compiled only on CPUs that have it; a portable path covers the rest.
"""
from __future__ import annotations

from .dense import DenseWeight, dense_linear, embed_rows, prepare_dense
from .attention import rope_attend, rope_attend_ref
from .activations import quantize_activations, relu2_glu_quantize, rms_norm, rms_norm_quantize
from .linear import TernaryWeight, prepare_i2s, prepare_i2s_stacked, stack_ternary, ternary_linear
from .reference import (
    i2s_nbytes,
    pack_i2s,
    quantize_activations_ref,
    rms_norm_ref,
    ternarize_absmean,
    ternarize_sign,
    ternary_linear_ref,
    unpack_i2s,
)
from ._jit import kernel_isa, user_cache_dir
from .threads import get_num_threads, set_num_threads

__all__ = [
    "user_cache_dir",
    "kernel_isa",
    "rope_attend",
    "rope_attend_ref",
    "i2s_nbytes",
    "pack_i2s",
    "unpack_i2s",
    "ternarize_absmean",
    "ternarize_sign",
    "quantize_activations_ref",
    "ternary_linear_ref",
    "rms_norm_ref",
    "quantize_activations",
    "rms_norm",
    "rms_norm_quantize",
    "relu2_glu_quantize",
    "TernaryWeight",
    "prepare_i2s",
    "prepare_i2s_stacked",
    "stack_ternary",
    "ternary_linear",
    "DenseWeight",
    "prepare_dense",
    "embed_rows",
    "dense_linear",
    "set_num_threads",
    "get_num_threads",
]
