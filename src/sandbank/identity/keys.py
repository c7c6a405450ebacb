"""Ed25519 keys (from `cryptography`; never hand-written crypto) and the run secret.

No key is ever derived from anything public. A run's keys come from OS randomness
(`SigningKey.generate`) or from its `RunSecret`: 32 random bytes kept in a key file outside
the log (mode 0600), from which each identity's key is derived by HKDF-SHA256 (RFC 5869) with
the identity's label as `info`. The seed, which the log's header publishes, only drives the
economy's randomness: knowing it gives no key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


class SigningKey:
    """An Ed25519 private key with its raw public key at hand."""

    __slots__ = ("_key", "public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, create: bool = True,
             what: str = "key file") -> SigningKey:
        """The key whose seed is in `path` (64 hex characters), created (mode 0600) if absent
        and `create`; KeyFileError names the file otherwise."""
        return cls.from_seed(read_secret_file(path, create=create, what=what))

    def seed_bytes(self) -> bytes:
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class KeyFileError(ValueError):
    """A key file that cannot be read or used; the message names the file and the fix."""


def read_secret_file(path: str | os.PathLike[str], *, create: bool = True,
                     what: str = "key file") -> bytes:
    """32 secret bytes kept as 64 hex characters in `path`: a run secret, or an Ed25519 seed
    (an agent's, an owner's, a witness's key). Created from OS randomness with mode 0600 if
    absent and `create` (O_EXCL: never over another file). KeyFileError names the file."""
    p = Path(path)
    if p.is_dir():
        raise KeyFileError(f"the {what} {p} is a directory: name a file")
    if not p.exists():
        if not create:
            raise KeyFileError(f"no {what} at {p}")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise KeyFileError(f"cannot create the {what} {p}: {e.strerror or e}") from None
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # created meanwhile by another process: read that one
            pass
        except OSError as e:
            raise KeyFileError(f"cannot create the {what} {p}: {e.strerror}") from None
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
    try:
        raw = bytes.fromhex(p.read_text()[:200].strip())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) else "it does not hold 64 hex characters"
        raise KeyFileError(f"cannot read the {what} {p}: {why}") from None
    if len(raw) != 32:
        raise KeyFileError(f"the {what} {p} holds {len(raw)} bytes; it must hold 32 (64 hex "
                           f"characters)")
    return raw


class RunSecret:
    """32 secret bytes from which every key of a run is derived (HKDF-SHA256, the label as
    info): same secret and label, same key; without the secret, no key. Never logged."""

    SIZE = 32
    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) != self.SIZE:
            raise ValueError(f"a run secret is {self.SIZE} bytes")
        self._secret = bytes(secret)

    @classmethod
    def generate(cls) -> RunSecret:
        return cls(secrets.token_bytes(cls.SIZE))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, create: bool = True) -> RunSecret:
        """The secret in `path` (64 hex characters); created from OS randomness with mode 0600
        if absent and `create`. Raises KeyFileError naming the file otherwise."""
        return cls(read_secret_file(path, create=create))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the secret to a new file, mode 0600 (refuses to overwrite)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self._secret.hex() + "\n")

    def key(self, *label: object) -> SigningKey:
        """The key of one identity, e.g. `key("operator")`, `key("run", seed, "agent", 3)`."""
        info = "sandbank/key/v1/" + "/".join(str(x) for x in label)
        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=info.encode()).derive(self._secret)
        return SigningKey.from_seed(seed)

    def __repr__(self) -> str:  # never print the secret
        return "RunSecret(<secret>)"
