"""Every place a value sits in the economy's state, found from the state's own structure, and
a way to change the value at one place: the digest-completeness test (tests/test_digest.py)
changes each kind of place in turn and asks whether the state digest sees it.

A place is a path of steps from the state: ("attr", name), ("key", k), ("idx", i); its
*shape* is the path with keys and indices replaced by `*` (`.exchange.orders[*].price`): the
test changes one value (the first and the last) of every shape, so a component, a field or
a mechanism added tomorrow is a new shape, and is covered without a word here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from sandbank.kernel.digest import DigestMap
from sandbank.kernel.fingerprint import MAX_DEPTH, SKIP, _attributes

Step = tuple[str, Any]
LEAF = (int, str, bytes, bool, float)


def shape(path: tuple[Step, ...]) -> str:
    out = []
    for kind, x in path:
        out.append(f".{x}" if kind == "attr" else "[*]" if kind in ("key", "idx") else
                   "{+}" if kind == "add" else "{-}" if kind == "del" else f"<{kind}>")
    return "".join(out)


def places(root: Any, parts: tuple[str, ...]) -> dict[str, list[tuple[Step, ...]]]:
    """Shape -> the concrete paths of that shape, in walk order (deterministic: mappings in
    insertion order, sets sorted)."""
    found: dict[str, list[tuple[Step, ...]]] = {}

    def add(path: tuple[Step, ...]) -> None:
        found.setdefault(shape(path), []).append(path)

    def walk(x: Any, path: tuple[Step, ...], depth: int) -> None:
        if depth > MAX_DEPTH or x is None and path:
            if x is None:
                add(path)
            return
        if isinstance(x, LEAF):
            add(path)
        elif isinstance(x, DigestMap) or callable(x):
            return
        elif isinstance(x, AbstractSet):
            add(path + (("add", None),))
            if x:
                add(path + (("del", None),))
        elif isinstance(x, Mapping):
            if x:
                add(path + (("del", None),))
            for k in list(x):
                walk(x[k], path + (("key", k),), depth + 1)
        elif isinstance(x, (Sequence, deque)):
            if x and not isinstance(x, tuple):
                add(path + (("del", None),))
            for i, v in enumerate(x):
                walk(v, path + (("idx", i),), depth + 1)
        else:
            for name in _attributes(x):
                if name not in SKIP:
                    walk(getattr(x, name), path + (("attr", name),), depth + 1)

    for name in parts:
        walk(getattr(root, name), (("attr", name),), 1)
    return found


def get(root: Any, path: tuple[Step, ...]) -> Any:
    x = root
    for kind, k in path:
        x = getattr(x, k) if kind == "attr" else x[k]
    return x


def changed(v: Any) -> Any:
    """Another value of the same type."""
    if v is None:
        return 1
    if type(v) is bool:
        return not v
    if isinstance(v, int):
        return v + 1
    if isinstance(v, float):
        return v + 0.5
    if isinstance(v, str):
        return v + "~"
    if isinstance(v, bytes):
        return bytes([v[0] ^ 1]) + v[1:] if v else b"\x01"
    raise TypeError(type(v))


def _set(parent: Any, step: Step, value: Any, root: Any, parent_path: tuple[Step, ...]) -> None:
    kind, k = step
    if kind == "attr":
        if isinstance(parent, tuple):  # a NamedTuple: replaced in its own parent
            _replace(root, parent_path, parent._replace(**{k: value}))
        else:
            object.__setattr__(parent, k, value)  # (frozen dataclasses too)
    elif isinstance(parent, tuple):
        items = list(parent)
        items[k] = value
        new = type(parent)(*items) if hasattr(parent, "_fields") else tuple(items)
        _replace(root, parent_path, new)
    else:
        parent[k] = value


def _replace(root: Any, path: tuple[Step, ...], value: Any) -> None:
    parent_path, step = path[:-1], path[-1]
    _set(get(root, parent_path), step, value, root, parent_path)


def change(root: Any, path: tuple[Step, ...]) -> None:
    """Change the value at `path` (a leaf: another value; `{+}`/`{-}`: a member more or
    less; a mapping's `{-}`: its last item gone)."""
    kind, _ = path[-1]
    if kind in ("add", "del"):
        coll = get(root, path[:-1])
        if kind == "add":
            member = _new_member(coll)
            if isinstance(coll, frozenset):
                _replace(root, path[:-1], coll | {member})
            else:
                coll.add(member)
        elif isinstance(coll, AbstractSet):
            gone = sorted(coll, key=repr)[-1]
            if isinstance(coll, frozenset):
                _replace(root, path[:-1], coll - {gone})
            else:
                coll.discard(gone)
        elif isinstance(coll, Mapping):
            del coll[list(coll)[-1]]
        else:
            coll.pop()
        return
    _replace(root, path, changed(get(root, path)))


def _new_member(coll: AbstractSet) -> Any:
    sample = next(iter(sorted(coll, key=repr)), 0)
    if isinstance(sample, tuple):
        return tuple(changed(v) if isinstance(v, LEAF) else v for v in sample) + (999_999,)
    candidate = changed(sample) if isinstance(sample, LEAF) else 999_999
    while candidate in coll:
        candidate = changed(candidate)
    return candidate
