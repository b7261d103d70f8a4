"""A software prefetch hint callable from Numba kernels (LLVM's ``llvm.prefetch``).

Approximate search scores the documents of a block in a row: asking for all their forward
rows before scoring the first overlaps the cache misses instead of paying them one by one
(likewise a list's summary terms before its binary searches).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from lsr.index.kernels import JIT


@intrinsic
def prefetch(typingctx, arr, i):
    """Hint that ``arr[i]`` will be read soon; no effect on results. The line goes to the outer
    caches (locality 2), not L1: a block's rows are asked for together, and pulling them all
    into L1 would evict the dense query that scoring reads for every entry."""
    if not isinstance(arr, types.Array) or not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        aryty, idxty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = context.cast(builder, args[1], idxty, types.intp)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [idx], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(2), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, i), codegen


@nb.njit(inline="always", **JIT)
def prefetch_range(arr, lo, hi):
    """Ask for every cache line of arr[lo:hi]."""
    for p in range(np.uint64(lo), np.uint64(hi), np.uint64(64 // arr.itemsize)):
        prefetch(arr, p)
