"""HTTP API over one index (FastAPI under uvicorn); needs the ``service`` extra."""

from lsr.service.app import Limits, create_app

__all__ = ["Limits", "create_app"]
