"""Past one machine: sharded indexes built and searched on Ray (the ``distributed`` extra).

:func:`build_sharded` writes one collection per shard (documents routed by a stable hash of
their id) and a manifest; :class:`ShardedRetriever` searches them through one Ray actor per
shard and merges the per-shard top-k into the exact global top-k.
"""

from lsr.distributed.build import build_sharded
from lsr.distributed.layout import Layout, is_sharded, shard_of
from lsr.distributed.retriever import ShardedResult, ShardedRetriever, ShardsUnavailable

__all__ = ["Layout", "ShardedResult", "ShardedRetriever", "ShardsUnavailable", "build_sharded", "is_sharded", "shard_of"]
