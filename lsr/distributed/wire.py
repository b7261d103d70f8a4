"""The query path's transport: one TCP connection per shard, framed as JSON plus raw arrays.

Why not Ray's actor calls: each costs ~0.6 ms of Ray's own machinery (1 shard; ~2 ms for 4 on
two cores), more than a whole search. Ray still places, restarts and addresses the shard actors
and carries writes and rare calls; every (re)started shard actor serves searches on a socket
of its own (:class:`Listener`), whose address the front asks by an ordinary actor call.

A frame is a :data:`HEADER` (magic, version, kind, byte counts), a JSON document, then the
bytes of the numpy arrays it names: ``{"$a": i}`` in the JSON stands for the i-th array, whose
dtype (of :data:`DTYPES` only) and shape lead the document. The hot pair, a plain search
(``SEARCH``) and its hits (``HITS``), is binary instead (:func:`pack_arrays`): a fixed
:data:`FIXED` struct, a dtype code and length per array, then the arrays, since JSON costs more
than the search it carries. Nothing read from a socket is unpickled; a frame that breaks these
rules raises :class:`WireError` saying how.
"""

from __future__ import annotations

import json
import math
import secrets
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from lsr.errors import LsrError

MAGIC = b"LSRw"
VERSION = 2  # 2: the binary SEARCH and HITS frames
HEADER = struct.Struct("<4sBBxxII")  # magic, version, kind, (pad), JSON bytes, array bytes
HELLO, REQUEST, REPLY, FAILED, REFUSED = 1, 2, 3, 4, 5  # FAILED: the shard's search raised; REFUSED: a bad frame
SEARCH, HITS = 6, 7  # binary frames (pack_arrays): a plain search and its hits
BINARY = frozenset({SEARCH, HITS})
KINDS = frozenset({HELLO, REQUEST, REPLY, FAILED, REFUSED, *BINARY})
DTYPES = frozenset({"<i4", "<i8", "<f4", "<f8"})
CODES = tuple(np.dtype(d) for d in ("<i4", "<i8", "<f4", "<f8", "|u1"))  # a binary frame's dtype codes
_CODE_OF = {d: i for i, d in enumerate(CODES)}
FIXED = struct.Struct("<QIHBB")  # a binary frame's sequence number, k, threads, mode, array count
MAX_BYTES = 1 << 30
ARRAY = "$a"


class WireError(LsrError):
    """A frame that is not one of this protocol's (damaged, another protocol, another version)."""


class Arrays(NamedTuple):
    """A binary frame's content (what its kind means by ``k``, ``threads``, ``mode`` and each array is the caller's)."""

    seq: int
    k: int
    threads: int
    mode: int
    arrays: list[np.ndarray]


def pack(kind: int, obj: Any) -> bytes:
    """One frame: ``obj`` (JSON values, numpy arrays and scalars) as JSON, its arrays as bytes."""
    arrays: list[np.ndarray] = []

    def default(o: Any) -> Any:
        if isinstance(o, np.ndarray):
            arrays.append(np.ascontiguousarray(o, dtype=o.dtype.newbyteorder("<")))
            return {ARRAY: len(arrays) - 1}
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(f"{type(o).__name__} does not go on the wire")

    body = json.dumps(obj, default=default, separators=(",", ":"))
    for a in arrays:
        if a.dtype.str not in DTYPES:
            raise TypeError(f"arrays of {a.dtype} do not go on the wire (only {', '.join(sorted(DTYPES))})")
    doc = json.dumps([[a.dtype.str, a.shape] for a in arrays], separators=(",", ":")) + "\n" + body
    data = doc.encode("utf-8")
    size = sum(a.nbytes for a in arrays)
    return b"".join([HEADER.pack(MAGIC, VERSION, kind, len(data), size), data, *(a.data for a in arrays)])


def pack_arrays(kind: int, seq: int, arrays: list[np.ndarray], k: int = 0, threads: int = 0, mode: int = 0) -> bytes:
    """A binary frame: the :class:`Arrays` fields, then 1-D arrays of :data:`CODES` dtypes."""
    try:
        codes = [_CODE_OF[a.dtype] for a in arrays]
    except KeyError:
        raise TypeError(f"arrays of {[str(a.dtype) for a in arrays]} do not go in a binary frame (only {CODES})") from None
    n = len(arrays)
    spec = FIXED.pack(seq, k, threads, mode, n) + struct.pack(f"<{n}B{n}I", *codes, *(a.size for a in arrays))
    arrays = [np.ascontiguousarray(a) for a in arrays]
    return b"".join([HEADER.pack(MAGIC, VERSION, kind, len(spec), sum(a.nbytes for a in arrays)), spec, *arrays])


def unpack_arrays(data: bytes | bytearray | memoryview, size: int) -> Arrays:
    """The :class:`Arrays` of a binary frame's fields ``data`` followed by ``size`` array bytes
    (the arrays are views of ``data``)."""
    try:
        seq, k, threads, mode, n = FIXED.unpack_from(data)
        at = FIXED.size + 5 * n
        if at != len(data) - size:
            raise ValueError(f"{n} arrays need {at} bytes of fields, not {len(data) - size}")
        spec = struct.unpack_from(f"<{n}B{n}I", data, FIXED.size)
        arrays = []
        for code, length in zip(spec[:n], spec[n:]):
            dtype = CODES[code]
            if at + length * dtype.itemsize > len(data):
                raise ValueError(f"array {len(arrays)} runs past the frame's {size} array bytes")
            arrays.append(np.frombuffer(data, dtype, length, at))
            at += length * dtype.itemsize
        if at != len(data):
            raise ValueError(f"{len(data) - at} array bytes left over")
    except (ValueError, IndexError, struct.error) as e:
        raise WireError(f"malformed frame: {e}") from None
    return Arrays(seq, k, threads, mode, arrays)


def unpack(data: bytes | bytearray | memoryview, size: int) -> Any:
    """The object of a frame's JSON document ``data`` followed by ``size`` array bytes."""
    view = memoryview(data)
    doc = bytes(view[:len(view) - size])
    try:
        line, body = doc.decode("utf-8").split("\n", 1)
        specs = json.loads(line)
        arrays, at = [], len(doc)
        for dtype, shape in specs:
            if dtype not in DTYPES or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise ValueError(f"array {len(arrays)}: {dtype!r} of shape {shape!r}")
            n = math.prod(shape) * np.dtype(dtype).itemsize
            if at + n > len(view):
                raise ValueError(f"array {len(arrays)} runs past the frame's {size} array bytes")
            arrays.append(np.frombuffer(view[at:at + n], dtype=dtype).reshape(shape))
            at += n
        if at != len(view):
            raise ValueError(f"{len(view) - at} array bytes left over")

        def hook(d: dict[str, Any]) -> Any:
            return arrays[d[ARRAY]] if len(d) == 1 and ARRAY in d else d

        return json.loads(body, object_hook=hook)
    except (ValueError, TypeError, IndexError, KeyError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise WireError(f"malformed frame: {e}") from None


def recv_frame(sock: socket.socket) -> tuple[int, Any]:
    """The next frame on ``sock``: (kind, object). EOFError when the peer closed the connection."""
    head = _recv(sock, HEADER.size)
    magic, version, kind, doc, size = HEADER.unpack(head)
    if magic != MAGIC:
        raise WireError(f"malformed frame: starts {bytes(head[:4])!r}, not {MAGIC!r} (not an lsr shard connection)")
    if version != VERSION:
        raise WireError(f"frame version {version}, this lsr speaks {VERSION}: run the same lsr on the front and the shards")
    if kind not in KINDS or doc + size > MAX_BYTES:
        raise WireError(f"malformed frame: kind {kind}, {doc} + {size} bytes")
    body = _recv(sock, doc + size)
    return kind, unpack_arrays(body, size) if kind in BINARY else unpack(body, size)


def _recv(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        r = sock.recv_into(view[got:])
        if not r:
            raise EOFError("the shard closed the connection")
        got += r
    return buf


def connect(address: tuple[str, int, str], timeout_s: float) -> socket.socket:
    """A connection to a shard's listener (``address``: host, port, token), introduced."""
    sock = socket.create_connection(address[:2], timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(pack(HELLO, {"token": address[2]}))
    return sock


class Listener:
    """Serves ``handle`` (request object -> reply object) and ``search`` (SEARCH frame -> HITS
    arrays) on a socket of ``host``, one thread per connection. A REQUEST frame holds [sequence
    number, request]; its REPLY (or FAILED, when ``handle`` raised) [the same number, reply (or
    the error's text)]; a SEARCH frame's HITS (or FAILED) carries its number too. A connection
    must first say the token (so that only a front that asked the actor, not whatever process
    now holds a reused port or found it, gets answers); a bad frame is answered REFUSED, with
    why, and the connection closed."""

    def __init__(self, handle: Callable[[Any], Any], search: Callable[[Arrays], list[np.ndarray]], host: str) -> None:
        self.handle, self.search = handle, search
        self.token = secrets.token_hex(16)
        self.sock = socket.create_server((host, 0))
        self.address = (host, self.sock.getsockname()[1], self.token)
        threading.Thread(target=self._accept, name="lsr-shard-listener", daemon=True).start()

    def _accept(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), name="lsr-shard-connection", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                kind, hello = recv_frame(conn)
                if kind != HELLO or not isinstance(hello, dict) or not secrets.compare_digest(str(hello.get("token")), self.token):
                    raise WireError("a connection must start with HELLO and the token the shard actor gave")
                while True:
                    kind, request = recv_frame(conn)
                    if kind == SEARCH:
                        seq = request.seq
                    elif kind == REQUEST and isinstance(request, list) and len(request) == 2:
                        seq, request = request
                    else:
                        raise WireError(f"expected a SEARCH frame or a REQUEST frame [sequence number, request], got kind {kind}")
                    try:
                        reply = pack_arrays(HITS, seq, self.search(request)) if kind == SEARCH else pack(REPLY, [seq, self.handle(request)])
                    except Exception as e:  # noqa: BLE001 - the search's own error: the front asks again through Ray for it
                        reply = pack(FAILED, [seq, f"{type(e).__name__}: {e}"])
                    conn.sendall(reply)
            except WireError as e:
                try:
                    conn.sendall(pack(REFUSED, {"error": str(e)}))
                except OSError:
                    pass
            except (EOFError, OSError):
                pass  # the front went away
