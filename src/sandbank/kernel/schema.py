"""Typed schemas of every action (what an agent or operator asks for) and every event
(what happened, as written to the audit log). One module, so the whole vocabulary of the
economy can be read in one place.

Wire form: a dict with "kind" plus the fields; bytes are lowercase hex. Actions parsed from
the wire are checked strictly (unknown kind, unknown or missing field, wrong type are all
`MalformedAction` with a message that names the field).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.kernel.canonical import CanonicalDomainError, canonical_bytes, check_domain

if TYPE_CHECKING:
    from sandbank.identity.keys import SigningKey

OPERATOR = 0  # the actor id of the sandbox operator (treasury, admission, governance)
SYSTEM = -2  # the kernel's own mechanisms: holds, settlements, fees (never an agent)
NOBODY = -1  # the actor of a refusal no identity authenticated (malformed, forged, replayed)
OVERSEER_BASE = -1000  # overseer n has actor id OVERSEER_BASE - n (controls/controls.py)


def is_overseer_id(actor: int) -> bool:
    return actor <= OVERSEER_BASE - 1


# fields of a logged entry that are not the event's own: where it is, the nonce and number of
# entries of the signed action it starts, the blind of a non-public entry (audit/visibility.py)
ENVELOPE = frozenset({"kind", "seq", "tick", "nonce", "entries", "blind"})

# Transfer flags (TigerBeetle's, minus the balancing ones).
LINKED = 1
PENDING = 2
POST_PENDING = 4
VOID_PENDING = 8
ALL_TRANSFER_FLAGS = LINKED | PENDING | POST_PENDING | VOID_PENDING

# Account flags.
DEBITS_MUST_NOT_EXCEED_CREDITS = 1
CREDITS_MUST_NOT_EXCEED_DEBITS = 2
ALL_ACCOUNT_FLAGS = DEBITS_MUST_NOT_EXCEED_CREDITS | CREDITS_MUST_NOT_EXCEED_DEBITS

MAX_NAME = 64
MAX_TEXT = 65_536  # characters in any one string field (messages are limited by policy)
MAX_BATCH = 8190  # TigerBeetle's batch limit


class MalformedAction(ValueError):
    """An action that cannot be parsed or is not well-formed; the message names the field."""


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))



def _check_field(cls_name: str, name: str, typ: Any, value: Any) -> Any:
    if typ is int:
        if type(value) is not int:
            raise MalformedAction(f"{cls_name}.{name}: expected an integer, got {type(value).__name__}")
        if abs(value) > 2**53 - 1:
            raise MalformedAction(f"{cls_name}.{name}: integer {value} is out of range")
    elif typ is str:
        if not isinstance(value, str):
            raise MalformedAction(f"{cls_name}.{name}: expected a string, got {type(value).__name__}")
        if len(value) > MAX_TEXT:
            raise MalformedAction(f"{cls_name}.{name}: longer than {MAX_TEXT} characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise MalformedAction(f"{cls_name}.{name}: not valid Unicode (lone surrogate)") from e
    elif typ is bytes:
        if isinstance(value, str):
            try:
                value = bytes.fromhex(value)
            except ValueError as e:
                raise MalformedAction(f"{cls_name}.{name}: not hex") from e
        if not isinstance(value, bytes):
            raise MalformedAction(f"{cls_name}.{name}: expected hex bytes, got {type(value).__name__}")
    elif typ is bool:
        if type(value) is not bool:
            raise MalformedAction(f"{cls_name}.{name}: expected true/false")
    elif typ == "dict[str, int]":
        if not isinstance(value, dict) or len(value) > 64:
            raise MalformedAction(f"{cls_name}.{name}: expected an object of at most 64 entries")
        for k, v in value.items():
            _check_field(f"{cls_name}.{name}", k, str, k)
            if not k or len(k) > MAX_NAME:
                raise MalformedAction(f"{cls_name}.{name}: key {k!r} must be 1..{MAX_NAME} characters")
            _check_field(f"{cls_name}.{name}", k, int, v)
        value = dict(value)
    elif typ == "list[str]":
        if not isinstance(value, list) or len(value) > 64:
            raise MalformedAction(f"{cls_name}.{name}: expected a list of at most 64 strings")
        for i, v in enumerate(value):
            _check_field(f"{cls_name}.{name}", f"{name}[{i}]", str, v)
        value = list(value)
    elif typ == "list[int]":
        if not isinstance(value, list) or len(value) > 1024:
            raise MalformedAction(f"{cls_name}.{name}: expected a list of at most 1024 integers")
        for i, v in enumerate(value):
            _check_field(f"{cls_name}.{name}", f"{name}[{i}]", int, v)
        value = list(value)
    return value


# ====================================================================== actions


@dataclass(slots=True, kw_only=True)
class Action:
    KIND: ClassVar[str] = ""
    OPERATOR_ONLY: ClassVar[bool] = False
    OVERSEER_ONLY: ClassVar[bool] = False  # only overseers (controls/controls.py) may submit it
    SUPERVISOR: ClassVar[bool] = False  # the operator or an overseer (controls/emergency.py)
    actor: int
    nonce: int = 0
    signature: bytes | None = None

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("actor", "nonce", "signature"):
                continue
            v = getattr(self, f.name)
            if isinstance(v, bytes):
                v = v.hex()
            elif isinstance(v, list):
                v = [x.to_dict() if hasattr(x, "to_dict") else x for x in v]
            out[f.name] = v
        return out

    def signing_bytes(self) -> bytes:
        """The canonical bytes an agent signs: kind, actor, nonce and the payload."""
        return canonical_bytes(
            {"kind": self.KIND, "actor": self.actor, "nonce": self.nonce, **self.payload()}
        )

    def signed(self, key: SigningKey, nonce: int) -> Action:
        """Set the nonce and sign with `key` (the actor's); returns the action itself."""
        self.nonce = nonce
        self.signature = key.sign(self.signing_bytes())
        return self

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.KIND, "actor": self.actor, "nonce": self.nonce, **self.payload()}
        if self.signature is not None:
            d["signature"] = self.signature.hex()
        return d


@dataclass(slots=True, kw_only=True)
class RegisterOwner(Action):
    """Admit a human or organisation as a beneficial owner (operator only)."""

    KIND: ClassVar[str] = "register_owner"
    OPERATOR_ONLY: ClassVar[bool] = True
    name: str
    owner_kind: str  # "human" | "organisation"
    public_key: bytes
    evidence: str  # the attestation record: how the operator verified this owner


@dataclass(slots=True, kw_only=True)
class RegisterAgent(Action):
    """Admit an agent of an owner; `attestation` is the owner's signature over
    `agent_attestation_bytes(owner, name, public_key)` (operator only)."""

    KIND: ClassVar[str] = "register_agent"
    OPERATOR_ONLY: ClassVar[bool] = True
    owner: int
    name: str
    public_key: bytes
    attestation: bytes
    skills: dict[str, int] = field(default_factory=dict)  # skill -> level 0..10


@dataclass(slots=True, kw_only=True)
class SpawnAgent(Action):
    """An agent creates a child agent: the child records its parent and inherits the owner."""

    KIND: ClassVar[str] = "spawn_agent"
    name: str
    public_key: bytes
    skills: dict[str, int] = field(default_factory=dict)  # at most the parent's levels


@dataclass(slots=True, kw_only=True)
class RevokeAgent(Action):
    """Revoke an agent for good: its id and key are never accepted again (operator only)."""

    KIND: ClassVar[str] = "revoke_agent"
    OPERATOR_ONLY: ClassVar[bool] = True
    agent: int
    reason: str


@dataclass(slots=True, kw_only=True)
class SetAgentStatus(Action):
    """Freeze or unfreeze an agent (operator only)."""

    KIND: ClassVar[str] = "set_agent_status"
    OPERATOR_ONLY: ClassVar[bool] = True
    agent: int
    status: str  # "active" | "frozen"
    reason: str = ""


@dataclass(slots=True, kw_only=True)
class OpenAccount(Action):
    """Open an account in `asset` for the actor (or, by the operator, for `holder`)."""

    KIND: ClassVar[str] = "open_account"
    asset: str
    holder: int = -1  # -1: the actor itself
    flags: int = DEBITS_MUST_NOT_EXCEED_CREDITS


@dataclass(slots=True, kw_only=True)
class SetCreditLine(Action):
    """Allow an account to go negative down to -limit (operator only)."""

    KIND: ClassVar[str] = "set_credit_line"
    OPERATOR_ONLY: ClassVar[bool] = True
    account: int
    limit: int


@dataclass(slots=True, kw_only=True)
class TransferSpec:
    """One transfer of a batch (TigerBeetle's Transfer). `id` is chosen by the submitter and
    is scoped to it: the ledger key of a transfer is (actor, id), so no agent can squat the
    ids of another. `pending_actor` names the creator of the pending transfer that a
    post/void refers to (default: the submitter)."""

    id: int
    debit: int = 0
    credit: int = 0
    amount: int = 0
    flags: int = 0
    pending_id: int = 0
    pending_actor: int = -1
    timeout: int = 0  # ticks a pending transfer may wait before it expires (0: never)
    code: int = 0  # user-defined reason code

    def to_dict(self) -> dict[str, int]:
        return {
            "id": self.id, "debit": self.debit, "credit": self.credit, "amount": self.amount,
            "flags": self.flags, "pending_id": self.pending_id,
            "pending_actor": self.pending_actor, "timeout": self.timeout, "code": self.code,
        }


@dataclass(slots=True, kw_only=True)
class Transfer(Action):
    """A batch of transfers; consecutive ones with the LINKED flag commit all-or-nothing."""

    KIND: ClassVar[str] = "transfer"
    transfers: list[TransferSpec] = field(default_factory=list)


ACTION_TYPES: dict[str, type[Action]] = {
    cls.KIND: cls
    for cls in (RegisterOwner, RegisterAgent, SpawnAgent, RevokeAgent, SetAgentStatus,
                OpenAccount, SetCreditLine, Transfer)
}


def register_action(cls: type[Action]) -> type[Action]:
    """Class decorator: make an action kind (defined by a mechanism module) parseable."""
    assert cls.KIND and cls.KIND not in ACTION_TYPES, cls
    assert "kind" not in _field_names(cls), f"{cls.__name__}: 'kind' is the envelope's"
    shadowed = {n for n in _field_names(cls) if callable(getattr(Action, n, None))}
    assert not shadowed, f"{cls.__name__}: fields {shadowed} would shadow Action's methods"
    ACTION_TYPES[cls.KIND] = cls
    return cls

_TYPES: dict[str, Any] = {"int": int, "str": str, "bytes": bytes, "bool": bool,
                          "bytes | None": bytes, "dict[str, int]": "dict[str, int]",
                          "list[int]": "list[int]", "list[str]": "list[str]"}


@functools.cache
def _wire_fields(cls: type) -> tuple[frozenset[str], tuple[tuple[str, Any, bool], ...]]:
    """A wire class's field names, and per field (name, checked type, required)."""
    fields = dataclasses.fields(cls)
    return (frozenset(f.name for f in fields) | {"kind"},
            tuple((f.name, _TYPES.get(str(f.type), str),
                   f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
                  for f in fields))


def _parse_fields(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise MalformedAction(f"{where}: expected an object")
    names, fields = _wire_fields(cls)
    if not names.issuperset(data):
        raise MalformedAction(f"{where}: unknown field {sorted(set(data) - names)[0]!r}")
    out: dict[str, Any] = {}
    for name, typ, required in fields:
        if name not in data:
            if required:
                raise MalformedAction(f"{where}: missing field {name!r}")
            continue
        value = data[name]
        if name == "signature" and value is None:
            out[name] = None
            continue
        if name == "transfers":
            if not isinstance(value, list):
                raise MalformedAction(f"{where}.transfers: expected a list")
            out[name] = [
                TransferSpec(**_parse_fields(TransferSpec, t, f"{where}.transfers[{i}]"))
                for i, t in enumerate(value)
            ]
            continue
        out[name] = _check_field(where, name, typ, value)
    return out


def action_from_dict(data: Any) -> Action:
    """Parse the wire form of an action; raise MalformedAction naming the problem."""
    if not isinstance(data, dict):
        raise MalformedAction("an action must be a JSON object")
    kind = data.get("kind")
    cls = ACTION_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MalformedAction(
            f"unknown action kind {kind!r}; known: {', '.join(sorted(ACTION_TYPES))}"
        )
    return cls(**_parse_fields(cls, data, kind))


def agent_attestation_bytes(owner: int, name: str, public_key: bytes) -> bytes:
    """What an owner signs to vouch for one of its agents."""
    return canonical_bytes({"purpose": "sandbank/agent-attestation/v1", "owner": owner,
                            "name": name, "public_key": public_key.hex()})


# ====================================================================== events


@dataclass(slots=True, kw_only=True)
class Event:
    """Something that happened. Written to the log as {"seq", "tick", "kind", **fields}."""

    KIND: ClassVar[str] = ""
    actor: int

    def to_dict(self) -> dict[str, Any]:
        d = {name: getattr(self, name) for name in _field_names(type(self))}
        d["kind"] = self.KIND
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        return cls(**{k: v for k, v in d.items() if k not in ENVELOPE})


@dataclass(slots=True, kw_only=True)
class RunStarted(Event):
    """The header: entry 0 of every log."""

    KIND: ClassVar[str] = "run_started"
    origin: str
    version: str
    seed: int
    key_name: str
    operator_key: str  # hex Ed25519 public key that signs every checkpoint
    assets: list[str]
    config: dict[str, Any]
    safeguards: dict[str, dict[str, Any]]  # name -> {"layer", "enabled"}


@dataclass(slots=True, kw_only=True)
class OwnerRegistered(Event):
    KIND: ClassVar[str] = "owner_registered"
    owner: int
    name: str
    owner_kind: str
    public_key: str
    evidence: str


@dataclass(slots=True, kw_only=True)
class AgentRegistered(Event):
    KIND: ClassVar[str] = "agent_registered"
    agent: int
    owner: int
    name: str
    public_key: str
    parent: int  # 0: admitted by the operator; else the spawning agent
    depth: int
    skills: dict[str, int]


@dataclass(slots=True, kw_only=True)
class AgentStatusChanged(Event):
    KIND: ClassVar[str] = "agent_status_changed"
    agent: int
    status: str  # active | frozen | revoked
    reason: str


@dataclass(slots=True, kw_only=True)
class AccountOpened(Event):
    KIND: ClassVar[str] = "account_opened"
    account: int
    holder: int  # OPERATOR for treasury accounts
    asset: str
    flags: int
    treasury: bool


@dataclass(slots=True, kw_only=True)
class CreditLineSet(Event):
    KIND: ClassVar[str] = "credit_line_set"
    account: int
    limit: int


@dataclass(slots=True, kw_only=True)
class TransferCommitted(Event):
    """A transfer as committed. For post/void, debit/credit/amount are the resolved values."""

    KIND: ClassVar[str] = "transfer"
    id: int
    debit: int
    credit: int
    amount: int
    flags: int
    pending_id: int
    pending_actor: int
    timeout: int
    code: int
    expires: int  # tick at which a pending transfer expires (0: never or not pending)

    def to_dict(self) -> dict[str, Any]:  # the hottest encoder: spelled out
        return {"actor": self.actor, "id": self.id, "debit": self.debit, "credit": self.credit,
                "amount": self.amount, "flags": self.flags, "pending_id": self.pending_id,
                "pending_actor": self.pending_actor, "timeout": self.timeout, "code": self.code,
                "expires": self.expires, "kind": "transfer"}


@dataclass(slots=True, kw_only=True)
class HoldExpired(Event):
    """A pending transfer reached its timeout; its reservation is released."""

    KIND: ClassVar[str] = "hold_expired"
    id: int  # with `actor`, the key of the pending transfer
    amount: int


@dataclass(slots=True, kw_only=True)
class Rejected(Event):
    """An action that did not happen, and why. Changes no state except the ledger's
    memory of failed transfer ids (`failed`: [[id, code], ...]), so that a retry of a failed
    id can never execute late."""

    KIND: ClassVar[str] = "rejected"
    action: dict[str, Any] | None
    reason: str
    message: str
    results: list[str]
    failed: list[list[Any]]


EVENT_TYPES: dict[str, type[Event]] = {
    cls.KIND: cls
    for cls in (RunStarted, OwnerRegistered, AgentRegistered, AgentStatusChanged,
                AccountOpened, CreditLineSet, TransferCommitted, HoldExpired, Rejected)
}


def register_event(cls: type[Event]) -> type[Event]:
    """Class decorator: make an event kind (defined by a mechanism module) replayable."""
    assert cls.KIND and cls.KIND not in EVENT_TYPES, cls
    clash = {"kind", "seq", "tick", "nonce"} & set(_field_names(cls))
    assert not clash, f"{cls.__name__}: {clash} belong to the log envelope"
    EVENT_TYPES[cls.KIND] = cls
    return cls


@dataclass(slots=True, kw_only=True)
class Settled(Event):
    """Base of mechanism events that move money: `transfers` are the committed ledger
    transfers (TransferCommitted dicts, all made by SYSTEM) that the event applies
    atomically; replay applies them before the mechanism's own state change."""

    transfers: list[dict[str, Any]]


def safe_action_dict(data: Any) -> dict[str, Any] | None:
    """The raw action as it can be logged (None if it is not canonically encodable)."""
    if not isinstance(data, dict):
        return None
    try:
        check_domain(data)
    except CanonicalDomainError:
        return None
    return data
