"""Ternary kernel benchmark: µs per call, GB/s of weight bytes, GOPS, and % of DRAM bandwidth.

    python benchmarks/kernels.py                  # table on stdout
    python benchmarks/kernels.py -o json          # JSON on stdout
    python benchmarks/kernels.py -t 1 -n 1 --kernels i2s

One token (N=1) streams its weights from DRAM: every pass calls each of enough weight copies to
exceed the L3 (--rotate-mib), and the per-call time is the pass time over the copy count. The
copies lie back to back in one allocation, as the loader lays out a model's weights in the order
the forward pass reads them (`tune.back_to_back`). N=128
(prefill) is compute-bound and reuses one weight. The DRAM read bandwidth is measured in the same
run, with the same thread count, over a buffer far larger than the L3: one streaming pass right
before every kernel pass, so both see the same load; "%BW" is the kernel's median GB/s over the
median of those stream passes. Compile and warm-up are excluded.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable

import numpy as np

import bitnet_kernels as bk
from bitnet_kernels import params as P
from bitnet_kernels._jit import host_cpu_name, kernel_isa
from bitnet_kernels.membw import stream_read_gbs, stream_read_once
from bitnet_kernels.tune import back_to_back

SHAPES = [(2560, 2560), (640, 2560), (6912, 2560), (2560, 6912)]
Runner = Callable[[int], None]


def _i2s(isa: str, direct: bool = False) -> Callable[[np.ndarray, int, int, np.ndarray, np.ndarray, int], tuple[Runner, int]]:
    def build(t: np.ndarray, M: int, K: int, q: np.ndarray, s: np.ndarray, copies: int) -> tuple[Runner, int]:
        raw = bk.pack_i2s(t, 0.5)
        if isa == "avx2":
            ws = [bk.prepare_i2s(raw, M, K, isa=isa, out=o) for o in back_to_back(M * K // 4, copies)]
        else:  # the portable layout is built in its own arrays
            ws = [bk.prepare_i2s(raw.copy(), M, K, isa=isa) for _ in range(copies)]
        out = np.empty((q.shape[0], M), np.float32)
        if direct:  # the same kernel and parameters, without ternary_linear's Python around it
            calls = [bk.linear.kernel_call(w, q.shape[0]) for w in ws]
            return (lambda i: calls[i](q, s, out)), ws[0].nbytes
        return (lambda i: bk.ternary_linear(ws[i], q, s, out)), ws[0].nbytes

    return build


def _tl(kind: str, shared_tables: bool = False) -> Callable[..., tuple[Runner, int]]:
    def build(t: np.ndarray, M: int, K: int, q: np.ndarray, s: np.ndarray, copies: int) -> tuple[Runner, int]:
        from bitnet_kernels import tl_common

        mod = __import__(f"bitnet_kernels.{kind}", fromlist=["x"])
        c = tl_common.choose_tile_config(kind, M, K)
        raw = getattr(mod, f"pack_{kind}")(t, 0.5, c.BM, c.BK, c.bm)
        views = back_to_back(raw.nbytes, copies)
        for v in views:
            v[:] = raw
        ws = [getattr(mod, f"prepare_{kind}")(v, M, K, c.BM, c.BK, c.bm) for v in views]
        fn = getattr(mod, f"{kind}_linear")
        if shared_tables:  # built once per token and shared, as Q/K/V (or gate/up) do in the model
            tables = mod.tl2_tables(q, K, c.BK)
            return (lambda i: fn(ws[i], q, s, tables=tables)), int(raw.nbytes)
        return (lambda i: fn(ws[i], q, s)), int(raw.nbytes)

    return build


HEAD_SHAPE = (128256, 2560)  # BitNet-b1.58-2B-4T's tied embedding / LM head
HEAD_TYPES = {"head-f16": 1, "head-bf16": 30, "head-q8_0": 8, "head-q6_k": 14}


def _head(gtype: int) -> Callable[..., tuple[Runner, int]]:
    def build(t: np.ndarray, M: int, K: int, q: np.ndarray, s: np.ndarray, copies: int) -> tuple[Runner, int]:
        from bitnet_kernels.dense import row_bytes

        raw = np.random.default_rng(1).integers(0, 60, size=M * row_bytes(gtype, K), dtype=np.uint8)
        w = bk.prepare_dense(raw, gtype, (M, K))
        x = np.random.default_rng(2).standard_normal((q.shape[0], K)).astype(np.float32)
        out = np.empty((q.shape[0], M), np.float32)
        return (lambda i: bk.dense_linear(w, x, out)), w.nbytes

    return build


def kernel_table() -> dict[str, Callable[..., tuple[Runner, int]]]:
    table = {"i2s": _i2s(kernel_isa()), "i2s-direct": _i2s(kernel_isa(), direct=True)}
    if kernel_isa() == "avx2":
        table["i2s-portable"] = _i2s("portable")
    for kind in ("tl1", "tl2"):
        try:
            __import__(f"bitnet_kernels.{kind}")
            table[kind] = _tl(kind)
        except ImportError:
            pass
    if "tl2" in table and kernel_isa() == "avx2":
        table["tl2-shared"] = _tl("tl2", shared_tables=True)
    table.update({name: _head(g) for name, g in HEAD_TYPES.items()})
    return table


def _passes(run: Runner, copies: int, passes: int, between: Callable[[], None] | None = None) -> list[float]:
    for i in range(copies):  # warm-up: compile, fault pages in
        run(i)
    out = []
    for _ in range(passes):
        if between is not None:
            between()
        t0 = time.perf_counter()
        for i in range(copies):
            run(i)
        out.append((time.perf_counter() - t0) / copies)
    return out


def bench_one(build: Callable[..., tuple[Runner, int]], M: int, K: int, n: int, rotate_mib: int,
              passes: int, rng: np.random.Generator, bw: Callable[[], float] | None = None) -> dict[str, Any]:
    """Time one kernel on one shape; with `bw`, a bandwidth pass runs before every kernel pass,
    so the ratio compares the two under the same load (medians of both)."""
    t = rng.integers(-1, 2, size=(M, K), dtype=np.int8) if M * K <= 1 << 26 else None  # heads need no t
    q, s = bk.quantize_activations(rng.standard_normal((n, K)).astype(np.float32))
    copies = max(1, (rotate_mib << 20) // (M * K // 4) + 1) if n == 1 else 1
    run, nbytes = build(t, M, K, q, s, copies)
    rates: list[float] = []
    between = (lambda: rates.append(bw())) if (bw is not None and n == 1) else None
    times = _passes(run, copies, passes if n == 1 else max(3, passes // 2), between)
    best, med = min(times), float(np.median(times))
    row = {"M": M, "K": K, "N": n, "us": med * 1e6, "us_best": best * 1e6, "weight_bytes": nbytes,
           "gbs": nbytes / med / 1e9, "gbs_best": nbytes / best / 1e9, "gops": 2 * M * K * n / med / 1e9,
           "copies": copies, "pct_bw": None}
    if rates:
        row["bw_gbs"] = float(np.median(rates))
        row["pct_bw"] = 100 * row["gbs"] / row["bw_gbs"]
    return row


def run(threads: list[int], ns: list[int], kernels: list[str], rotate_mib: int, passes: int,
        progress: Callable[[str], None]) -> dict[str, Any]:
    from bitnet_kernels.tune import ensure_loaded

    ensure_loaded()  # tuned parameters (or presets) as `bitnet run` would use them
    bk.threads.ADAPTIVE.enabled = False  # time the parallel kernels themselves
    table = kernel_table()
    buf = np.empty(max(512, 2 * rotate_mib) << 17, np.uint64)
    buf[:] = np.uint64(0x9E3779B97F4A7C15)  # touch every page
    rng = np.random.default_rng(0)
    result: dict[str, Any] = {"cpu": host_cpu_name(), "isa": kernel_isa(), "tuned_entries": len(P._table),
                              "bandwidth": {}, "rows": []}
    for th in threads:
        bk.set_num_threads(th)
        bw = stream_read_gbs(th, buf)
        result["bandwidth"][th] = bw
        progress(f"DRAM read, {th} thread(s): best {bw['best']:.1f} GB/s, median {bw['median']:.1f} GB/s")
        for name in kernels:
            if name not in table:
                continue
            for M, K in [HEAD_SHAPE] if name in HEAD_TYPES else SHAPES:
                for n in [1] if name in HEAD_TYPES else ns:
                    try:
                        row = bench_one(table[name], M, K, n, rotate_mib, passes, rng,
                                        bw=lambda: stream_read_once(th, buf))
                    except Exception as e:  # noqa: BLE001 - a kernel missing a shape should not stop the run
                        progress(f"{name} {M}x{K} N={n}: skipped ({type(e).__name__}: {e})")
                        continue
                    row.update(kernel=name, threads=th)
                    result["rows"].append(row)
                    progress(f"{name} t={th} {M}x{K} N={n}: {row['us']:.1f} µs")
    return result


def format_table(res: dict[str, Any]) -> str:
    lines = [f"CPU {res['cpu']} ({res['isa']}), tuned entries: {res['tuned_entries']}"]
    for th, bw in res["bandwidth"].items():
        lines.append(f"DRAM read bandwidth, {th} thread(s): median {bw['median']:.1f} GB/s, best {bw['best']:.1f} GB/s")
    lines.append("")
    head = f"| {'kernel':<13}| thr | {'M x K':<10}| {'N':>3} | {'µs/call':>9} | {'GB/s':>6} | {'GOPS':>6} | {'BW GB/s':>7} | {'%BW':>5} |"
    lines += [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in res["rows"]:
        pct = f"{r['pct_bw']:.0f}%" if r.get("pct_bw") is not None else "-"
        bwc = f"{r['bw_gbs']:.1f}" if r.get("bw_gbs") else "-"
        lines.append(f"| {r['kernel']:<13}| {r['threads']:>3} | {str(r['M']) + 'x' + str(r['K']):<10}| {r['N']:>3} | "
                     f"{r['us']:>9.1f} | {r['gbs']:>6.2f} | {r['gops']:>6.1f} | {bwc:>7} | {pct:>5} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-t", "--threads", default=f"1,{os.cpu_count() or 1}", help="comma list (default 1,<cores>)")
    ap.add_argument("-n", "--tokens", default="1,128", help="comma list of N (default 1,128)")
    ap.add_argument("--kernels", default="i2s,i2s-direct,i2s-portable,tl1,tl2",
                    help="comma list (i2s-direct: the i2s kernel called without ternary_linear's checks "
                         "and thread dispatch; tl2-shared: TL2 with its per-token tables built once, outside "
                         "the timing); also head-f16, head-bf16, head-q8_0, head-q6_k (128256x2560, N=1)")
    ap.add_argument("--rotate-mib", type=int, default=256, help="weight copies per N=1 pass (MiB; > L3)")
    ap.add_argument("--passes", type=int, default=7)
    ap.add_argument("-o", "--output", choices=["table", "json"], default="table")
    args = ap.parse_args(argv)
    threads = sorted({int(v) for v in args.threads.split(",")})
    ns = [int(v) for v in args.tokens.split(",")]
    res = run(threads, ns, args.kernels.split(","), args.rotate_mib, args.passes,
              lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(res, indent=1) if args.output == "json" else format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
