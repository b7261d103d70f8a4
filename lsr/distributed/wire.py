"""The query path's transport: one TCP connection per shard, framed as JSON plus raw arrays.

Why not Ray's actor calls: each costs ~0.6 ms of Ray's own machinery (1 shard; ~2 ms for 4 on
two cores), more than a whole search. Ray still places, restarts and addresses the shard actors
and carries writes and rare calls; every (re)started shard actor serves searches on a socket
of its own (:class:`Listener`), whose address the front asks by an ordinary actor call.

A frame is a :data:`HEADER` (magic, version, kind, byte counts), a JSON document, then the
bytes of the numpy arrays it names: ``{"$a": i}`` in the JSON stands for the i-th array, whose
dtype (of :data:`DTYPES` only) and shape lead the document. Nothing read from a socket is
unpickled; a frame that breaks these rules raises :class:`WireError` saying how.
"""

from __future__ import annotations

import json
import secrets
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from lsr.errors import LsrError

MAGIC = b"LSRw"
VERSION = 1
HEADER = struct.Struct("<4sBBxxII")  # magic, version, kind, (pad), JSON bytes, array bytes
HELLO, REQUEST, REPLY, FAILED, REFUSED = 1, 2, 3, 4, 5  # FAILED: the shard's search raised; REFUSED: a bad frame
KINDS = frozenset({HELLO, REQUEST, REPLY, FAILED, REFUSED})
DTYPES = frozenset({"<i4", "<i8", "<f4", "<f8"})
MAX_BYTES = 1 << 30
ARRAY = "$a"


class WireError(LsrError):
    """A frame that is not one of this protocol's (damaged, another protocol, another version)."""


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
            n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
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
    return kind, unpack(_recv(sock, doc + size), size)


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
    """Serves ``handle`` (request object -> reply object) on a socket of ``host``, one thread
    per connection. A REQUEST frame holds [sequence number, request]; its REPLY (or FAILED,
    when ``handle`` raised) [the same number, reply (or the error's text)]. A connection must first say the token (so that only a front that asked the
    actor, not whatever process now holds a reused port or found it, gets answers); a bad frame
    is answered REFUSED, with why, and the connection closed."""

    def __init__(self, handle: Callable[[Any], Any], host: str) -> None:
        self.handle = handle
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
                    if kind != REQUEST or not isinstance(request, list) or len(request) != 2:
                        raise WireError(f"expected a REQUEST frame [sequence number, request], got kind {kind}")
                    seq, payload = request
                    try:
                        reply = pack(REPLY, [seq, self.handle(payload)])
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
