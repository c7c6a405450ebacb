"""Checkpoints in the C2SP `tlog-checkpoint` form, signed as a C2SP `signed-note`.

    <origin>
    <tree size>
    <base64 root hash>
    tick <n>
    state <base64 state digest>
    <blank line>
    — <key name> <base64(key id[4] || Ed25519 signature[64])>

The key id is the first 4 bytes of SHA-256(key name || "\\n" || 0x01 || public key), 0x01
being the Ed25519 algorithm byte of signed notes; the signature covers the note body
(everything before the blank line, with its final newline).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from hashlib import sha256

from sandbank.identity.keys import SigningKey, verify_signature

_ED25519 = b"\x01"
_DASH = "\u2014"


class NoteError(ValueError):
    pass


def key_id(name: str, public_key: bytes) -> bytes:
    return sha256(name.encode() + b"\n" + _ED25519 + public_key).digest()[:4]


def verifier_key(name: str, public_key: bytes) -> str:
    """The `name+hash+key` verifier string of signed notes, to pin an operator key."""
    return f"{name}+{key_id(name, public_key).hex()}+{base64.b64encode(_ED25519 + public_key).decode()}"


def parse_verifier_key(text: str) -> tuple[str, bytes]:
    try:
        name, kid, key = text.strip().split("+", 2)
        raw = base64.b64decode(key, validate=True)
    except ValueError as e:
        raise NoteError(f"not a verifier key (name+hash+base64): {text!r}") from e
    if len(raw) != 33 or raw[:1] != _ED25519:
        raise NoteError("verifier key is not an Ed25519 key")
    if key_id(name, raw[1:]).hex() != kid:
        raise NoteError("verifier key hash does not match its name and key")
    return name, raw[1:]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    tick: int
    state: bytes

    def body(self) -> str:
        return (
            f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"
            f"tick {self.tick}\nstate {base64.b64encode(self.state).decode()}\n"
        )

    def sign(self, name: str, key: SigningKey) -> str:
        body = self.body()
        sig = key.sign(body.encode())
        return f"{body}\n{_DASH} {name} {base64.b64encode(key_id(name, key.public) + sig).decode()}\n"


def open_checkpoint(note: str, name: str, public_key: bytes) -> Checkpoint:
    """Check the note's signature by (name, public_key) and parse it; raise NoteError."""
    body, sep, sigs = note.partition("\n\n")
    if not sep:
        raise NoteError("note has no signature block")
    body += "\n"
    want = key_id(name, public_key)
    found = False
    for line in sigs.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH:
            raise NoteError(f"malformed signature line: {line!r}")
        if parts[1] != name:
            continue
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except ValueError as e:
            raise NoteError("signature is not base64") from e
        if raw[:4] == want and verify_signature(public_key, raw[4:], body.encode()):
            found = True
    if not found:
        raise NoteError(f"no valid signature by {name!r}")
    return parse_checkpoint_body(body)


def parse_checkpoint_body(body: str) -> Checkpoint:
    lines = body.split("\n")
    if len(lines) != 6 or lines[5] != "":
        raise NoteError("checkpoint body must have 5 lines")
    try:
        origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
        tick_kw, tick = lines[3].split(" ")
        state_kw, state = lines[4].split(" ")
        if tick_kw != "tick" or state_kw != "state":
            raise ValueError("extension lines must be 'tick' and 'state'")
        cp = Checkpoint(origin, size, root, int(tick), base64.b64decode(state, validate=True))
    except ValueError as e:
        raise NoteError(f"malformed checkpoint: {e}") from e
    if str(cp.size) != lines[1] or len(cp.root) != 32 or len(cp.state) != 32:
        raise NoteError("malformed checkpoint: size or hash lengths")
    return cp
