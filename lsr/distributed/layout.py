"""A sharded index on disk: one collection per shard and a manifest naming them.

``DIR/shards.json`` names the shards, their sizes and the settings; ``DIR/shard-NNN/`` is an
ordinary collection (:mod:`lsr.retrieval.collection`: ``lsr info``, ``lsr add`` and the
Retriever open it on its own); ``DIR/shard-NNN.positions.npy`` gives each row of the shard's
first segment its position in the corpus the layout was built from. A document belongs to the
shard :func:`shard_of` names, from its id alone, so that every process (the builder, the
front, a writer) routes it to the same place without asking anyone.

Why positions: an unsharded index breaks score ties by corpus order (the lower row wins). Each
shard keeps its documents in corpus order too, so per-shard top-k lists merged by (score
descending, corpus position ascending) are exactly the unsharded top-k, ties included. All
shards share one quantization step (the largest weight of the whole corpus), so a document's
score does not depend on which shard holds it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsr.errors import IndexFormatError

FORMAT = "lsr-sharded"
FORMAT_VERSION = 1
MANIFEST = "shards.json"
ROUTING = "blake2b-64(utf-8 id) mod num_shards"


def shard_of(doc_id: str, num_shards: int) -> int:
    """The shard owning ``doc_id``: a stable hash of its UTF-8 bytes (the same in every
    process and Python version, unlike ``hash``), modulo the number of shards."""
    digest = hashlib.blake2b(str(doc_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def shard_name(s: int) -> str:
    return f"shard-{s:03d}"


def is_sharded(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST).is_file()


@dataclass(frozen=True)
class Layout:
    """A sharded directory's manifest, read and checked."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def read(cls, path: str | os.PathLike) -> "Layout":
        path = Path(path)
        file = path / MANIFEST
        if not file.is_file():
            raise IndexFormatError(f"{path} is not a sharded index (no {MANIFEST})")
        try:
            manifest = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise IndexFormatError(f"{file} is damaged: {e}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise IndexFormatError(f"{file} is not an lsr sharded-index manifest")
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise IndexFormatError(f"{file} has format {version!r}, newer than this lsr reads ({FORMAT_VERSION}); upgrade lsr")
        shards = manifest.get("shards")
        if not isinstance(shards, list) or len(shards) != manifest.get("num_shards") or not shards:
            raise IndexFormatError(f"{file}: 'shards' does not list num_shards shards")
        for s, shard in enumerate(shards):
            if shard.get("name") != shard_name(s) or not (path / shard["name"]).is_dir():
                raise IndexFormatError(f"{file}: shard {s} ({shard.get('name')!r}) is missing from {path}")
        return cls(path, manifest)

    @property
    def num_shards(self) -> int:
        return int(self.manifest["num_shards"])

    @property
    def names(self) -> list[str]:
        return [s["name"] for s in self.manifest["shards"]]

    def shard_path(self, s: int) -> Path:
        return self.path / self.manifest["shards"][s]["name"]

    def positions_path(self, s: int) -> Path:
        return self.path / self.manifest["shards"][s]["positions"]


def write_manifest(out: Path, shards: list[Mapping[str, Any]], settings: Mapping[str, Any]) -> None:
    """The manifest of a layout being built in ``out`` (a temporary directory swapped in whole)."""
    from lsr.version import __version__

    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "lsr_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "routing": ROUTING, "num_shards": len(shards), "num_docs": sum(s["docs"] for s in shards),
        **settings, "shards": list(shards),
    }
    tmp = out / (MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    tmp.rename(out / MANIFEST)
