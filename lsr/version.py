"""The package version and the on-disk format versions this lsr writes and reads."""

__version__ = "0.1.0"
