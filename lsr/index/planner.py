"""Per-query choice of the exact-search strategy.

Every strategy returns the same exact top-k; only its cost differs, and which is cheapest
depends on the query. The planner runs inside the kernels, per query (see
:func:`lsr.index.kernels.exact.search_one`): it prices exhaustive search by the query's
posting lengths and superblock search by its bounds, then by the blocks whose bounds still
reach the k-th score once a few have been scored, and runs the cheaper. Here are the names.
"""

from __future__ import annotations

import numpy as np

from lsr.index.kernels.exact import AUTO, BLOCKMAX, EXHAUSTIVE, SUPERBLOCK

STRATEGIES = ("exhaustive", "blockmax", "superblock")
CODES = {"exhaustive": EXHAUSTIVE, "blockmax": BLOCKMAX, "superblock": SUPERBLOCK, "auto": AUTO}


def plan(n_queries: int, strategy: str = "auto") -> np.ndarray:
    """The strategy codes the exact kernels take, one per query (AUTO: the kernel's planner
    chooses; the kernels write back the strategy each query used)."""
    return np.full(n_queries, CODES[strategy], dtype=np.int8)
