"""RFC 9162 tree against the transparency-dev/merkle known-answer vectors and probes."""

from hashlib import sha256

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbank.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    list_mth,
    root_of,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex
LEAVES = [h(x) for x in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                         "606162636465666768696a6b6c6d6e6f"]]
ROOTS = [h(x) for x in [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]]
INCLUSION = [  # (leaf number, 1-based as in the Go test; size; proof)
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY = [
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")
HASHES = [leaf_hash(x) for x in LEAVES]


def test_roots_for_sizes_1_to_8():
    assert root_of([]) == EMPTY_ROOT
    for n in range(1, 9):
        assert root_of(HASHES[:n]) == ROOTS[n - 1], n


@pytest.mark.parametrize("leaf, size, proof", INCLUSION)
def test_inclusion_vectors_generate_and_verify(leaf, size, proof):
    proof = [h(p) for p in proof]
    assert inclusion_proof(leaf - 1, size, list_mth(HASHES)) == proof
    verify_inclusion(leaf - 1, size, HASHES[leaf - 1], proof, ROOTS[size - 1])


@pytest.mark.parametrize("size1, size2, proof", CONSISTENCY)
def test_consistency_vectors_generate_and_verify(size1, size2, proof):
    proof = [h(p) for p in proof]
    assert consistency_proof(size1, size2, list_mth(HASHES)) == proof
    verify_consistency(size1, size2, proof, ROOTS[size1 - 1], ROOTS[size2 - 1])


def inclusion_probes(index, size, proof, root, leaf):
    probes = [
        (index - 1, size, root, leaf, proof, "index - 1"),
        (index + 1, size, root, leaf, proof, "index + 1"),
        (index ^ 2, size, root, leaf, proof, "index ^ 2"),
        (index, size * 2, root, leaf, proof, "size * 2"),
        (index, size // 2, root, leaf, proof, "size / 2"),
        (index, size, root, b"WrongLeaf", proof, "wrong leaf"),
        (index, size, sha256(b"").digest(), leaf, proof, "empty root"),
        (index, size, SOME_HASH, leaf, proof, "random root"),
        (index, size, root, leaf, proof + [b""], "trailing garbage"),
        (index, size, root, leaf, proof + [root], "trailing root"),
        (index, size, root, leaf, [b""] + proof, "preceding garbage"),
        (index, size, root, leaf, [root] + proof, "preceding root"),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
        probes.append((index, size, root, leaf, bad, f"proof[{i}] bit 3"))
    if proof:
        probes.append((index, size, root, leaf, proof[:-1], "removed component"))
    if len(proof) > 1:
        probes.append((index, size, root, leaf, [proof[0], SOME_HASH] + proof[1:], "inserted"))
    return probes


def consistency_probes(size1, size2, root1, root2, proof):
    probes = [
        (size1 - 1, size2, root1, root2, proof, "size1 - 1"),
        (size1 + 1, size2, root1, root2, proof, "size1 + 1"),
        (size1 ^ 2, size2, root1, root2, proof, "size1 ^ 2"),
        (size1, size2 * 2, root1, root2, proof, "size2 * 2"),
        (size1, size2 // 2, root1, root2, proof, "size2 / 2"),
        (size1, size2, b"WrongRoot", root2, proof, "wrong root1"),
        (size1, size2, root1, b"WrongRoot", proof, "wrong root2"),
        (size1, size2, root2, root1, proof, "swapped roots"),
        (size1, size2, root1, root2, [], "empty proof"),
        (size1, size2, root1, root2, proof + [b""], "trailing garbage"),
        (size1, size2, root1, root2, proof + [root1], "trailing root1"),
        (size1, size2, root1, root2, proof + [root2], "trailing root2"),
        (size1, size2, root1, root2, [b""] + proof, "preceding garbage"),
        (size1, size2, root1, root2, [root1] + proof, "preceding root1"),
        (size1, size2, root1, root2, [root2] + proof, "preceding root2"),
        (size1, size2, root1, root2, [proof[0]] + proof, "preceding proof[0]"),
        (size1, size2, root1, root2, proof[:-1], "truncated proof"),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 16]) + bad[i][1:]
        probes.append((size1, size2, root1, root2, bad, f"proof[{i}] bit 4"))
    return probes


@pytest.mark.parametrize("leaf, size, proof", INCLUSION)
def test_every_inclusion_corruption_probe_is_rejected(leaf, size, proof):
    proof = [h(p) for p in proof]
    accepted = []
    for i, n, root, lh, p, desc in inclusion_probes(leaf - 1, size, proof, ROOTS[size - 1],
                                                    HASHES[leaf - 1]):
        try:
            verify_inclusion(i, n, lh, p, root)
            accepted.append(desc)
        except ProofError:
            pass
    assert accepted == []


@pytest.mark.parametrize("size1, size2, proof", CONSISTENCY)
def test_every_consistency_corruption_probe_is_rejected(size1, size2, proof):
    proof = [h(p) for p in proof]
    accepted = []
    for s1, s2, r1, r2, p, desc in consistency_probes(size1, size2, ROOTS[size1 - 1],
                                                       ROOTS[size2 - 1], proof):
        try:
            verify_consistency(s1, s2, p, r1, r2)
            accepted.append(desc)
        except ProofError:
            pass
    assert accepted == []


@pytest.mark.parametrize(
    "size1, size2, root1, root2, proof, ok",
    [
        (0, 0, b"r1", b"r2", [], False),
        (1, 1, b"r1", b"r2", [], False),
        (0, 0, b"r1", b"r1", [], True),
        (0, 1, b"r1", b"r2", [], True),
        (1, 1, b"r2", b"r2", [], True),
        (1, 0, b"r1", b"r2", [], False),
        (2, 1, b"r1", b"r2", [], False),
        (1, 2, b"r1", b"r2", [], False),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    ],
)
def test_consistency_edge_cases(size1, size2, root1, root2, proof, ok):
    if ok:
        verify_consistency(size1, size2, proof, root1, root2)
    else:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof, root1, root2)


def test_inclusion_edge_cases():
    for index, size in [(0, 0), (0, 1), (1, 0), (2, 1)]:
        for leaf, root in [(SOME_HASH, b""), (b"", EMPTY_ROOT), (SOME_HASH, EMPTY_ROOT)]:
            with pytest.raises(ProofError):
                verify_inclusion(index, size, leaf, [], root)
    one = leaf_hash(b"data")
    verify_inclusion(0, 1, one, [], one)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70), st.data())
def test_all_proofs_verify_and_every_byte_mutation_fails(n, data):
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    mth = list_mth(hashes)
    roots = [root_of(hashes[:k]) for k in range(n + 1)]
    m = data.draw(st.integers(1, n))
    i = data.draw(st.integers(0, n - 1))
    p = inclusion_proof(i, n, mth)
    verify_inclusion(i, n, hashes[i], p, roots[n])
    c = consistency_proof(m, n, mth)
    verify_consistency(m, n, c, roots[m], roots[n])
    for j in range(len(c)):
        for byte in (0, 31):
            bad = list(c)
            bad[j] = bad[j][:byte] + bytes([bad[j][byte] ^ 1]) + bad[j][byte + 1:]
            with pytest.raises(ProofError):
                verify_consistency(m, n, bad, roots[m], roots[n])
    for j in range(len(p)):
        bad = list(p)
        bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
        with pytest.raises(ProofError):
            verify_inclusion(i, n, hashes[i], bad, roots[n])


def test_compact_range_reports_stored_subtrees_and_matches_reference():
    r = CompactRange()
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(600)]
    stored = []
    for x in hashes:
        stored += r.append(x)
    assert r.root() == root_of(hashes)
    assert [(lvl, idx) for lvl, idx, _ in stored] == [(8, 0), (8, 1)]
    assert stored[1][2] == root_of(hashes[256:512])
