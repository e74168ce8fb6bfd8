"""The bandwidth reference reads every word of its buffer (it would be a fast no-op otherwise)."""
from __future__ import annotations

import numpy as np

from bitnet_kernels import membw
from bitnet_kernels._jit import kernel_isa


def test_portable_stream_reads_every_word():
    buf = np.random.default_rng(0).integers(0, 2**63, size=100_003, dtype=np.uint64)
    want = np.bitwise_xor.reduce(buf[np.arange(buf.size)])
    # The chunks' xors are summed: with one chunk the result is the xor of every word.
    assert membw._stream_portable(buf, 1) == want


def test_avx2_stream_reads_every_byte():
    if kernel_isa() != "avx2":
        return  # the AVX2 module must not even be imported here; the portable test covers this CPU
    from bitnet_kernels.membw_avx2 import stream_avx2

    buf = np.random.default_rng(1).integers(0, 2**63, size=4096, dtype=np.uint64)
    lanes = buf.view(np.int32).reshape(-1, 8)  # 8 int32 lanes of a ymm register, 32 bytes a row
    want = int(np.bitwise_xor.reduce(lanes, axis=0).sum(dtype=np.int32))  # the lanes' sum wraps in int32
    assert stream_avx2(buf, 1, 2048) == want
    flipped = buf.copy()
    flipped[-1] ^= np.uint64(1)
    assert stream_avx2(flipped, 1, 2048) != want


def test_rates_are_positive():
    buf = np.ones(1 << 17, np.uint64)
    r = membw.stream_read_gbs(1, buf, passes=2)
    assert r["best"] >= r["median"] > 0
