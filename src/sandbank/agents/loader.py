"""Which policy a scenario names, and whether its parameters are what the policy declares.

A scenario's `policy:` is one of
- a built-in name (`zi_trader`: `sandbank.agents.POLICIES`);
- an import path, `package.module:Class` (a subclass of `sandbank.agents.Agent`), found on
  the `--path` folders, then the working directory (as `python -m` would), then the
  interpreter's path;
- a name an installed package offers through the `sandbank.policies` entry point group
  (`[project.entry-points."sandbank.policies"] momentum2 = "mypkg.traders:Momentum"`).

The runner never imports a policy that is not shipped with sandbank: what such a policy
declares (its parameters, their defaults and types) is asked of a contained agent host
(agents/hosts.py `describe`), and the policy then runs in hosts unless the scenario says
`agents: {hosts: 0}` (trusted code only: it then shares the kernel's process).

A policy declares its parameters with `@policy(name, params={...}, types={...})`, or as a
class attribute `PARAMS = {...}` (and `TYPES`); a parameter's type is its default's unless
`types` says otherwise (a tuple of types, e.g. `(int, float)`). An unknown or ill-typed
parameter is an error naming the key, before anything runs.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

ENTRY_POINTS = "sandbank.policies"
_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict,
               "NoneType": type(None)}


class PolicyError(ValueError):
    """The policy cannot be found or loaded, or its parameters are wrong."""


@dataclass(frozen=True)
class PolicyRef:
    """A resolved policy: what the runner needs to build it in a host or in-process."""

    name: str  # as the scenario wrote it
    spec: str  # builtin:<name> or module:Class
    defaults: dict[str, Any] = field(default_factory=dict)
    types: dict[str, tuple[type, ...]] = field(default_factory=dict)
    binds: tuple[str, ...] = ()  # what a host must be able to read to import it
    paths: tuple[str, ...] = ()  # what goes on a host's import path for it

    @property
    def builtin(self) -> bool:
        return self.spec.startswith("builtin:")


def search_path(extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Where user policies are imported from: the given folders, then the working directory."""
    out = [str(Path(p).resolve()) for p in extra]
    cwd = os.getcwd()
    return tuple(dict.fromkeys([*out, cwd]))


def offered() -> dict[str, str]:
    """The policies installed packages offer: name -> import path."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINTS)}


def resolve(name: Any, paths: tuple[str, ...] = ()) -> PolicyRef:
    """`name` as a policy (see the module's docstring); `paths`: the folders to search first
    (absolute). Raises PolicyError saying what is wrong."""
    from sandbank.agents.base import POLICIES

    if not isinstance(name, str):
        raise PolicyError(f"policy must be a name or an import path, got {name!r}")
    if name in POLICIES:
        cls = POLICIES[name]
        return PolicyRef(name, f"builtin:{name}", dict(cls.DEFAULTS),  # type: ignore[attr-defined]
                         dict(getattr(cls, "TYPES", {})))
    plugins = offered()
    spec = plugins.get(name, name)
    if not _IMPORT_PATH.match(spec):
        known = sorted({*POLICIES, *plugins})
        hint = difflib.get_close_matches(name, known, n=1)
        raise PolicyError(f"unknown policy {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                          + f"; known: {', '.join(known)}; or give an import path, "
                            f"package.module:Class")
    from sandbank.agents.hosts import code_roots, describe, locate

    module = spec.split(":", 1)[0]
    where = locate(module, paths)
    if where is None:
        raise PolicyError(f"policy {name!r}: no module {module.split('.')[0]!r} on the import path "
                          f"({', '.join(paths) or 'none'}, then the interpreter's); add its folder "
                          f"with --path or agents.path")
    # a host sees the policy's own package (or module file) and the folders named with
    # --path; never the working directory as a whole, never a place a symlink leads to
    cwd = os.path.realpath(os.getcwd())
    on_path = [p for p in sys.path[1:] if p and os.path.realpath(p) != cwd]
    allowed = [os.path.realpath(p) for p in (*paths, *on_path, *code_roots())]
    if not any(within(where, a) for a in allowed):
        raise PolicyError(f"policy {name!r}: its package resolves to {where}, outside the folders "
                          f"it was looked for in (a symbolic link?)")
    named = [os.path.realpath(p) for p in paths if os.path.realpath(p) != cwd]
    root = str(Path(where).parent)
    host_paths = tuple(dict.fromkeys([*named, root]))
    binds = tuple(dict.fromkeys([where, *named]))
    doc = describe(spec, host_paths, binds)
    if "error" in doc:
        raise PolicyError(str(doc["error"]))
    defaults, types = doc.get("defaults"), doc.get("types") or {}
    if not (isinstance(defaults, dict) and all(isinstance(k, str) for k in defaults)
            and isinstance(types, dict) and all(
                isinstance(v, list) and all(isinstance(t, str) for t in v) for v in types.values())):
        raise PolicyError(f"policy {name!r}: what its host said it declares is not a mapping of "
                          f"parameters (and their types)")
    types = {k: tuple(_TYPE_NAMES.get(t, object) for t in v) for k, v in types.items()}
    # (copied: the answer is cached, and a policy may mutate a default it was given)
    return PolicyRef(name, spec, copy.deepcopy(defaults), types, binds, host_paths)


def within(path: str, folder: str) -> bool:
    """Is `path` the folder `folder` or inside it (both real paths)?"""
    return os.path.commonpath([path, folder]) == folder


def _type_ok(value: Any, default: Any, declared: tuple[type, ...] | None) -> bool:
    if declared:
        return isinstance(value, declared) and not (isinstance(value, bool) and bool not in declared)
    if default is None:
        return True
    if isinstance(default, bool):
        return type(value) is bool
    if isinstance(default, int):
        return type(value) is int
    if isinstance(default, float):
        return type(value) in (int, float)
    if isinstance(default, list | tuple):
        return isinstance(value, list)
    return isinstance(value, type(default))


def _type_name(default: Any, declared: tuple[type, ...] | None) -> str:
    if declared:
        return " or ".join(t.__name__ for t in declared)
    return "list" if isinstance(default, tuple) else type(default).__name__


def check_params(ref: PolicyRef, params: dict[str, Any]) -> dict[str, Any]:
    """The policy's parameters: its defaults with `params` over them. Raises PolicyError
    for a key it does not declare, or a value not of the key's type."""
    for key, value in params.items():
        if key not in ref.defaults:
            hint = difflib.get_close_matches(str(key), sorted(ref.defaults), n=1)
            raise PolicyError(f"unknown parameter {key!r} of policy {ref.name}"
                              + (f" (did you mean {hint[0]!r}?)" if hint else "")
                              + f"; it takes: {', '.join(sorted(ref.defaults)) or 'none'}")
        default, declared = ref.defaults[key], ref.types.get(key)
        if not _type_ok(value, default, declared):
            raise PolicyError(f"parameter {key!r} of policy {ref.name} must be "
                              f"{_type_name(default, declared)}, got {value!r}")
    return copy.deepcopy({**ref.defaults, **params})


def code_digest(name: str, paths: tuple[str, ...] = (),
                params: dict[str, Any] | None = None) -> str:
    """SHA-256 of the code a policy runs and the parameters it runs with: what an entry
    certificate and a disclosure bind to (regulation/certification.py). For a user policy,
    exactly what its host can read of it (`PolicyRef.binds`: its package or module file and
    the `--path` folders), each file framed by the lengths of its path (relative to its
    folder, so a checkout elsewhere is the same code) and content; symbolic links and
    compiled files (`.pyc`, `__pycache__`, extension modules) are refused, as code whose
    source is not what runs. For a built-in policy (registered: the caller imports them),
    sandbank's own module. Never imported here (resolving asks a contained host)."""
    import inspect
    from hashlib import sha256

    from sandbank.agents.base import POLICIES
    from sandbank.kernel.canonical import canonical_bytes

    def frame(data: bytes) -> bytes:
        return len(data).to_bytes(8, "big") + data

    h = sha256(frame(name.encode()) + frame(canonical_bytes(params or {})))
    if name in POLICIES:
        source = Path(inspect.getsourcefile(POLICIES[name]) or "")
        h.update(frame(source.name.encode()) + frame(source.read_bytes()))
        return h.hexdigest()
    ref = resolve(name, paths)

    def tree(top: Path, named: bool) -> bytes:  # (a --path folder's own name is no code)
        t = sha256(frame(top.name.encode() if named else b""))
        files = sorted(top.rglob("*")) if top.is_dir() else [top]
        for f in files:
            if f.is_symlink():
                raise PolicyError(f"policy {name!r}: {f} is a symbolic link; certify a copy "
                                  f"without links")
            if f.suffix in (".pyc", ".pyo", ".so", ".pyd") or "__pycache__" in f.parts:
                raise PolicyError(f"policy {name!r}: {f} is compiled code (its source is not "
                                  f"what would run); remove it before certifying")
            if f.is_file():
                rel = f.name if f == top else str(f.relative_to(top))
                t.update(frame(rel.encode()) + frame(f.read_bytes()))
        return t.digest()

    h.update(tree(Path(ref.binds[0]), True))  # the policy's own package or module file
    for d in sorted(tree(Path(b), False) for b in ref.binds[1:]):  # (in any order)
        h.update(d)
    return h.hexdigest()
