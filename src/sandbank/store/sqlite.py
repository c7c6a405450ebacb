"""SQLite store: a single file (or ':memory:'), WAL, one transaction per tick."""

from __future__ import annotations

import functools
import inspect
import os
import sqlite3
from collections.abc import Iterator, Sequence

from sandbank.store.base import Entry, StoredCheckpoint, StoreError

SCHEMA_VERSION = "2"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    tick INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    leaf_hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY,          -- level << 48 | index
    hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS contents (
    sha256 BLOB PRIMARY KEY,
    body BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS action_index (  -- derived: which entries an action produced
    actor INTEGER NOT NULL,
    nonce INTEGER NOT NULL,
    first_seq INTEGER PRIMARY KEY,
    count INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS action_index_by_actor ON action_index (actor, nonce);
CREATE TABLE IF NOT EXISTS cosignatures (  -- witnesses' cosignatures of checkpoints
    tick INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (tick, line)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    tick INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    state BLOB NOT NULL,
    note TEXT NOT NULL
);
"""
_APPEND_ONLY = ("meta", "entries", "nodes", "checkpoints", "contents", "action_index",
                "cosignatures")


def _node_id(level: int, index: int) -> int:
    return (level << 48) | index


def _damaged(method):
    """Turn SQLite's errors on a damaged file into a StoreError that names the file."""

    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def gen(self, *args, **kwargs):
            try:
                yield from method(self, *args, **kwargs)
            except (sqlite3.DatabaseError, UnicodeDecodeError) as e:  # (a damaged schema's
                # error message may not even decode)
                raise StoreError(f"{self.path}: the log database is damaged ({e})") from e
        return gen

    @functools.wraps(method)
    def plain(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.IntegrityError:
            raise
        except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
            raise StoreError(f"{self.path}: the log database is damaged ({e})") from e
    return plain


class SQLiteStore:
    def __init__(self, path: str | os.PathLike[str] = ":memory:", *, readonly: bool = False,
                 create: bool = True) -> None:
        self.path = str(path)
        if self.path != ":memory:" and not create and not os.path.exists(self.path):
            raise StoreError(f"no log at {self.path}")
        try:
            if readonly and self.path != ":memory:":
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                           isolation_level=None, check_same_thread=False)
            else:
                self._db = sqlite3.connect(self.path, isolation_level=None,
                                           check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                for table in _APPEND_ONLY:
                    for op in ("UPDATE", "DELETE"):
                        self._db.execute(
                            f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} "
                            f"BEFORE {op} ON {table} BEGIN "
                            f"SELECT RAISE(ABORT, 'sandbank log is append-only: {op} on "
                            f"{table} refused'); END"
                        )
                self._db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
            version = self._db.execute(
                "SELECT value FROM meta WHERE key='schema_version'"
            ).fetchone()
        except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
            raise StoreError(f"{self.path} is not a readable sandbank log: {e}") from e
        if version is None or version[0] != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: unknown log schema version {version}")

    # -- writing
    def append_tick(
        self,
        entries: Sequence[Entry],
        nodes: Sequence[tuple[int, int, bytes]],
        checkpoint: StoredCheckpoint,
        contents: Sequence[tuple[bytes, bytes]] = (),
        actions: Sequence[tuple[int, int, int, int]] = (),
    ) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if entries:
                db.executemany("INSERT INTO entries VALUES (?,?,?,?,?)", entries)
            if actions:
                db.executemany("INSERT INTO action_index VALUES (?,?,?,?)", actions)
            if nodes:
                db.executemany(
                    "INSERT INTO nodes VALUES (?,?)",
                    [(_node_id(level, index), h) for level, index, h in nodes],
                )
            if contents:
                db.executemany("INSERT OR IGNORE INTO contents VALUES (?,?)", contents)
            db.execute("INSERT INTO checkpoints VALUES (?,?,?,?,?)", checkpoint)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- reading
    @_damaged
    def entries(self, start: int = 0, end: int | None = None) -> Iterator[Entry]:
        q = "SELECT seq, tick, kind, body, leaf_hash FROM entries WHERE seq >= ?"
        args: tuple[int, ...] = (start,)
        if end is not None:
            q += " AND seq < ?"
            args = (start, end)
        cur = self._db.execute(q + " ORDER BY seq", args)
        while rows := cur.fetchmany(4096):
            for r in rows:
                yield Entry(*r)

    @_damaged
    def entry(self, seq: int) -> Entry | None:
        r = self._db.execute(
            "SELECT seq, tick, kind, body, leaf_hash FROM entries WHERE seq = ?", (seq,)
        ).fetchone()
        return Entry(*r) if r else None

    @_damaged
    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        rows = self._db.execute(
            "SELECT leaf_hash FROM entries WHERE seq >= ? AND seq < ? ORDER BY seq", (start, end)
        ).fetchall()
        if len(rows) != end - start:
            raise StoreError(f"log is missing entries in [{start}, {end})")
        return [r[0] for r in rows]

    @_damaged
    def nodes(self, level: int, start: int, end: int) -> list[bytes]:
        rows = self._db.execute(
            "SELECT hash FROM nodes WHERE id >= ? AND id < ? ORDER BY id",
            (_node_id(level, start), _node_id(level, end)),
        ).fetchall()
        if len(rows) != end - start:
            raise StoreError(f"log is missing level-{level} nodes in [{start}, {end})")
        return [r[0] for r in rows]

    @_damaged
    def checkpoints(self, after: int = -1) -> Iterator[StoredCheckpoint]:
        cur = self._db.execute("SELECT tick, size, root, state, note FROM checkpoints "
                               "WHERE tick > ? ORDER BY tick", (after,))
        while rows := cur.fetchmany(1024):
            for r in rows:
                yield StoredCheckpoint(*r)

    @_damaged
    def checkpoint(self, tick: int) -> StoredCheckpoint | None:
        r = self._db.execute(
            "SELECT tick, size, root, state, note FROM checkpoints WHERE tick = ?", (tick,)
        ).fetchone()
        return StoredCheckpoint(*r) if r else None

    @_damaged
    def last_checkpoint(self) -> StoredCheckpoint | None:
        r = self._db.execute(
            "SELECT tick, size, root, state, note FROM checkpoints ORDER BY tick DESC LIMIT 1"
        ).fetchone()
        return StoredCheckpoint(*r) if r else None

    @_damaged
    def entry_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM entries").fetchone()[0]

    @_damaged
    def content(self, digest: bytes) -> bytes | None:
        r = self._db.execute("SELECT body FROM contents WHERE sha256 = ?", (digest,)).fetchone()
        return r[0] if r else None

    @_damaged
    def kind_counts(self) -> list[tuple[str, int]]:
        """(event kind, count), most frequent first."""
        return self._db.execute(
            "SELECT kind, count(*) FROM entries GROUP BY kind ORDER BY count(*) DESC, kind"
        ).fetchall()

    @_damaged
    def entries_of_kind(self, kind: str) -> list[Entry]:
        """Every entry of one kind, in order (a scan in the database, not in Python)."""
        return [Entry(*r) for r in self._db.execute(
            "SELECT seq, tick, kind, body, leaf_hash FROM entries WHERE kind = ? ORDER BY seq",
            (kind,)).fetchall()]

    # -- the action index (written with each tick: which entries each action produced)
    @_damaged
    def action_entries(self, actor: int, nonce: int) -> list[Entry]:
        out: list[Entry] = []
        for first, count in self._db.execute(
                "SELECT first_seq, count FROM action_index WHERE actor = ? AND nonce = ? "
                "ORDER BY first_seq", (actor, nonce)).fetchall():
            out.extend(self.entries(first, first + count))
        return out

    @_damaged
    def action_index(self) -> Iterator[tuple[int, int, int, int]]:
        """Every row of the action index, (actor, nonce, first seq, count), by first seq."""
        cur = self._db.execute("SELECT actor, nonce, first_seq, count FROM action_index "
                               "ORDER BY first_seq")
        while rows := cur.fetchmany(4096):
            yield from rows

    # -- witnesses' cosignatures (kept beside the checkpoints they cosign)
    @_damaged
    def add_cosignature(self, tick: int, line: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO cosignatures VALUES (?, ?)", (tick, line))

    @_damaged
    def last_cosigned(self) -> tuple[int, list[str]] | None:
        """The latest cosigned tick and its cosignature lines (None if none)."""
        row = self._db.execute("SELECT max(tick) FROM cosignatures").fetchone()
        if row is None or row[0] is None:
            return None
        return row[0], [line for _, line in self.cosignatures(row[0])]

    @_damaged
    def cosignatures(self, tick: int | None = None) -> list[tuple[int, str]]:
        """(tick, signature line) of the witnesses' cosignatures, of one tick or all."""
        if tick is None:
            return self._db.execute("SELECT tick, line FROM cosignatures ORDER BY tick, line"
                                    ).fetchall()
        return self._db.execute("SELECT tick, line FROM cosignatures WHERE tick = ? ORDER BY "
                                "line", (tick,)).fetchall()

    def close(self) -> None:
        self._db.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The raw connection (for tests that tamper with a log on purpose)."""
        return self._db
