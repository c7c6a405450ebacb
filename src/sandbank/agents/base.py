"""The agent protocol: sync and async forms, and the policy registry."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbank.kernel.observation import Observation
from sandbank.kernel.schema import Action


@dataclass(frozen=True)
class Directory:
    """Public facts every agent may know: who exists and their declared skills — and, for
    the lab's scripted colluders, which agents each population group holds (`groups`: group
    name -> ids). Colluders know each other out of band; this is how a scenario says so (a
    policy reads the names it was told, e.g. a ring's `with:` parameter)."""

    skills: Mapping[int, Mapping[str, int]] = field(default_factory=dict)
    groups: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def members(self, names: Any) -> list[int]:
        """The ids of the agents in the population groups `names` (sorted, no repeats)."""
        return sorted({a for n in names for a in self.groups.get(n, ())})


class Agent:
    """Override `act`. `rng` is the agent's own generator, derived from the run seed, so a
    run is reproducible; `params` are the scenario's parameters for this policy."""

    def __init__(self, agent_id: int, rng: random.Random, params: Mapping[str, Any],
                 directory: Directory) -> None:
        self.id = agent_id
        self.rng = rng
        # its own copy: an agent that mutates a list it was given changes no other agent
        # (nor the scenario, nor a later run in this process)
        self.params = dict(params)
        if any(isinstance(v, list | dict) for v in self.params.values()):
            self.params = copy.deepcopy(self.params)
        self.directory = directory

    def act(self, obs: Observation) -> list[Action]:  # pragma: no cover - interface
        raise NotImplementedError

    def induced_values(self) -> dict[str, int]:
        """The agent's private value per unit of each asset, if the experiment induces one
        (the lab reads it to measure gains from trade; the economy never sees it)."""
        return {}


class AsyncAgent(Agent):
    """For agents that wait on something (a model, a network): override `act_async`."""

    async def act_async(self, obs: Observation) -> list[Action]:  # pragma: no cover
        raise NotImplementedError

    def act(self, obs: Observation) -> list[Action]:
        return run_async(self.act_async(obs))


_loops: dict[int, Any] = {}  # thread id -> its event loop, kept for the process's life


def run_async(coro: Any) -> Any:
    """Run a coroutine to its end on this thread's one event loop. The loop lives as long as
    the process, so what agents keep across ticks (one HTTP connection pool per model
    endpoint, agents/llm/client.py) stays usable; `asyncio.run` would close it each tick."""
    import asyncio
    import threading

    loop = _loops.get(threading.get_ident())
    if loop is None or loop.is_closed():
        loop = _loops[threading.get_ident()] = asyncio.new_event_loop()
    return loop.run_until_complete(coro)


POLICIES: dict[str, type[Agent]] = {}


def policy(name: str, *, params: Mapping[str, Any] | None = None,
           types: Mapping[str, tuple[type, ...]] | None = None
           ) -> Callable[[type[Agent]], type[Agent]]:
    """Register a policy under `name`, with its parameters and their defaults (a scenario
    may set only these, each of its default's type unless `types` names others; anything
    else is an error naming the parameter: agents/loader.py)."""

    def register(cls: type[Agent]) -> type[Agent]:
        if POLICIES.get(name, cls) is not cls:
            raise ValueError(f"a policy named {name!r} is already registered")
        cls.NAME = name  # type: ignore[attr-defined]
        cls.DEFAULTS = dict(params or {})  # type: ignore[attr-defined]
        cls.TYPES = dict(types or {})  # type: ignore[attr-defined]
        POLICIES[name] = cls
        return cls

    return register
