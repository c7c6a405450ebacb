"""Keys and signatures: RFC 8032's first Ed25519 test vector, HKDF-SHA256 (RFC 5869) key
derivation checked against an independent computation, and the key files' edges."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat

import pytest

from sandbank.identity.keys import (
    KeyFileError,
    RunSecret,
    SigningKey,
    read_secret_file,
    verify_signature,
)

# RFC 8032 §7.1, TEST 1 (the empty message)
TV1_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
TV1_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
TV1_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e"
    "39701cf9b46bd25bf5f0595bbe24655141438e7a100b")


def test_rfc8032_test_vector_1():
    key = SigningKey.from_seed(TV1_SECRET)
    assert key.public == TV1_PUBLIC and key.seed_bytes() == TV1_SECRET
    assert key.sign(b"") == TV1_SIGNATURE
    assert verify_signature(TV1_PUBLIC, TV1_SIGNATURE, b"")


def test_a_signature_verifies_only_exactly():
    key = SigningKey.from_seed(TV1_SECRET)
    sig = key.sign(b"pay 5")
    assert verify_signature(key.public, sig, b"pay 5")
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    for pub, s, msg in ((key.public, sig, b"pay 6"), (key.public, flipped, b"pay 5"),
                        (SigningKey.from_seed(bytes(32)).public, sig, b"pay 5"),
                        (key.public[:31], sig, b"pay 5"), (key.public + b"\0", sig, b"pay 5"),
                        (key.public, sig[:63], b"pay 5"), (key.public, sig + b"\0", b"pay 5"),
                        (b"", b"", b""), (bytes(32), bytes(64), b"pay 5")):
        assert verify_signature(pub, s, msg) is False


def test_a_seed_is_32_bytes():
    for bad in (b"", bytes(31), bytes(33)):
        with pytest.raises(ValueError):
            SigningKey.from_seed(bad)
    assert SigningKey.generate().public != SigningKey.generate().public


def _hkdf_sha256(ikm: bytes, info: bytes) -> bytes:
    """RFC 5869 with no salt (a string of HashLen zeros), one block of output."""
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_run_keys_are_hkdf_of_the_secret_with_the_label():
    secret = bytes(range(32))
    rs = RunSecret(secret)
    for label, info in ((("operator",), "sandbank/key/v1/operator"),
                        (("run", 5, "agent", 3), "sandbank/key/v1/run/5/agent/3"),
                        (("console",), "sandbank/key/v1/console")):
        want = _hkdf_sha256(secret, info.encode())
        assert rs.key(*label).seed_bytes() == want, label
    assert rs.key("a").public == RunSecret(secret).key("a").public
    assert rs.key("a").public != rs.key("b").public != RunSecret(bytes(32)).key("b").public
    assert rs.key("run", 1, "agent", 23).public != rs.key("run", 12, "agent", 3).public
    assert secret.hex() not in repr(rs) and repr(rs) == "RunSecret(<secret>)"
    for bad in (b"", bytes(31), bytes(33)):
        with pytest.raises(ValueError):
            RunSecret(bad)


def test_a_secret_file_is_made_private_and_read_back(tmp_path):
    path = tmp_path / "deep" / "run.key"
    first = read_secret_file(path)
    assert len(first) == 32 and path.read_text() == first.hex() + "\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_secret_file(path) == first  # not re-created
    assert RunSecret.load(path).key("x").public == RunSecret(first).key("x").public
    assert SigningKey.load(path).seed_bytes() == first
    other = tmp_path / "saved.key"
    RunSecret(first).save(other)
    assert stat.S_IMODE(os.stat(other).st_mode) == 0o600
    assert read_secret_file(other, create=False) == first
    with pytest.raises(FileExistsError):
        RunSecret(first).save(other)
    spaced = tmp_path / "spaced.key"
    spaced.write_text("\n  " + first.hex() + "  \n\n")
    assert read_secret_file(spaced) == first


@pytest.mark.parametrize("content,message", [
    ("zz" * 32, "does not hold 64 hex characters"),
    ("ab" * 16, "holds 16 bytes; it must hold 32 (64 hex characters)"),
    ("ab" * 33, "holds 33 bytes; it must hold 32"),
    ("", "holds 0 bytes"),
])
def test_a_bad_secret_file_is_named_with_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "bad.key"
    path.write_text(content)
    import re

    with pytest.raises(KeyFileError, match=re.escape(message)) as e:
        read_secret_file(path, what="witness key")
    assert str(path) in str(e.value) and "witness key" in str(e.value)


def test_a_missing_or_directory_key_file(tmp_path):
    with pytest.raises(KeyFileError, match="no key file at .*none.key$"):
        read_secret_file(tmp_path / "none.key", create=False)
    with pytest.raises(KeyFileError, match="is a directory: name a file"):
        read_secret_file(tmp_path)
    with pytest.raises(KeyFileError, match="no owner key at"):
        SigningKey.load(tmp_path / "owner.key", create=False, what="owner key")
    with pytest.raises(KeyFileError):
        RunSecret.load(tmp_path / "none.key", create=False)
    assert not (tmp_path / "none.key").exists()


def test_key_files_are_created_by_default_even_two_folders_deep(tmp_path):
    deep = tmp_path / "a" / "b"
    key = SigningKey.load(deep / "owner.key")  # create defaults to True
    assert (deep / "owner.key").exists() and SigningKey.load(deep / "owner.key").public == key.public
    secret = RunSecret.load(tmp_path / "a" / "run.key")  # the folder exists already
    assert RunSecret.load(tmp_path / "a" / "run.key").key("x").public == secret.key("x").public
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(KeyFileError, match="cannot create the key file .*file/run.key: "):
        read_secret_file(tmp_path / "file" / "run.key")


def test_only_the_first_200_characters_of_a_key_file_are_read(tmp_path):
    path = tmp_path / "long.key"
    secret = bytes(range(32))
    path.write_text(secret.hex() + " " * (200 - 64) + "zz trailing junk")
    assert read_secret_file(path) == secret


def test_generated_secrets_are_fresh_and_the_size_errors_say_so():
    a, b = RunSecret.generate(), RunSecret.generate()
    assert a.key("x").public != b.key("x").public
    with pytest.raises(ValueError, match="^a run secret is 32 bytes$"):
        RunSecret(bytes(8))
    with pytest.raises(ValueError, match="^an Ed25519 seed is 32 bytes$"):
        SigningKey.from_seed(bytes(8))
