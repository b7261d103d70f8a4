"""HTTP API over one index (FastAPI under uvicorn); needs the ``service`` extra.

``create_app`` and ``Limits`` are imported on first use, so that the CLI can register
``lsr serve`` (see :mod:`lsr.service.server`) without FastAPI installed.
"""

from typing import Any

__all__ = ["Limits", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lsr.service import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
