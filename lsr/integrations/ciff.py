"""Export a collection as CIFF, with the weights quantized to the integer impacts CIFF carries.

Impacts are ``impact = round(weight / scale)`` (round half to even) with
``scale = max weight / (2**bits - 1)``: the largest weight of the live documents maps to 255
(``bits=8``, what BMP and PISA's quantized indexes store) or 65535 (``bits=16``); a positive
weight below half a step becomes 1, never 0, the same rule as lsr's own u8/u16 impacts, so an
index built with ``--quantization u8`` exports exactly the impacts it scores with. The scale,
the query encoder and its settings go into the header's description as one JSON line, which
``lsr index --ciff`` reads back: a round trip keeps the impacts and the query encoder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from lsr.data.ciff import META_PREFIX, write_ciff
from lsr.data.vectors import SparseVectors
from lsr.index.build import quantization_scale, quantize
from lsr.retrieval.collection import Collection
from lsr.version import __version__

BITS = {8: np.uint8, 16: np.uint16}


def export_ciff(index: str | os.PathLike, out: str | os.PathLike, *, bits: int = 8) -> dict[str, Any]:
    """Write the live documents of the collection (or index) ``index`` to the CIFF file ``out``;
    returns what was written (documents, terms, postings, scale, bits)."""
    if bits not in BITS:
        raise ValueError(f"bits must be one of {sorted(BITS)}, got {bits}")
    with Collection.open(index) as collection:
        snapshot = collection.snapshot()
        ids, weights = snapshot.live_vectors()
        model, encoder = collection.settings.get("model"), collection.settings.get("encoder") or {}
    dtype = BITS[bits]
    scale = quantization_scale(float(weights.values.max()) if weights.nnz else 0.0, dtype)
    impacts = SparseVectors(weights.indptr, weights.indices, quantize(weights.values, scale, dtype), weights.vocab)
    meta = {"scale": scale, "bits": bits, "model": model, "encoder": encoder, "lsr_version": __version__}
    description = (f"lsr {__version__} export of {Path(index).name}: learned sparse impacts, "
                   f"tf = round(weight / {scale:.9g}), {bits}-bit; query encoder {model or 'none'}\n"
                   f"{META_PREFIX}{json.dumps(meta, sort_keys=True)}")
    header = write_ciff(out, ids, impacts, description=description)
    return {"path": str(out), "docs": header.num_doc_records, "terms": header.num_postings_lists,
            "postings": int(np.count_nonzero(impacts.values)), "scale": scale, "bits": bits, "model": model}
