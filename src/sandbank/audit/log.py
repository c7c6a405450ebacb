"""The audit log writer: canonical entries, leaf hashes, stored subtrees, signed checkpoints.

Only the current tick's entries are in memory; the tree itself lives in the store (leaf
hashes with the entries, complete subtrees at levels 8, 16, ...), and the writer keeps only
the compact range (one hash per set bit of the size).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from hashlib import sha256
from pathlib import Path
from typing import Any

from sandbank.audit.checkpoint import Checkpoint
from sandbank.audit.merkle import (
    STORED_LEVEL_STEP,
    CompactRange,
    largest_power_of_two_below,
    node_hash,
)
from sandbank.audit.visibility import Blinds
from sandbank.identity.keys import SigningKey
from sandbank.kernel.canonical import canonical_bytes
from sandbank.store.base import Entry, Store, StoredCheckpoint


def subtree_hash(store: Store, start: int, end: int) -> bytes:
    """MTH of leaves [start, end), read from the store's leaf hashes and stored subtrees."""
    n = end - start
    if n <= 0:
        raise ValueError("empty range")
    if n & (n - 1) == 0 and start % n == 0:  # a complete, aligned subtree
        level = n.bit_length() - 1
        stored = (level // STORED_LEVEL_STEP) * STORED_LEVEL_STEP
        if stored:
            hashes = store.nodes(stored, start >> stored, end >> stored)
        else:
            hashes = store.leaf_hashes(start, end)
        while len(hashes) > 1:
            hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]
    k = largest_power_of_two_below(n)
    return node_hash(subtree_hash(store, start, start + k), subtree_hash(store, start + k, end))


def compact_range_from_store(store: Store, size: int) -> CompactRange:
    stack, start = [], 0
    for bit in reversed(range(size.bit_length())):
        if size >> bit & 1:
            stack.append(subtree_hash(store, start, start + (1 << bit)))
            start += 1 << bit
    return CompactRange(size, stack)


class AuditLog:
    def __init__(self, store: Store, origin: str, key_name: str, key: SigningKey,
                 public_kinds: frozenset[str]) -> None:
        """`public_kinds`: the event kinds anyone may read (their entries carry no blind)."""
        self.store = store
        self.public_kinds = public_kinds
        self.origin = origin
        self.key_name = key_name
        self.key = key
        size = store.entry_count()
        self._range = compact_range_from_store(store, size) if size else CompactRange()
        self._entries: list[Entry] = []
        self._nodes: list[tuple[int, int, bytes]] = []
        self._contents: dict[bytes, bytes] = {}
        self._events: list[dict[str, Any]] = []
        self.last_committed: list[dict[str, Any]] = []  # the last committed tick's events
        self._blinds = Blinds(key.seed_bytes())
        self._checkpoint_file: Path | None = None

    @property
    def checkpoint_file(self) -> Path | None:
        """Where the latest signed checkpoint is written after every commit (a file beside
        the log; `sandbank verify --checkpoint` checks a log extends a kept copy of it)."""
        return self._checkpoint_file

    @checkpoint_file.setter
    def checkpoint_file(self, path: Path | None) -> None:
        self._checkpoint_file = None if path is None else Path(path)
        last = self.store.last_checkpoint()
        if last is not None:
            self._write_checkpoint(last.note)

    def _write_checkpoint(self, note: str) -> None:
        path = self._checkpoint_file
        if path is not None:  # atomically: a reader never sees half a note
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(note)
            os.replace(tmp, path)

    def put_content(self, digest: bytes, body: bytes) -> None:
        """Keep a content body (e.g. a message text) with the tick; entries carry its hash."""
        self._contents[digest] = body

    @property
    def size(self) -> int:
        """Entries appended so far, including the tick not yet committed."""
        return self._range.size

    def append(self, tick: int, event: dict[str, Any]) -> int:
        seq = self._range.size
        event["seq"] = seq
        event["tick"] = tick
        if event["kind"] not in self.public_kinds:  # its leaf hash must not confirm a guess
            event["blind"] = self._blinds.of(seq)
        body = canonical_bytes(event)
        leaf = sha256(b"\x00" + body).digest()
        done = self._range.append(leaf)
        if done:
            self._nodes.extend(done)
        self._entries.append(Entry(seq, tick, event["kind"], body, leaf))
        self._events.append(event)
        return seq

    def commit(self, tick: int, state_digest: bytes,
               actions: Sequence[tuple[int, int, int, int]] = ()) -> StoredCheckpoint:
        """Sign a checkpoint for everything appended so far and write the tick atomically,
        with `actions`, the tick's (actor, nonce, first seq, count): which entries each
        action produced (an index beside the log; not part of what is signed)."""
        cp = Checkpoint(self.origin, self._range.size, self._range.root(), tick, state_digest)
        stored = StoredCheckpoint(tick, cp.size, cp.root, cp.state, cp.sign(self.key_name, self.key))
        self.store.append_tick(self._entries, self._nodes, stored, list(self._contents.items()),
                               actions)
        self._entries = []
        self._nodes = []
        self._contents = {}
        self.last_committed, self._events = self._events, []
        if self._checkpoint_file is not None:
            self._write_checkpoint(stored.note)
        return stored
