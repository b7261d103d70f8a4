"""Text encoders producing sparse term weights."""

from lsr.encoders.models import DEFAULT_SPLADE, SPLADE_TINY, resolve_model
from lsr.encoders.splade import SpladeEncoder

__all__ = ["DEFAULT_SPLADE", "SPLADE_TINY", "SpladeEncoder", "resolve_model"]
