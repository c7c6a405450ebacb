"""Owners and agents: who may act, on whose behalf, and with which key.

- An owner (human or organisation) is admitted by the operator with an attestation record
  (`evidence`: how the operator verified it) and a public key.
- An agent is admitted only with its owner's signature over the agent's name and key.
- An agent may spawn children: each records its parent and inherits the owner; depth,
  children per agent and agents per owner are capped.
- Revocation is final: the id is never reused (ids are sequence numbers) and the key can
  never be registered again (every key ever seen is remembered).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbank.kernel.digest import DigestMap
from sandbank.kernel.schema import AgentRegistered, AgentStatusChanged, OwnerRegistered

ACTIVE, FROZEN, REVOKED = "active", "frozen", "revoked"


@dataclass(slots=True)
class Owner:
    id: int
    name: str
    kind: str
    public_key: bytes
    evidence: str
    agents: int = 0


@dataclass(slots=True)
class Agent:
    id: int
    owner: int
    name: str
    public_key: bytes
    parent: int
    depth: int
    skills: dict[str, int] = field(default_factory=dict)
    status: str = ACTIVE
    children: int = 0
    nonce: int = 0  # highest nonce accepted from this agent (signed actions)


def _owner_record(o: Owner) -> list[object]:
    return [o.id, o.name, o.kind, o.public_key.hex(), o.evidence, o.agents]


def _agent_record(a: Agent) -> list[object]:
    return [a.id, a.owner, a.name, a.public_key.hex(), a.parent, a.depth, a.status, a.children,
            sorted(a.skills.items())]



def majority_owner(admitted: dict[int, int]) -> int:
    """The owner of more than half of the agents counted in `admitted` (owner -> admitted
    agents), or 0: the rule behind `Registry.population_owner`, for a log read without a
    registry too (oversight/forensics.py)."""
    top = max(sorted(admitted), key=lambda o: admitted[o], default=0)
    return top if top and 2 * admitted[top] > sum(admitted.values()) else 0

class Registry:
    def __init__(self) -> None:
        self.owners: dict[int, Owner] = {}
        self.agents: dict[int, Agent] = {}
        self.keys: set[bytes] = set()  # every key ever registered, owners' and agents'
        self.children_of: dict[int, list[int]] = {}  # index: spawned children, by parent
        self.agents_of: dict[int, list[int]] = {}  # index: every agent of an owner
        self._owner_digest = DigestMap(_owner_record)
        self._agent_digest = DigestMap(_agent_record)

    def next_owner_id(self) -> int:
        return len(self.owners) + 1

    def next_agent_id(self) -> int:
        return len(self.agents) + 1

    def apply_owner_registered(self, ev: OwnerRegistered) -> None:
        assert ev.owner == len(self.owners) + 1
        key = bytes.fromhex(ev.public_key)
        o = Owner(ev.owner, ev.name, ev.owner_kind, key, ev.evidence)
        self.owners[o.id] = o
        self.keys.add(key)
        self._owner_digest.touch(o.id, o)

    def apply_agent_registered(self, ev: AgentRegistered) -> None:
        assert ev.agent == len(self.agents) + 1
        key = bytes.fromhex(ev.public_key)
        a = Agent(ev.agent, ev.owner, ev.name, key, ev.parent, ev.depth, dict(ev.skills))
        self.agents[a.id] = a
        self.keys.add(key)
        owner = self.owners[ev.owner]
        owner.agents += 1
        self.agents_of.setdefault(owner.id, []).append(a.id)
        self._owner_digest.touch(owner.id, owner)
        self._agent_digest.touch(a.id, a)
        if ev.parent:
            parent = self.agents[ev.parent]
            parent.children += 1
            self.children_of.setdefault(parent.id, []).append(a.id)
            self._agent_digest.touch(parent.id, parent)

    def descendants(self, agent: int) -> list[int]:
        """Every agent spawned, directly or not, by `agent` (sorted)."""
        out, todo = [], list(self.children_of.get(agent, ()))
        while todo:
            a = todo.pop()
            out.append(a)
            todo.extend(self.children_of.get(a, ()))
        return sorted(out)

    def population_owner(self) -> int:
        """The owner of more than half of the *admitted* agents, or 0: then the "owner" is
        the population (a scenario that declares no owners), and adding its agents up as one
        holder splits nothing per-agent rules would not see. Spawned identities do not
        count: an owner cannot spawn its way into being "the population" and out of every
        per-owner rule. O(agents)."""
        admitted: dict[int, int] = {}
        for x in self.agents.values():
            if not x.parent:
                admitted[x.owner] = admitted.get(x.owner, 0) + 1
        return majority_owner(admitted)

    def controller(self, agent: int) -> str:
        """Whom `agent` answers to: `owner:<id>` — or, in an economy with a single owner (a
        scenario that declares none), `lineage:<id>`, an identity and every identity it
        spawned. Unlike `population_owner`, an owner of most agents is still an owner:
        admitting more agents never changes an agent's controller."""
        if len(self.owners) == 1:
            return f"lineage:{self.lineage_root(agent)}"
        return f"owner:{self.agents[agent].owner}"

    def controlled(self, controller: str) -> list[int]:
        """The identities of `controller` (`owner:<id>` or `lineage:<id>`), sorted."""
        kind, _, n = controller.partition(":")
        if kind == "lineage":
            return sorted([int(n), *self.descendants(int(n))])
        return sorted(self.agents_of.get(int(n), ()))

    def lineage_root(self, agent: int) -> int:
        """The registered (not spawned) ancestor of an agent: who controls a spawn tree."""
        a = self.agents[agent]
        while a.parent:
            a = self.agents[a.parent]
        return a.id

    def apply_status(self, ev: AgentStatusChanged) -> None:
        a = self.agents[ev.agent]
        assert a.status != REVOKED, "revocation is final"
        a.status = ev.status
        self._agent_digest.touch(a.id, a)

    def digest(self) -> bytes:
        return self._owner_digest.digest() + self._agent_digest.digest()
