"""The agent host: the program that runs a shard of agents outside the kernel's process.

    python -m sandbank.agents.host '<limits as JSON>'

It reads requests on stdin and writes answers on stdout, nothing else: each message is a
4-byte big-endian length and a body. Requests come from the runner (trusted) as pickles:
observations are rebuilt here as the same dataclasses an in-process agent gets. Answers go
back as JSON only (never a pickle: the runner must not run code it unpickles from a host);
each action is its wire form (`Action.to_dict`), which the runner parses and checks like
any action from outside.

Requests and answers:
- `("describe", spec, paths)` -> `{"defaults": {...}, "types": {...}, "async": bool}` or
  `{"error": ...}`: what an outside policy declares, so the runner can check a scenario's
  parameters before anything runs without importing user code itself.
- `("init", setup)` -> `{"values": {agent: induced values}}` or `{"error": ...}`: build the
  shard's agents (per-agent generators from the run seed, as in-process).
- `("act", [(agent, observation), ...])` -> one `{"agent", "actions"}` (or `"error"`, or
  `"missed"`) per agent, streamed in small batches as decisions finish, then `{"done": n}`.
  Streaming lets the runner's watchdog tell a slow agent from a hung host.
- `("stop",)`: exit.

The per-decision deadline is an interval timer here (a sync agent that overruns gets
`DecisionTimeout` raised inside `act`; an async one is cancelled). Code that defeats the
timer (ignores the signal, catches BaseException) is stopped by the runner's watchdog,
which kills the whole host. Resource limits are set before any user code is imported. The
process boundary is the containment; everything in this file is cooperative.
"""

from __future__ import annotations

import asyncio
import copyreg
import dataclasses
import json
import os
import pickle
import random
import resource
import signal
import struct
import sys
import time
from types import MappingProxyType
from typing import Any

from sandbank.kernel.observation import AccountView, Observation

HEADER = struct.Struct(">I")


def proxy(d: dict[Any, Any]) -> MappingProxyType:
    """A read-only mapping (observations carry some: `extra`, `reputation`), rebuilt."""
    return MappingProxyType(d)


copyreg.pickle(MappingProxyType, lambda m: (proxy, (dict(m),)))


def _by_fields(cls: type) -> None:
    """Pickle a frozen slotted dataclass as its constructor and field values: about half
    the cost of the default state-dict reduction, both ways (observations go to hosts
    every tick)."""
    names = tuple(f.name for f in dataclasses.fields(cls))
    copyreg.pickle(cls, lambda o: (cls, tuple(getattr(o, n) for n in names)))


for _cls in (Observation, AccountView):
    _by_fields(_cls)


class DecisionTimeout(BaseException):  # noqa: N818 (a BaseException: `except Exception` in a policy does not swallow it)
    """The agent did not decide within the deadline."""


def _alarm(signum: int, frame: Any) -> None:
    raise DecisionTimeout


def set_limits(limits: dict[str, int]) -> None:
    """Memory (address space, MB), CPU seconds, open files, file size (MB), no core dumps."""
    table = {"memory_mb": (resource.RLIMIT_AS, 1 << 20), "cpu_seconds": (resource.RLIMIT_CPU, 1),
             "open_files": (resource.RLIMIT_NOFILE, 1), "file_mb": (resource.RLIMIT_FSIZE, 1 << 20)}
    for key, (which, unit) in table.items():
        if limits.get(key):
            n = int(limits[key]) * unit
            hard = n + 5 if which == resource.RLIMIT_CPU else n  # SIGXCPU first, then KILL
            resource.setrlimit(which, (n, hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def load_class(spec: str) -> type:
    """A policy class: `builtin:<name>` from sandbank's registry, or `module:Class`."""
    import importlib

    from sandbank.agents.base import POLICIES, Agent

    if spec.startswith("builtin:"):
        import sandbank.agents.attacks  # noqa: F401
        import sandbank.agents.learning  # noqa: F401
        import sandbank.agents.llm  # noqa: F401
        import sandbank.agents.lookalikes  # noqa: F401
        import sandbank.agents.scripted  # noqa: F401

        return POLICIES[spec.split(":", 1)[1]]
    module, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Agent)):
        raise TypeError(f"{spec} is not a subclass of sandbank.agents.Agent")
    return obj


def _plain_types(types: dict[str, Any]) -> dict[str, list[str]]:
    out = {}
    for k, t in types.items():
        ts = t if isinstance(t, tuple) else (t,)
        out[k] = [x.__name__ for x in ts]
    return out


class HostCore:
    """A shard of agents and what the host does with each request (no I/O here: the
    process loop below and the Ray actor both drive it)."""

    def __init__(self) -> None:
        self.agents: dict[int, Any] = {}
        self.deadline = 0.0
        self.concurrency = 8

    def describe(self, spec: str) -> dict[str, Any]:
        from sandbank.agents.base import AsyncAgent

        try:
            cls = load_class(spec)
        except BaseException as e:  # noqa: BLE001 (user code: report whatever it raised)
            return {"error": f"cannot load policy {spec!r}: {type(e).__name__}: {e}"}
        defaults = getattr(cls, "DEFAULTS", None)
        if defaults is None:
            defaults = getattr(cls, "PARAMS", {})
        try:
            json.dumps(defaults)
        except (TypeError, ValueError):
            return {"error": f"policy {spec!r}: its parameter defaults are not plain data"}
        return {"defaults": defaults, "types": _plain_types(getattr(cls, "TYPES", {})),
                "async": issubclass(cls, AsyncAgent), "name": getattr(cls, "NAME", spec)}

    def init(self, setup: dict[str, Any]) -> dict[str, Any]:
        import sandbank.economy  # noqa: F401 (what observations are made of: not on the first tick's clock)
        from sandbank.agents.base import Directory

        self.deadline = float(setup.get("deadline", 0))
        self.concurrency = int(setup.get("concurrency", 8))
        directory = setup["directory"]  # a Directory (pickled by the runner: trusted)
        if not isinstance(directory, Directory):
            directory = Directory({int(a): dict(s) for a, s in directory.items()})
        classes: dict[str, type] = {}
        values: dict[str, dict[str, int]] = {}
        try:
            for aid, spec, params in setup["agents"]:
                if spec not in classes:
                    classes[spec] = load_class(spec)
                agent = classes[spec](aid, random.Random(f"{setup['seed']}/agent/{aid}"), params,
                                      directory)
                self.agents[aid] = agent
                values[str(aid)] = agent.induced_values()
        except BaseException as e:  # noqa: BLE001
            return {"error": f"{type(e).__name__}: {e}"}
        return {"values": values}

    def act(self, batch: list[tuple[int, Any]], emit: Any) -> None:
        """Decide for each (agent, observation), calling `emit(answer)` per agent."""
        from sandbank.agents.base import AsyncAgent

        waiting = []
        for aid, obs in batch:
            agent = self.agents.get(aid)
            if agent is None:
                emit({"agent": aid, "error": "KeyError: not an agent of this host"})
            elif isinstance(agent, AsyncAgent):
                waiting.append((aid, agent, obs))
            else:
                emit(self._sync(aid, agent, obs))
        if waiting:
            from sandbank.agents.base import run_async

            for answer in run_async(self._gather(waiting)):
                emit(answer)

    def _sync(self, aid: int, agent: Any, obs: Any) -> dict[str, Any]:
        timed = self.deadline > 0 and _main_thread()
        if timed:
            signal.signal(signal.SIGALRM, _alarm)
            signal.setitimer(signal.ITIMER_REAL, self.deadline)
        try:
            return _answer(aid, agent.act(obs))
        except DecisionTimeout:
            return {"agent": aid, "missed": True}
        except Exception as e:  # the agent's bug: measured, not fatal
            return {"agent": aid, "error": f"{type(e).__name__}: {e}"[:300]}
        finally:
            if timed:
                signal.setitimer(signal.ITIMER_REAL, 0)

    async def _gather(self, waiting: list[tuple[int, Any, Any]]) -> list[dict[str, Any]]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(aid: int, agent: Any, obs: Any) -> dict[str, Any]:
            async with gate:
                try:
                    if self.deadline > 0:
                        actions = await asyncio.wait_for(agent.act_async(obs), self.deadline)
                    else:
                        actions = await agent.act_async(obs)
                    return _answer(aid, actions)
                except TimeoutError:
                    return {"agent": aid, "missed": True}
                except Exception as e:
                    return {"agent": aid, "error": f"{type(e).__name__}: {e}"[:300]}

        return await asyncio.gather(*(one(*w) for w in waiting))


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _answer(aid: int, actions: Any) -> dict[str, Any]:
    try:
        return {"agent": aid, "actions": [a.to_dict() for a in actions]}
    except Exception as e:  # not a list of actions
        return {"agent": aid, "error": f"not a list of actions: {type(e).__name__}: {e}"[:300]}


def add_paths(paths: Any) -> None:
    """The user's folders, after the standard library and site-packages: a user module
    named like one of those is never imported in its place."""
    sys.path += [p for p in paths if isinstance(p, str) and p not in sys.path]


def _read_exact(f: Any, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError
    return data


def main() -> None:
    limits = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # whatever the agents print goes to the host's error stream, not the answers
    sys.stdout = sys.stderr
    set_limits(limits)
    core = HostCore()

    def write(body: bytes) -> None:
        answers.write(HEADER.pack(len(body)) + body)

    def send(doc: Any) -> None:
        write(json.dumps(doc, separators=(",", ":")).encode())

    while True:
        try:
            (n,) = HEADER.unpack(_read_exact(requests, HEADER.size))
            request = pickle.loads(_read_exact(requests, n))
        except EOFError:
            return
        op = request[0]
        if op == "stop":
            return
        if op == "describe":
            add_paths(request[2])
            send(core.describe(request[1]))
        elif op == "init":
            add_paths(request[1].get("paths", ()))
            send(core.init(request[1]))
        elif op == "act":
            stream = _Stream(write)
            core.act(request[1], stream.emit)
            stream.flush(done=len(request[1]))


MAX_PART = 1 << 20  # bytes of one agent's answer; larger is that agent's error (the
# runner takes 32 KB an agent a tick on average: agents/hosts.py AGENT_BYTES)


class _Stream:
    """Answers sent in small frames as decisions finish (every 50 ms, 256 answers or
    256 KB), so the runner's watchdog sees progress and no frame nears the runner's limit.
    Each answer is encoded once, as it comes."""

    def __init__(self, write: Any) -> None:
        self.write, self.parts, self.size, self.last = write, [], 0, time.monotonic()

    def emit(self, answer: dict[str, Any]) -> None:
        part = json.dumps(answer, separators=(",", ":")).encode()
        if len(part) > MAX_PART:
            part = json.dumps({"agent": answer["agent"], "error": f"AnswerTooLarge: "
                               f"{len(part):,} bytes (limit {MAX_PART:,})"}).encode()
        self.parts.append(part)
        self.size += len(part)
        if (time.monotonic() - self.last > 0.05 or len(self.parts) >= 256
                or self.size >= 256 << 10):
            self.flush()

    def flush(self, done: int | None = None) -> None:
        tail = b"]}" if done is None else b'],"done":%d}' % done
        self.write(b'{"answers":[' + b",".join(self.parts) + tail)
        self.parts, self.size, self.last = [], 0, time.monotonic()

if __name__ == "__main__":
    main()
