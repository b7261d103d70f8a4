"""Bit fields in uint64 words, for the approximate index's summaries.

A summary entry's block id takes only as many bits as its longest list needs (4 to 10 on the
benchmark corpora, against a whole byte or two), and which entries start a summary term's run is
one bit per entry, so a term needs no stored offset: its run is found from a checkpoint by
counting set bits. Fields are little-endian across words (field i of width w is bits i*w ..
i*w + w - 1), and every array carries one word of padding so that a 64-bit window starting at
any valid position reads in bounds.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from lsr.index.kernels import JIT

_SIX = np.uint64(6)
_LOW6 = np.uint64(63)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)


@intrinsic
def popcount(typingctx, x):
    """Set bits of a uint64 (LLVM's ``ctpop``: one instruction where the CPU has it)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(x), codegen


@intrinsic
def trailing_zeros(typingctx, x):
    """Position of the lowest set bit of a non-zero uint64 (LLVM's ``cttz``)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return types.uint64(x), codegen


@nb.njit(inline="always", **JIT)
def window(words, pos):
    """The 64 bits of ``words`` from bit ``pos`` on (bit pos lowest); reads words pos // 64 and
    the one after it."""
    p = np.uint64(pos)
    i = p >> _SIX
    s = p & _LOW6
    lo = words[i] >> s
    # (hi << 1) << (63 - s) is hi << (64 - s), and 0 when s == 0 (a shift by 64 is undefined)
    return lo | ((words[i + _ONE] << _ONE) << (_LOW6 - s))


@nb.njit(inline="always", **JIT)
def field(words, i, width, mask):
    """Field i of ``width`` bits (mask = 2**width - 1)."""
    return window(words, np.uint64(i) * np.uint64(width)) & mask


@nb.njit(inline="always", **JIT)
def next_set(words, pos):
    """The first set bit at or after ``pos``; one must exist (a sentinel bit ends the array)."""
    p = np.uint64(pos)
    x = window(words, p)
    while x == _ZERO:
        p += np.uint64(64)
        x = window(words, p)
    return p + trailing_zeros(x)


@nb.njit(inline="always", **JIT)
def nth_set_after(words, pos, r):
    """The r-th (r >= 1) set bit after ``pos``; it must exist."""
    p = np.uint64(pos) + _ONE
    left = np.uint64(r)
    x = window(words, p)
    c = popcount(x)
    while c < left:
        left -= c
        p += np.uint64(64)
        x = window(words, p)
        c = popcount(x)
    for _ in range(left - _ONE):
        x &= x - _ONE  # clear the lowest set bit
    return p + trailing_zeros(x)


@nb.njit(**JIT)
def n_words(n, width):
    """Words of n fields of ``width`` bits, the padding word included."""
    return (n * width + 63) // 64 + 1


@nb.njit(**JIT)
def pack_fields(values, width):
    """values (non-negative, each < 2**width) as fields of ``width`` bits, plus a padding word."""
    n = values.shape[0]
    words = np.zeros(n_words(n, width), dtype=np.uint64)
    w = np.uint64(width)
    for i in range(n):
        p = np.uint64(i) * w
        j = p >> _SIX
        s = p & _LOW6
        v = np.uint64(values[i])
        words[j] |= v << s
        if s + w > np.uint64(64):
            words[j + _ONE] |= v >> (np.uint64(64) - s)
    return words


@nb.njit(**JIT)
def unpack_fields(words, n, width):
    """The first n fields of ``width`` bits, as int64 (``words`` must hold them and a padding word)."""
    out = np.empty(n, dtype=np.int64)
    mask = (_ONE << np.uint64(width)) - _ONE
    for i in range(n):
        out[i] = field(words, i, width, mask)
    return out


def bit_width(limit: int) -> int:
    """Bits of a field holding 0 .. limit - 1 (at least 1)."""
    return max(1, int(limit - 1).bit_length())


def pack_flags(flags: np.ndarray) -> np.ndarray:
    """A bool array as 1-bit fields (little-endian within each word), plus a padding word."""
    packed = np.packbits(np.asarray(flags, dtype=bool), bitorder="little")
    words = np.zeros(n_words(flags.shape[0], 1), dtype=np.uint64)
    words.view(np.uint8)[: packed.shape[0]] = packed
    return words


def unpack_flags(words: np.ndarray, n: int) -> np.ndarray:
    """The first n 1-bit fields of ``words`` as bools."""
    return np.unpackbits(words.view(np.uint8), count=n, bitorder="little").astype(bool)
