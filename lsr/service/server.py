"""``lsr serve``: the HTTP API under uvicorn, with the index loaded once per worker process.

FastAPI and uvicorn are imported only when serving, so that every other command starts
without loading them.
"""

import argparse
import copy
import ipaddress
import json
import logging
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

from lsr.errors import LsrError
from lsr.index import SparseIndex
from lsr.retrieval.collection import Collection

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("lsr.service")

# Workers are spawned, not forked, so they learn what to serve from the environment.
_CONFIG_ENV = "LSR_SERVE_CONFIG"
_OPENER: Callable[[], Any] | None = None  # serve(opener=...): one in-process worker opens the index with it
API_KEY_ENV = "LSR_API_KEY"


def app_factory() -> "FastAPI":
    """The app of one worker process (uvicorn calls this in each); the index loads at its startup."""
    from lsr.service.app import create_app

    from lsr.service.app import Limits

    config = json.loads(os.environ[_CONFIG_ENV])
    return create_app(
        _OPENER() if _OPENER is not None else config["index"],
        api_key=os.environ.get(API_KEY_ENV) or None,
        public_reads=config["public_reads"],
        cors_origins=config["cors_origins"],
        writable=config["writable"],
        limits=Limits(**config["limits"]),
        systems=config.get("systems") or {},
    )


def serve(
    index_dir: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    *,
    public_reads: bool = False,
    cors_origins: Sequence[str] = (),
    log_level: str = "info",
    access_log: bool = True,
    writable: bool = False,
    limits: dict | None = None,
    verify: bool = True,
    systems: dict[str, str] | None = None,
    opener: Callable[[], Any] | None = None,
) -> None:
    """Serve ``index_dir`` until SIGINT/SIGTERM; ``workers`` > 1 runs that many processes.

    ``writable`` serves a collection's write endpoints from one process (the one writer);
    without an API key it binds only to loopback. ``limits`` are fields of
    :class:`lsr.service.app.Limits` (queue, micro-batching, commit policy); ``systems`` more
    index directories by name, for ``POST /search/fused``. ``opener`` (a function returning a
    Retriever, e.g. a sharded index's) opens the index instead, in this one process, and
    checks it itself. The API key, if any, is read from
    ``LSR_API_KEY`` (kept out of argv, where ``ps`` shows it).
    """
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    path = Path(index_dir).resolve()
    global _OPENER
    _OPENER = opener
    if opener is not None:
        if workers != 1 or writable:
            raise LsrError("a sharded index is served by one process whose shard actors do the work: --workers 1, not --writable")
    else:
        with Collection.open(path) as collection:  # a bad directory fails here, once, with lsr's message
            if verify:  # every file against its checksum: damage the structural checks cannot see (weights)
                for segment in collection.snapshot().indexes:
                    SparseIndex.load(segment.path, verify=True)
            else:
                log.warning("serving %s without verifying its checksums (--no-verify)", path)
    for other in (systems or {}).values():
        Collection.open(other).close()  # each --system index fails here too, not in a worker
    keyless = not os.environ.get(API_KEY_ENV)
    if writable:
        if keyless and not _is_loopback(host):
            raise LsrError(f"refusing to serve writes on {host} without an API key: set {API_KEY_ENV}, or bind to 127.0.0.1")
        if workers != 1:
            raise LsrError("a writable collection has one writer: serve it with --workers 1")
    elif keyless and not _is_loopback(host):
        log.warning("serving on %s without an API key: anyone who can reach it can query the index (set %s)", host, API_KEY_ENV)
    os.environ[_CONFIG_ENV] = json.dumps({"index": str(path), "public_reads": public_reads, "cors_origins": list(cors_origins),
                                          "writable": writable, "limits": dict(limits or {}),
                                          "systems": {n: str(Path(d).resolve()) for n, d in (systems or {}).items()}})
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"]["lsr"] = {"handlers": ["default"], "level": log_level.upper(), "propagate": False}
    with mock.patch.object(uvicorn.Config, "bind_socket", _bind_socket_nodelay(uvicorn.Config.bind_socket)):
        uvicorn.run(
            "lsr.service.server:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            log_config=log_config,
            access_log=access_log,
            # A spawned worker answers the supervisor's pings only once torch, numba and the app
            # are imported, which takes longer than uvicorn's 5 s default on a busy machine.
            timeout_worker_healthcheck=60,
        )


def _bind_socket_nodelay(bind_socket: Callable[[Any], socket.socket]) -> Callable[[Any], socket.socket]:
    """uvicorn's ``Config.bind_socket``, plus TCP_NODELAY on the listening socket.

    With several workers uvicorn binds the socket itself, with protocol 0, so asyncio does not
    set TCP_NODELAY on the connections it accepts (https://github.com/Kludex/uvicorn/issues/3149):
    Nagle's algorithm then holds each response body until the client's delayed ACK, ~40 ms
    per request. Linux passes the option from the listening socket to accepted ones.
    """

    def bind(config: Any) -> socket.socket:
        sock = bind_socket(config)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    return bind


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory (see `lsr index`)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    p.add_argument("--workers", type=int, default=1, help="worker processes, each with its own memory-mapped index (default: %(default)s)")
    p.add_argument("--public-reads", action="store_true", help=f"with {API_KEY_ENV} set, still let anyone search, encode and read stats")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", help="allow browser calls from ORIGIN (repeatable; CORS is off by default)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip checking every index file against its checksum at start (for huge indexes; damage then goes unseen)")
    p.add_argument("--writable", action="store_true", help="serve the collection's write endpoints (one process; needs a key off loopback)")
    p.add_argument("--commit-docs", type=int, default=1000, help="writable: commit once this many changes are buffered")
    p.add_argument("--commit-ms", type=int, default=1000, help="writable: commit buffered changes after at most this many ms")
    p.add_argument("--queue-depth", type=int, default=64, help="requests that may wait for a worker; more get 503 + Retry-After")
    p.add_argument("--queue-timeout-ms", type=int, default=2000, help="a request waiting longer for a worker gets 503")
    p.add_argument("--batch-max", type=int, default=32, help="text queries encoded in one model call, at most")
    p.add_argument("--batch-wait-ms", type=float, default=2.0, help="how long a text query waits to share an encoding call (0: off)")
    p.add_argument("--system", action="append", default=[], metavar="NAME=DIR",
                   help="another index (e.g. bm25=indexes/x-bm25) that POST /search/fused can fuse with this one as NAME (repeatable)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--no-access-log", dest="access_log", action="store_false", help="do not log every request")


def add_serve_parser(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    """Register ``serve`` on the CLI's subcommands, dispatched to :func:`run_serve` via ``func``."""
    p = subparsers.add_parser(
        "serve",
        help="serve an index over HTTP (FastAPI under uvicorn)",
        description=f"Serve an index over HTTP. Set {API_KEY_ENV} to require an X-API-Key header.",
    )
    _add_arguments(p)
    p.set_defaults(func=run_serve)
    return p


def _named(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path or name == "main":
        raise ValueError(f"--system {text!r}: expected NAME=DIR (NAME not 'main': that is --index)")
    return name, path


def run_serve(args: argparse.Namespace, opener: Callable[[], Any] | None = None) -> int:
    serve(
        args.index, args.host, args.port, args.workers,
        public_reads=args.public_reads, cors_origins=args.cors_origin, log_level=args.log_level, access_log=args.access_log,
        writable=args.writable, verify=args.verify, systems=dict(_named(s) for s in args.system), opener=opener,
        limits={name: getattr(args, name) for name in ("commit_docs", "commit_ms", "queue_depth", "queue_timeout_ms", "batch_max", "batch_wait_ms")},
    )
    return 0

