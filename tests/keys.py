"""Fixed keys for tests: reproducible from a public label, so never for anything real (the
product derives keys only from a secret: identity/keys.py)."""

from hashlib import sha256

from sandbank.identity.keys import RunSecret, SigningKey


def fixed_key(seed, label) -> SigningKey:
    return SigningKey.from_seed(sha256(f"sandbank-tests/{seed}/{label}".encode()).digest())


def fixed_secret(n=0) -> RunSecret:
    return RunSecret(sha256(f"sandbank-tests/secret/{n}".encode()).digest())
