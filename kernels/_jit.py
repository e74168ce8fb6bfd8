"""Numba set-up shared by every kernel module: LLVM options, the cache directory, ISA selection.

Import this module before defining any kernel. It sets LLVM's `-vectorizer-maximize-bandwidth`
(plain-Numba int16 loops then vectorize at full ymm width), and gives this package's Numba cache
a directory of its own, because Numba's cache key does not include LLVM options.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import llvmlite.binding as llb
import numba

_LLVM_OPTIONS = ("-vectorizer-maximize-bandwidth",)
_options_set = False


def ensure_llvm_options() -> None:
    """Set this package's LLVM options once per process (before the first compile)."""
    global _options_set
    if not _options_set:
        for opt in _LLVM_OPTIONS:
            llb.set_option("", opt)
        llb.initialize_native_asmparser()  # `simd.maddubs_at` is inline assembly
        _options_set = True


def user_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/bitnet-cli` (or ~/.cache/bitnet-cli); `BITNET_CACHE_DIR` overrides it."""
    override = os.environ.get("BITNET_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bitnet-cli"


def _source_digest() -> str:
    # Numba invalidates a cached function when its own file changes, not when a file it calls
    # into does (simd.py, say): keying the folder by all kernel sources covers both.
    h = hashlib.sha1()
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def numba_cache_dir() -> Path:
    """Where this package's compiled kernels are cached: apart from other Numba caches, one
    folder per version of the kernel sources."""
    global _cache_dir
    if _cache_dir is None:
        _cache_dir = user_cache_dir() / "numba" / _source_digest()
    return _cache_dir


_cache_dir: Path | None = None


@contextlib.contextmanager
def _cache_dir_for_decoration() -> Iterator[None]:
    # Numba picks a function's cache locator when it is decorated, from config.CACHE_DIR;
    # setting it only around our decorations leaves every other Numba user untouched.
    old = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = str(numba_cache_dir())
    try:
        yield
    finally:
        numba.config.CACHE_DIR = old


def kernel(*, parallel: bool = False, **kwargs: Any) -> Callable[[Callable], Any]:
    """`numba.njit(cache=True, error_model="numpy")` with this package's cache directory."""
    ensure_llvm_options()

    def deco(fn: Callable) -> Any:
        with _cache_dir_for_decoration():
            return numba.njit(cache=True, parallel=parallel, error_model="numpy", **kwargs)(fn)

    return deco


def host_features() -> dict[str, bool]:
    """The host CPU's feature flags as LLVM (and so Numba) sees them."""
    return dict(llb.get_host_cpu_features())


def host_cpu_name() -> str:
    return llb.get_host_cpu_name()


def kernel_isa() -> str:
    """Which kernel family to run: "avx2" or "portable".

    `BITNET_KERNELS=portable` forces the plain-Numba kernels; `BITNET_KERNELS=avx2` asks for AVX2
    but still falls back when the CPU lacks it (AVX2 code would abort inside LLVM, not raise).
    """
    want = os.environ.get("BITNET_KERNELS", "auto").strip().lower()
    if want == "portable":
        return "portable"
    return "avx2" if has_avx2() else "portable"


def has_avx2() -> bool:
    return bool(host_features().get("avx2", False))


ensure_llvm_options()
