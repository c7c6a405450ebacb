"""An incrementally maintained digest of a keyed collection (part of the state digest).

Each record is hashed when it changes; the digest is SHA-256 over the record hashes in key
insertion order, which the kernel keeps deterministic (ids are sequence numbers, and live
run and replay insert in the same order). Cost per checkpoint: one hash per changed record
plus one pass over 32 bytes per record.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from hashlib import sha256
from typing import Any

from sandbank.kernel.canonical import canonical_bytes


class DigestMap:
    __slots__ = ("_hashes", "_dirty", "_record")

    def __init__(self, record: Callable[[Any], Any]) -> None:
        self._hashes: dict[Hashable, bytes] = {}
        self._dirty: dict[Hashable, Any] = {}
        self._record = record

    def touch(self, key: Hashable, obj: Any) -> None:
        self._dirty[key] = obj

    def delete(self, key: Hashable) -> None:
        self._dirty.pop(key, None)
        self._hashes.pop(key, None)

    def digest(self) -> bytes:
        if self._dirty:
            rec = self._record
            hashes = self._hashes
            for key, obj in self._dirty.items():
                hashes[key] = sha256(canonical_bytes(rec(obj))).digest()
            self._dirty.clear()
        return sha256(b"".join(self._hashes.values())).digest()
