"""HTTP API over one index (FastAPI under uvicorn).

``create_app`` and ``Limits`` are imported on first use, so that the CLI starts without
loading FastAPI (see :mod:`lsr.service.server`).
"""

from typing import Any

__all__ = ["Limits", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lsr.service import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
