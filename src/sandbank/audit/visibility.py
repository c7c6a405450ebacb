"""Who may read which log entry: public, the parties it names, or overseers only.

The log file holds every entry in full (the operator's and the auditor's copy). What a live
server hands out is gated by the economy's table, which every mechanism declares for its own
kinds (`Mechanism.visibility`, kernel/mechanism.py; docs/server.md lists every kind). In the
standard economy:

- **public**: the registry (owners, agents, overseers, accounts), the run header, public
  market data (orders, fills, market states, auctions opened and cleared), the task market,
  the pricing games, governance, certificates, roles, reputation, rollbacks;
- **parties**: private flows and an agent's own record — payments, ledger transfers, messages,
  boundary crossings, sealed bids, stakes, refusals, status changes, traces: readable by
  the identities the entry names (`parties`), by overseers and the operator;
- **overseers**: oversight content — alerts (whose summaries quote hidden indicators),
  breakers, tickets, caps, refusals at the server's door, admission records: overseers and
  the operator only.

An unknown kind is treated as `overseers` (fail closed). Every entry that is not public
carries a `blind`: 120 bits derived from the operator's secret key and the entry's seq, so its
leaf hash, which anyone may have (inclusion proofs work for everyone), is a hiding commitment:
nobody can confirm a guess of its content (a payment's amount, say) against it.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from hashlib import sha256
from typing import Any

from sandbank.kernel.mechanism import OVERSEERS, PARTIES, PUBLIC

# fields that name the agents an entry is about (besides its actor)
_PARTY_FIELDS = ("to", "agent", "worker")
_PARTY_LISTS = ("recipients", "agents")


def visibility(kind: str, table: Mapping[str, str]) -> str:
    """Who may read entries of `kind`, by the economy's table (`Kernel.visibility`: what
    every mechanism declares); a kind it does not declare is for overseers only."""
    return table.get(kind, OVERSEERS)


def parties(d: dict[str, Any], holder_of: Any = None) -> set[int]:
    """The identities an entry is about: its actor, the agents it names, and (with
    `holder_of(account) -> id`) the holders of the accounts its transfer moves money between."""
    out = {d.get("actor")}
    for f in _PARTY_FIELDS:
        if type(d.get(f)) is int:
            out.add(d[f])
    for f in _PARTY_LISTS:
        if isinstance(d.get(f), list):
            out.update(x for x in d[f] if type(x) is int)
    if holder_of is not None:
        for f in ("debit", "credit", "account"):
            if type(d.get(f)) is int:
                out.add(holder_of(d[f]))
        for t in d.get("transfers") or ():
            out.add(holder_of(t.get("debit")))
            out.add(holder_of(t.get("credit")))
    out.discard(None)
    return out


def may_read(d: dict[str, Any], reader: int | None, *, overseer: bool,
             table: Mapping[str, str], holder_of: Any = None) -> bool:
    """May `reader` (an agent id, None for the public) read entry `d` in full, by the
    economy's visibility `table`? Overseers and the operator read everything."""
    v = visibility(d["kind"], table)
    if v == PUBLIC or overseer:
        return True
    if v == PARTIES and reader is not None:
        return reader in parties(d, holder_of)
    return False


class Blinds:
    """The blinds of one log: 120 bits per entry, bytes [15·seq, 15·seq + 15) of an AES-256
    keystream in counter mode under a key derived from the operator's secret key (never from
    anything public) — AES as a pseudorandom function of the position. Made 1,024 at a time
    (one call into `cryptography`, one base64 pass: 15 bytes are exactly 20 characters), as
    the blinds cost every non-public entry 20 bytes and the hot path its time."""

    BATCH = 1024

    def __init__(self, operator_seed: bytes) -> None:
        self._key = hmac.new(operator_seed, b"sandbank/blind/v1", sha256).digest()
        self._start = -2 * self.BATCH  # nothing made yet
        self._text = ""

    def of(self, seq: int) -> str:
        i = seq - self._start
        if not 0 <= i < self.BATCH:
            self._fill(seq)
            i = 0
        return self._text[20 * i:20 * i + 20]

    def _fill(self, seq: int) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        first = 15 * seq
        block, skip = divmod(first, 16)
        enc = Cipher(algorithms.AES(self._key), modes.CTR(block.to_bytes(16, "big"))).encryptor()
        stream = enc.update(bytes(skip + 15 * self.BATCH))[skip:]
        self._start, self._text = seq, base64.b64encode(stream).decode()
