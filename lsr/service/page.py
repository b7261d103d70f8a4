"""The search page served at ``GET /``: static HTML whose script calls ``POST /search``.

The page holds no data: every search goes through the REST API, with the ``X-API-Key`` the
user types when the server has a key, so serving the page itself needs none.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Iterable


@cache
def _template() -> str:
    return files("lsr.service").joinpath("static/search.html").read_text(encoding="utf-8")


def search_page(modes: Iterable[str], dense_modes: Iterable[str], max_explain_k: int) -> str:
    """The page, offering ``modes``; hits of ``dense_modes`` are not explained (dense scores)."""
    config = {"modes": list(modes), "dense_modes": list(dense_modes), "max_explain_k": max_explain_k}
    return _template().replace("__CONFIG__", json.dumps(config).replace("<", "\\u003c"))
