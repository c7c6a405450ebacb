"""Canonical bytes for everything that is hashed or signed (RFC 8785, JCS).

The hot path encodes with orjson (sorted keys, compact separators, UTF-8, JSON escapes
only for `"`, `\\` and control characters). Within the *canonical domain* below, that is
byte-for-byte RFC 8785; `tests/test_canonical.py` proves it against the `rfc8785`
reference package with Hypothesis.

The canonical domain:
- dict with str keys made of Basic Multilingual Plane characters (RFC 8785 sorts keys by
  UTF-16 code units; for BMP-only keys that equals the code-point order the fast encoder
  uses, for keys mixing U+E000..U+FFFF with astral characters it does not), list, str,
  bool, None;
- int with |x| <= 2**53 - 1 (RFC 8785 numbers are IEEE doubles: larger integers are
  not exactly representable, so they are refused, never rounded);
- no floats (their ES6 number formatting is where fast encoders differ from JCS; the
  kernel never needs one: amounts are integers in minor units).

`check_domain` validates untrusted payloads once, at the edge (action validation); the
kernel's own events are built from validated fields and are encoded without re-checking.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_SAFE_INT = 2**53 - 1
_OPTS = orjson.OPT_SORT_KEYS


def canonical_bytes(obj: Any) -> bytes:
    """RFC 8785 bytes of `obj`, which must be in the canonical domain."""
    return orjson.dumps(obj, option=_OPTS)


class CanonicalDomainError(ValueError):
    """A value cannot be encoded canonically (float, huge int, non-str key, ...)."""


def check_domain(obj: Any, path: str = "$", *, max_depth: int = 16) -> None:
    """Raise CanonicalDomainError naming the first offending path, else return None."""
    if max_depth < 0:
        raise CanonicalDomainError(f"{path}: nested too deeply")
    if obj is None or isinstance(obj, bool):
        return
    if isinstance(obj, str):
        _check_text(obj, path)
        return
    if isinstance(obj, int):
        if -MAX_SAFE_INT <= obj <= MAX_SAFE_INT:
            return
        raise CanonicalDomainError(f"{path}: integer {obj} is outside ±(2**53-1)")
    if isinstance(obj, float):
        raise CanonicalDomainError(f"{path}: floats are not allowed (use integer minor units)")
    if isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            check_domain(item, f"{path}[{i}]", max_depth=max_depth - 1)
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise CanonicalDomainError(f"{path}: key {k!r} is not a string")
            _check_text(k, path)
            if k and max(k) > "\uffff":
                raise CanonicalDomainError(f"{path}: key {k!r} has a character outside the BMP")
            check_domain(v, f"{path}.{k}", max_depth=max_depth - 1)
        return
    raise CanonicalDomainError(f"{path}: {type(obj).__name__} is not JSON")


def _check_text(s: str, path: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalDomainError(f"{path}: string has a lone surrogate") from None


def parse(data: bytes) -> Any:
    return orjson.loads(data)
