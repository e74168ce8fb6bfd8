"""GGUF I/O: round trips, interoperability with gguf's own reader/writer, strict validation."""
from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.constants import GGUFValueType

import bitnet_kernels as K
from bitnet_cli.errors import ModelFormatError, UnsupportedModelError
from bitnet_cli.modelfile import (
    FileType,
    GGMLType,
    TensorSpec,
    open_model_file,
    tensor_nbytes,
    write_model_file,
)

RNG = np.random.default_rng(1234)
T_I2S = RNG.integers(-1, 2, size=(8, 256)).astype(np.int8)  # [M, K] ternary codes
W_F32 = RNG.standard_normal((3, 32)).astype(np.float32)
W_TQ = (RNG.integers(-1, 2, size=(2, 256)) * 0.25).astype(np.float32)


def _specs() -> list[TensorSpec]:
    return [
        TensorSpec("blk.0.attn_q.weight", (8, 256), GGMLType.I2_S, lambda: K.pack_i2s(T_I2S, 0.75)),
        TensorSpec("f32", (3, 32), GGMLType.F32, lambda: W_F32),
        TensorSpec("f16", (3, 32), GGMLType.F16, lambda: W_F32.astype(np.float16)),
        TensorSpec("bf16", (3, 32), GGMLType.BF16, lambda: (W_F32.view(np.uint32) >> 16).astype(np.uint16)),
        TensorSpec("norm", (5,), GGMLType.F32, lambda: np.ones(5, np.float32)),
        TensorSpec("tq2", (2, 256), GGMLType.TQ2_0, lambda: gguf.quants.quantize(W_TQ, gguf.GGMLQuantizationType.TQ2_0)),
        TensorSpec("tq1", (2, 256), GGMLType.TQ1_0, lambda: gguf.quants.quantize(W_TQ, gguf.GGMLQuantizationType.TQ1_0)),
    ]


METADATA = {
    "general.architecture": "bitnet-b1.58",
    "general.name": "roundtrip",
    "bitnet-b1.58.block_count": 1,
    "bitnet-b1.58.attention.layer_norm_rms_epsilon": 1e-5,
    "tokenizer.ggml.add_bos_token": True,
    "some.negative": -3,
    "some.u64": (2**40, GGUFValueType.UINT64),
    "tokenizer.ggml.tokens": ["a", "é", "<|eot_id|>"],
    "tokenizer.ggml.scores": np.array([0.0, -1.5, 2.0], np.float32),
    "tokenizer.ggml.token_type": np.array([1, 1, 3], np.int32),
    "ints": [1, 2, 3],
}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_file(tmp_path_factory.mktemp("mf") / "m.gguf", METADATA, _specs())


def test_round_trip_metadata(model_path: Path) -> None:
    mf = open_model_file(model_path)
    md = mf.metadata
    assert list(md) == list(METADATA)  # order kept, architecture first
    assert mf.arch == "bitnet-b1.58" and md["general.name"] == "roundtrip"
    assert md["bitnet-b1.58.block_count"] == 1 and md["tokenizer.ggml.add_bos_token"] is True
    assert md["bitnet-b1.58.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    assert md["some.negative"] == -3 and md["some.u64"] == 2**40
    assert md["tokenizer.ggml.tokens"] == ["a", "é", "<|eot_id|>"]
    np.testing.assert_array_equal(md["tokenizer.ggml.scores"], [0.0, -1.5, 2.0])
    np.testing.assert_array_equal(md["tokenizer.ggml.token_type"], [1, 1, 3])
    assert mf.metadata_types["bitnet-b1.58.block_count"] == (GGUFValueType.UINT32, None)
    assert mf.metadata_types["some.negative"][0] == GGUFValueType.INT32
    assert mf.metadata_types["some.u64"][0] == GGUFValueType.UINT64
    assert mf.metadata_types["tokenizer.ggml.tokens"] == (GGUFValueType.ARRAY, GGUFValueType.STRING)
    assert mf.metadata_types["ints"] == (GGUFValueType.ARRAY, GGUFValueType.INT32)


def test_round_trip_tensors(model_path: Path) -> None:
    mf = open_model_file(model_path)
    assert list(mf.tensors) == [s.name for s in _specs()]
    q = mf.tensors["blk.0.attn_q.weight"]
    assert q.ggml_type == GGMLType.I2_S and q.shape == (8, 256) and q.nbytes == 8 * 256 // 4 + 32
    assert q.data.dtype == np.uint8 and q.data.size == q.nbytes and not q.data.flags.owndata
    assert q.offset % 32 == 0
    t, scale = K.unpack_i2s(q.data, 8, 256)
    np.testing.assert_array_equal(t, T_I2S)
    assert scale == np.float32(0.75)
    np.testing.assert_array_equal(mf.array("f32"), W_F32)
    np.testing.assert_array_equal(mf.array("f16"), W_F32.astype(np.float16))
    assert mf.array("bf16").dtype == np.uint16 and mf.array("bf16").shape == (3, 32)
    assert mf.array("norm").shape == (5,)
    for name, qt in (("tq2", gguf.GGMLQuantizationType.TQ2_0), ("tq1", gguf.GGMLQuantizationType.TQ1_0)):
        rec = mf.tensors[name]
        np.testing.assert_allclose(gguf.quants.dequantize(rec.data, qt).reshape(2, 256), W_TQ, atol=1e-3)
    with pytest.raises(UnsupportedModelError):
        mf.array("tq2")


def test_gguf_reader_reads_our_float_file(tmp_path: Path) -> None:
    p = write_model_file(tmp_path / "f.gguf", {"general.architecture": "llama"}, _specs()[1:3])
    r = gguf.GGUFReader(p)
    assert [t.name for t in r.tensors] == ["f32", "f16"]
    np.testing.assert_array_equal(r.tensors[0].data, W_F32)


def test_reads_i2s_written_by_gguf_writer(tmp_path: Path) -> None:
    p = tmp_path / "other.gguf"
    w = gguf.GGUFWriter(p, "bitnet-b1.58")
    w.add_uint32("general.file_type", 40)
    # A non-uint8 view keeps gguf from treating the shape as a byte shape.
    w.add_tensor("blk.0.ffn_up.weight", K.pack_i2s(T_I2S, 2.0).view(np.int8), raw_shape=(8, 256), raw_dtype=36)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    mf = open_model_file(p)
    rec = mf.tensors["blk.0.ffn_up.weight"]
    assert rec.ggml_type == GGMLType.I2_S and rec.shape == (8, 256) and mf.file_type == FileType.MOSTLY_I2_S
    np.testing.assert_array_equal(K.unpack_i2s(rec.data, 8, 256)[0], T_I2S)


def test_official_2b4t_key_set_without_pre(tmp_path: Path) -> None:
    from bitnet_cli.dummy import official_2b4t_metadata

    md = official_2b4t_metadata(n_vocab=512)
    assert len(md) == 24 and "tokenizer.ggml.pre" not in md
    p = write_model_file(tmp_path / "o.gguf", md, [])
    mf = open_model_file(p)
    assert list(mf.metadata) == list(md)
    assert mf.metadata["general.file_type"] == 40 and mf.metadata["bitnet-b1.58.rope.freq_base"] == 5e5
    assert mf.metadata_types["tokenizer.ggml.token_type"][1] == GGUFValueType.INT32
    assert mf.metadata_types["tokenizer.ggml.add_bos_token"][0] == GGUFValueType.BOOL


@pytest.mark.parametrize(
    ("ggml_type", "shape", "nbytes"),
    [
        (GGMLType.I2_S, (2560, 2560), 2560 * 2560 // 4 + 32),
        (GGMLType.TL1, (256, 256), 256 * 256 // 4 + 32),
        (GGMLType.TL2, (2560, 2560), 1392672),  # the fork's formula, padded to 32, + 32
        (GGMLType.TQ2_0, (4, 512), 4 * 2 * 66),
        (GGMLType.TQ1_0, (4, 512), 4 * 2 * 54),
        (GGMLType.Q8_0, (4, 64), 4 * 2 * 34),
        (GGMLType.Q6_K, (2, 256), 2 * 210),
        (GGMLType.F16, (3, 5), 30),
        (GGMLType.BF16, (7,), 14),
    ],
)
def test_tensor_nbytes(ggml_type: GGMLType, shape: tuple[int, ...], nbytes: int) -> None:
    assert tensor_nbytes(ggml_type, shape) == nbytes


def test_tensor_nbytes_rejects_partial_blocks() -> None:
    with pytest.raises(ValueError, match="multiple of 256"):
        tensor_nbytes(GGMLType.TQ2_0, (4, 100))


# --- validation: every damaged file gives one ModelFormatError line -------------------------------


def _ti_pos(raw: bytes, name: str) -> int:
    """Byte position just after `name` in the tensor-info table (n_dims follows)."""
    key = struct.pack("<Q", len(name)) + name.encode()
    return raw.rindex(key) + len(key)


def _expect(path: Path, phrase: str, exc: type[Exception] = ModelFormatError) -> None:
    with pytest.raises(exc) as e:
        open_model_file(path)
    assert phrase in str(e.value) and "\n" not in str(e.value)


def _patched(tmp_path: Path, raw: bytes, pos: int, new: bytes) -> Path:
    p = tmp_path / "bad.gguf"
    p.write_bytes(raw[:pos] + new + raw[pos + len(new) :])
    return p


def test_bad_magic_version_and_empty(tmp_path: Path, model_path: Path) -> None:
    raw = model_path.read_bytes()
    _expect(_patched(tmp_path, raw, 0, b"GGML"), "not a GGUF file")
    _expect(_patched(tmp_path, raw, 4, struct.pack("<I", 9)), "version 9 is not supported")
    (tmp_path / "empty.gguf").write_bytes(b"")
    _expect(tmp_path / "empty.gguf", "not a GGUF file")
    _expect(tmp_path / "missing.gguf", "no such file")


@pytest.mark.parametrize("cut", [6, 20, 40, 300, 1500])
def test_truncated_header(tmp_path: Path, model_path: Path, cut: int) -> None:
    p = tmp_path / "cut.gguf"
    p.write_bytes(model_path.read_bytes()[:cut])
    _expect(p, "truncated")


def test_truncated_data(tmp_path: Path, model_path: Path) -> None:
    raw = model_path.read_bytes()
    p = tmp_path / "cut.gguf"
    p.write_bytes(raw[:-100])
    _expect(p, "the file has only")


def test_misaligned_and_overlapping_offsets(tmp_path: Path, model_path: Path) -> None:
    raw = model_path.read_bytes()
    pos = _ti_pos(raw, "f16") + 4 + 2 * 8 + 4  # n_dims, dims, type -> offset
    (off,) = struct.unpack_from("<Q", raw, pos)
    _expect(_patched(tmp_path, raw, pos, struct.pack("<Q", off + 4)), "not a multiple of the alignment")
    _expect(_patched(tmp_path, raw, pos, struct.pack("<Q", off - 32)), "overlap")


def test_duplicate_name_and_unknown_type(tmp_path: Path, model_path: Path) -> None:
    raw = model_path.read_bytes()
    pos = _ti_pos(raw, "tq1")
    _expect(_patched(tmp_path, raw, pos - 3, b"tq2"), "appears twice")
    _expect(_patched(tmp_path, raw, pos + 4 + 2 * 8, struct.pack("<I", 37)), "unknown ggml type id 37")
    _expect(_patched(tmp_path, raw, pos + 4, struct.pack("<Q", 100)), "multiple of 256")


def test_duplicate_metadata_key(tmp_path: Path) -> None:
    p = write_model_file(tmp_path / "k.gguf", {"general.architecture": "bitnet", "k.aa": 1, "k.ab": 2}, [])
    raw = p.read_bytes()
    _expect(_patched(tmp_path, raw, raw.index(b"k.ab"), b"k.aa"), "Duplicate k.aa")


def test_typed_metadata_copies_exact_types(tmp_path: Path, model_path: Path) -> None:
    mf = open_model_file(model_path)
    copy = open_model_file(write_model_file(tmp_path / "c.gguf", mf.typed_metadata(), []))
    assert dict(copy.metadata_types) == dict(mf.metadata_types)
    assert copy.metadata["some.u64"] == 2**40 and copy.metadata["tokenizer.ggml.tokens"] == ["a", "é", "<|eot_id|>"]


def test_type_39_is_tl2_for_bitnet_and_mxfp4_otherwise(tmp_path: Path) -> None:
    spec = [TensorSpec("w", (256, 512), GGMLType.TL2, lambda: np.zeros(tensor_nbytes(GGMLType.TL2, (256, 512)), np.uint8))]
    p = write_model_file(tmp_path / "tl2.gguf", {"general.architecture": "bitnet"}, spec)
    assert open_model_file(p).tensors["w"].ggml_type == GGMLType.TL2
    p = write_model_file(tmp_path / "mx.gguf", {"general.architecture": "gpt-oss"}, spec)
    _expect(p, "MXFP4", UnsupportedModelError)


def test_writer_leaves_nothing_behind_on_errors(tmp_path: Path) -> None:
    out = tmp_path / "out.gguf"
    out.write_bytes(b"keep me")

    def boom() -> np.ndarray:
        raise RuntimeError("producer failed")

    bad = [TensorSpec("a", (4,), GGMLType.F32, lambda: np.zeros(4, np.float32)), TensorSpec("b", (4,), GGMLType.F32, boom)]
    with pytest.raises(RuntimeError, match="producer failed"):
        write_model_file(out, {"general.architecture": "bitnet"}, bad)
    def interrupt() -> np.ndarray:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C while writing
        write_model_file(out, {"general.architecture": "bitnet"}, [TensorSpec("c", (4,), GGMLType.F32, interrupt)])
    wrong = [TensorSpec("a", (4,), GGMLType.F32, lambda: np.zeros(5, np.float32))]
    with pytest.raises(ValueError, match="expected 16"):
        write_model_file(out, {"general.architecture": "bitnet"}, wrong)
    assert out.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gguf"]


def test_writer_streams_in_order_with_progress(tmp_path: Path) -> None:
    calls: list[str] = []
    seen: list[tuple[int, int, str]] = []

    def make(name: str):
        def produce() -> np.ndarray:
            calls.append(name)
            return np.full(8, len(calls), np.float32)

        return produce

    specs = [TensorSpec(n, (8,), GGMLType.F32, make(n)) for n in ("x", "y", "z")]
    md = {"general.architecture": "bitnet"}
    p = write_model_file(tmp_path / "s.gguf", md, specs, progress=lambda d, t, n: seen.append((d, t, n)))
    assert calls == ["x", "y", "z"]
    assert seen == [(32, 96, "x"), (64, 96, "y"), (96, 96, "z")]
    np.testing.assert_array_equal(open_model_file(p).array("z"), np.full(8, 3, np.float32))


def test_writer_checks_free_space_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    from bitnet_cli.errors import UserError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(100, 90, 10))
    called = []
    spec = [TensorSpec("a", (64,), GGMLType.F32, lambda: called.append(1) or np.zeros(64, np.float32))]
    with pytest.raises(UserError, match="not enough disk space"):
        write_model_file(tmp_path / "big.gguf", {"general.architecture": "bitnet"}, spec)
    assert not called and list(tmp_path.iterdir()) == []


def test_writer_accepts_chunked_tensors(tmp_path: Path) -> None:
    big = np.arange(4 * 64, dtype=np.float32).reshape(4, 64)
    chunks = TensorSpec("big", (4, 64), GGMLType.F32, lambda: (row for row in big))  # one row at a time
    p = write_model_file(tmp_path / "c.gguf", {"general.architecture": "bitnet"}, [chunks])
    np.testing.assert_array_equal(open_model_file(p).array("big"), big)
    for rows in (big[:3], np.concatenate([big, big])):
        short = TensorSpec("big", (4, 64), GGMLType.F32, lambda rows=rows: iter(rows))
        with pytest.raises(ValueError, match="expected 1024"):
            write_model_file(tmp_path / "d.gguf", {"general.architecture": "bitnet"}, [short])
    assert sorted(q.name for q in tmp_path.iterdir()) == ["c.gguf"]
