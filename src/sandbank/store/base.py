"""The store interface: what the kernel and the audit tools need from a database.

A store keeps, append-only:
- entries:      (seq, tick, kind, body, leaf_hash), seq = 0, 1, 2, ... with no gaps;
- nodes:        complete Merkle subtrees at levels 8, 16, ... (level, index, hash);
- checkpoints:  (tick, size, root, state, note), one per tick;
- contents:     (sha256, bytes): message texts whose hashes the entries carry;
- action_index: (actor, nonce, first seq, count): which entries each signed action produced
                (derived: `verify` rebuilds it from the entries and compares);
- cosignatures: (tick, line): witnesses' cosignatures of checkpoints.
Everything of one tick is written by `append_tick` in one transaction (group commit), so a
crash loses at most the tick being written. A store never updates or deletes a row; the
database itself refuses to (triggers), not only this code.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple, Protocol


class Entry(NamedTuple):
    seq: int
    tick: int
    kind: str
    body: bytes
    leaf_hash: bytes


class StoredCheckpoint(NamedTuple):
    tick: int
    size: int
    root: bytes
    state: bytes
    note: str


class StoreError(RuntimeError):
    """The store cannot be opened, or refused an operation; the message says why."""


class Store(Protocol):
    def append_tick(
        self,
        entries: Sequence[Entry],
        nodes: Sequence[tuple[int, int, bytes]],
        checkpoint: StoredCheckpoint,
        contents: Sequence[tuple[bytes, bytes]] = (),
        actions: Sequence[tuple[int, int, int, int]] = (),
    ) -> None: ...

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[Entry]: ...

    def entry(self, seq: int) -> Entry | None: ...

    def leaf_hashes(self, start: int, end: int) -> list[bytes]: ...

    def nodes(self, level: int, start: int, end: int) -> list[bytes]: ...

    def checkpoints(self, after: int = -1) -> Iterator[StoredCheckpoint]:
        """The checkpoints of ticks after `after`, in tick order."""
        ...

    def checkpoint(self, tick: int) -> StoredCheckpoint | None: ...

    def last_checkpoint(self) -> StoredCheckpoint | None: ...

    def entry_count(self) -> int: ...

    def kind_counts(self) -> list[tuple[str, int]]: ...

    def content(self, digest: bytes) -> bytes | None: ...

    def entries_of_kind(self, kind: str) -> list[Entry]: ...

    # which entries each action produced (the `actions` of append_tick)
    def action_entries(self, actor: int, nonce: int) -> list[Entry]: ...

    def action_index(self) -> Iterator[tuple[int, int, int, int]]: ...

    # witnesses' cosignatures of checkpoints (tick, signature line)
    def add_cosignature(self, tick: int, line: str) -> None: ...

    def cosignatures(self, tick: int | None = None) -> list[tuple[int, str]]: ...

    def last_cosigned(self) -> tuple[int, list[str]] | None: ...

    def close(self) -> None: ...
