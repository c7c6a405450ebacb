"""A transparency-log witness for sandbank audit logs (C2SP tlog-witness, tlog-cosignature).

What a witness proves
---------------------
A witness keeps, per log origin, the largest checkpoint it has verified. It cosigns a new
checkpoint only if the log's own key signed it *and* an RFC 9162 consistency proof shows
that the new tree extends the one the witness recorded. Its cosignature (cosignature/v1) is
the statement "as of time T, the largest consistent tree head I have seen for this origin
has this size and root". A client holding an inclusion proof against a checkpoint that
carries cosignatures from a quorum of independent witnesses knows the operator could not
show it a *different* history (a fork, a rewritten or truncated log) without also showing
that fork to those witnesses, who would have refused it: the operator's split view would
need the witnesses' collusion.

What it does not prove
----------------------
- Nothing about the entries: the witness never sees them, only tree heads and proofs. A
  log that appends false events consistently is cosigned happily; replaying the log
  (`sandbank verify` / `replay`) is what checks the economy.
- Nothing about the extension lines (`tick N`, `state <b64>`): they are signed over, so
  they cannot be altered under a cosignature, but the witness makes no statement that the
  tick or the state digest is right (tlog-cosignature: "no semantic statement is made
  about any extension lines").
- Nothing about timeliness beyond its own clock: the timestamp is the witness's wall clock
  (the witness is not part of the deterministic kernel), and a log can withhold
  checkpoints from a witness altogether. Freshness needs clients to demand recent
  cosignatures.
- One witness is one party: a single compromised witness can cosign anything. Safety
  comes from a quorum of witnesses the operator does not control.

Wire formats (C2SP, Ed25519 only)
---------------------------------
- cosignature line: `— <witness name> base64(key ID[4] || timestamp u64 big-endian ||
  Ed25519 signature[64])`, key ID = SHA-256(name || "\\n" || 0x04 || public key)[:4],
  signed message = "cosignature/v1\\n" "time <timestamp>\\n" || checkpoint note body.
- witness verifier key: `<name>+<hex key ID>+base64(0x04 || public key)`.
- POST <prefix>/add-checkpoint, body: "old <size>\\n", zero to 63 base64 proof lines,
  "\\n", then the signed checkpoint note. 200 with the cosignature line(s); 404 unknown
  origin; 403 no valid log signature; 400 malformed or old size above the checkpoint size;
  409 `text/x.tlog.size` "<recorded size>\\n" when the old size is not the recorded size;
  409 (text/plain) a checkpoint of the recorded size with another root; 422 a consistency
  proof that does not verify.

Only the protocol glue is written here; signing and verification are
`sandbank.identity.keys`, proofs are `sandbank.audit.merkle`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from sandbank.audit.checkpoint import (
    Checkpoint,
    NoteError,
    key_id,
    parse_checkpoint_body,
    parse_verifier_key,
    verifier_key,
)
from sandbank.audit.merkle import EMPTY_ROOT, HASH_SIZE, ProofError, verify_consistency
from sandbank.identity.keys import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, SigningKey, verify_signature

_DASH = "\u2014"
_ED25519_NOTE = 0x01  # signed-note Ed25519 (log keys)
_ED25519_COSIGNATURE = 0x04  # tlog-cosignature v1, timestamped Ed25519 (witness keys)
_MAX_TIMESTAMP = 2**63 - 1
_MAX_SIZE = 2**63 - 1
MAX_PROOF_LINES = 63  # tlog-witness: "The client MUST NOT send more than 63 consistency proof lines"
MAX_SIGNATURES = 64  # signed-note: verifiers "MUST accept at least up to 16 signatures"
MAX_REQUEST_BYTES = 64 * 1024
MAX_EVIDENCE_PER_ORIGIN = 100
SIZE_CONTENT_TYPE = "text/x.tlog.size"
TEXT = "text/plain; charset=utf-8"
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


# ---------------------------------------------------------------- signed-note glue


def _check_key_name(name: str) -> None:
    # signed-note: "Key names MUST be non-empty and MUST NOT contain any Unicode spaces or plus"
    if not isinstance(name, str) or not name or "+" in name or any(c.isspace() for c in name):
        raise NoteError(f"bad key name {name!r}: it must be non-empty, without spaces or '+'")


@dataclass(frozen=True, slots=True)
class _Signature:
    name: str
    raw: bytes  # key ID || signature
    line: str  # the whole line, with its newline


def _split_note(note: str) -> tuple[str, list[_Signature]]:
    """(note text with its final newline, signature lines), per C2SP signed-note."""
    if not isinstance(note, str):
        raise NoteError("a note is text")
    if not note.endswith("\n"):
        raise NoteError("a signed note ends with a newline")
    if any(c < " " and c != "\n" for c in note):
        raise NoteError("a note must not contain control characters other than newline")
    cut = note.rfind("\n\n")  # "the text is separated from the signatures by the last empty line"
    if cut < 0:
        raise NoteError("note has no signature block (no blank line)")
    text, block = note[: cut + 1], note[cut + 2 :]
    lines = block[:-1].split("\n") if block else []
    if not lines:
        raise NoteError("note has no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
    sigs = []
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH:
            raise NoteError(f"malformed signature line: {line!r}")
        _check_key_name(parts[1])
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except binascii.Error as e:
            raise NoteError(f"signature is not base64: {line!r}") from e
        if len(raw) < 5:
            raise NoteError(f"signature too short: {line!r}")
        sigs.append(_Signature(parts[1], raw, line + "\n"))
    return text, sigs


@dataclass(frozen=True, slots=True)
class _TreeHead:
    """The three lines of a checkpoint a witness vouches for (extensions are opaque)."""

    origin: str
    size: int
    root: bytes


def _parse_tree_head(text: str) -> _TreeHead:
    """C2SP tlog-checkpoint note text: origin, size, base64 root, optional extension lines."""
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("a checkpoint has at least three lines")
    origin, size, root = lines[0], lines[1], lines[2]
    if not origin:
        raise NoteError("checkpoint origin is empty")
    if not _DECIMAL.fullmatch(size) or int(size) > _MAX_SIZE:
        raise NoteError(f"checkpoint size is not a decimal without leading zeroes: {size!r}")
    try:
        raw_root = base64.b64decode(root, validate=True)
    except binascii.Error as e:
        raise NoteError("checkpoint root is not base64") from e
    if len(raw_root) != HASH_SIZE:
        raise NoteError("checkpoint root is not a 32-byte hash")
    if any(not line for line in lines[3:]):
        raise NoteError("checkpoint extension lines must be non-empty")
    return _TreeHead(origin, int(size), raw_root)


# ---------------------------------------------------------------- cosignatures


def cosignature_key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name || "\\n" || 0x04 || public key)[:4] (tlog-cosignature, Ed25519)."""
    return sha256(name.encode() + b"\n" + bytes([_ED25519_COSIGNATURE]) + public_key).digest()[:4]


def _cosigned_message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


def cosign(note: str, name: str, key: SigningKey, timestamp: int) -> str:
    """The cosignature/v1 line (with its newline) of witness `name` on `note`'s text, at
    POSIX time `timestamp`. `note` is a signed checkpoint (or just its text); nothing is
    checked here about the log's signature: that is the witness's job before it cosigns."""
    _check_key_name(name)
    if not isinstance(timestamp, int) or not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise ValueError("a cosignature timestamp is an integer in [0, 2**63 - 1]")
    text = _split_note(note)[0] if "\n\n" in note else note
    if not text.endswith("\n"):
        raise NoteError("a note text ends with a newline")
    sig = key.sign(_cosigned_message(text, timestamp))
    raw = cosignature_key_id(name, key.public) + timestamp.to_bytes(8, "big") + sig
    return f"{_DASH} {name} {base64.b64encode(raw).decode()}\n"


def add_cosignature(note: str, line: str) -> str:
    """`note` with the signature `line` appended to its signature block (once)."""
    line = line if line.endswith("\n") else line + "\n"
    _, sigs = _split_note(note)
    _split_note("x\n\n" + line)  # the line is a well-formed signature line
    if any(s.line == line for s in sigs):
        return note
    return note + line


def open_cosignature(note: str, name: str, public_key: bytes) -> tuple[Checkpoint, int]:
    """Check the cosignature/v1 of witness (name, public_key) on `note`; return the parsed
    sandbank checkpoint and the cosignature's timestamp (the latest, if several). Raise
    NoteError if there is none, or if a signature line with that name and key ID does not
    verify. The log's own signature is *not* checked here: use `open_checkpoint`."""
    text, sigs = _split_note(note)
    want = cosignature_key_id(name, public_key)
    stamps = []
    for s in sigs:
        if s.name != name or s.raw[:4] != want:
            continue  # signed-note: ignore signatures from other keys
        ts = int.from_bytes(s.raw[4:12], "big")
        if (len(s.raw) != 4 + 8 + SIGNATURE_SIZE or ts > _MAX_TIMESTAMP
                or not verify_signature(public_key, s.raw[12:], _cosigned_message(text, ts))):
            raise NoteError(f"the cosignature of {name!r} does not verify")
        stamps.append(ts)
    if not stamps:
        raise NoteError(f"no cosignature by witness {name!r}")
    return parse_checkpoint_body(text), max(stamps)


def witness_verifier_key(name: str, public_key: bytes) -> str:
    """`<name>+<hex key ID>+base64(0x04 || public key)`: the vkey of an Ed25519 cosigner."""
    _check_key_name(name)
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise NoteError("an Ed25519 public key is 32 bytes")
    raw = bytes([_ED25519_COSIGNATURE]) + public_key
    return f"{name}+{cosignature_key_id(name, public_key).hex()}+{base64.b64encode(raw).decode()}"


def _split_vkey(text: str) -> tuple[str, str, bytes]:
    try:
        name, kid, key = text.strip().split("+", 2)
        raw = base64.b64decode(key, validate=True)
    except (ValueError, binascii.Error) as e:
        raise NoteError(f"not a verifier key (name+hash+base64): {text!r}") from e
    _check_key_name(name)
    if not raw:
        raise NoteError("verifier key has no key material")
    return name, kid, raw


def parse_witness_key(text: str) -> tuple[str, bytes]:
    """(name, public key) of a witness vkey (type 0x04); a log's 0x01 key is refused."""
    name, kid, raw = _split_vkey(text)
    if raw[0] == _ED25519_NOTE:
        raise NoteError(f"{name}: this is an ordinary signed-note Ed25519 key (type 0x01, such as "
                        "a log's key), not a witness cosigner key (type 0x04)")
    if raw[0] != _ED25519_COSIGNATURE or len(raw) != 1 + PUBLIC_KEY_SIZE:
        raise NoteError(f"{name}: not an Ed25519 witness cosigner key (type 0x04, 32 bytes)")
    if cosignature_key_id(name, raw[1:]).hex() != kid:
        raise NoteError(f"{name}: witness key hash does not match its name and key")
    return name, raw[1:]


def parse_log_key(text: str) -> tuple[str, bytes]:
    """(name, public key) of a log's vkey (type 0x01); a witness's 0x04 key is refused."""
    name, _, raw = _split_vkey(text)
    if raw[0] == _ED25519_COSIGNATURE:
        raise NoteError(f"{name}: this is a witness cosigner key (type 0x04), not a log's "
                        "signed-note key (type 0x01)")
    return parse_verifier_key(text)


# ---------------------------------------------------------------- add-checkpoint requests


@dataclass(frozen=True, slots=True)
class AddCheckpointRequest:
    old_size: int
    proof: list[bytes]
    note: str
    text: str
    signatures: list[_Signature]
    head: _TreeHead


def parse_add_checkpoint(body: bytes) -> AddCheckpointRequest:
    """Parse a tlog-witness add-checkpoint request body; raise NoteError if malformed."""
    try:
        s = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NoteError("request is not UTF-8") from e
    head, sep, note = s.partition("\n\n")
    if not sep:
        raise NoteError("request has no blank line between the old size/proof and the checkpoint")
    lines = head.split("\n")
    old = lines[0]
    if not old.startswith("old ") or not _DECIMAL.fullmatch(old[4:]) or int(old[4:]) > _MAX_SIZE:
        raise NoteError(f"first line must be 'old <size>' (decimal, no leading zeroes): {old!r}")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise NoteError(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in lines[1:]:
        try:
            h = base64.b64decode(line, validate=True)
        except binascii.Error as e:
            raise NoteError(f"proof line is not base64: {line!r}") from e
        if len(h) != HASH_SIZE:
            raise NoteError(f"proof line is not a 32-byte hash: {line!r}")
        proof.append(h)
    text, sigs = _split_note(note)
    return AddCheckpointRequest(int(old[4:]), proof, note, text, sigs, _parse_tree_head(text))


def encode_add_checkpoint(note: str, old_size: int, proof: Sequence[bytes]) -> bytes:
    lines = [f"old {int(old_size)}\n"] + [base64.b64encode(h).decode() + "\n" for h in proof]
    return ("".join(lines) + "\n" + note).encode()


# ---------------------------------------------------------------- the witness

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL CHECK (size >= 0),
    root BLOB NOT NULL,
    timestamp INTEGER NOT NULL,
    note TEXT NOT NULL               -- log signature(s) + this witness's cosignature
);
CREATE TRIGGER IF NOT EXISTS logs_never_back BEFORE UPDATE ON logs
    WHEN NEW.size < OLD.size OR (NEW.size = OLD.size AND NEW.root != OLD.root)
         OR NEW.timestamp < OLD.timestamp
    BEGIN SELECT RAISE(ABORT, 'witness state never goes back'); END;
CREATE TRIGGER IF NOT EXISTS logs_no_delete BEFORE DELETE ON logs
    BEGIN SELECT RAISE(ABORT, 'witness state never goes back'); END;
CREATE TABLE IF NOT EXISTS evidence (  -- refused, validly signed checkpoints (possible forks)
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    received INTEGER NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    request BLOB NOT NULL,
    UNIQUE (origin, request)
);
"""


LogKeys = tuple[str, bytes]


class Witness:
    """A witness named `name` with its own Ed25519 `key`, accepting the logs in `logs`
    (origin -> (log key name, log public key), or a list of such pairs for key rotation),
    with its state in the SQLite file `state`. `clock` gives the POSIX time of
    cosignatures (the wall clock unless a test injects one)."""

    def __init__(self, name: str, key: SigningKey, logs: Mapping[str, LogKeys | Sequence[LogKeys]],
                 state: str | os.PathLike[str], *, clock: Callable[[], float] = time.time,
                 max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        _check_key_name(name)
        self.name = name
        self.key = key
        self.vkey = witness_verifier_key(name, key.public)
        self.clock = clock
        self.max_request_bytes = max_request_bytes
        self.logs: dict[str, list[LogKeys]] = {}
        for origin, keys in logs.items():
            pairs = [keys] if isinstance(keys, tuple) and isinstance(keys[0], str) else list(keys)
            for kname, pub in pairs:
                _check_key_name(kname)
                if len(pub) != PUBLIC_KEY_SIZE:
                    raise ValueError(f"log {origin!r}: an Ed25519 public key is 32 bytes")
            self.logs[origin] = pairs
        self._lock = threading.Lock()
        self.path = str(state)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # persisted before we answer
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('witness', ?)", (self.vkey,))
            owner = self._db.execute("SELECT value FROM meta WHERE key = 'witness'").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise ValueError(f"{self.path} is not a usable witness state file: {e}") from e
        if owner != self.vkey:
            self._db.close()
            raise ValueError(f"{self.path} holds the state of witness {owner}, not {self.vkey}")

    def close(self) -> None:
        self._db.close()

    # -- reading
    def recorded(self, origin: str) -> tuple[int, bytes] | None:
        """(size, root) of the latest checkpoint cosigned for `origin`, if any."""
        with self._lock:
            r = self._db.execute("SELECT size, root FROM logs WHERE origin = ?", (origin,)).fetchone()
        return (r[0], bytes(r[1])) if r else None

    def latest(self, origin: str) -> str | None:
        """The latest cosigned checkpoint for `origin`: its text, the log signature(s) that
        verified, and this witness's cosignature."""
        with self._lock:
            r = self._db.execute("SELECT note FROM logs WHERE origin = ?", (origin,)).fetchone()
        return r[0] if r else None

    def evidence(self, origin: str) -> list[tuple[int, str, bytes]]:
        """Refused requests with a valid log signature: (status, reason, request body)."""
        with self._lock:
            rows = self._db.execute("SELECT status, reason, request FROM evidence WHERE origin = ? "
                                    "ORDER BY id", (origin,)).fetchall()
        return [(s, r, bytes(b)) for s, r, b in rows]

    def status(self) -> dict[str, Any]:
        logs = []
        for origin, keys in sorted(self.logs.items()):
            rec = self.recorded(origin)
            logs.append({"origin": origin, "keys": [verifier_key(n, k) for n, k in keys],
                         "size": rec[0] if rec else 0, "cosigned": rec is not None})
        return {"witness": self.name, "vkey": self.vkey, "logs": logs}

    # -- add-checkpoint
    def add_checkpoint(self, request_body: bytes) -> tuple[int, str, bytes]:
        """The tlog-witness add-checkpoint endpoint: (HTTP status, content type, body)."""
        if len(request_body) > self.max_request_bytes:
            return _text(413, f"request body is larger than {self.max_request_bytes} bytes")
        try:
            req = parse_add_checkpoint(request_body)
        except NoteError as e:
            return _text(400, f"malformed add-checkpoint request: {e}")
        head = req.head
        keys = self.logs.get(head.origin)
        if keys is None:
            return _text(404, f"unknown log origin {head.origin!r}")
        good = [s for s in req.signatures if _log_signature_ok(s, keys, req.text)]
        if not good:
            return _text(403, f"no valid signature on the checkpoint by a key trusted for "
                              f"{head.origin!r}")
        if req.old_size > head.size:
            return _text(400, f"old size {req.old_size} is larger than the checkpoint size {head.size}")
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")  # check and update atomically (tlog-witness race)
            try:
                out = self._check_and_record(req, good, request_body)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return out

    def _check_and_record(self, req: AddCheckpointRequest, good: list[_Signature],
                          request_body: bytes) -> tuple[int, str, bytes]:
        db, head = self._db, req.head
        r = db.execute("SELECT size, root, timestamp FROM logs WHERE origin = ?",
                       (head.origin,)).fetchone()
        size, root, last_ts = (r[0], bytes(r[1]), r[2]) if r else (0, EMPTY_ROOT, 0)
        if req.old_size != size:
            return 409, SIZE_CONTENT_TYPE, f"{size}\n".encode()
        if head.size == size and head.root != root:
            reason = (f"fork: a checkpoint of size {size} with another root than the one "
                      "this witness cosigned")
            self._keep_evidence(head.origin, 409, reason, request_body)
            return _text(409, reason)
        try:
            verify_consistency(size, head.size, req.proof, root, head.root)
        except ProofError as e:
            reason = f"consistency proof from size {size} to {head.size} does not verify: {e}"
            self._keep_evidence(head.origin, 422, reason, request_body)
            return _text(422, reason)
        # never go back in time either: a later, larger tree head gets a later timestamp
        ts = min(max(int(self.clock()), last_ts), _MAX_TIMESTAMP)
        line = cosign(req.text, self.name, self.key, ts)
        note = req.text + "\n" + "".join(s.line for s in good) + line
        db.execute("INSERT INTO logs VALUES (?,?,?,?,?) ON CONFLICT (origin) DO UPDATE SET "
                   "size = excluded.size, root = excluded.root, timestamp = excluded.timestamp, "
                   "note = excluded.note", (head.origin, head.size, head.root, ts, note))
        return 200, TEXT, line.encode()

    def _keep_evidence(self, origin: str, status: int, reason: str, request: bytes) -> None:
        n = self._db.execute("SELECT count(*) FROM evidence WHERE origin = ?", (origin,)).fetchone()[0]
        if n < MAX_EVIDENCE_PER_ORIGIN:
            self._db.execute("INSERT OR IGNORE INTO evidence (origin, received, status, reason, "
                             "request) VALUES (?,?,?,?,?)",
                             (origin, int(self.clock()), status, reason, request))


def _log_signature_ok(s: _Signature, keys: list[LogKeys], text: str) -> bool:
    for name, pub in keys:
        if s.name == name and s.raw[:4] == key_id(name, pub):
            return verify_signature(pub, s.raw[4:], text.encode())
    return False  # tlog-witness: "it MUST ignore signatures from unknown keys"


def _text(status: int, message: str) -> tuple[int, str, bytes]:
    return status, TEXT, (message + "\n").encode()


# ---------------------------------------------------------------- HTTP


def make_app(witness: Witness):
    """A Starlette app: POST /add-checkpoint, GET /checkpoint?origin=..., GET /."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def reply(status: int, content_type: str, body: bytes) -> Response:
        # set the header verbatim: Starlette would append a charset to text/x.tlog.size
        return Response(body, status_code=status, headers={"content-type": content_type})

    def guarded(handler):
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception:  # never a traceback to the client; keep it in the server log
                traceback.print_exc(file=sys.stderr)
                return reply(*_text(500, "internal error in the witness"))
        return endpoint

    async def add_checkpoint(request: Request) -> Response:
        limit = witness.max_request_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return reply(*_text(413, f"request body is larger than {limit} bytes"))
        chunks, n = [], 0
        async for chunk in request.stream():
            n += len(chunk)
            if n > limit:
                return reply(*_text(413, f"request body is larger than {limit} bytes"))
            chunks.append(chunk)
        return reply(*await run_in_threadpool(witness.add_checkpoint, b"".join(chunks)))

    async def checkpoint(request: Request) -> Response:
        origin = request.query_params.get("origin")
        if not origin:
            return reply(*_text(400, "missing the origin query parameter"))
        note = await run_in_threadpool(witness.latest, origin)
        if note is None:
            return reply(*_text(404, f"no cosigned checkpoint for origin {origin!r}"))
        return reply(200, TEXT, note.encode())

    async def status(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(witness.status))

    return Starlette(routes=[
        Route("/add-checkpoint", guarded(add_checkpoint), methods=["POST"]),
        Route("/checkpoint", guarded(checkpoint), methods=["GET"]),
        Route("/", guarded(status), methods=["GET"]),
    ])


# ---------------------------------------------------------------- client


class WitnessError(Exception):
    pass


class WitnessRefused(WitnessError):
    """The witness answered, and not with a cosignature."""

    def __init__(self, status: int, detail: str, recorded_size: int | None = None) -> None:
        super().__init__(f"witness refused ({status}): {detail}")
        self.status = status
        self.detail = detail
        self.recorded_size = recorded_size


class WitnessUnreachable(WitnessError):
    pass


def _url(base: str, path: str) -> str:
    return base.rstrip("/") + path


def submit(url: str, note: str, old_size: int, proof: list[bytes], timeout: float = 10) -> str:
    """POST the checkpoint `note` with the consistency proof from `old_size` to the witness
    at `url` (its submission prefix); return the cosignature line(s). Raise WitnessRefused
    (with `recorded_size` on a 409 text/x.tlog.size) or WitnessUnreachable."""
    import httpx

    try:
        r = httpx.post(_url(url, "/add-checkpoint"), content=encode_add_checkpoint(note, old_size, proof),
                       timeout=timeout)
    except httpx.HTTPError as e:
        raise WitnessUnreachable(f"{url}: {e}") from e
    if r.status_code != 200:
        ctype = r.headers.get("content-type", "").split(";")[0].strip()
        recorded = None
        if r.status_code == 409 and ctype == SIZE_CONTENT_TYPE:
            text = r.text
            if text.endswith("\n") and _DECIMAL.fullmatch(text[:-1]):
                recorded = int(text[:-1])
        raise WitnessRefused(r.status_code, r.text.strip(), recorded)
    lines = r.text
    if not lines or not all(x.startswith(_DASH + " ") for x in lines[:-1].split("\n")) \
            or not lines.endswith("\n"):
        raise WitnessError(f"{url}: the witness answered 200 without signature lines")
    return lines


def submit_synced(url: str, note: str, proof_from: Callable[[int], list[bytes]], old_size: int = 0,
                  timeout: float = 10) -> str:
    """`submit`, and if the witness records another size (409), once more from that size
    with `proof_from(recorded size)`."""
    try:
        return submit(url, note, old_size, proof_from(old_size), timeout)
    except WitnessRefused as e:
        if e.recorded_size is None or e.recorded_size == old_size:
            raise
        return submit(url, note, e.recorded_size, proof_from(e.recorded_size), timeout)


def fetch_latest(url: str, origin: str, timeout: float = 10) -> str | None:
    """The witness's latest cosigned checkpoint for `origin` (None if it has none)."""
    import httpx

    try:
        r = httpx.get(_url(url, "/checkpoint"), params={"origin": origin}, timeout=timeout)
    except httpx.HTTPError as e:
        raise WitnessUnreachable(f"{url}: {e}") from e
    if r.status_code == 404:
        return None
    if r.status_code != 200:
        raise WitnessRefused(r.status_code, r.text.strip())
    return r.text


# ---------------------------------------------------------------- running one


def parse_log_option(text: str) -> tuple[str, tuple[str, bytes]]:
    """"ORIGIN=NAME+HASH+KEY" -> (origin, (key name, public key)); ValueError if bad."""
    origin, sep, vkey = text.partition("=")
    if not sep or not origin or not vkey:
        raise ValueError(f"--log must be ORIGIN=NAME+HASH+KEY (a log's verifier key), got {text!r}")
    try:
        return origin, parse_log_key(vkey)
    except NoteError as e:
        raise ValueError(f"--log {text!r}: {e}") from e


def load_or_create_key(path: str | os.PathLike[str]) -> SigningKey:
    """The Ed25519 key whose seed is the 64 hex characters in `path`, created (mode 0600)
    if the file does not exist. ValueError if it cannot be read or is not such a seed."""
    return SigningKey.load(path, what="witness key file")  # KeyFileError is a ValueError


def build_witness(key_file: str | os.PathLike[str], state: str | os.PathLike[str],
                  logs: list[str], name: str) -> Witness:
    if not logs:
        raise ValueError("a witness needs at least one --log ORIGIN=NAME+HASH+KEY")
    accepted: dict[str, list[LogKeys]] = {}
    for option in logs:
        origin, pair = parse_log_option(option)
        accepted.setdefault(origin, []).append(pair)
    try:
        _check_key_name(name)
    except NoteError as e:
        raise ValueError(f"--name: {e}") from e
    return Witness(name, load_or_create_key(key_file), accepted, state)


def run_witness(key_file: str | os.PathLike[str], state: str | os.PathLike[str], logs: list[str],
                host: str, port: int, name: str) -> None:
    """Serve a witness over HTTP until interrupted; print its vkey first. ValueError for a
    bad --log, name, key file or state file (before anything is served)."""
    import uvicorn

    witness = build_witness(key_file, state, logs, name)
    print(witness.vkey, flush=True)
    print(json.dumps({"listening": f"http://{host}:{port}", "logs": sorted(witness.logs)}),
          file=sys.stderr, flush=True)
    try:
        uvicorn.run(make_app(witness), host=host, port=port, log_level="warning")
    finally:
        witness.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sandbank.audit.witness",
                                description="A C2SP tlog-witness for sandbank audit logs.")
    p.add_argument("--key-file", required=True, help="Ed25519 seed, 64 hex chars (created if absent)")
    p.add_argument("--state", required=True, help="SQLite state file")
    p.add_argument("--log", action="append", default=[], required=True,
                   metavar="ORIGIN=NAME+HASH+KEY", help="a log to accept (repeatable)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7380)
    p.add_argument("--name", required=True, help="the witness's key name, e.g. example.org/w1")
    a = p.parse_args(argv)
    try:
        run_witness(a.key_file, a.state, a.log, a.host, a.port, a.name)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
