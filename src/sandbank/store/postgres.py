"""PostgreSQL store (psycopg 3): the same interface as the SQLite store, for long runs and the
server. One log per schema (default `public`); one transaction per tick; the database refuses
UPDATE, DELETE and TRUNCATE on every table (triggers), not only this code.

    store = PostgresStore("postgresql://user:pw@127.0.0.1/sandbank", schema="run_42")
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Iterator, Sequence

from sandbank.store.base import Entry, StoredCheckpoint, StoreError

SCHEMA_VERSION = "2"
PAGE = 4096
_TABLES = ("meta", "entries", "nodes", "checkpoints", "contents", "action_index", "cosignatures")
_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (seq BIGINT PRIMARY KEY, tick BIGINT NOT NULL,
    kind TEXT NOT NULL, body BYTEA NOT NULL, leaf_hash BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (id BIGINT PRIMARY KEY, hash BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS contents (sha256 BYTEA PRIMARY KEY, body BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS action_index (actor BIGINT NOT NULL, nonce BIGINT NOT NULL,
    first_seq BIGINT PRIMARY KEY, count INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS action_index_by_actor ON action_index (actor, nonce);
CREATE TABLE IF NOT EXISTS cosignatures (tick BIGINT NOT NULL, line TEXT NOT NULL,
    PRIMARY KEY (tick, line));
CREATE TABLE IF NOT EXISTS checkpoints (tick BIGINT PRIMARY KEY, size BIGINT NOT NULL,
    root BYTEA NOT NULL, state BYTEA NOT NULL, note TEXT NOT NULL);
CREATE OR REPLACE FUNCTION sandbank_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'sandbank log is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END $$ LANGUAGE plpgsql;
"""


def _node_id(level: int, index: int) -> int:
    return (level << 48) | index


def _errors(method):
    """psycopg's errors become StoreErrors that say which log and why."""
    import psycopg

    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def gen(self, *args, **kwargs):
            try:
                yield from method(self, *args, **kwargs)
            except psycopg.Error as e:
                raise StoreError(f"{self.name}: {e}".strip()) from e
        return gen

    @functools.wraps(method)
    def plain(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except psycopg.Error as e:
            raise StoreError(f"{self.name}: {e}".strip()) from e
    return plain


class PostgresStore:
    def __init__(self, url: str, *, schema: str = "public", create: bool = True) -> None:
        try:
            import psycopg
        except ImportError as e:  # pragma: no cover - depends on the install
            raise StoreError("the PostgreSQL store needs psycopg: pip install 'sandbank[postgres]'") from e
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise StoreError(f"schema {schema!r}: lower-case letters, digits and _ only")
        self.schema = schema
        self.name = f"{re.sub(r'://[^@]*@', '://', url)} (schema {schema})"  # no password
        try:
            self._db = psycopg.connect(url, autocommit=True)
        except psycopg.Error as e:
            raise StoreError(f"cannot open the log at {self.name}: {e}".strip()) from e
        try:
            with self._db.transaction():
                if create:
                    self._db.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                self._db.execute(f'SET search_path TO "{schema}"')
                if create:
                    self._db.execute(_DDL)
                    for table in _TABLES:  # per statement: refused even if no row matches
                        self._db.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
                        self._db.execute(
                            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR "
                            f"TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION "
                            f"sandbank_append_only()")
                    self._db.execute("INSERT INTO meta VALUES ('schema_version', %s) "
                                     "ON CONFLICT DO NOTHING", (SCHEMA_VERSION,))
                row = self._db.execute(
                    "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except psycopg.Error as e:
            self._db.close()
            raise StoreError(f"{self.name} is not a readable sandbank log: {e}".strip()) from e
        if row is None or row[0] != SCHEMA_VERSION:
            self._db.close()
            raise StoreError(f"{self.name}: unknown log schema version {row}")

    # -- writing
    @_errors
    def append_tick(self, entries: Sequence[Entry], nodes: Sequence[tuple[int, int, bytes]],
                    checkpoint: StoredCheckpoint, contents: Sequence[tuple[bytes, bytes]] = (),
                    actions: Sequence[tuple[int, int, int, int]] = ()) -> None:
        with self._db.transaction(), self._db.cursor() as cur:
            if entries:
                cur.executemany("INSERT INTO entries VALUES (%s,%s,%s,%s,%s)", entries)
            if actions:
                cur.executemany("INSERT INTO action_index VALUES (%s,%s,%s,%s)", actions)
            if nodes:
                cur.executemany("INSERT INTO nodes VALUES (%s,%s)",
                                [(_node_id(level, index), h) for level, index, h in nodes])
            if contents:
                cur.executemany("INSERT INTO contents VALUES (%s,%s) ON CONFLICT DO NOTHING",
                                contents)
            cur.execute("INSERT INTO checkpoints VALUES (%s,%s,%s,%s,%s)", checkpoint)

    # -- reading
    @_errors
    def entries(self, start: int = 0, end: int | None = None) -> Iterator[Entry]:
        at = start
        while end is None or at < end:  # pages by key: no cursor or transaction held open
            stop = at + PAGE if end is None else min(at + PAGE, end)
            rows = self._db.execute(
                "SELECT seq, tick, kind, body, leaf_hash FROM entries WHERE seq >= %s AND "
                "seq < %s ORDER BY seq", (at, stop)).fetchall()
            for r in rows:
                yield Entry(r[0], r[1], r[2], bytes(r[3]), bytes(r[4]))
            if len(rows) < stop - at:  # seq has no gaps: this was the end of the log
                return
            at = stop

    @_errors
    def entry(self, seq: int) -> Entry | None:
        r = self._db.execute("SELECT seq, tick, kind, body, leaf_hash FROM entries WHERE seq = %s",
                             (seq,)).fetchone()
        return Entry(r[0], r[1], r[2], bytes(r[3]), bytes(r[4])) if r else None

    @_errors
    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        rows = self._db.execute("SELECT leaf_hash FROM entries WHERE seq >= %s AND seq < %s "
                                "ORDER BY seq", (start, end)).fetchall()
        if len(rows) != end - start:
            raise StoreError(f"log is missing entries in [{start}, {end})")
        return [bytes(r[0]) for r in rows]

    @_errors
    def nodes(self, level: int, start: int, end: int) -> list[bytes]:
        rows = self._db.execute("SELECT hash FROM nodes WHERE id >= %s AND id < %s ORDER BY id",
                                (_node_id(level, start), _node_id(level, end))).fetchall()
        if len(rows) != end - start:
            raise StoreError(f"log is missing level-{level} nodes in [{start}, {end})")
        return [bytes(r[0]) for r in rows]

    @staticmethod
    def _cp(r: tuple) -> StoredCheckpoint:
        return StoredCheckpoint(r[0], r[1], bytes(r[2]), bytes(r[3]), r[4])

    @_errors
    def checkpoints(self, after: int = -1) -> Iterator[StoredCheckpoint]:
        while True:
            rows = self._db.execute("SELECT tick, size, root, state, note FROM checkpoints "
                                    "WHERE tick > %s ORDER BY tick LIMIT %s", (after, PAGE)
                                    ).fetchall()
            if not rows:
                return
            for r in rows:
                yield self._cp(r)
            after = rows[-1][0]

    @_errors
    def checkpoint(self, tick: int) -> StoredCheckpoint | None:
        r = self._db.execute("SELECT tick, size, root, state, note FROM checkpoints "
                             "WHERE tick = %s", (tick,)).fetchone()
        return self._cp(r) if r else None

    @_errors
    def last_checkpoint(self) -> StoredCheckpoint | None:
        r = self._db.execute("SELECT tick, size, root, state, note FROM checkpoints "
                             "ORDER BY tick DESC LIMIT 1").fetchone()
        return self._cp(r) if r else None

    @_errors
    def entry_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM entries").fetchone()[0]

    @_errors
    def kind_counts(self) -> list[tuple[str, int]]:
        return [(k, n) for k, n in self._db.execute(
            "SELECT kind, count(*) FROM entries GROUP BY kind ORDER BY count(*) DESC, kind")]

    @_errors
    def content(self, digest: bytes) -> bytes | None:
        r = self._db.execute("SELECT body FROM contents WHERE sha256 = %s", (digest,)).fetchone()
        return bytes(r[0]) if r else None

    @_errors
    def entries_of_kind(self, kind: str) -> list[Entry]:
        """Every entry of one kind, in order (a scan in the database, not in Python)."""
        return [Entry(r[0], r[1], r[2], bytes(r[3]), bytes(r[4])) for r in self._db.execute(
            "SELECT seq, tick, kind, body, leaf_hash FROM entries WHERE kind = %s ORDER BY seq",
            (kind,)).fetchall()]

    # -- the action index (written with each tick: which entries each action produced)
    @_errors
    def action_entries(self, actor: int, nonce: int) -> list[Entry]:
        out: list[Entry] = []
        for first, count in self._db.execute(
                "SELECT first_seq, count FROM action_index WHERE actor = %s AND nonce = %s "
                "ORDER BY first_seq", (actor, nonce)).fetchall():
            out.extend(self.entries(first, first + count))
        return out

    @_errors
    def action_index(self) -> Iterator[tuple[int, int, int, int]]:
        """Every row of the action index, (actor, nonce, first seq, count), by first seq."""
        after = -1
        while True:  # pages by key: no cursor or transaction held open
            rows = self._db.execute(
                "SELECT actor, nonce, first_seq, count FROM action_index WHERE first_seq > %s "
                "ORDER BY first_seq LIMIT %s", (after, PAGE)).fetchall()
            if not rows:
                return
            for r in rows:
                yield tuple(r)
            after = rows[-1][2]

    @_errors
    def add_cosignature(self, tick: int, line: str) -> None:
        self._db.execute("INSERT INTO cosignatures VALUES (%s, %s) ON CONFLICT DO NOTHING",
                         (tick, line))

    @_errors
    def last_cosigned(self) -> tuple[int, list[str]] | None:
        row = self._db.execute("SELECT max(tick) FROM cosignatures").fetchone()
        if row is None or row[0] is None:
            return None
        return row[0], [line for _, line in self.cosignatures(row[0])]

    @_errors
    def cosignatures(self, tick: int | None = None) -> list[tuple[int, str]]:
        if tick is None:
            return [tuple(r) for r in self._db.execute(
                "SELECT tick, line FROM cosignatures ORDER BY tick, line")]
        return [tuple(r) for r in self._db.execute(
            "SELECT tick, line FROM cosignatures WHERE tick = %s ORDER BY line", (tick,))]

    def close(self) -> None:
        self._db.close()

    @property
    def connection(self):
        """The raw connection (for tests that try to tamper with a log)."""
        return self._db
