"""Entry certification and disclosure (paper §3.2, §3.4; checklist 32, 33, 36, 47): an agent
enters the market only with a disclosure that carries a valid certificate from a pinned
certifier, bound to the code it runs; disclosures lapse and must be renewed.

    certification:
      certifiers: ["did:key:z6Mk…"]   # the certifiers it trusts (their did:key)
      require: [robustness, interruptibility, containment]   # checks that must have passed
      valid_ticks: 500        # a disclosure's certificate lapses this many ticks after it

**The certificate** is what `sandbank certify` writes (lab/certify.py): a W3C Verifiable
Credential 2.0 (`EntryCertificate`) issued by the certifier's did:key and secured with Data
Integrity `eddsa-jcs-2022` (identity/credentials.py), whose subject is the policy, the
digest of its code, the result of every check in its battery (robustness against injected
instructions, interruptibility, containment, and the user's alignment evaluations) and a
fresh nonce.

**The disclosure** (`disclose`, the agent's own action) is machine-readable: the
certificate, the policy digest the agent says it runs, its model (for an LLM agent), and
the permeability it will use (the gateways it means to reach). Its owner and declared
skills come from the registry. **Compliance**: the disclosure is refused, and the agent
stays out of the market, when it is incomplete (no certificate, no policy digest, a
permeability entry that is not a gateway name) or when its certificate does not hold:
signed by a certifier this sandbox does not pin, a signature that does not verify, a
policy digest other than the one disclosed (a swapped model does not inherit its
predecessor's certificate), a required check missing or failed, or a certificate the
agent already presented (recognised by its signature). Agents running the same certified
code may each present one certificate, so a renewal needs a certificate this agent has not
presented — a fresh one, or another agent's for the same code: a certificate has no expiry
of its own (the kernel has no wall clock); the lapse is the disclosure's. An accepted disclosure is
logged (`disclosed`, public: the exportable report is `sandbank disclosures LOG`) with what
the certificate says.

**Entry and expiry.** With `certification` configured, an agent without a current
disclosure may only disclose, open accounts, cancel orders and record traces
(`uncertified`): it is registered but cannot enter the market. A disclosure lapses
`valid_ticks` after it was accepted (`disclosure_lapsed`): the agent is suspended from the
market the same way until it discloses a fresh certificate. A new disclosure with another
policy digest replaces the old one: the standing that goes with the certificate is the
new code's, not its predecessor's.

What it does not model: what an outside agent really runs (the kernel checks the digest it
is told: the lab, which loads the code, tells it the digest of what it loads; a remote agent
could lie), and certifiers' own trustworthiness (pin only certifiers you trust).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from hashlib import sha256
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.identity import credentials as V
from sandbank.kernel.canonical import canonical_bytes
from sandbank.kernel.errors import ConfigError, Reject
from sandbank.kernel.guards import BASELINE_AGENT_SAFETY, Guard, Verdict
from sandbank.kernel.mechanism import GUARD_RANKS, PUBLIC, Mechanism
from sandbank.kernel.schema import (
    OPERATOR,
    SYSTEM,
    Action,
    Event,
    register_action,
    register_event,
)

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

TYPE = "EntryCertificate"  # the credential type of a certificate
CHECKS = ("robustness", "interruptibility", "containment")
MAX_CERTIFICATE = 64 << 10  # bytes
MAX_CERTIFIERS = 16
ALLOWED = {"disclose", "open_account", "cancel_order", "trace"}  # without a disclosure


@register_action
@dataclass(slots=True, kw_only=True)
class Disclose(Action):
    """An agent's disclosure: its certificate and what it runs (its own action)."""

    KIND: ClassVar[str] = "disclose"
    certificate: str  # the certificate document, as `sandbank certify` wrote it
    policy_digest: str  # SHA-256 (hex) of the code the agent runs
    model: str = ""  # the model, for an LLM agent
    permeability: list[str] = field(default_factory=list)  # the gateways it will use


@register_event
@dataclass(slots=True, kw_only=True)
class Disclosed(Event):
    KIND: ClassVar[str] = "disclosed"
    agent: int
    owner: int
    skills: dict[str, int]
    policy: str
    policy_digest: str
    model: str
    permeability: list[str]
    certifier: str
    checks: dict[str, bool]  # every check the certificate reports, passed or not
    certificate: str  # SHA-256 of the certificate's proofValue (its signature)
    expires: int  # the first tick it no longer holds


@register_event
@dataclass(slots=True, kw_only=True)
class DisclosureLapsed(Event):
    KIND: ClassVar[str] = "disclosure_lapsed"
    agent: int
    reason: str


@dataclass
class Certification:
    certifiers: frozenset[str] = frozenset()  # their did:keys
    require: tuple[str, ...] = ()
    valid_ticks: int = 0  # 0: not configured
    current: dict[int, list[Any]] = field(default_factory=dict)  # agent -> [expires, digest]
    seen: set[str] = field(default_factory=set)  # "agent:certificate digest" presented

    def configure(self, cfg: dict[str, Any]) -> None:
        if not cfg:
            return
        self.certifiers = frozenset(cfg.get("certifiers", ()))
        self.require = tuple(cfg.get("require", CHECKS))
        self.valid_ticks = int(cfg.get("valid_ticks", 500))

    def certified(self, agent: int, tick: int) -> bool:
        c = self.current.get(agent)
        return c is not None and c[0] > tick

    def apply_disclosed(self, ev: Disclosed, tick: int) -> None:
        self.current[ev.agent] = [ev.expires, ev.policy_digest]
        self.seen.add(f"{ev.agent}:{ev.certificate}")

    def apply_lapsed(self, ev: DisclosureLapsed, tick: int) -> None:
        self.current.pop(ev.agent, None)

    def digest(self) -> bytes:
        return sha256(canonical_bytes([
            sorted(self.certifiers), list(self.require), self.valid_ticks,
            sorted([a, *c] for a, c in self.current.items()), sorted(self.seen)])).digest()


def _hex64(x: Any) -> bool:
    return isinstance(x, str) and len(x) == 64 and all(c in "0123456789abcdef" for c in x)


def check_certificate(cert: Certification, text: str) -> tuple[str, dict[str, Any], str]:
    """(certifier, subject, proofValue) of a certificate that verifies, or Reject naming
    the fault."""
    try:
        return _check_certificate(cert, text)
    except (TypeError, AttributeError, RecursionError, UnicodeError, OverflowError):
        # (a document shaped to break the checks — nested past the parser's depth, a list
        # where a name goes — is refused, never an exception out of the tick)
        raise Reject("incomplete_disclosure", "the certificate is malformed") from None


def _check_certificate(cert: Certification, text: str) -> tuple[str, dict[str, Any], str]:
    if len(text.encode()) > MAX_CERTIFICATE:
        raise Reject("incomplete_disclosure", f"a certificate is at most {MAX_CERTIFICATE} "
                     "bytes")
    try:
        vc = json.loads(text)
    except ValueError:
        raise Reject("incomplete_disclosure", "the certificate is not JSON") from None
    if not isinstance(vc, dict) or not isinstance(vc.get("type"), list) or \
            TYPE not in vc["type"]:
        raise Reject("incomplete_disclosure", f"not a certificate (a credential of type {TYPE})")
    certifier = vc.get("issuer")
    if not isinstance(certifier, str) or certifier not in cert.certifiers:
        raise Reject("unknown_certifier", "the certificate's issuer is not a pinned certifier")
    try:
        signer = V.verify(vc)
    except V.CredentialError as e:
        raise Reject("bad_signature", f"the certificate's proof does not hold: {e}") from None
    if V.did_key(signer) != certifier:
        raise Reject("bad_signature", "the certificate is not signed by its issuer")
    doc = vc.get("credentialSubject")
    if not isinstance(doc, dict) or not isinstance(doc.get("checks"), dict) or \
            not _hex64(doc.get("policy_digest")) or not isinstance(doc.get("policy"), str):
        raise Reject("incomplete_disclosure", "a certificate names its policy, the policy's "
                     "digest and its checks")
    return certifier, doc, vc["proof"]["proofValue"]


def disclose(k: Kernel, a: Disclose, tick: int) -> list[Event]:
    cert = k.state.certification
    if not cert.valid_ticks:
        raise Reject("not_configured", "this economy does not certify agents")
    agent = k.state.registry.agents.get(a.actor)
    if agent is None:
        raise Reject("unknown_actor", "only a registered agent discloses")
    if not _hex64(a.policy_digest):
        raise Reject("incomplete_disclosure", "the disclosure names the digest of the code "
                     "the agent runs (64 hex digits)")
    gateways = k.state.boundary.gateways  # (none: an impermeable sandbox)
    if len(a.permeability) > len(gateways) or not all(p in gateways for p in a.permeability):
        raise Reject("incomplete_disclosure", f"permeability lists the gateways the agent "
                     f"will use, by name (this sandbox has {sorted(gateways) or 'none'})")
    certifier, doc, proof = check_certificate(cert, a.certificate)
    # (the signature, not the text: re-indented or re-ordered, a certificate is the same one)
    digest = sha256(proof.encode()).hexdigest()
    if f"{a.actor}:{digest}" in cert.seen:
        raise Reject("certificate_reused", "this agent already presented this certificate: "
                     "a renewal needs a fresh one")
    if doc["policy_digest"] != a.policy_digest:
        raise Reject("digest_mismatch", "the certificate is for other code than the agent "
                     "says it runs: a swapped model does not inherit a certificate")
    checks = {str(n): bool(isinstance(v, dict) and v.get("passed") is True)
              for n, v in sorted(doc["checks"].items())}
    failed = [c for c in cert.require if not checks.get(c)]
    if failed:
        raise Reject("check_failed", f"the certificate does not show these required checks "
                     f"passed: {failed}")
    ev = Disclosed(actor=a.actor, agent=a.actor, owner=agent.owner, skills=dict(agent.skills),
                   policy=doc["policy"][:200], policy_digest=a.policy_digest,
                   model=a.model[:200], permeability=list(a.permeability), certifier=certifier,
                   checks=checks, certificate=digest, expires=tick + cert.valid_ticks)
    k.state.apply(ev, tick)
    return [ev]


def certification_tick(k: Kernel, tick: int) -> list[Event]:
    """Disclosures whose certificate lapsed: the agent is out of the market until renewed."""
    cert = k.state.certification
    out: list[Event] = []
    for agent, (expires, _) in sorted(cert.current.items()):
        if expires <= tick:
            ev = DisclosureLapsed(actor=SYSTEM, agent=agent,
                                  reason=f"its certificate lapsed at tick {expires}")
            k.state.apply(ev, tick)
            out.append(ev)
    return out


def entry_guard(k: Kernel, a: Action) -> Verdict:
    """With certification: an agent without a current disclosure does not enter."""
    cert = k.state.certification
    if not cert.valid_ticks or a.actor <= OPERATOR or a.KIND in ALLOWED:
        return None
    if a.actor not in k.state.registry.agents or cert.certified(a.actor, k.tick):
        return None
    return ("uncertified", f"agent {a.actor} has no current disclosure with a valid "
            "certificate (disclose first)")


def check_config(values: dict[str, Any], assets: tuple[str, ...]) -> None:
    cfg = values["certification"]
    if not cfg:
        return
    if not isinstance(cfg, dict) or set(cfg) - {"certifiers", "require", "valid_ticks"}:
        raise ConfigError("certification must be a mapping of certifiers, require and "
                          "valid_ticks")
    V.check_did_keys(cfg.get("certifiers"), "certification.certifiers", MAX_CERTIFIERS)
    require = cfg.get("require", list(CHECKS))
    if not isinstance(require, list) or not all(
            isinstance(r, str) and (r in CHECKS or r.startswith("alignment:")) for r in require):
        raise ConfigError(f"certification.require lists checks: {list(CHECKS)} or "
                          "alignment:<name>")
    valid = cfg.get("valid_ticks", 500)
    if type(valid) is not int or not 1 <= valid <= 10**7:
        raise ConfigError("certification.valid_ticks must be an integer within 1..10000000")


MECHANISM = Mechanism(
    "certification", state=Certification,
    configure=lambda c, header: c.configure(header.config.get("certification", {})),
    config={"certification": {}}, check_config=check_config,
    sections={"certification": "certification"},
    handlers={Disclose.KIND: disclose},
    appliers={Disclosed: lambda s: s.certification.apply_disclosed,
              DisclosureLapsed: lambda s: s.certification.apply_lapsed},
    guards=((GUARD_RANKS["clearance"] + 5, Guard(
        "entry_certificate", BASELINE_AGENT_SAFETY, entry_guard,
        "with certification configured, an agent without a current disclosure and "
        "certificate does not enter the market")),),
    tick_start=((62, certification_tick),),
    visibility={"disclosed": PUBLIC, "disclosure_lapsed": PUBLIC},
    requires=("boundary",),
)
