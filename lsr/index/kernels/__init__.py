"""Numba kernels of the index, one concept a module; every kernel takes plain arrays.

All are compiled ``nopython`` (``njit``), ``nogil`` (search threads run in parallel) and
``cache=True`` (no recompiling per process), with the options in :data:`JIT`.

Numba's cache checks only a kernel's own source file, but kernels inline functions of other
modules here (the top-k heap, the binary search): after a change to one of those, cached
callers would run stale machine code. So the cache files of this package are dropped whenever
any of its sources changed (a digest of them is kept beside the cache).
"""

import hashlib
from pathlib import Path

JIT = dict(nogil=True, cache=True)


def _drop_stale_cache() -> None:
    here = Path(__file__).parent
    digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in sorted(here.glob("*.py")))).hexdigest()
    cache = here / "__pycache__"
    stamp = cache / "lsr-kernels.sources"
    try:
        if stamp.read_text() == digest:
            return
    except OSError:
        pass
    try:
        for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest)
    except OSError:
        pass  # a read-only installation: Numba then compiles in memory, as it does itself


_drop_stale_cache()
