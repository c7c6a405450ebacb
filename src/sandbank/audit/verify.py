"""Check a whole log without trusting whoever produced it.

One streaming pass, memory O(log n). Every byte a tool later reads is checked here:
- entries are numbered 0, 1, 2, ... with no gap, each leaf hash is SHA-256(0x00 || body);
  each entry's body is canonical JSON whose own seq, tick and kind equal the columns the store
  keeps beside it (tools select by the `kind` column: it must not lie);
- there is a checkpoint for every tick 0, 1, 2, ...; each is signed by the operator key
  named in the header (or the key pinned with `--key`), covers exactly the entries up to
  its tick, and its root is the RFC 9162 root of those entries; sizes never shrink;
- the stored subtree hashes (used to serve proofs) match the entries;
- every stored content an entry refers to (a message's text, an external payload, an LLM
  trace) is there and hashes to the digest and size the entry carries;
- the action index (which entries each signed action produced; the server's proofs use it)
  is exactly the one the entries imply: an action's first entry carries its nonce and how
  many entries it produced (`entries`, default 1);
- no entry lies beyond the last checkpoint;
- with a kept checkpoint (`pinned_checkpoint`, e.g. from a client or a witness), the log
  extends it: one of its checkpoints has that size and root. Without one, a log cut short
  at a tick boundary, or rewritten whole and re-signed by the operator's key, cannot be told
  from the original: that needs a copy of a later checkpoint kept by someone else;
- with a witness's key, every cosignature the log keeps by that witness is valid.
On the first problem it stops and names the first bad entry (or checkpoint). When a root
does not match but every stored leaf hash does (someone rewrote bodies *and* hashes), a
second pass over that tick parses each entry to find the first one out of place.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256

from sandbank.audit.checkpoint import Checkpoint, NoteError, open_checkpoint
from sandbank.audit.merkle import CompactRange
from sandbank.kernel.canonical import canonical_bytes, parse
from sandbank.store.base import Store, StoreError

# fields naming stored content, and the size field that goes with each
CONTENT_FIELDS = (("sha256", "size"), ("prompt_sha256", "prompt_size"),
                  ("response_sha256", "response_size"))


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
    extends: Checkpoint | None = None  # the kept checkpoint this log was shown to extend
    cosigned: int = 0  # checkpoints with a valid cosignature by the given witness


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


def verify_log(store: Store, *, pinned_key: bytes | None = None, progress=None,
               pinned_checkpoint: str | None = None,
               witness: tuple[str, bytes] | None = None) -> VerifyReport:
    """Verify everything; `progress(done_entries)` is called now and then if given.
    `pinned_checkpoint`: a signed note kept outside the log, which the log must extend;
    `witness`: (name, public key) of a witness whose cosignatures the log keeps."""
    origin = key = key_name = None
    r = CompactRange()
    n_cp = 0
    extends = None
    cosigned = 0
    try:
        origin, key_name, key = _header(store)
        if pinned_key is not None and pinned_key != key:
            raise _Bad("the log's header names a different operator key than the pinned one",
                       entry=0)
        kept = _kept(pinned_checkpoint, key_name, key, origin)
        entries = store.entries()
        next_entry = next(entries, None)
        index = store.action_index()
        next_row = next(index, None)
        expected_seq = 0
        last_tick, last_size = -1, 0
        check_nodes = _NodeChecker(store)
        for cp in store.checkpoints():
            if not (type(cp.tick) is int and type(cp.size) is int and type(cp.root) is bytes
                    and type(cp.state) is bytes and type(cp.note) is str):
                raise _Bad(f"checkpoint row {cp.tick!r}: a column of the wrong type (altered)",
                           checkpoint=cp.tick if type(cp.tick) is int else None)
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
            in_tick = []  # checked against their columns, contents and index once the root holds
            while next_entry is not None and _row_ok(next_entry) and next_entry.tick <= cp.tick:
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
                in_tick.append(e)
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
            for e in in_tick:  # the bodies are the signed ones: now what the store says of them
                d = _body(e)
                if "nonce" in d:  # the first entry of a signed action: its index row
                    want = (d["actor"], d["nonce"], e.seq, d.get("entries", 1))
                    if next_row is None or tuple(next_row) != want:
                        raise _Bad(_index_problem(want, next_row), entry=e.seq)
                    if type(want[3]) is not int or not 1 <= want[3] <= cp.size - e.seq:
                        raise _Bad(f"entry {e.seq}: its action's entries ({want[3]}) run past "
                                   f"its tick", entry=e.seq)
                    next_row = next(index, None)
                elif next_row is not None and next_row[2] <= e.seq:
                    raise _Bad(f"action index row {tuple(next_row)}: entry {next_row[2]} "
                               f"starts no signed action (the index was altered)",
                               entry=next_row[2])
                for field, size_field in CONTENT_FIELDS:  # an empty content too: its row
                    if field in d:  # is served as the entry's text like any other
                        _check_content(store, e.seq, d[field], d.get(size_field))
            if kept is not None and cp.size == kept.size:
                if cp.root != kept.root:
                    raise _Bad(f"the kept checkpoint (tick {kept.tick}, size {kept.size}) has "
                               f"another root than this log at that size: the log was "
                               f"rewritten, or forked", checkpoint=cp.tick)
                extends = kept
            last_tick, last_size = cp.tick, cp.size
            n_cp += 1
        if next_entry is not None:
            raise _Bad(f"entry {next_entry.seq} lies beyond the last signed checkpoint "
                       f"(inserted, or written without a checkpoint)", entry=next_entry.seq)
        if next_row is not None:
            raise _Bad(f"action index row {tuple(next_row)} names entries the log does not "
                       f"have (the index was altered)", entry=next_row[2])
        if kept is not None and extends is None:
            raise _Bad(f"the log does not extend the kept checkpoint (tick {kept.tick}, size "
                       f"{kept.size:,}): it has {r.size:,} entries" +
                       (" — it was truncated" if r.size < kept.size else
                        " and no checkpoint of that size (rewritten, or another log)"))
        if witness is not None:
            cosigned = _check_cosignatures(store, witness)
    except _Bad as b:
        return VerifyReport(False, r.size, n_cp, None, origin, key, key_name, str(b), b.entry,
                            b.checkpoint)
    except StoreError as e:
        return VerifyReport(False, r.size, n_cp, None, origin, key, key_name, str(e))
    except Exception as e:  # a row of a shape no check foresaw is a finding, not a crash
        return VerifyReport(False, r.size, n_cp, None, origin, key, key_name,
                            f"the store holds a row this log format never writes "
                            f"({type(e).__name__}: {e}); near entry {r.size}", r.size)
    return VerifyReport(True, r.size, n_cp, r.root(), origin, key, key_name, extends=extends,
                        cosigned=cosigned)


def _row_ok(e) -> bool:
    """An entry row whose columns have the types the store writes (else: altered)."""
    if type(e.seq) is int and type(e.tick) is int and type(e.kind) is str \
            and type(e.body) is bytes and type(e.leaf_hash) is bytes:
        return True
    raise _Bad(f"entry row {e.seq!r}: a column of the wrong type (altered)",
               entry=e.seq if type(e.seq) is int else None)


def _body(e) -> dict:
    """An entry's body, which must say where it is and what it is as the store's columns do."""
    try:
        d = parse(e.body)
        if canonical_bytes(d) != e.body:  # else two parsers may read it two ways (a key
            raise ValueError  # given twice, say): tools must all see what was signed
    except Exception:
        raise _Bad(f"entry {e.seq}: the body is not canonical JSON", entry=e.seq) from None
    if not isinstance(d, dict) or d.get("seq") != e.seq or d.get("tick") != e.tick:
        raise _Bad(f"entry {e.seq}: its body says seq {d.get('seq') if isinstance(d, dict) else '?'}"
                   f", tick {d.get('tick') if isinstance(d, dict) else '?'}; the store says seq "
                   f"{e.seq}, tick {e.tick}", entry=e.seq)
    if d.get("kind") != e.kind:
        raise _Bad(f"entry {e.seq}: the store's kind column says {e.kind!r}, the signed body "
                   f"{d.get('kind')!r} (the column was altered)", entry=e.seq)
    return d


def _index_problem(want: tuple, row) -> str:
    if row is None or row[2] > want[2]:
        return (f"entry {want[2]} starts action (actor {want[0]}, nonce {want[1]}) but the "
                f"action index has no row for it (altered)")
    return (f"action index row {tuple(row)} differs from what entry {want[2]} implies "
            f"{want} (the index was altered)")


_EMPTY = sha256(b"").digest()


def _check_content(store: Store, seq: int, digest, size) -> None:
    try:
        raw = bytes.fromhex(digest)
    except (TypeError, ValueError):
        raise _Bad(f"entry {seq}: its content digest is not hex", entry=seq) from None
    body = store.content(raw)
    if body is None:
        if size == 0 and raw == _EMPTY:  # nothing to keep (a value-only crossing's payload)
            return
        raise _Bad(f"entry {seq}: the content it refers to ({digest[:16]}…) is missing",
                   entry=seq)
    if type(body) is not bytes:
        raise _Bad(f"entry {seq}: the stored content {digest[:16]}… is not bytes (altered)",
                   entry=seq)
    if sha256(body).digest() != raw or len(body) != size:
        raise _Bad(f"entry {seq}: the stored content {digest[:16]}… does not match the digest "
                   f"and size the entry carries (altered)", entry=seq)


def _kept(note: str | None, key_name: str, key: bytes, origin: str) -> Checkpoint | None:
    if note is None:
        return None
    try:
        kept = open_checkpoint(note, key_name, key)
    except NoteError as e:
        raise _Bad(f"the kept checkpoint is not signed by this log's operator key: {e}") from None
    if kept.origin != origin:
        raise _Bad(f"the kept checkpoint is of {kept.origin!r}, this log of {origin!r}")
    return kept


def _check_cosignatures(store: Store, witness: tuple[str, bytes]) -> int:
    """Every cosignature by `witness` the log keeps must be valid for its tick's checkpoint;
    returns how many checkpoints it cosigned (at least one, or the check fails)."""
    from sandbank.audit.witness import add_cosignature, open_cosignature

    name, public = witness
    n = 0
    for tick, line in store.cosignatures():
        if line.split(" ")[1:2] != [name]:
            continue
        cp = store.checkpoint(tick)
        if cp is None:
            raise _Bad(f"a cosignature by {name} names tick {tick}, which has no checkpoint")
        try:
            open_cosignature(add_cosignature(cp.note, line), name, public)
        except NoteError as e:
            raise _Bad(f"the cosignature by {name} of tick {tick} is not valid: {e}",
                       checkpoint=tick) from None
        n += 1
    if not n:
        raise _Bad(f"the log keeps no cosignature by the witness {name}")
    return n


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
