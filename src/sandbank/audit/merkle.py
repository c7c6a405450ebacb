"""RFC 9162 §2.1 Merkle tree: hashes, a compact range for appends, proofs and verifiers.

- leaf hash  = SHA-256(0x00 || entry)
- node hash  = SHA-256(0x01 || left || right)
- the tree of n leaves splits at k, the largest power of two smaller than n.

Proof *generation* takes a `mth(start, end)` callback that returns the hash of the
subtree over leaves [start, end), so the same code serves an in-memory list and the store
(which keeps leaf hashes and every complete subtree at levels 8, 16, 24, ..., never the
whole tree in memory). Verifiers follow RFC 9162 §2.1.3.2 and §2.1.4.2 literally.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from hashlib import sha256

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()
STORED_LEVEL_STEP = 8  # complete subtrees whose level is a multiple of this are stored


def leaf_hash(entry: bytes) -> bytes:
    return sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """k with k < n <= 2k (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The right edge of a growing tree: one hash per set bit of its size.

    `append` returns the complete subtrees finished by this leaf whose level is a
    positive multiple of STORED_LEVEL_STEP, as (level, index, hash), for the store.
    """

    __slots__ = ("size", "_stack")

    def __init__(self, size: int = 0, stack: Sequence[bytes] = ()) -> None:
        if len(stack) != bin(size).count("1"):
            raise ValueError("compact range: stack does not match size")
        self.size = size
        self._stack = list(stack)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        stack = self._stack
        stack.append(leaf)
        n = self.size
        self.size = new_size = n + 1
        level = 0
        done: list[tuple[int, int, bytes]] = []
        while n & 1:
            right = stack.pop()
            h = sha256(b"\x01" + stack.pop() + right).digest()
            stack.append(h)
            n >>= 1
            level += 1
            if level % STORED_LEVEL_STEP == 0:
                done.append((level, (new_size >> level) - 1, h))
        return done

    def root(self) -> bytes:
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        acc = stack[-1]
        for h in reversed(stack[:-1]):
            acc = sha256(b"\x01" + h + acc).digest()
        return acc

    @property
    def hashes(self) -> list[bytes]:
        return list(self._stack)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves (reference implementation for tests and tools)."""
    r = CompactRange()
    for h in leaves:
        r.append(h)
    return r.root()


def list_mth(leaf_hashes: Sequence[bytes]) -> Callable[[int, int], bytes]:
    def mth(start: int, end: int) -> bytes:
        return root_of(leaf_hashes[start:end])

    return mth


# ---------------------------------------------------------------- proof generation


def inclusion_proof(index: int, size: int, mth: Callable[[int, int], bytes]) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    path: list[bytes] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = largest_power_of_two_below(end - start)
        if m < k:
            path.append(mth(start + k, end))
            end = start + k
        else:
            path.append(mth(start, start + k))
            start += k
            m -= k
    path.reverse()
    return path


def consistency_proof(size1: int, size2: int, mth: Callable[[int, int], bytes]) -> list[bytes]:
    """PROOF(size1, D[0:size2]) of RFC 9162 §2.1.4.1 (empty when size1 is 0 or size2)."""
    if not 0 <= size1 <= size2:
        raise ValueError(f"no consistency proof from size {size1} to size {size2}")
    if size1 == 0 or size1 == size2:
        return []
    path: list[bytes] = []
    start, end, m, whole = 0, size2, size1, True
    while m != end - start:
        n = end - start
        k = largest_power_of_two_below(n)
        if m <= k:
            path.append(mth(start + k, end))
            end = start + k
        else:
            path.append(mth(start, start + k))
            start += k
            m -= k
            whole = False
    if not whole:
        path.append(mth(start, end))
    path.reverse()
    return path


# ---------------------------------------------------------------- verification


class ProofError(ValueError):
    pass


def _check_hashes(*hashes: bytes) -> None:
    for h in hashes:
        if not isinstance(h, (bytes, bytearray)) or len(h) != HASH_SIZE:
            raise ProofError("a hash in the proof is not 32 bytes")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    if index >= size or index < 0:
        raise ProofError(f"index {index} is beyond tree size {size}")
    _check_hashes(leaf, *proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is too short")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ProofError unless `proof` shows leaf `index` of the tree `root` of `size`."""
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError("calculated root differs from the expected root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise ProofError unless the size2 tree (root2) extends the size1 tree (root1)."""
    if size2 < size1 or size1 < 0:
        raise ProofError(f"size2 {size2} < size1 {size1}")
    if size1 == size2:
        if proof:
            raise ProofError("sizes are equal but the proof is not empty")
        if root1 != root2:
            raise ProofError("sizes are equal but the roots differ")
        return
    if size1 == 0:
        if proof:
            raise ProofError("size1 is 0 but the proof is not empty")
        return
    if not proof:
        raise ProofError("empty proof")
    _check_hashes(*proof)
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # exact power of two: the old root is a node of the new tree
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is too short")
    if fr != root1:
        raise ProofError("proof does not reproduce the old root")
    if sr != root2:
        raise ProofError("proof does not reproduce the new root")
