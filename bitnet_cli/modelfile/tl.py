"""Decode TL1/TL2 tensors through bitnet_kernels' references, with the tile triple the writer used.

bitnet.cpp stores no tile parameters in the file; our writers pack with
`bitnet_kernels.tl_common.choose_tile_config(kind, M, K)` (bitnet.cpp's shipped triple when the shape
is listed), and reading uses the same choice.
"""
from __future__ import annotations

import numpy as np

from bitnet_cli.errors import UnsupportedModelError
from bitnet_cli.modelfile.reader import TensorRecord
from bitnet_cli.modelfile.types import GGMLType

__all__ = ["unpack_tl"]


def unpack_tl(rec: TensorRecord) -> tuple[np.ndarray, np.float32]:
    """(t int8[M, K], scale) of a TL1/TL2 tensor."""
    if rec.ggml_type not in (GGMLType.TL1, GGMLType.TL2) or len(rec.shape) != 2:
        raise UnsupportedModelError(f"tensor '{rec.name}' is not a 2-D TL1/TL2 tensor")
    kind = "tl1" if rec.ggml_type == GGMLType.TL1 else "tl2"
    M, K = rec.shape
    try:
        from bitnet_kernels.tl_common import choose_tile_config

        module = __import__(f"bitnet_kernels.{kind}", fromlist=[f"unpack_{kind}"])
        unpack = getattr(module, f"unpack_{kind}")
        c = choose_tile_config(kind, M, K)  # type: ignore[arg-type]
    except (ImportError, AttributeError):
        raise UnsupportedModelError(
            f"{kind.upper()} tensors are not supported by this build", "convert the model to i2_s"
        ) from None
    except ValueError as e:
        raise UnsupportedModelError(f"tensor '{rec.name}': {e}", "convert the model to i2_s") from None
    return unpack(rec.data, M, K, c.BM, c.BK, c.bm)
