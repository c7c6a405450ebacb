"""Federation (paper §3.4; checklist 50): several sandboxes share signed ban lists and owner
identities, so an owner banned in one cannot shop for a laxer one — and say whether their
policies are harmonised.

    federation:
      peers:                       # the sandboxes whose ban lists this one recognises,
        - {key: "sandbank-operator+1a2b3c4d+AQ..."}   # pinned by their operator's verifier
      require_harmonised: false    # key (GET /v1/status); true: refuse the lists of peers
                                   # whose policy digest differs from this one's

**Banning.** The operator bans an owner (`ban_owner`, with the reason): its agents are
revoked, and its public key and every one of its agents' keys go on this sandbox's ban
list. **The ban list** (`ban_list`) is a document signed with the operator's key — its
format, the sandbox's verifier key, a sequence number (the bans so far), every ban (owner
key, agent keys, reason, tick) and the sandbox's **policy digest** (SHA-256 of the canonical
encoding of the settings a federation harmonises: the incentive policy, the anti-monopoly
and insurance sections, the guards switched off, the boundary and the governance quorum). It is public
(`GET /v1/federation/bans`).

**Recognising a peer's bans.** The operator imports a peer's list (`import_bans`, the
document as published: `POST /v1/federation/import`, or `sandbank federate`). The kernel
accepts it only if its sandbox is a pinned peer, its signature verifies against that
peer's key, and its sequence number is above the last one accepted from that peer (a list
replayed or rolled back is refused). The import is logged with the bans it carried and
whether the peer's policy digest equals this sandbox's (`harmonised`). From then on:
- an owner whose key a peer banned cannot be registered (`banned_elsewhere`), and no
  agent can be registered for it, nor under a key a peer banned;
- an owner already here whose key a peer banned has its agents suspended, and so does an
  agent registered here under a banned agent key; none of them takes any action again,
  whatever becomes of its status (a pause and resume, an unfreeze).

A ban lists at most 64 of the owner's agent keys (the owner key covers the rest), and
the keys recognised from all peers together are bounded (`too_many_bans`).
Owner identities are shared by public key: an owner is the same owner in every sandbox
where it registers with that key — and, where owners enter on proof of personhood
(regulation/personhood.py), by the person its credential names: a ban carries the
banned owner's `personId`, and the same person under a new key is refused too.

What it does not model: an owner that registers elsewhere under a new key in a sandbox
that does not require proof of personhood (nothing ties the two keys together there),
lifting a ban (a list only grows), and peers fetching each other's lists by themselves
(the operator, or `sandbank federate` on a schedule, carries them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from hashlib import sha256
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.audit.checkpoint import NoteError, parse_verifier_key, verifier_key
from sandbank.identity.keys import verify_signature
from sandbank.identity.registry import REVOKED
from sandbank.kernel.canonical import canonical_bytes
from sandbank.kernel.errors import ConfigError, Reject
from sandbank.kernel.guards import REGULATORY, Guard, Verdict
from sandbank.kernel.mechanism import GUARD_RANKS, PUBLIC, Mechanism
from sandbank.kernel.schema import (
    SYSTEM,
    Action,
    AgentStatusChanged,
    Event,
    register_action,
    register_event,
)
from sandbank.regulation.personhood import claimed_person

if TYPE_CHECKING:
    from sandbank.identity.keys import SigningKey
    from sandbank.kernel.sequencer import Kernel

FORMAT = "sandbank-federation-bans/1"
DOMAIN = b"sandbank/federation/bans/1\n"  # what a ban list's signature covers, then the doc
MAX_DOCUMENT = 1 << 20  # bytes of an imported list
MAX_BANS = 10_000  # bans in one list
MAX_AGENT_KEYS = 64  # agent keys listed per ban (the owner key covers the rest of its agents)
MAX_IMPORTED = 200_000  # keys recognised from all peers together
MAX_PEERS = 64
SUSPENDED = "suspended"


@register_action
@dataclass(slots=True, kw_only=True)
class BanOwner(Action):
    """Ban an owner from this sandbox and put it on the federation's ban list (operator)."""

    KIND: ClassVar[str] = "ban_owner"
    OPERATOR_ONLY: ClassVar[bool] = True
    owner: int
    reason: str


@register_action
@dataclass(slots=True, kw_only=True)
class ImportBans(Action):
    """Recognise a federated peer's signed ban list (operator): `document` as published."""

    KIND: ClassVar[str] = "import_bans"
    OPERATOR_ONLY: ClassVar[bool] = True
    document: str


@register_event
@dataclass(slots=True, kw_only=True)
class OwnerBanned(Event):
    KIND: ClassVar[str] = "owner_banned"
    owner: int
    public_key: str
    agent_keys: list[str]
    reason: str
    person: str = ""  # the personId of its personhood credential, if it entered on one


@register_event
@dataclass(slots=True, kw_only=True)
class BansImported(Event):
    KIND: ClassVar[str] = "bans_imported"
    peer: str  # the peer's verifier key
    list_seq: int  # the list's sequence number
    owner_keys: list[str]
    agent_keys: list[str]
    harmonised: bool
    digest: str  # SHA-256 of the document as imported
    persons: list[str] = field(default_factory=list)  # banned personIds


@dataclass
class Federation:
    peers: dict[str, bytes] = field(default_factory=dict)  # verifier key -> public key
    require_harmonised: bool = False
    # [owner key, agent keys, reason, tick, personId]
    bans: list[list[Any]] = field(default_factory=list)
    banned_owners: dict[str, str] = field(default_factory=dict)  # owner key -> by whom
    banned_agents: dict[str, str] = field(default_factory=dict)  # agent key -> by whom
    banned_persons: dict[str, str] = field(default_factory=dict)  # personId -> by whom
    seq: dict[str, int] = field(default_factory=dict)  # peer -> last list accepted

    def configure(self, cfg: dict[str, Any]) -> None:
        for p in cfg.get("peers", ()):
            self.peers[p["key"]] = parse_verifier_key(p["key"])[1]
        self.require_harmonised = bool(cfg.get("require_harmonised", False))

    def apply_banned(self, ev: OwnerBanned, tick: int) -> None:
        self.bans.append([ev.public_key, list(ev.agent_keys), ev.reason, tick, ev.person])
        self.banned_owners[ev.public_key] = "here"
        if ev.person:
            self.banned_persons[ev.person] = "here"
        for key in ev.agent_keys:
            self.banned_agents[key] = "here"

    def apply_imported(self, ev: BansImported, tick: int) -> None:
        self.seq[ev.peer] = ev.list_seq
        for key in ev.owner_keys:
            self.banned_owners.setdefault(key, ev.peer)
        for key in ev.agent_keys:
            self.banned_agents.setdefault(key, ev.peer)
        for person in ev.persons:
            self.banned_persons.setdefault(person, ev.peer)

    def digest(self) -> bytes:
        return sha256(canonical_bytes([
            sorted(self.peers), self.require_harmonised, self.bans,
            sorted(self.banned_owners.items()), sorted(self.banned_agents.items()),
            sorted(self.banned_persons.items()),
            sorted(self.seq.items())])).digest()


def policy_digest(k: Kernel) -> str:
    """SHA-256 of the settings a federation harmonises, as they are in force now (the
    incentive parameters and taxes at this tick, defaults included; the anti-monopoly and
    insurance sections; the guards switched off, sorted; the boundary; the governance
    quorum), canonically encoded: two sandboxes with the same digest run the same policy."""
    def plain(v: Any) -> Any:
        return json.loads(json.dumps(v, default=list))  # (tuples and mapping views)

    config = k.config
    return sha256(canonical_bytes([
        ["policy", k.state.policy.in_force(k.tick)],
        *[[name, plain(getattr(config, name, None) or {})] for name in ("antimonopoly",
                                                                         "insurance")],
        ["disabled_guards", sorted(config.disabled_guards)],
        ["boundary", plain(getattr(config, "boundary", None))],
        ["governance_quorum", getattr(config, "governance_quorum", 0)]])).hexdigest()


def ban_list(k: Kernel, key: SigningKey) -> dict[str, Any]:
    """This sandbox's ban list, signed with the operator's `key` (what GET
    /v1/federation/bans publishes)."""
    fed = k.state.federation
    doc = {"format": FORMAT, "sandbox": verifier_key(k.config.key_name, key.public),
           "seq": len(fed.bans), "policy_digest": policy_digest(k),
           "bans": [{"owner_key": o, "agent_keys": a, "reason": r, "tick": t,
                     **({"person_id": p} if p else {})} for o, a, r, t, p in fed.bans]}
    doc["signature"] = key.sign(DOMAIN + canonical_bytes(doc)).hex()
    return doc


def _agent_keys(k: Kernel, owner: int) -> list[str]:
    reg = k.state.registry
    return [reg.agents[a].public_key.hex() for a in reg.agents_of.get(owner, ())]


def ban_owner(k: Kernel, a: BanOwner, tick: int) -> list[Event]:
    reg = k.state.registry
    owner = reg.owners.get(a.owner)
    if owner is None:
        raise Reject("unknown_owner", f"no owner {a.owner}")
    if owner.public_key.hex() in k.state.federation.banned_owners:
        raise Reject("already_banned", f"owner {a.owner} is already banned")
    if not a.reason.strip():
        raise Reject("invalid_field", "a ban needs its reason")
    person = next((p for p, o in sorted(k.state.personhood.persons.items()) if o == owner.id),
                  "")
    ev = OwnerBanned(actor=a.actor, owner=owner.id, public_key=owner.public_key.hex(),
                     agent_keys=_agent_keys(k, owner.id)[:MAX_AGENT_KEYS],
                     reason=a.reason[:500], person=person)
    k.state.apply(ev, tick)
    out: list[Event] = [ev]
    for agent in sorted(reg.agents_of.get(owner.id, ())):
        if reg.agents[agent].status != REVOKED:
            st = AgentStatusChanged(actor=a.actor, agent=agent, status=REVOKED,
                                    reason=f"owner {owner.id} banned: {a.reason[:200]}")
            k.state.apply(st, tick)
            out.append(st)
    return out


def _parse(k: Kernel, text: str) -> tuple[str, dict[str, Any]]:
    """The peer and the document of a signed ban list, or Reject saying what is wrong."""
    fed = k.state.federation
    try:
        if len(text.encode()) > MAX_DOCUMENT:
            raise Reject("invalid_field", f"a ban list is at most {MAX_DOCUMENT} bytes")
        doc = json.loads(text)
    except (ValueError, RecursionError, UnicodeError):  # (a document nested to overflow
        raise Reject("invalid_field", "the ban list is not JSON") from None  # the parser)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise Reject("invalid_field", f"not a ban list (format {FORMAT})")
    peer = doc.get("sandbox")
    if not isinstance(peer, str) or peer not in fed.peers:
        raise Reject("unknown_peer", "the list's sandbox is not a pinned federation peer")
    sig = doc.pop("signature", None)
    try:
        good = isinstance(sig, str) and verify_signature(
            fed.peers[peer], bytes.fromhex(sig), DOMAIN + canonical_bytes(doc))
    except (ValueError, TypeError, NoteError, RecursionError, OverflowError):
        good = False
    if not good:
        raise Reject("bad_signature", "the ban list's signature does not verify against the "
                     "peer's pinned key")
    bans = doc.get("bans")
    seq = doc.get("seq")
    if type(seq) is not int or not isinstance(bans, list) or seq != len(bans):
        raise Reject("invalid_field", "a ban list carries seq (its number of bans) and bans")
    if len(bans) > MAX_BANS:
        raise Reject("list_too_long", f"a ban list holds at most {MAX_BANS} bans: this peer's "
                     "lists can no longer be recognised whole")
    for b in bans:
        keys = b.get("agent_keys") if isinstance(b, dict) else None
        if not isinstance(keys, list) or len(keys) > MAX_AGENT_KEYS or \
                not all(_is_key(x) for x in [b.get("owner_key"), *keys]):
            raise Reject("invalid_field", "every ban names an owner key and agent keys (hex)")
        if not isinstance(b.get("person_id", ""), str) or len(b.get("person_id", "")) > 200:
            raise Reject("invalid_field", "a ban's person_id is a string")
    return peer, doc


def _is_key(x: Any) -> bool:
    return isinstance(x, str) and len(x) == 64 and all(c in "0123456789abcdef" for c in x)


def import_bans(k: Kernel, a: ImportBans, tick: int) -> list[Event]:
    fed = k.state.federation
    if not fed.peers:
        raise Reject("not_configured", "this sandbox has no federation peers")
    peer, doc = _parse(k, a.document)
    if doc["seq"] <= fed.seq.get(peer, 0):
        raise Reject("stale_list", f"the peer's list {doc['seq']} is not newer than the one "
                     f"accepted ({fed.seq.get(peer, 0)})")
    harmonised = doc.get("policy_digest") == policy_digest(k)
    if fed.require_harmonised and not harmonised:
        raise Reject("not_harmonised", "the peer's policy digest differs from this sandbox's")
    owners = sorted({b["owner_key"] for b in doc["bans"]})
    agents = sorted({x for b in doc["bans"] for x in b["agent_keys"]})
    persons = sorted({b["person_id"] for b in doc["bans"] if b.get("person_id")})
    new = len(set(owners) - set(fed.banned_owners)) + len(set(agents) - set(fed.banned_agents)) \
        + len(set(persons) - set(fed.banned_persons))
    if len(fed.banned_owners) + len(fed.banned_agents) + len(fed.banned_persons) + new > \
            MAX_IMPORTED:
        raise Reject("too_many_bans", f"recognising this list would pass {MAX_IMPORTED} "
                     "banned keys")
    ev = BansImported(actor=a.actor, peer=peer, list_seq=doc["seq"], owner_keys=owners,
                      agent_keys=agents, harmonised=harmonised,
                      digest=sha256(a.document.encode()).hexdigest(), persons=persons)
    k.state.apply(ev, tick)
    out: list[Event] = [ev]
    reg = k.state.registry
    for agent in sorted(reg.agents):  # (the guard keeps them out whatever their status)
        x = reg.agents[agent]
        if x.status not in (REVOKED, SUSPENDED) and _banned_agent(fed, reg, agent):
            st = AgentStatusChanged(actor=SYSTEM, agent=agent, status=SUSPENDED,
                                    reason="it or its owner is banned in a federated sandbox")
            k.state.apply(st, tick)
            out.append(st)
    return out


def _banned_agent(fed: Federation, reg: Any, agent: int) -> bool:
    a = reg.agents[agent]
    return a.public_key.hex() in fed.banned_agents or \
        reg.owners[a.owner].public_key.hex() in fed.banned_owners


def federation_guard(k: Kernel, a: Action) -> Verdict:
    """No owner or agent a federated sandbox (or this one) banned is registered here."""
    fed = k.state.federation
    if not fed.banned_owners:
        return None
    reg = k.state.registry
    if a.actor > 0 and a.actor in reg.agents and _banned_agent(fed, reg, a.actor):
        # (whatever its status: a pause and resume, or an unfreeze, does not let it back in)
        return "banned", f"agent {a.actor} or its owner is banned"
    if a.KIND not in ("register_owner", "register_agent", "spawn_agent"):
        return None
    if a.KIND == "register_owner" and fed.banned_persons:  # the same person, a new key
        person = claimed_person(getattr(a, "evidence", ""))
        if person in fed.banned_persons:
            by = fed.banned_persons[person]
            return ("banned_elsewhere" if by != "here" else "banned",
                    "this person is banned (its personhood credential names it)")
    key = getattr(a, "public_key", b"")
    key = key.hex() if isinstance(key, bytes) else ""
    if a.KIND == "register_owner":
        by = fed.banned_owners.get(key) or fed.banned_agents.get(key)
        return ("banned_elsewhere" if by and by != "here" else "banned",
                f"this owner key is banned ({'here' if by == 'here' else 'by ' + by})") \
            if by else None
    if key in fed.banned_agents:
        return "banned", "this agent key is on a federation ban list"
    owner_id = getattr(a, "owner", 0) if a.KIND == "register_agent" else \
        (reg.agents[a.actor].owner if a.actor in reg.agents else 0)
    owner = reg.owners.get(owner_id)
    if owner is not None and owner.public_key.hex() in fed.banned_owners:
        return "banned", f"owner {owner_id} is banned"
    return None


def check_config(values: dict[str, Any], assets: tuple[str, ...]) -> None:
    cfg = values["federation"]
    if not cfg:
        return
    if not isinstance(cfg, dict) or set(cfg) - {"peers", "require_harmonised"}:
        raise ConfigError("federation must be a mapping of peers and require_harmonised")
    peers = cfg.get("peers", [])
    if not isinstance(peers, list) or len(peers) > MAX_PEERS:
        raise ConfigError(f"federation.peers must be a list of at most {MAX_PEERS} {{key}}")
    for i, p in enumerate(peers):
        if not isinstance(p, dict) or set(p) != {"key"} or not isinstance(p["key"], str):
            raise ConfigError(f"federation.peers.{i} must be {{key: <verifier key>}}")
        try:
            parse_verifier_key(p["key"])
        except NoteError as e:
            raise ConfigError(f"federation.peers.{i}.key: {e}") from None
    if not isinstance(cfg.get("require_harmonised", False), bool):
        raise ConfigError("federation.require_harmonised must be true or false")


MECHANISM = Mechanism(
    "federation", state=Federation,
    configure=lambda fed, header: fed.configure(header.config.get("federation", {})),
    config={"federation": {}}, check_config=check_config,
    sections={"federation": "federation"},
    handlers={BanOwner.KIND: ban_owner, ImportBans.KIND: import_bans},
    appliers={OwnerBanned: lambda s: s.federation.apply_banned,
              BansImported: lambda s: s.federation.apply_imported},
    guards=((GUARD_RANKS["identity"] + 10, Guard(
        "federation", REGULATORY, federation_guard,
        "no owner or agent banned here or in a federated sandbox is registered")),),
    visibility={"owner_banned": PUBLIC, "bans_imported": PUBLIC},
    requires=("policy", "personhood"),
)
