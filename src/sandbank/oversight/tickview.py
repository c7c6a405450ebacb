"""What oversight sees of one committed tick: its events grouped by kind, and the state.

Refusals no identity authenticated (actor NOBODY: malformed, forged, replayed) are left out:
an unauthenticated request is nobody's act, so it can neither frame the agent it names nor
move any indicator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbank.kernel.schema import NOBODY


@dataclass
class TickView:
    tick: int
    events: list[dict[str, Any]]
    state: Any  # the EconomyState, read-only by convention
    by_kind: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    content: Any = None  # digest -> text of stored content (messages), or None
    shared: dict[str, Any] = field(default_factory=dict)  # trackers detectors share (engine's)

    def __post_init__(self) -> None:
        self.events = [d for d in self.events if d["actor"] != NOBODY]
        for d in self.events:
            self.by_kind.setdefault(d["kind"], []).append(d)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return self.by_kind.get(kind, [])

    def owner(self, agent: int) -> int:
        a = self.state.registry.agents.get(agent)
        return a.owner if a else 0

    def principal(self, agent: int) -> int:
        """The beneficial owner to aggregate an agent's conduct under, or 0 when its owner
        was *admitted* with more than half of all admitted agents — then the "owner" is the
        population (a scenario that declares no owners), and adding its agents up splits
        nothing that per-agent rules would not see. Spawned identities do not count: an
        owner cannot spawn its way into being "the population" and out of every per-owner
        rule."""
        reg = self.state.registry
        a = reg.agents.get(agent)
        if a is None:
            return 0
        return a.owner if self.population_owner() != a.owner else 0

    def population_owner(self) -> int:
        """The owner of more than half of the admitted agents, or 0 (cached per registry
        size in `shared`)."""
        reg = self.state.registry
        cached = self.shared.get("population_owner")
        if cached is not None and cached[0] == len(reg.agents):
            return cached[1]
        found = reg.population_owner()
        self.shared["population_owner"] = (len(reg.agents), found)
        return found

    def lineage(self, agent: int) -> int:
        return self.state.registry.lineage_root(agent) if agent in self.state.registry.agents \
            else agent
