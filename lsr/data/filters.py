"""Metadata filters: a small JSON language compiled to one boolean mask per segment.

``{"year": {"gte": 2000, "lt": 2010}}``, ``{"lang": "en"}`` (equality), ``{"tag": {"in": ["a",
"b"]}}``, ``{"reviewed": true}``, ``{"and": [...]}``, ``{"or": [...]}``, ``{"not": {...}}``;
several keys in one object must all hold. Field names may be dotted paths into nested objects.
A document lacking the field matches no comparison (``ne`` and ``nin`` included, as in SQL),
and ``{"exists": true|false}`` tests presence. A list value matches when any element does.
Booleans are not numbers here (``true`` does not equal ``1``), as in JSON.

Masks are computed over columns built once per segment (segments are immutable), so a filter
costs vectorized comparisons, not a database query per search.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from lsr.errors import DataError

COMPARISONS = ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists")
LOGICAL = ("and", "or", "not")
_RANGES = {"gt": np.greater, "gte": np.greater_equal, "lt": np.less, "lte": np.less_equal}
_MISSING = object()


def check_filter(flt: Any, where: str = "filter") -> dict[str, Any]:
    """``flt`` checked (a clear DataError naming the place of the first mistake) and returned."""
    if not isinstance(flt, Mapping) or not flt:
        raise DataError(f"{where}: a filter is a non-empty JSON object, got {json.dumps(flt)[:80]}")
    for key, value in flt.items():
        here = f"{where}.{key}"
        if key in ("and", "or"):
            if not isinstance(value, list) or not value:
                raise DataError(f"{here}: takes a non-empty list of filters")
            for i, sub in enumerate(value):
                check_filter(sub, f"{here}[{i}]")
        elif key == "not":
            check_filter(value, here)
        elif not isinstance(key, str) or not key or key.startswith("."):
            raise DataError(f"{here}: a field name must be a non-empty string")
        elif isinstance(value, Mapping):
            if not value:
                raise DataError(f"{here}: an empty condition")
            for op, arg in value.items():
                _check_comparison(op, arg, f"{here}.{op}")
        else:
            _check_scalar(value, here)
    return dict(flt)


def _check_comparison(op: str, arg: Any, where: str) -> None:
    if op not in COMPARISONS:
        raise DataError(f"{where}: unknown operator (operators: {', '.join(COMPARISONS)})")
    if op in ("in", "nin"):
        if not isinstance(arg, list):
            raise DataError(f"{where}: takes a list of values")
        for v in arg:
            _check_scalar(v, where)
    elif op in _RANGES:
        if isinstance(arg, bool) or not isinstance(arg, (int, float)) or not _finite(arg):
            raise DataError(f"{where}: takes a finite number, got {json.dumps(arg)}")
    elif op == "exists":
        if not isinstance(arg, bool):
            raise DataError(f"{where}: takes true or false")
    else:
        _check_scalar(arg, where)


def _check_scalar(value: Any, where: str) -> None:
    if not (value is None or isinstance(value, (str, bool)) or isinstance(value, (int, float)) and _finite(value)):
        raise DataError(f"{where}: compares with a string, number, boolean or null, got {json.dumps(value)[:80]}")


def _finite(x: int | float) -> bool:
    """A finite float64: an integer too large for one (JSON allows it) is not."""
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


class Columns:
    """The metadata of one segment's rows as typed columns, built per field on first use."""

    def __init__(self, rows: Iterable[tuple[int, Mapping[str, Any]]], n_rows: int) -> None:
        self.n_rows = n_rows
        self._meta: list[Mapping[str, Any]] = [{} for _ in range(n_rows)]
        for row, meta in rows:
            self._meta[row] = meta
        self._fields: dict[str, dict[str, np.ndarray]] = {}

    def field(self, name: str) -> dict[str, np.ndarray]:
        """Typed views of one field: ``present``, ``num`` (NaN unless a number), ``str``
        (object, None unless a string), ``bool`` (-1 unless a boolean), ``lists`` (rows
        holding a list)."""
        cached = self._fields.get(name)
        if cached is not None:
            return cached
        path = name.split(".")
        present = np.zeros(self.n_rows, bool)
        num = np.full(self.n_rows, np.nan)
        strs = np.full(self.n_rows, None, dtype=object)
        bools = np.full(self.n_rows, -1, np.int8)
        lists: dict[int, list] = {}
        for r, meta in enumerate(self._meta):
            v: Any = meta
            for part in path:
                v = v.get(part, _MISSING) if isinstance(v, Mapping) else _MISSING
            if v is _MISSING or v is None:
                continue
            present[r] = True
            if isinstance(v, bool):
                bools[r] = v
            elif isinstance(v, (int, float)):
                num[r] = v
            elif isinstance(v, str):
                strs[r] = v
            elif isinstance(v, list):
                lists[r] = v
        cached = {"present": present, "num": num, "str": strs, "bool": bools, "lists": lists}  # type: ignore[dict-item]
        self._fields[name] = cached
        return cached


def evaluate(flt: Mapping[str, Any], columns: Columns) -> np.ndarray:
    """Boolean mask of the rows matching a checked filter."""
    mask = np.ones(columns.n_rows, bool)
    for key, value in flt.items():
        if key == "and":
            for sub in value:
                mask &= evaluate(sub, columns)
        elif key == "or":
            any_of = np.zeros(columns.n_rows, bool)
            for sub in value:
                any_of |= evaluate(sub, columns)
            mask &= any_of
        elif key == "not":
            mask &= ~evaluate(value, columns)
        else:
            conditions = value if isinstance(value, Mapping) else {"eq": value}
            col = columns.field(key)
            for op, arg in conditions.items():
                mask &= _compare(col, op, arg)
    return mask


def _compare(col: Mapping[str, Any], op: str, arg: Any) -> np.ndarray:
    present = col["present"]
    if op == "exists":
        return present.copy() if arg else ~present
    if op in ("eq", "in"):
        return _equal_any(col, [arg] if op == "eq" else arg)
    if op in ("ne", "nin"):
        return present & ~_equal_any(col, [arg] if op == "ne" else arg)
    with np.errstate(invalid="ignore"):
        out = _RANGES[op](col["num"], arg)
    for r, values in col["lists"].items():
        out[r] = any(not isinstance(v, bool) and isinstance(v, (int, float)) and _RANGES[op](v, arg) for v in values)
    return out


def _equal_any(col: Mapping[str, Any], values: list) -> np.ndarray:
    out = np.zeros(col["present"].shape[0], bool)
    for v in values:
        if v is None:
            out |= ~col["present"]
        elif isinstance(v, bool):
            out |= col["bool"] == int(v)
        elif isinstance(v, (int, float)):
            out |= col["num"] == v
        else:
            out |= col["str"] == v
    for r, items in col["lists"].items():
        out[r] = any(_same(item, v) for item in items for v in values)
    return out


def _same(a: Any, b: Any) -> bool:
    """JSON equality: a boolean equals only a boolean."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b
