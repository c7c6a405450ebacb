"""Verifiable credentials (W3C VC Data Model 2.0) secured with Data Integrity
`eddsa-jcs-2022`, identities as `did:key` (Ed25519), revocation through a Bitstring Status
List — the credentials of checklist 54 (owner attestations, proof of personhood).

- **did:key**: `did:key:z…`, the multibase base58-btc of the multicodec `ed25519-pub`
  (0xed 0x01) and the 32-byte key; its one verification method is `did:key:z…#z…`.
- **eddsa-jcs-2022** (W3C vc-di-eddsa): the proof options (type `DataIntegrityProof`,
  cryptosuite, created, verificationMethod, proofPurpose, and the document's @context) and
  the document without its proof are each canonicalised with JCS (RFC 8785, the log's own
  canonical form: kernel/canonical.py) and hashed with SHA-256; the signature is Ed25519
  over the proof options' hash followed by the document's; `proofValue` is it in multibase
  base58-btc. `tests/test_credentials.py` checks it against the specification's published
  test vectors (TestVectors/eddsa-jcs-2022).
- **Bitstring Status List** (W3C): a credential whose subject's `encodedList` is the
  multibase base64url (no padding) of the GZIP of a bitstring of at least 131,072 bits; a
  credential's `credentialStatus` (`BitstringStatusListEntry`, purpose `revocation`) names
  the list and its index. The bit set: revoked. A sandbox does not fetch lists: the
  operator gives the kernel a signed list (regulation/personhood.py), which it verifies.

Hand-written (base58 and the proof are a few lines each; no JSON-LD processing is needed
for eddsa-jcs-2022, and the JCS encoder is the log's own): nothing here can fetch a
document or a context from the network, which a verifier inside the kernel must never do.
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
from typing import Any

from sandbank.identity.keys import SigningKey, verify_signature
from sandbank.kernel.canonical import canonical_bytes
from sandbank.kernel.errors import ConfigError

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
ED25519_PUB = b"\xed\x01"  # multicodec ed25519-pub (varint 0xed)
SUITE = "eddsa-jcs-2022"
VC_CONTEXT = "https://www.w3.org/ns/credentials/v2"
MIN_BITS = 131_072  # a status list's bitstring is at least 16 KB
MAX_LIST_BYTES = 1 << 20  # an encoded list longer than this is refused (decompression bomb)


class CredentialError(ValueError):
    """A credential that does not verify, saying why."""


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        i = _B58.find(c)
        if i < 0:
            raise CredentialError(f"not base58-btc: {c!r}")
        n = n * 58 + i
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def did_key(public_key: bytes) -> str:
    """The did:key of an Ed25519 public key."""
    return "did:key:z" + b58encode(ED25519_PUB + public_key)


def did_key_public(did: str) -> bytes:
    """The Ed25519 public key a did:key (or its verification method) names."""
    base = did.split("#", 1)[0]
    if not base.startswith("did:key:z"):
        raise CredentialError(f"not a did:key: {did!r}")
    raw = b58decode(base[len("did:key:z"):])
    if raw[:2] != ED25519_PUB or len(raw) != 34:
        raise CredentialError("the did:key is not an Ed25519 key")
    if "#" in did and did.split("#", 1)[1] != base[len("did:key:"):]:
        raise CredentialError("the verification method is not the did:key's own")
    return raw[2:]


def check_did_keys(keys: Any, where: str, most: int) -> None:
    """A configuration's list of trusted did:keys (certifiers, issuers): 1..`most` of them,
    each an Ed25519 did:key; ConfigError naming `where` and the entry otherwise."""
    if not isinstance(keys, list) or not 1 <= len(keys) <= most:
        raise ConfigError(f"{where} must list 1..{most} did:keys")
    for i, key in enumerate(keys):
        try:
            did_key_public(key if isinstance(key, str) else "")
        except CredentialError as e:
            raise ConfigError(f"{where}.{i}: {e}") from None


def _hash_data(document: dict[str, Any], options: dict[str, Any]) -> bytes:
    return hashlib.sha256(canonical_bytes(options)).digest() + \
        hashlib.sha256(canonical_bytes(document)).digest()


def issue(credential: dict[str, Any], key: SigningKey, created: str,
          purpose: str = "assertionMethod") -> dict[str, Any]:
    """`credential` secured with an eddsa-jcs-2022 proof by `key` (its did:key's method)."""
    did = did_key(key.public)
    doc = copy.deepcopy(credential)
    doc.pop("proof", None)
    options = {"type": "DataIntegrityProof", "cryptosuite": SUITE, "created": created,
               "verificationMethod": f"{did}#{did[len('did:key:'):]}",
               "proofPurpose": purpose}
    if "@context" in doc:
        options["@context"] = doc["@context"]
    sig = key.sign(_hash_data(doc, options))
    return {**doc, "proof": {**options, "proofValue": "z" + b58encode(sig)}}


def verify(secured: Any) -> bytes:
    """Check a credential's eddsa-jcs-2022 proof; returns the signer's public key, or raises
    CredentialError saying what does not hold."""
    if not isinstance(secured, dict) or not isinstance(secured.get("proof"), dict):
        raise CredentialError("not a secured document (no proof)")
    doc = {k: v for k, v in secured.items() if k != "proof"}
    options = dict(secured["proof"])
    value = options.pop("proofValue", None)
    if options.get("type") != "DataIntegrityProof" or options.get("cryptosuite") != SUITE:
        raise CredentialError(f"not a DataIntegrityProof of {SUITE}")
    if not isinstance(value, str) or not value.startswith("z"):
        raise CredentialError("proofValue is not multibase base58-btc")
    if "@context" in options:
        ctx = options["@context"]
        have = doc.get("@context", [])
        if not isinstance(ctx, list) or not isinstance(have, list) or have[:len(ctx)] != ctx:
            raise CredentialError("the document's @context does not start with the proof's")
        doc["@context"] = ctx
    public = did_key_public(str(options.get("verificationMethod", "")))
    if not verify_signature(public, b58decode(value[1:]), _hash_data(doc, options)):
        raise CredentialError("the proof's signature does not verify")
    return public


# ------------------------------------------------------------------ Bitstring Status List
def encode_list(bits: bytearray) -> str:
    """A bitstring (bit 0 is the first byte's highest bit) as `encodedList`."""
    return "u" + base64.urlsafe_b64encode(gzip.compress(bytes(bits), mtime=0)).decode().rstrip("=")


def decode_list(encoded: str) -> bytes:
    if not isinstance(encoded, str) or not encoded.startswith("u") or \
            len(encoded) > MAX_LIST_BYTES:
        raise CredentialError("encodedList is not multibase base64url")
    try:
        raw = base64.urlsafe_b64decode(encoded[1:] + "=" * (-len(encoded[1:]) % 4))
    except ValueError as e:
        raise CredentialError(f"encodedList is not base64url: {e}") from None
    try:
        with gzip.GzipFile(fileobj=__import__("io").BytesIO(raw)) as f:
            bits = f.read(MIN_BITS // 8 * 64 + 1)  # (bounded: a bomb stops here)
    except (OSError, EOFError, __import__("zlib").error) as e:
        raise CredentialError(f"encodedList is not GZIP: {e}") from None
    if len(bits) * 8 < MIN_BITS:
        raise CredentialError(f"a status list has at least {MIN_BITS} bits")
    return bits


def bit(bits: bytes, index: int) -> bool:
    if not 0 <= index < len(bits) * 8:
        raise CredentialError(f"status index {index} is outside the list")
    return bool(bits[index // 8] >> (7 - index % 8) & 1)


def status_list(list_id: str, issuer_key: SigningKey, revoked: list[int], created: str,
                size: int = MIN_BITS) -> dict[str, Any]:
    """A signed BitstringStatusListCredential with the `revoked` indexes set."""
    bits = bytearray(size // 8)
    for i in revoked:
        bits[i // 8] |= 1 << (7 - i % 8)
    return issue({
        "@context": [VC_CONTEXT], "id": list_id,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": did_key(issuer_key.public), "validFrom": created,
        "credentialSubject": {"id": f"{list_id}#list", "type": "BitstringStatusList",
                              "statusPurpose": "revocation",
                              "encodedList": encode_list(bits)}}, issuer_key, created)


def status_entry(list_id: str, index: int) -> dict[str, Any]:
    return {"id": f"{list_id}#{index}", "type": "BitstringStatusListEntry",
            "statusPurpose": "revocation", "statusListIndex": str(index),
            "statusListCredential": list_id}


def personhood(owner_public: bytes, issuer_key: SigningKey, created: str,
               status: dict[str, Any] | None = None) -> dict[str, Any]:
    """A proof-of-personhood credential for the owner of `owner_public` (its did:key)."""
    vc: dict[str, Any] = {
        "@context": [VC_CONTEXT], "type": ["VerifiableCredential", "PersonhoodCredential"],
        "issuer": did_key(issuer_key.public), "validFrom": created,
        "credentialSubject": {"id": did_key(owner_public), "personhood": True}}
    if status:
        vc["credentialStatus"] = status
    return issue(vc, issuer_key, created)
