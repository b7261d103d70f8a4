"""The registry of search modes and their knobs: the CLI flags, the REST request schema, the
evaluation harness and every validation are derived from :data:`MODES`.

The sparse modes come from :mod:`lsr.index.modes` (declared beside their kernels); the dense
modes, served by :mod:`lsr.retrieval.hybrid`, are declared here.
"""

from __future__ import annotations

from typing import Any

from lsr.errors import DataError
from lsr.index.modes import SPARSE_MODES, Knob, Mode
from lsr.retrieval.fusion import FUSIONS, NORMALIZATIONS, RRF_K

DENSE_WEIGHT = Knob("dense_weight", "linear fusion: weight of the dense score, 1 - it for the sparse one (selects linear fusion)",
                    0.5, 0.0, 1.0, per_query=True)
FUSION = Knob("fusion", "how the sparse and dense lists are fused: reciprocal rank fusion or linear interpolation",
              "rrf", choices=FUSIONS)
NORMALIZATION = Knob("normalization", "linear fusion: score normalization of each list", "minmax", choices=NORMALIZATIONS)
DEPTH = Knob("depth", "candidates taken from each side before fusing (at least k)", 100, 1, 1000, integer=True)
RRF = Knob("rrf_k", "reciprocal rank fusion's constant", RRF_K, 0, 1000)
CANDIDATES = Knob("candidates", "selective: score the dense clusters holding the sparse top N", 10, 1, 1000, integer=True)
CENTROIDS = Knob("centroids", "selective: and the N clusters whose centroids are closest to the query", 4, 0, 10_000, integer=True)
EF_SEARCH = Knob("ef_search", "dense part of kind hnsw: search beam width", None, 1, 100_000, integer=True)
NPROBE = Knob("nprobe", "dense part of kind ivf: lists probed", None, 1, 1_000_000, integer=True)

_DENSE = frozenset({"dense"})
_FUSED = (FUSION, DENSE_WEIGHT, NORMALIZATION, DEPTH, RRF)
DENSE_MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("dense", "the dense part alone (faiss)", (EF_SEARCH, NPROBE), needs=_DENSE, text_only=True),
        Mode("hybrid", "exact sparse and dense top lists, fused", (*_FUSED, EF_SEARCH, NPROBE), needs=_DENSE, text_only=True),
        Mode("selective", "hybrid, scoring densely only the clusters near the sparse hits (after CluSD)",
             (*_FUSED, CANDIDATES, CENTROIDS), needs=_DENSE, text_only=True),
    )
}
MODES: dict[str, Mode] = {**SPARSE_MODES, **DENSE_MODES}


def get_mode(name: str) -> Mode:
    """The mode called ``name``, or a ValueError listing the modes there are."""
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown mode {name!r}; modes: {', '.join(MODES)}") from None


def check_parts(mode: Mode, view: Any, where: str = "this index") -> None:
    """A clear error when an index (``view``: anything with ``parts``) lacks a part the mode
    needs; free for a mode that needs none (exact search pays it per query)."""
    if not mode.needs:
        return
    missing = sorted(mode.needs - set(view.parts))
    if missing:
        how = {"approx": "build it with `lsr index --approx` (or add it with `lsr tune`)",
               "dense": "build it with `lsr index --dense-model M`"}
        raise DataError(f"mode {mode.name!r} needs the {' and '.join(missing)} part, which {where} lacks: "
                        + "; ".join(how[m] for m in missing))


def all_knobs() -> dict[str, Knob]:
    """Every knob of every mode by name (a name means one knob wherever it appears)."""
    out: dict[str, Knob] = {}
    for mode in MODES.values():
        for knob in mode.knobs:
            if out.setdefault(knob.name, knob) is not knob:
                raise AssertionError(f"two knobs are called {knob.name!r}")
    return out
