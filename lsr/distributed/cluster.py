"""Connecting to Ray, which is optional (the ``distributed`` extra)."""

from __future__ import annotations

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
    (``HOST:PORT`` or ``ray://HOST:PORT``). A process already connected stays as it is."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    try:
        if address in (None, "local"):
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     _node_ip_address="127.0.0.1")
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except ConnectionError as e:
        raise LsrError(f"cannot reach a Ray cluster at {address!r}: {e}") from None
    return ray
