"""Check a whole log without trusting whoever produced it.

One streaming pass, memory O(log n):
- entries are numbered 0, 1, 2, ... with no gap, each leaf hash is SHA-256(0x00 || body);
- there is a checkpoint for every tick 0, 1, 2, ...; each is signed by the operator key
  named in the header (or the key pinned with `--key`), covers exactly the entries up to
  its tick, and its root is the RFC 9162 root of those entries; sizes never shrink;
- the stored subtree hashes (used to serve proofs) match the entries;
- no entry lies beyond the last checkpoint.
On the first problem it stops and names the first bad entry (or checkpoint). When a root
does not match but every stored leaf hash does (someone rewrote bodies *and* hashes), a
second pass over that tick parses each entry to find the first one out of place.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256

from sandbank.audit.checkpoint import NoteError, open_checkpoint
from sandbank.audit.merkle import CompactRange
from sandbank.kernel.canonical import parse
from sandbank.store.base import Store, StoreError


@dataclass
class VerifyReport:
    ok: bool
    entries: int
    checkpoints: int
    root: bytes | None
    origin: str | None
    operator_key: bytes | None
    key_name: str | None = None
    problem: str | None = None
    bad_entry: int | None = None
    bad_checkpoint: int | None = None


class _Bad(Exception):
    def __init__(self, message: str, entry: int | None = None, checkpoint: int | None = None):
        super().__init__(message)
        self.entry = entry
        self.checkpoint = checkpoint


def _header(store: Store) -> tuple[str, str, bytes]:
    first = store.entry(0)
    if first is None:
        raise _Bad("the log is empty: no header entry", entry=0)
    try:
        h = parse(first.body)
        assert h["kind"] == "run_started" and h["seq"] == 0
        return h["origin"], h["key_name"], bytes.fromhex(h["operator_key"])
    except Exception as e:
        raise _Bad(f"entry 0 is not a valid run header ({e})", entry=0) from None


def verify_log(store: Store, *, pinned_key: bytes | None = None,
               progress=None) -> VerifyReport:
    """Verify everything; `progress(done_entries)` is called now and then if given."""
    origin = key = key_name = None
    r = CompactRange()
    n_cp = 0
    try:
        origin, key_name, key = _header(store)
        if pinned_key is not None and pinned_key != key:
            raise _Bad("the log's header names a different operator key than the pinned one",
                       entry=0)
        entries = store.entries()
        next_entry = next(entries, None)
        expected_seq = 0
        last_tick, last_size = -1, 0
        tick_start = 0
        check_nodes = _NodeChecker(store)
        for cp in store.checkpoints():
            try:
                note = open_checkpoint(cp.note, key_name, key)
            except NoteError as e:
                raise _Bad(f"checkpoint of tick {cp.tick}: {e}", checkpoint=cp.tick) from None
            if (note.tick, note.size, note.root, note.state, note.origin) != (
                    cp.tick, cp.size, cp.root, cp.state, origin):
                raise _Bad(f"checkpoint of tick {cp.tick}: stored columns differ from the signed note",
                           checkpoint=cp.tick)
            if cp.tick <= last_tick or cp.size < last_size:
                raise _Bad(f"checkpoint of tick {cp.tick} goes backwards", checkpoint=cp.tick)
            if cp.tick != last_tick + 1:
                raise _Bad(f"the checkpoint of tick {last_tick + 1} is missing (every tick is "
                           f"checkpointed)", checkpoint=last_tick + 1)
            tick_start = r.size
            prefix = r.hashes
            while next_entry is not None and next_entry.tick <= cp.tick:
                e = next_entry
                if e.seq != expected_seq:
                    raise _Bad(f"entry {expected_seq} is missing (next stored entry is {e.seq})",
                               entry=expected_seq)
                if sha256(b"\x00" + e.body).digest() != e.leaf_hash:
                    raise _Bad(f"entry {e.seq}: body does not match its leaf hash (altered)",
                               entry=e.seq)
                if e.tick < last_tick:
                    raise _Bad(f"entry {e.seq}: tick {e.tick} is before the previous checkpoint",
                               entry=e.seq)
                done = r.append(e.leaf_hash)
                if done:
                    check_nodes(done)
                expected_seq += 1
                if progress is not None and expected_seq % 65536 == 0:
                    progress(expected_seq)
                next_entry = next(entries, None)
            if r.size == cp.size + 1:
                seq = _find_inserted(store, tick_start, prefix, r.size, cp.root)
                if seq is not None:
                    raise _Bad(f"entry {seq} was inserted: without it, tick {cp.tick} matches "
                               f"its signed root", entry=seq, checkpoint=cp.tick)
            if r.size != cp.size:
                seq = _locate(store, tick_start, r.size, cp.tick)
                seq = min(r.size, cp.size) if seq is None else seq
                raise _Bad(
                    f"checkpoint of tick {cp.tick} covers {cp.size} entries but the log has "
                    f"{r.size} up to that tick; first entry out of place: {seq}", entry=seq,
                    checkpoint=cp.tick)
            if r.root() != cp.root:
                seq = _locate(store, tick_start, cp.size, cp.tick)
                where = ("the bodies were rewritten with matching hashes" if seq is None
                         else f"first entry out of place: {seq}")
                raise _Bad(f"entries of tick {cp.tick} do not match its signed root; {where}",
                           entry=tick_start if seq is None else seq, checkpoint=cp.tick)
            last_tick, last_size = cp.tick, cp.size
            n_cp += 1
        if next_entry is not None:
            raise _Bad(f"entry {next_entry.seq} lies beyond the last signed checkpoint "
                       f"(inserted, or written without a checkpoint)", entry=next_entry.seq)
        if n_cp == 0:
            raise _Bad("the log has no checkpoint")
    except _Bad as b:
        return VerifyReport(False, r.size, n_cp, None, origin, key, key_name, str(b), b.entry,
                            b.checkpoint)
    except StoreError as e:
        return VerifyReport(False, r.size, n_cp, None, origin, key, key_name, str(e))
    return VerifyReport(True, r.size, n_cp, r.root(), origin, key, key_name)


class _NodeChecker:
    """Compares the store's subtree hashes with the ones recomputed from the entries."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, done: list[tuple[int, int, bytes]]) -> None:
        for level, index, h in done:
            try:
                stored = self.store.nodes(level, index, index + 1)[0]
            except StoreError:
                stored = None
            if stored != h:
                raise _Bad(f"stored subtree hash at level {level} index {index} is wrong "
                           f"(covers entries {index << level}..{((index + 1) << level) - 1})",
                           entry=index << level)


MAX_INSERT_SEARCH = 2048  # entries in one tick; beyond, the search would be too slow


def _find_inserted(store: Store, start: int, prefix: list[bytes], end: int,
                   root: bytes) -> int | None:
    """The one entry in [start, end) whose removal makes the tick match its signed root."""
    if end - start > MAX_INSERT_SEARCH:
        return None
    leaves = store.leaf_hashes(start, end)
    for skip in range(len(leaves)):
        r = CompactRange(start, prefix)
        for j, h in enumerate(leaves):
            if j != skip:
                r.append(h)
        if r.root() == root:
            return start + skip
    return None


def _locate(store: Store, start: int, end: int, tick: int) -> int | None:
    """The first entry in [start, end) whose content is out of place (its own seq or tick
    differ from where it is stored), or None if all look in place."""
    for e in store.entries(start, end):
        try:
            d = parse(e.body)
            if d.get("seq") != e.seq or d.get("tick") != e.tick or e.tick != tick:
                return e.seq
        except Exception:
            return e.seq
    return None
