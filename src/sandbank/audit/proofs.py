"""Proof bundles a third party can check offline (like C2SP tlog-proof): a signed
checkpoint, the entry or the old tree size, and the RFC 9162 proof hashes.

    {"type": "inclusion", "checkpoint": <signed note>, "index": n,
     "entry": <entry bytes, utf-8>, "proof": [<base64 hash>, ...], "verifier_key": ...}
    (from a live server, to a reader who may not read the entry: "entry": null, "leaf_hash":
     <base64>, "withheld": "parties" | "overseers" — the leaf's inclusion is proven)
    {"type": "consistency", "old_size": m, "old_root": <base64>, "old_checkpoint": <note|null>,
     "checkpoint": <signed note>, "proof": [...], "verifier_key": ...}
"""

from __future__ import annotations

import base64
from typing import Any

from sandbank.audit.checkpoint import Checkpoint, NoteError, open_checkpoint, verifier_key
from sandbank.audit.log import subtree_hash
from sandbank.audit.merkle import (
    EMPTY_ROOT,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from sandbank.kernel.canonical import parse
from sandbank.store.base import Store, StoredCheckpoint


class BundleError(ValueError):
    pass


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def _key(store: Store) -> tuple[str, bytes]:
    header = store.entry(0)
    if header is None:
        raise BundleError("the log is empty")
    h = parse(header.body)
    return h["key_name"], bytes.fromhex(h["operator_key"])


def _checkpoint(store: Store, tick: int | None) -> StoredCheckpoint:
    cp = store.last_checkpoint() if tick is None else store.checkpoint(tick)
    if cp is None:
        raise BundleError("no checkpoint" + ("" if tick is None else f" for tick {tick}"))
    return cp


def inclusion_bundle(store: Store, index: int, tick: int | None = None) -> dict[str, Any]:
    cp = _checkpoint(store, tick)
    if not 0 <= index < cp.size:
        raise BundleError(f"entry {index} is not in the checkpoint of tick {cp.tick} "
                          f"(size {cp.size})")
    entry = store.entry(index)
    if entry is None:
        raise BundleError(f"entry {index} is missing from the log")
    name, key = _key(store)
    proof = inclusion_proof(index, cp.size, lambda a, b: subtree_hash(store, a, b))
    return {"type": "inclusion", "checkpoint": cp.note, "index": index,
            "entry": entry.body.decode(), "proof": [_b64(p) for p in proof],
            "verifier_key": verifier_key(name, key)}


def consistency_bundle(store: Store, old_size: int, tick: int | None = None) -> dict[str, Any]:
    cp = _checkpoint(store, tick)
    if not 0 <= old_size <= cp.size:
        raise BundleError(f"size {old_size} is not within the checkpoint of tick {cp.tick} "
                          f"(size {cp.size})")
    name, key = _key(store)
    old_root = subtree_hash(store, 0, old_size) if old_size else EMPTY_ROOT
    old_note = next((c.note for c in store.checkpoints() if c.size == old_size), None)
    proof = consistency_proof(old_size, cp.size, lambda a, b: subtree_hash(store, a, b))
    return {"type": "consistency", "old_size": old_size, "old_root": _b64(old_root),
            "old_checkpoint": old_note, "checkpoint": cp.note,
            "proof": [_b64(p) for p in proof], "verifier_key": verifier_key(name, key)}


def check_bundle(bundle: Any, name: str, key: bytes) -> Checkpoint:
    """Verify a bundle against the operator key (name, key); raise BundleError, else return
    the checkpoint it was proven against."""
    try:
        kind = bundle["type"]
        cp = open_checkpoint(bundle["checkpoint"], name, key)
        proof = [base64.b64decode(p, validate=True) for p in bundle["proof"]]
        if kind == "inclusion" and bundle["entry"] is None:  # withheld: its leaf hash only
            verify_inclusion(bundle["index"], cp.size,
                             base64.b64decode(bundle["leaf_hash"], validate=True), proof, cp.root)
        elif kind == "inclusion":
            verify_inclusion(bundle["index"], cp.size, leaf_hash(bundle["entry"].encode()),
                             proof, cp.root)
            entry = parse(bundle["entry"].encode())
            if entry.get("seq") != bundle["index"]:
                raise BundleError("the entry's own seq differs from the proven index")
        elif kind == "consistency":
            old_root = base64.b64decode(bundle["old_root"], validate=True)
            if bundle.get("old_checkpoint"):
                old = open_checkpoint(bundle["old_checkpoint"], name, key)
                if old.size != bundle["old_size"] or old.root != old_root:
                    raise BundleError("old checkpoint does not match old_size/old_root")
            verify_consistency(bundle["old_size"], cp.size, proof, old_root, cp.root)
        else:
            raise BundleError(f"unknown bundle type {kind!r}")
    except (NoteError, ProofError) as e:
        raise BundleError(str(e)) from e
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, BundleError):
            raise
        raise BundleError(f"malformed bundle: {type(e).__name__}: {e}") from e
    return cp
