"""Exceptions raised by lsr; each carries a message meant to be shown to the user as is."""


class LsrError(Exception):
    """Base class of every error lsr raises on purpose (bad input, bad state)."""


class DataError(LsrError, ValueError):
    """Input data is malformed; the message names the file and line when there is one."""


class IndexFormatError(LsrError):
    """An index directory is missing, damaged, or written by a newer lsr."""


class Unavailable(LsrError):
    """A part the answer needs (a shard) is down for now: retrying later may succeed."""
