"""Connecting to Ray, which is optional (the ``distributed`` extra)."""

from __future__ import annotations

import os
from types import ModuleType

from lsr.errors import LsrError


def ray_module() -> ModuleType:
    """The ``ray`` package, or one clear error saying how to get it."""
    try:
        import ray
    except ImportError:
        raise LsrError("Ray is not installed: pip install 'lsr[distributed]' (or pip install ray)") from None
    return ray


def connect(address: str | None = "local", *, num_cpus: int | None = None) -> ModuleType:
    """Ray, connected: ``local`` (or None) starts a private cluster on this machine (loopback, no dashboard),
    ``auto`` joins the cluster this machine belongs to, anything else is a cluster address
    (``HOST:PORT`` or ``ray://HOST:PORT``; start its nodes with ``RAY_worker_niceness=0`` so that
    shard actors are not deprioritized). A process already connected stays as it is."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    try:
        if address in (None, "local"):
            # Ray runs its workers at niceness 15 (background work); shard actors serve queries, so
            # a private cluster runs them at the priority of the process that started it.
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     _node_ip_address="127.0.0.1")
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except ConnectionError as e:
        raise LsrError(f"cannot reach a Ray cluster at {address!r}: {e}") from None
    return ray
