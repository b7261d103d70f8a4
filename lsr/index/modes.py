"""Search modes and their knobs, described once: every interface derives its choices from these.

A :class:`Mode` names what a search needs from an index and which knobs tune it; a
:class:`Knob` states its range, whether it is whole or a choice, and its default. The sparse
modes served by :class:`lsr.index.SparseIndex` are declared here, next to their kernels;
:mod:`lsr.retrieval.modes` adds the dense ones and holds the registry the CLI, the REST schema
and the evaluation harness are built from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

KnobValue = float | int | str


@dataclass(frozen=True)
class Knob:
    """One search-time setting: a number in ``[lo, hi]`` (``(lo, hi]`` when ``lo_open``), a
    whole number when ``integer``, or one of ``choices``. ``per_query`` knobs may also be
    given as one value per query (Python API only)."""

    name: str
    help: str
    default: KnobValue | None = None
    lo: float | None = None
    hi: float | None = None
    integer: bool = False
    lo_open: bool = False
    choices: tuple[str, ...] = ()
    per_query: bool = False

    def check(self, value: Any) -> KnobValue:
        """``value`` normalized (whole numbers as int), or a ValueError naming the knob and its rule."""
        if self.choices:
            if value not in self.choices:
                raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
            raise ValueError(f"{self.name} must be a number {self.rule()}, got {value!r}")
        if (self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)) or (self.hi is not None and value > self.hi):
            raise ValueError(f"{self.name} must be {self.rule()}, got {value!r}")
        if self.integer:
            if value != int(value):
                raise ValueError(f"{self.name} must be a whole number {self.rule()}, got {value!r}")
            return int(value)
        return float(value)

    def rule(self) -> str:
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"


@dataclass(frozen=True)
class Mode:
    """A search mode: the parts of an index it ``needs`` (``"approx"``, ``"dense"``), its knobs,
    and whether its queries must be texts (a dense encoding needs the text)."""

    name: str
    help: str
    knobs: tuple[Knob, ...] = ()
    needs: frozenset[str] = frozenset()
    text_only: bool = False

    @property
    def knob_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.knobs)

    def check_knobs(self, knobs: Mapping[str, Any]) -> dict[str, Any]:
        """The given knobs checked and normalized (defaults are not filled in)."""
        if not knobs:
            return {}
        by_name = {k.name: k for k in self.knobs}
        out: dict[str, Any] = {}
        for name, value in knobs.items():
            knob = by_name.get(name)
            if knob is None:
                raise ValueError(f"mode {self.name!r} has no knob {name!r} (its knobs: {', '.join(by_name) or 'none'})")
            if knob.per_query and isinstance(value, Sequence) and not isinstance(value, str):
                out[name] = [knob.check(v) for v in value]
            else:
                out[name] = knob.check(value)
        return out


# ---- the sparse modes (kernels in lsr.index.kernels) ----------------------------------------
BETA = Knob("beta", "fraction of the heaviest query terms kept (1 = all; BMP's query pruning)", 1.0, 0.0, 1.0, lo_open=True)
BMP_ALPHA = Knob("alpha", "block-max pruning: skip a block when alpha x its bound cannot beat the k-th score (1 = safe, exact)",
                 1.0, 0.0, 1.0, lo_open=True)
STRATEGY = Knob("strategy", "exact: how to find the top-k; auto = the planner's per-query choice (see lsr.index.planner)",
                 "auto", choices=("auto", "exhaustive", "blockmax", "superblock"))
QUERY_CUT = Knob("query_cut", "approx: walk the posting lists of this many heaviest query terms", 10, 1, 65536, integer=True)
HEAP_FACTOR = Knob("heap_factor", "approx: skip a block whose summary score is below this x the k-th score", 0.8, 0.0, 1.0)

EXACT = Mode("exact", "the true top-k of the float weights, by the cheapest safe strategy for each query "
             "(alpha < 1 or beta < 1 trade exactness for speed)", (STRATEGY, BMP_ALPHA, BETA))
EXHAUSTIVE = Mode("exhaustive", "score every matching document term-at-a-time: the reference exact search is checked against", (BETA,))
APPROX = Mode("approx", "Seismic-style clustered lists with block summaries (needs the approx structure)", (QUERY_CUT, HEAP_FACTOR),
              needs=frozenset({"approx"}))
SPARSE_MODES: dict[str, Mode] = {m.name: m for m in (EXACT, EXHAUSTIVE, APPROX)}
