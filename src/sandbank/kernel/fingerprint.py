"""A digest of *everything* an object graph holds: the full-state check of the kernel.

The state digest signed at every checkpoint is incremental: it rehashes the records that
events touched. A write that bypasses the events (in-process code adding to its own balance,
say) touches nothing, so no incremental digest can see it. This one walks the whole state —
every mechanism's records, indexes, counters, queues, nonces, the transfer history — and
hashes every value, so it changes whenever any state changes, by whatever means. It is
hand-written because it must be the same in every process: sets are hashed in sorted order
(their iteration order depends on PYTHONHASHSEED) and mappings in key order (a mapping read
back from the log has its keys sorted, one built live has them in insertion order), objects
by their attribute names.

What it leaves out, by name: caches of other digests (`DigestMap`s and the like) and the few
internals whose layout depends on the path taken rather than on the state (the schedules'
heaps, which only the live kernel pops and which keep stale entries: `EconomyState.schedules`
hashes what they still hold due instead); every such exclusion is listed in `SKIP`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from hashlib import sha256
from typing import Any

import orjson

from sandbank.kernel.digest import DigestMap

# attribute names never hashed: digest caches, and internals whose layout depends on the path
SKIP = frozenset({
    "_account_digest", "_account_dirty", "_hold_digest",  # ledger: caches of the digest
    # heaps a tick hook pops live (replay never does) and that keep stale entries: hashed
    # instead as what is still due (EconomyState.schedules); `_order` counts undone holds too
    "_expiry", "_order", "_deadlines", "_closing",
    "_digest",  # reputation's cached digest (and any mechanism's)
    "_population",  # antimonopoly: a cache of Registry.population_owner, filled by a guard
    "_apply", "_listen",  # the state's dispatch tables (functions)
})
# mappings only the single writer builds, one item per logged event in log order, in live run
# and replay alike: hashed in that order (sorting the transfer history would dominate the cost)
IN_LOG_ORDER = frozenset({"transfers", "failed", "resolved"})
MAX_DEPTH = 32


class _Walker:
    __slots__ = ("out",)

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def plain(self, tag: bytes, items: list[Any]) -> bool:
        """A container of data orjson encodes (numbers, strings, lists, tuples, string-keyed
        dicts — keys sorted —, dataclass records, and bytes, sets and deques through
        `_encode`) in one C call. False, nothing written, if it holds anything else (an
        object the walker must take attribute by attribute)."""
        try:
            blob = orjson.dumps(items, default=_encode, option=orjson.OPT_SORT_KEYS)
        except (orjson.JSONEncodeError, TypeError):
            return False
        self.out.append(tag + b"j%d:" % len(blob) + blob)
        return True

    def walk(self, x: Any, depth: int = 0, in_log_order: bool = False) -> None:
        if depth > MAX_DEPTH:
            raise ValueError("the state nests deeper than the fingerprint walks")
        out = self.out
        t = type(x)
        if x is None or t is bool:
            out.append(b"N" if x is None else b"T" if x else b"F")
        elif t is int:
            out.append(b"i%d;" % x)
        elif t is str:
            b = x.encode("utf-8", "surrogatepass")
            out.append(b"s%d:" % len(b) + b)
        elif t is bytes:
            out.append(b"b%d:" % len(x) + x)
        elif t is float:
            out.append(b"f" + float.hex(x).encode() + b";")
        elif isinstance(x, DigestMap) or callable(x):
            return
        elif isinstance(x, AbstractSet):
            items = _sorted(x, _sort_key)
            if not self.plain(b"S", items):
                out.append(b"S%d[" % len(items))
                for v in items:
                    self.walk(v, depth + 1)
                out.append(b"]")
        elif isinstance(x, Mapping):  # by key: a dict parsed from the log has its keys sorted
            items = list(x.items()) if in_log_order else _sorted(x.items(), _item_key)
            if not self.plain(b"M", items):
                out.append(b"M%d{" % len(items))
                for k, v in items:
                    self.walk(k, depth + 1)
                    self.walk(v, depth + 1)
                out.append(b"}")
        elif isinstance(x, (Sequence, deque)):
            items = list(x)
            if not self.plain(b"L", items):
                out.append(b"L%d[" % len(items))
                for v in items:
                    self.walk(v, depth + 1)
                out.append(b"]")
        else:  # an object: its attributes by name
            out.append(b"O" + t.__name__.encode() + b"{")
            for name in _attributes(x):
                if name not in SKIP:
                    out.append(name.encode() + b"=")
                    self.walk(getattr(x, name), depth + 1, name in IN_LOG_ORDER)
            out.append(b"}")


def _encode(x: Any) -> Any:
    """orjson's fallback: bytes, sets and deques as tagged lists; anything else refused."""
    if type(x) is bytes:
        return ["$b", x.hex()]
    if isinstance(x, AbstractSet):
        return ["$s", _sorted(x, _sort_key)]
    if isinstance(x, deque):
        return ["$q", list(x)]
    raise TypeError


def _sorted(items: Any, key: Any) -> list[Any]:
    try:  # keys of one type (ints, strings, tuples of them) compare in C
        return sorted(items)
    except TypeError:
        return sorted(items, key=key)


def _item_key(item: tuple[Any, Any]) -> tuple[str, Any]:
    return _sort_key(item[0])


def _sort_key(v: Any) -> tuple[str, Any]:
    return (type(v).__name__, v if isinstance(v, (int, str, bytes, tuple)) else repr(v))


def _attributes(x: Any) -> list[str]:
    names: list[str] = []
    for cls in type(x).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in names and name not in ("__weakref__", "__dict__"):
                names.append(name)
    if hasattr(x, "__dict__"):
        names.extend(n for n in vars(x) if n not in names)
    return [n for n in names if hasattr(x, n)]


def fingerprint(x: Any) -> bytes:
    """SHA-256 of everything `x` holds (see the module's docstring)."""
    w = _Walker()
    w.walk(x)
    return sha256(b"".join(w.out)).digest()


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where two object graphs first differ (a path like `.accounts[42].credits_posted`), or
    None: to say which record a divergence is in."""
    return None if fingerprint(a) == fingerprint(b) else _where(a, b, path, 0)


def _where(a: Any, b: Any, path: str, depth: int) -> str:
    if depth > MAX_DEPTH or type(a) is not type(b):
        return f"{path} ({type(a).__name__} vs {type(b).__name__})"
    if isinstance(a, Mapping):
        for k in list(a) + [k for k in b if k not in a]:
            if k not in a or k not in b:
                return f"{path}[{k!r}] (only in one)"
            if fingerprint(a[k]) != fingerprint(b[k]):
                return _where(a[k], b[k], f"{path}[{k!r}]", depth + 1)
    elif isinstance(a, AbstractSet):
        extra = sorted(a ^ b, key=_sort_key)
        return f"{path} (members {extra[:5]!r} in only one)"
    elif isinstance(a, (Sequence, deque)) and not isinstance(a, (str, bytes)):
        if len(a) != len(b):
            return f"{path} (length {len(a)} vs {len(b)})"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if fingerprint(x) != fingerprint(y):
                return _where(x, y, f"{path}[{i}]", depth + 1)
    elif not isinstance(a, (int, str, bytes, float, bool)) and a is not None \
            and not callable(a) and not isinstance(a, DigestMap):
        for name in _attributes(a):
            if name not in SKIP and fingerprint(getattr(a, name)) != fingerprint(getattr(b, name)):
                return _where(getattr(a, name), getattr(b, name), f"{path}.{name}", depth + 1)
    return f"{path} ({a!r:.60} vs {b!r:.60})"
