"""AVX2 vector intrinsics for Numba kernels, emitted as LLVM IR through `numba.extending.intrinsic`.

Vector values are ordinary Numba locals of the types below (LLVM keeps them in ymm registers).
Only compile functions that use these on a CPU with AVX2: on other CPUs LLVM aborts the process
("Cannot select") instead of raising. Importing this module is safe anywhere; callers check
`bitnet_kernels._jit.has_avx2()` before compiling. Loads and stores take a NumPy array of any
dtype and a **byte** offset; nothing is bounds-checked.

Names follow the instruction they become: `maddubs` (vpmaddubsw), `madd` (vpmaddwd),
`shuffle_bytes` (vpshufb), `sign8`/`sign16` (vpsignb/w), `prefetch` (prefetcht0).
`maddubs_at` is vpmaddubsw with its signed operand read from memory, written as inline assembly
so that LLVM can neither hoist the load into a register nor share it between rows.
"""
from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, models, register_model

__all__ = [
    "VecType", "v32i8", "v16i16", "v8i32", "v8f32", "load_v8f32", "store_v8f32", "load_f16_v8f32",
    "load_bf16_v8f32", "load_i8_v8f32", "load_f16_scalar", "zero_v8f32", "splat_v8f32", "fadd", "fmul",
    "fmadd", "hsum_v8f32", "cvt_v8i32_v8f32", "cvt_i8_part0", "cvt_i8_part1", "cvt_i8_part2", "cvt_i8_part3",
    "fsub", "srl32", "as_v8f32", "splat_v8i32", "blend_halves_v8f32",
    "load_v32i8", "load_v16i16", "load_v8i32", "load_bcast128", "store_v8i32", "store_v16i16",
    "store_v32i8", "prefetch", "zero_v32i8", "zero_v16i16", "zero_v8i32", "splat_v32i8",
    "splat_v16i16", "vadd", "vsub", "vand", "vor", "vxor", "srl16", "sll16", "srl_bytes", "sra32",
    "maddubs", "maddubs_at", "madd", "shuffle_bytes", "sign8", "sign16", "unpacklo8", "unpackhi8",
    "widen_lo16", "hsum_v8i32", "lane_v8i32", "lane_v16i16", "as_v32i8", "as_v16i16", "as_v8i32",
]


class VecType(types.Type):
    """A 256-bit vector: `n` lanes of `bits`-wide integers (kind "i") or f32 (kind "f")."""

    def __init__(self, bits: int, n: int, kind: str = "i") -> None:
        self.bits, self.n, self.kind = bits, n, kind
        super().__init__(name=f"v{n}{kind}{bits}")


v32i8 = VecType(8, 32)
v16i16 = VecType(16, 16)
v8i32 = VecType(32, 8)
v8f32 = VecType(32, 8, "f")


def _llty(vt: VecType) -> ir.VectorType:
    return ir.VectorType(ir.FloatType() if vt.kind == "f" else ir.IntType(vt.bits), vt.n)


@register_model(VecType)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):  # noqa: ANN001 - Numba's model signature
        super().__init__(dmm, fe_type, _llty(fe_type))


def _splat(builder: ir.IRBuilder, value: ir.Value, vty: ir.VectorType) -> ir.Value:
    v = builder.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, ir.Constant(vty, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), vty.count), None))


def _byte_ptr(context, builder, arrty, arr, off):  # noqa: ANN001, ANN202
    a = context.make_array(arrty)(context, builder, arr)
    base = builder.bitcast(a.data, ir.IntType(8).as_pointer())
    return builder.gep(base, [builder.sext(off, ir.IntType(64)) if off.type.width < 64 else off])


def _call(builder, name, ret, args):  # noqa: ANN001, ANN202
    fnty = ir.FunctionType(ret, [a.type for a in args])
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    return builder.call(fn, list(args))


# ---- loads, stores, prefetch ------------------------------------------------------------------

def _make_load(vt: VecType):  # noqa: ANN202
    @intrinsic
    def load(typingctx, arr, off):  # noqa: ANN001, ANN202
        if not isinstance(arr, types.Array) or not isinstance(off, types.Integer):
            return None

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            p = _byte_ptr(context, builder, sig.args[0], args[0], args[1])
            return builder.load(builder.bitcast(p, _llty(vt).as_pointer()), align=1)

        return vt(arr, off), codegen

    return load


load_v32i8 = _make_load(v32i8)
load_v16i16 = _make_load(v16i16)
load_v8i32 = _make_load(v8i32)


@intrinsic
def load_bcast128(typingctx, arr, off):  # noqa: ANN001, ANN202
    """16 bytes at `off`, repeated in both 128-bit halves (vbroadcasti128)."""
    if not isinstance(arr, types.Array) or not isinstance(off, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        p = _byte_ptr(context, builder, sig.args[0], args[0], args[1])
        t16 = ir.VectorType(ir.IntType(8), 16)
        v = builder.load(builder.bitcast(p, t16.as_pointer()), align=1)
        mask = ir.Constant(ir.VectorType(ir.IntType(32), 32), [i % 16 for i in range(32)])
        return builder.shuffle_vector(v, ir.Constant(t16, ir.Undefined), mask)

    return v32i8(arr, off), codegen


def _make_store(vt: VecType):  # noqa: ANN202
    @intrinsic
    def store(typingctx, arr, off, vec):  # noqa: ANN001, ANN202
        if not isinstance(arr, types.Array) or vec != vt:
            return None

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            p = _byte_ptr(context, builder, sig.args[0], args[0], args[1])
            builder.store(args[2], builder.bitcast(p, _llty(vt).as_pointer()), align=1)
            return context.get_dummy_value()

        return types.none(arr, off, vec), codegen

    return store


store_v32i8 = _make_store(v32i8)
store_v16i16 = _make_store(v16i16)
store_v8i32 = _make_store(v8i32)


@intrinsic
def prefetch(typingctx, arr, off):  # noqa: ANN001, ANN202
    """prefetcht0 of the cache line at byte `off` of `arr` (past the end is harmless)."""
    if not isinstance(arr, types.Array) or not isinstance(off, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        p = _byte_ptr(context, builder, sig.args[0], args[0], args[1])
        i32 = ir.IntType(32)
        _call(builder, "llvm.prefetch.p0", ir.VoidType(), [p, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(arr, off), codegen


# ---- constants ------------------------------------------------------------------------------

def _make_zero(vt: VecType):  # noqa: ANN202
    @intrinsic
    def zero(typingctx):  # noqa: ANN001, ANN202
        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            return ir.Constant(_llty(vt), None)

        return vt(), codegen

    return zero


zero_v32i8 = _make_zero(v32i8)
zero_v16i16 = _make_zero(v16i16)
zero_v8i32 = _make_zero(v8i32)


def _make_splat(vt: VecType):  # noqa: ANN202
    @intrinsic
    def splat(typingctx, x):  # noqa: ANN001, ANN202
        if not isinstance(x, types.Integer):
            return None

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            lane = ir.IntType(vt.bits)
            v = args[0]
            v = builder.trunc(v, lane) if v.type.width > vt.bits else builder.sext(v, lane) if v.type.width < vt.bits else v
            return _splat(builder, v, _llty(vt))

        return vt(x), codegen

    return splat


splat_v32i8 = _make_splat(v32i8)
splat_v16i16 = _make_splat(v16i16)


# ---- lane-wise arithmetic -------------------------------------------------------------------

def _make_binop(op: str):  # noqa: ANN202
    @intrinsic
    def binop(typingctx, a, b):  # noqa: ANN001, ANN202
        if not isinstance(a, VecType) or a != b:
            return None

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            return getattr(builder, op)(args[0], args[1])

        return a(a, b), codegen

    return binop


vadd = _make_binop("add")
vsub = _make_binop("sub")
vand = _make_binop("and_")
vor = _make_binop("or_")
vxor = _make_binop("xor")


def _make_shift(op: str, lane_bits: int):  # noqa: ANN202
    @intrinsic
    def shift(typingctx, a, n):  # noqa: ANN001, ANN202
        if not isinstance(a, VecType) or not isinstance(n, types.Integer):
            return None

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            vty = ir.VectorType(ir.IntType(lane_bits), 256 // lane_bits)
            amount = builder.trunc(args[1], ir.IntType(lane_bits)) if args[1].type.width > lane_bits else args[1]
            v = getattr(builder, op)(builder.bitcast(args[0], vty), _splat(builder, amount, vty))
            return builder.bitcast(v, _llty(sig.return_type))

        return a(a, n), codegen

    return shift


srl16 = _make_shift("lshr", 16)  # vpsrlw on 16-bit lanes (any vector type, reinterpreted)
sll16 = _make_shift("shl", 16)  # vpsllw
sra32 = _make_shift("ashr", 32)  # vpsrad


@intrinsic
def srl_bytes(typingctx, a, n):  # noqa: ANN001, ANN202
    """Per-byte logical right shift: vpsrlw then mask (the 16-bit shift leaks bits across bytes)."""
    if a != v32i8 or not isinstance(n, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        t16 = ir.VectorType(ir.IntType(16), 16)
        amount = builder.trunc(args[1], ir.IntType(16))
        v = builder.bitcast(builder.lshr(builder.bitcast(args[0], t16), _splat(builder, amount, t16)), _llty(v32i8))
        mask = builder.lshr(ir.Constant(ir.IntType(8), 0xFF), builder.trunc(args[1], ir.IntType(8)))
        return builder.and_(v, _splat(builder, mask, _llty(v32i8)))

    return v32i8(a, n), codegen


# ---- x86 AVX2 instructions ------------------------------------------------------------------

def _make_x86(name: str, ret: VecType, a_t: VecType, b_t: VecType):  # noqa: ANN202
    @intrinsic
    def op(typingctx, a, b):  # noqa: ANN001, ANN202
        if a != a_t or b != b_t:
            return None

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            return _call(builder, name, _llty(ret), args)

        return ret(a, b), codegen

    return op


maddubs = _make_x86("llvm.x86.avx2.pmadd.ub.sw", v16i16, v32i8, v32i8)  # u8 x s8 pairs -> s16 (saturating)
madd = _make_x86("llvm.x86.avx2.pmadd.wd", v8i32, v16i16, v16i16)  # s16 x s16 pairs -> s32
shuffle_bytes = _make_x86("llvm.x86.avx2.pshuf.b", v32i8, v32i8, v32i8)  # per-128-bit-lane table lookup
sign8 = _make_x86("llvm.x86.avx2.psign.b", v32i8, v32i8, v32i8)  # a * sign(b) per byte
sign16 = _make_x86("llvm.x86.avx2.psign.w", v16i16, v16i16, v16i16)


@intrinsic
def maddubs_at(typingctx, a, arr, off, disp):  # noqa: ANN001, ANN202
    """vpmaddubsw of u8 `a` with the 32 s8 bytes at byte `off + disp` of `arr` (`disp` a literal).

    One instruction with a memory operand, the same as `maddubs(a, load_v32i8(arr, off + disp))`
    but opaque to LLVM: a kernel that runs several weight rows against one activation vector
    otherwise keeps the shared activation loads in registers and runs out of them (spills).
    """
    if a != v32i8 or not isinstance(arr, types.Array) or not isinstance(disp, types.IntegerLiteral):
        return None
    d = int(disp.literal_value)

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        p = _byte_ptr(context, builder, sig.args[1], args[1], args[2])
        fnty = ir.FunctionType(_llty(v16i16), [_llty(v32i8), p.type])
        return builder.asm(fnty, f"vpmaddubsw {d}($2), $1, $0", "=x,x,r", [args[0], p], side_effect=False)

    return v16i16(a, arr, off, disp), codegen


def _make_unpack(high: bool):  # noqa: ANN202
    @intrinsic
    def unpack(typingctx, a, b):  # noqa: ANN001, ANN202
        """Interleave bytes of a and b within each 128-bit lane (vpunpcklbw / vpunpckhbw)."""
        if a != v32i8 or b != v32i8:
            return None

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            base = 8 if high else 0
            mask = []
            for lane in (0, 16):
                for i in range(8):
                    mask += [lane + base + i, 32 + lane + base + i]
            return builder.shuffle_vector(args[0], args[1], ir.Constant(ir.VectorType(ir.IntType(32), 32), mask))

        return v32i8(a, b), codegen

    return unpack


unpacklo8 = _make_unpack(False)
unpackhi8 = _make_unpack(True)


@intrinsic
def widen_lo16(typingctx, a):  # noqa: ANN001, ANN202
    """Sign-extend the 16 bytes of the low 128 bits to int16 lanes (vpmovsxbw)."""
    if a != v32i8:
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        t16 = ir.VectorType(ir.IntType(8), 16)
        lo = builder.shuffle_vector(args[0], ir.Constant(_llty(v32i8), ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), 16), list(range(16))))
        assert lo.type == t16
        return builder.sext(lo, _llty(v16i16))

    return v16i16(a), codegen


# ---- reductions and views -------------------------------------------------------------------

@intrinsic
def hsum_v8i32(typingctx, a):  # noqa: ANN001, ANN202
    """Sum of the 8 int32 lanes (wrapping), as int32."""
    if a != v8i32:
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        return _call(builder, "llvm.vector.reduce.add.v8i32", ir.IntType(32), args)

    return types.int32(a), codegen


def _make_lane(vt: VecType, ret: types.Integer):  # noqa: ANN202
    @intrinsic
    def lane(typingctx, a, i):  # noqa: ANN001, ANN202
        if a != vt or not isinstance(i, types.Integer):
            return None

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            return builder.extract_element(args[0], builder.trunc(args[1], ir.IntType(32)) if args[1].type.width > 32 else args[1])

        return ret(a, i), codegen

    return lane


lane_v8i32 = _make_lane(v8i32, types.int32)
lane_v16i16 = _make_lane(v16i16, types.int16)


def _make_view(vt: VecType):  # noqa: ANN202
    @intrinsic
    def view(typingctx, a):  # noqa: ANN001, ANN202
        """Reinterpret the 256 bits with another lane width (no instruction)."""
        if not isinstance(a, VecType):
            return None

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            return builder.bitcast(args[0], _llty(vt))

        return vt(a), codegen

    return view


as_v32i8 = _make_view(v32i8)
as_v16i16 = _make_view(v16i16)
as_v8i32 = _make_view(v8i32)


# ---- float32 vectors (dense layers: F32 / F16 / BF16 / Q8_0 / Q6_K rows) ---------------------

load_v8f32 = _make_load(v8f32)
store_v8f32 = _make_store(v8f32)
zero_v8f32 = _make_zero(v8f32)
fadd = _make_binop("fadd")
fmul = _make_binop("fmul")


def _make_widen_load(src_bits: int, how: str):  # noqa: ANN202
    @intrinsic
    def load(typingctx, arr, off):  # noqa: ANN001, ANN202
        if not isinstance(arr, types.Array) or not isinstance(off, types.Integer):
            return None

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            p = _byte_ptr(context, builder, sig.args[0], args[0], args[1])
            src = ir.VectorType(ir.IntType(src_bits), 8)
            v = builder.load(builder.bitcast(p, src.as_pointer()), align=1)
            f8 = _llty(v8f32)
            if how == "f16":  # vcvtph2ps (F16C): exact
                return builder.fpext(builder.bitcast(v, ir.VectorType(ir.HalfType(), 8)), f8)
            if how == "bf16":  # bf16 is the top half of an f32: exact
                w = builder.shl(builder.zext(v, ir.VectorType(ir.IntType(32), 8)), _splat(builder, ir.Constant(ir.IntType(32), 16), ir.VectorType(ir.IntType(32), 8)))
                return builder.bitcast(w, f8)
            return builder.sitofp(builder.sext(v, ir.VectorType(ir.IntType(32), 8)), f8)  # int8

        return v8f32(arr, off), codegen

    return load


load_f16_v8f32 = _make_widen_load(16, "f16")  # 8 f16 (16 bytes) -> 8 f32; needs F16C
load_bf16_v8f32 = _make_widen_load(16, "bf16")  # 8 bf16 (16 bytes) -> 8 f32
load_i8_v8f32 = _make_widen_load(8, "i8")  # 8 int8 (8 bytes) -> 8 f32


@intrinsic
def load_f16_scalar(typingctx, arr, off):  # noqa: ANN001, ANN202
    """One f16 at byte `off` as float32 (exact)."""
    if not isinstance(arr, types.Array) or not isinstance(off, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        p = _byte_ptr(context, builder, sig.args[0], args[0], args[1])
        h = builder.load(builder.bitcast(p, ir.HalfType().as_pointer()), align=1)
        return builder.fpext(h, ir.FloatType())

    return types.float32(arr, off), codegen


@intrinsic
def splat_v8f32(typingctx, x):  # noqa: ANN001, ANN202
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        v = args[0] if args[0].type == ir.FloatType() else builder.fptrunc(args[0], ir.FloatType())
        return _splat(builder, v, _llty(v8f32))

    return v8f32(x), codegen


@intrinsic
def fmadd(typingctx, a, b, c):  # noqa: ANN001, ANN202
    """a * b + c, fused (vfmadd)."""
    if a != v8f32 or b != v8f32 or c != v8f32:
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        return _call(builder, "llvm.fma.v8f32", _llty(v8f32), args)

    return v8f32(a, b, c), codegen


@intrinsic
def hsum_v8f32(typingctx, a):  # noqa: ANN001, ANN202
    """Sum of 8 f32 lanes in a fixed tree order: ((0+4)+(2+6)) + ((1+5)+(3+7))."""
    if a != v8f32:
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        v = args[0]
        u = ir.Constant(_llty(v8f32), ir.Undefined)

        def half(x, idx):  # noqa: ANN001, ANN202
            return builder.shuffle_vector(x, u, ir.Constant(ir.VectorType(ir.IntType(32), len(idx)), idx))

        s4 = builder.fadd(half(v, [0, 1, 2, 3]), half(v, [4, 5, 6, 7]))
        u4 = ir.Constant(s4.type, ir.Undefined)
        s2 = builder.fadd(builder.shuffle_vector(s4, u4, ir.Constant(ir.VectorType(ir.IntType(32), 2), [0, 1])),
                          builder.shuffle_vector(s4, u4, ir.Constant(ir.VectorType(ir.IntType(32), 2), [2, 3])))
        i32 = ir.IntType(32)
        return builder.fadd(builder.extract_element(s2, ir.Constant(i32, 0)), builder.extract_element(s2, ir.Constant(i32, 1)))

    return types.float32(a), codegen


@intrinsic
def cvt_v8i32_v8f32(typingctx, a):  # noqa: ANN001, ANN202
    if a != v8i32:
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        return builder.sitofp(args[0], _llty(v8f32))

    return v8f32(a), codegen


def _make_i8_part(part: int):  # noqa: ANN202
    @intrinsic
    def cvt(typingctx, a):  # noqa: ANN001, ANN202
        """Bytes 8*part .. 8*part+7 of a v32i8 as 8 f32 (sign-extended), without a memory round trip."""
        if a != v32i8:
            return None

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            mask = ir.Constant(ir.VectorType(ir.IntType(32), 8), list(range(8 * part, 8 * part + 8)))
            v = builder.shuffle_vector(args[0], ir.Constant(_llty(v32i8), ir.Undefined), mask)
            return builder.sitofp(builder.sext(v, ir.VectorType(ir.IntType(32), 8)), _llty(v8f32))

        return v8f32(a), codegen

    return cvt


cvt_i8_part0 = _make_i8_part(0)
cvt_i8_part1 = _make_i8_part(1)
cvt_i8_part2 = _make_i8_part(2)
cvt_i8_part3 = _make_i8_part(3)


fsub = _make_binop("fsub")
srl32 = _make_shift("lshr", 32)  # vpsrld
as_v8f32 = _make_view(v8f32)


@intrinsic
def splat_v8i32(typingctx, x):  # noqa: ANN001, ANN202
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        v = args[0]
        i32 = ir.IntType(32)
        v = builder.trunc(v, i32) if v.type.width > 32 else builder.sext(v, i32) if v.type.width < 32 else v
        return _splat(builder, v, _llty(v8i32))

    return v8i32(x), codegen


@intrinsic
def blend_halves_v8f32(typingctx, lo, hi):  # noqa: ANN001, ANN202
    """Lanes 0-3 from `lo`, lanes 4-7 from `hi` (vblendps)."""
    if lo != v8f32 or hi != v8f32:
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        mask = ir.Constant(ir.VectorType(ir.IntType(32), 8), [0, 1, 2, 3, 12, 13, 14, 15])
        return builder.shuffle_vector(args[0], args[1], mask)

    return v8f32(lo, hi), codegen
