"""The server's credential checks as plain functions: the routes (server/app.py) call them.

Every credential the server accepts is one of:
- a **bearer token** (the operator's, the console overseer's): `Authorization: Bearer <token>`,
  the scheme's name in any case (RFC 9110 §11.1), one space, then the token byte for byte.
  Nothing else matches: not a prefix or an extension of the token, not `Bearer ` alone, not an
  empty token (a server without that token accepts no bearer for it);
- a **read signature**: an Ed25519 signature, as exactly 128 hex digits, over
  `<what>:<id>:<tick>` (`observe` for an agent, `oversee` for an overseer) by that identity's
  key, naming a tick at most `FRESH_TICKS` old and not in the future;
- a **signed action** (checked by the kernel's identity guard, kernel/guards.py).

An identity named in a header is a plain ASCII decimal (`parse_id`): `int()` alone would take
other scripts' digits, underscores and whitespace, and `str.isdigit` says yes to '²', which
`int()` then refuses (a 500 where a 401 was due).
"""

from __future__ import annotations

import hmac
import re

from sandbank.identity.keys import verify_signature

FRESH_TICKS = 2  # a read signature may name a tick this old (ticks run while requests travel)
MAX_ID_DIGITS = 19
_ID = re.compile(rf"-?[0-9]{{1,{MAX_ID_DIGITS}}}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{128}")


def bearer(authorization: str | None, token: str | None) -> bool:
    """Does the `Authorization` header carry exactly this bearer token? (compared in constant
    time; no token configured ⇒ never)"""
    if not token or authorization is None or len(authorization) < 7:
        return False
    scheme, rest = authorization[:7], authorization[7:]
    if scheme.lower() != "bearer ":
        return False
    return hmac.compare_digest(rest.encode("utf-8", "surrogateescape"), token.encode())


def parse_id(text: str | None) -> int | None:
    """An identity's id as a header gives it: ASCII digits with an optional leading '-', at
    most 19 digits; anything else is None."""
    if text is None or not _ID.fullmatch(text):
        return None
    return int(text)


def fresh(now: int, tick: int | None) -> int | None:
    """The tick a read signature names if it is fresh (`now - FRESH_TICKS ..= now`, and no
    tick before 0; no tick given means now), else None."""
    signed = now if tick is None else tick
    return signed if max(0, now - FRESH_TICKS) <= signed <= now else None


def read_message(what: str, who: int, tick: int) -> bytes:
    """The bytes a read signature covers."""
    return f"{what}:{who}:{tick}".encode()


def signed_by(public_key: bytes, signature: str | None, message: bytes) -> bool:
    """Is `signature` (128 hex digits) `public_key`'s signature over `message`?"""
    if signature is None or not _SIGNATURE.fullmatch(signature):
        return False
    return verify_signature(public_key, bytes.fromhex(signature), message)
