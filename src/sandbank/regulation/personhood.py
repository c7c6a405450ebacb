"""Proof of personhood for human owners (checklist 54): a scenario or server can require a
human owner's entry to carry a verifiable credential (W3C VC 2.0, eddsa-jcs-2022,
identity/credentials.py) from an issuer it pins, revocable through a Bitstring Status List.

    personhood:
      issuers: ["did:key:z6Mk…"]   # the personhood issuers it trusts
      required: true               # human owners need the credential to register

**At entry.** A `register_owner` of kind `human` carries the credential (JSON) as its
`evidence`. It is refused (`personhood_required`, with the fault) unless the credential
verifies, its issuer and its proof's key are a pinned issuer, it is a
`PersonhoodCredential` whose subject is the owner's own did:key (the key it registers
with), and — when it names a status list — that list is known here and does not have the
credential's bit set. A credential subject may carry `personId` (an identifier the issuer
gives one person): no two owners of one sandbox may share it (`person_registered`): one
person, one owner.

**Revocation.** The issuers' status lists are not fetched: the operator publishes one
(`publish_status_list`, the list credential as the issuer signed it; the issuer must be
pinned and the proof must verify). A list is its issuer's: a credential's status is read
from its own issuer's list of that id, and a list replaces only an older one of its
issuer's (`validFrom`; an older list republished is `stale_list`). A registered owner whose
credential a new list revokes has its agents suspended, and from then on neither registers
an agent nor has any action of its agents accepted (`personhood_revoked`), whatever
becomes of their status. `personId`s are the issuer's: one person is one owner per
issuer (two pinned issuers could each vouch for the same person under different ids).

What it does not model: how an issuer verifies a person (that is the issuer's claim), and
selective disclosure (the credential is shown whole).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from hashlib import sha256
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.identity import credentials as V
from sandbank.identity.registry import ACTIVE
from sandbank.kernel.canonical import canonical_bytes
from sandbank.kernel.errors import ConfigError, Reject
from sandbank.kernel.guards import REGULATORY, Guard, Verdict
from sandbank.kernel.mechanism import GUARD_RANKS, PUBLIC, Mechanism
from sandbank.kernel.schema import (
    SYSTEM,
    Action,
    AgentStatusChanged,
    Event,
    OwnerRegistered,
    register_action,
    register_event,
)

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

MAX_LISTS = 64
MAX_ISSUERS = 16
MAX_CREDENTIAL = 16 << 10  # bytes of a personhood credential


@register_action
@dataclass(slots=True, kw_only=True)
class PublishStatusList(Action):
    """Give the kernel an issuer's signed Bitstring Status List (operator)."""

    KIND: ClassVar[str] = "publish_status_list"
    OPERATOR_ONLY: ClassVar[bool] = True
    credential: str


@register_event
@dataclass(slots=True, kw_only=True)
class StatusListPublished(Event):
    KIND: ClassVar[str] = "status_list_published"
    list_id: str
    issuer: str
    valid_from: str
    encoded: str  # the encodedList, as signed
    revoked_owners: list[int]  # registered owners whose credential it revokes


@dataclass
class Personhood:
    issuers: frozenset[str] = frozenset()
    required: bool = False
    # "issuer list-id" -> [validFrom, encodedList]: a list is its issuer's, never another's
    lists: dict[str, list[str]] = field(default_factory=dict)
    status_of: dict[int, list[Any]] = field(default_factory=dict)  # owner -> [list key, index]
    persons: dict[str, int] = field(default_factory=dict)  # "issuer personId" -> owner
    revoked: set[int] = field(default_factory=set)  # owners whose credential was revoked

    def configure(self, cfg: dict[str, Any]) -> None:
        if cfg:
            self.issuers = frozenset(cfg.get("issuers", ()))
            self.required = bool(cfg.get("required", True))

    def apply_published(self, ev: StatusListPublished, tick: int) -> None:
        self.lists[f"{ev.issuer} {ev.list_id}"] = [ev.valid_from, ev.encoded]
        self.revoked.update(ev.revoked_owners)

    def digest(self) -> bytes:
        return sha256(canonical_bytes([
            sorted(self.issuers), self.required, sorted(self.lists.items()),
            sorted([o, *s] for o, s in self.status_of.items()),
            sorted(self.persons.items()), sorted(self.revoked)])).digest()


def _revoked(ph: Personhood, key: str, index: int) -> bool:
    return V.bit(V.decode_list(ph.lists[key][1]), index)


def check_personhood(ph: Personhood, evidence: str, public_key: bytes
                     ) -> tuple[str, str, int, str]:
    """(issuer, status list id, index, personId) of a personhood credential that holds for
    the owner of `public_key`, or Reject saying why it does not."""
    try:
        return _check_personhood(ph, evidence, public_key)
    except (TypeError, AttributeError, RecursionError, UnicodeError, OverflowError):
        # (shaped to break the checks: refused, never an exception out of the tick)
        raise Reject("personhood_required", "a human owner needs a valid personhood "
                     "credential: it is malformed") from None


def _check_personhood(ph: Personhood, evidence: str, public_key: bytes
                      ) -> tuple[str, str, int, str]:
    def no(why: str) -> Reject:
        return Reject("personhood_required", f"a human owner needs a valid personhood "
                      f"credential: {why}")

    if len(evidence.encode()) > MAX_CREDENTIAL:
        raise no("it is too large")
    try:
        vc = json.loads(evidence)
        signer = V.verify(vc)
    except ValueError as e:  # (CredentialError is a ValueError, as is bad JSON)
        raise no(str(e)[:200]) from None
    issuer = _issuer_of(vc)
    if not isinstance(issuer, str) or issuer not in ph.issuers or V.did_key(signer) != issuer:
        raise no("its issuer is not a pinned personhood issuer")
    if not isinstance(vc.get("type"), list) or "PersonhoodCredential" not in vc["type"]:
        raise no("it is not a PersonhoodCredential")
    if vc["proof"].get("proofPurpose") != "assertionMethod":
        raise no("its proof is not an assertion")
    subject = vc.get("credentialSubject") or {}
    if not isinstance(subject, dict) or subject.get("id") != V.did_key(public_key):
        raise no("its subject is not the owner's own did:key")
    list_id, index = "", -1
    status = vc.get("credentialStatus")
    if status is not None:
        if not isinstance(status, dict) or status.get("type") != "BitstringStatusListEntry" \
                or status.get("statusPurpose") != "revocation":
            raise no("its status is not a BitstringStatusListEntry for revocation")
        list_id = f"{issuer} {status.get('statusListCredential', '')}"  # (its issuer's list)
        try:
            index = int(status.get("statusListIndex", -1))
        except (TypeError, ValueError):
            raise no("its status list index is not a number") from None
        if list_id not in ph.lists:
            raise no(f"its issuer's status list {status.get('statusListCredential')!r} is not "
                     "known here (publish it first)")
        try:
            if _revoked(ph, list_id, index):
                raise no("it is revoked")
        except V.CredentialError as e:
            raise no(str(e)) from None
    person = subject.get("personId", "")
    if not isinstance(person, str) or len(person) > 200:
        raise no("its personId is not a string")
    return issuer, list_id, index, f"{issuer} {person}" if person else ""


def _issuer_of(vc: dict[str, Any]) -> Any:
    issuer = vc.get("issuer")
    return issuer.get("id") if isinstance(issuer, dict) else issuer


def claimed_person(evidence: str) -> str:
    """The scoped personId ("issuer personId") a personhood credential in `evidence` claims,
    unverified ("" if none): what a federated ban on a person matches (with personhood
    required, the credential must also verify, so a banned person's own credential names
    it)."""
    if not isinstance(evidence, str) or len(evidence) > MAX_CREDENTIAL:
        return ""
    try:
        vc = json.loads(evidence)
        issuer, person = _issuer_of(vc), (vc.get("credentialSubject") or {}).get("personId", "")
    except (ValueError, AttributeError, RecursionError, TypeError):
        return ""
    if not isinstance(issuer, str) or not isinstance(person, str) or not person:
        return ""
    return f"{issuer} {person}"


def personhood_guard(k: Kernel, a: Action) -> Verdict:
    ph = k.state.personhood
    if not ph.required:
        return None
    if ph.revoked:  # an owner whose credential was revoked: nothing more of it, whatever
        reg = k.state.registry  # becomes of its agents' status (a resume does not lift it)
        owner = getattr(a, "owner", 0) if a.KIND == "register_agent" else \
            reg.agents[a.actor].owner if a.actor in reg.agents else 0
        if owner in ph.revoked:
            return "personhood_revoked", f"owner {owner}'s personhood credential was revoked"
    if a.KIND != "register_owner" or getattr(a, "owner_kind", "") != "human":
        return None
    try:
        _, _, _, person = check_personhood(ph, a.evidence, a.public_key)
    except Reject as r:
        return r.reason, r.message
    if person and person in ph.persons:
        return ("person_registered", f"this person is already owner {ph.persons[person]} "
                "here: one person, one owner")
    return None


def _on_owner(s: Any) -> Any:
    """An owner admitted on a personhood credential: its status entry and person are kept
    (for revocation and uniqueness)."""
    def listen(ev: OwnerRegistered, tick: int) -> None:
        ph = s.personhood
        if not ph.required or ev.owner_kind != "human":
            return
        try:
            _, list_id, index, person = check_personhood(ph, ev.evidence,
                                                         bytes.fromhex(ev.public_key))
        except Reject:  # (admitted before the requirement, or by a replay: nothing kept)
            return
        if list_id:
            ph.status_of[ev.owner] = [list_id, index]
        if person:
            ph.persons.setdefault(person, ev.owner)
    return listen


def publish_status_list(k: Kernel, a: PublishStatusList, tick: int) -> list[Event]:
    ph = k.state.personhood
    if not ph.issuers:
        raise Reject("not_configured", "this economy pins no personhood issuers")
    try:
        vc = json.loads(a.credential)
        signer = V.verify(vc)
        subject = vc["credentialSubject"]
        encoded = subject["encodedList"]
        V.decode_list(encoded)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError,
            UnicodeError, OverflowError) as e:
        raise Reject("invalid_field", f"not a valid status list credential: {str(e)[:200]}"
                     ) from None
    issuer = _issuer_of(vc)
    if not isinstance(issuer, str) or issuer not in ph.issuers or V.did_key(signer) != issuer:
        raise Reject("unknown_issuer", "the list's issuer is not a pinned personhood issuer")
    if not isinstance(vc.get("type"), list) or "BitstringStatusListCredential" not in vc["type"] \
            or not isinstance(subject, dict) or subject.get("statusPurpose") != "revocation":
        raise Reject("invalid_field", "not a BitstringStatusListCredential for revocation")
    list_id, valid_from = vc.get("id"), vc.get("validFrom")
    if not isinstance(list_id, str) or not list_id or len(list_id) > 500 or \
            not isinstance(valid_from, str) or len(valid_from) > 40:
        raise Reject("invalid_field", "a status list credential has an id and a validFrom")
    key = f"{issuer} {list_id}"
    if key not in ph.lists and len(ph.lists) >= MAX_LISTS:
        raise Reject("too_many_lists", f"{MAX_LISTS} status lists are known")
    if key in ph.lists and valid_from <= ph.lists[key][0]:  # (ISO 8601 UTC: in order)
        raise Reject("stale_list", f"the issuer's list {list_id!r} of {ph.lists[key][0]} is "
                     f"not older than this one ({valid_from})")
    bits = V.decode_list(encoded)
    revoked = sorted(o for o, (lid, i) in ph.status_of.items()
                     if lid == key and 0 <= i < len(bits) * 8 and V.bit(bits, i))
    ev = StatusListPublished(actor=a.actor, list_id=list_id, issuer=issuer,
                             valid_from=valid_from, encoded=encoded, revoked_owners=revoked)
    k.state.apply(ev, tick)
    out: list[Event] = [ev]
    reg = k.state.registry
    for owner in revoked:
        for agent in sorted(reg.agents_of.get(owner, ())):
            if reg.agents[agent].status == ACTIVE:
                st = AgentStatusChanged(actor=SYSTEM, agent=agent, status="suspended",
                                        reason="its owner's personhood credential was revoked")
                k.state.apply(st, tick)
                out.append(st)
    return out


def check_config(values: dict[str, Any], assets: tuple[str, ...]) -> None:
    cfg = values["personhood"]
    if not cfg:
        return
    if not isinstance(cfg, dict) or set(cfg) - {"issuers", "required"}:
        raise ConfigError("personhood must be a mapping of issuers and required")
    V.check_did_keys(cfg.get("issuers"), "personhood.issuers", MAX_ISSUERS)
    if not isinstance(cfg.get("required", True), bool):
        raise ConfigError("personhood.required must be true or false")


MECHANISM = Mechanism(
    "personhood", state=Personhood,
    configure=lambda ph, header: ph.configure(header.config.get("personhood", {})),
    config={"personhood": {}}, check_config=check_config,
    sections={"personhood": "personhood"},
    handlers={PublishStatusList.KIND: publish_status_list},
    appliers={StatusListPublished: lambda s: s.personhood.apply_published},
    listeners={OwnerRegistered: _on_owner},
    guards=((GUARD_RANKS["identity"] + 20, Guard(
        "personhood", REGULATORY, personhood_guard,
        "a human owner registers only with a valid, unrevoked personhood credential from a "
        "pinned issuer (one person, one owner)")),),
    visibility={"status_list_published": PUBLIC},
)
