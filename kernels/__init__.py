"""bitnet_kernels: I2_S packing references and Numba kernels for BitNet b1.58 on CPUs.

The NumPy references (`reference.py`) define the numerics; the Numba kernels match them bit for bit.
"""
from __future__ import annotations

from .reference import (
    i2s_nbytes,
    pack_i2s,
    quantize_activations_ref,
    ternarize_absmean,
    ternarize_sign,
    ternary_linear_ref,
    unpack_i2s,
)

__all__ = [
    "i2s_nbytes",
    "pack_i2s",
    "unpack_i2s",
    "ternarize_absmean",
    "ternarize_sign",
    "quantize_activations_ref",
    "ternary_linear_ref",
]
