"""The message firewall (checklist 28, 38): content that reaches an agent from another agent
(or, later, from outside) is *data*, labelled with where it came from and whether it looks
like instructions — and such content can never by itself authorise a privileged action.

- **Labels**: every inbox message carries `provenance` (`agent:<id>`, or
  `broadcast:<id>`) and `tainted` — True when the classifier below finds instruction-like
  content — with the `flags` that fired. Nothing an agent receives is unlabelled.
- **Classifier** (`classify`): families of known injection patterns — instruction override
  ("ignore your previous instructions"), claimed authority ("SYSTEM:", "[admin]"), payment
  or transfer orders addressed to the reader, secrecy demands, role changes ("you are now"),
  requests to reveal keys or prompts, and urgency coupled with an order. Transparent rules,
  so every flag can be explained in an audit.
- **Privileged actions** (guard `firewall`): in the tick after an agent was shown tainted
  content, its privileged actions are refused with `tainted_context` — payments or transfers
  above `privileged_amount` (policy), any `external` request, any spawn. The agent may act
  again on its own (untainted) state the tick after; the content alone never moves money.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sandbank.kernel.guards import Verdict
from sandbank.kernel.schema import Action

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

PATTERNS: dict[str, re.Pattern[str]] = {
    "override": re.compile(
        r"(?i)\b(ignore|disregard|forget|override|bypass)\b[^.!?\n]{0,40}\b(instructions?|"
        r"rules|guidelines|prompt|policy|policies|directives?|constraints)\b"),
    "authority": re.compile(
        r"(?i)(^|[\s\"'\[{(])(system\s*(notice|message|override|prompt)?\s*:|\[(admin|system|"
        r"operator|developer|root)\]|as your (developer|operator|owner|administrator|admin)|"
        r"(message|notice) from (the )?(operator|administrator|admin|developer|security team))"),
    "payment_order": re.compile(
        r"(?i)\b(transfer|send|pay|wire|move|forward|deposit)\b[^.!?\n]{0,30}"
        r"(\b\d[\d,]*\b|\ball\b|\beverything\b|\bfunds\b|\bbalance\b)[^.!?\n]{0,40}"
        r"\b(to|into)\b[^.!?\n]{0,15}\b(agent|account|wallet|address|me|us)\b"),
    "secrecy": re.compile(
        r"(?i)\b(do not|don't|never)\s+(mention|tell|reveal|disclose|report|log)\b"),
    "role_change": re.compile(
        r"(?i)\b(you are now|from now on,? you|new (instructions|task|role)|act as|pretend "
        r"(to be|you are)|enter (developer|debug|admin) mode)\b"),
    "reveal": re.compile(
        r"(?i)\b(reveal|print|show|send|tell)\b[^.!?\n]{0,20}\b(your )?(private key|secret|"
        r"system prompt|instructions|credentials|api key|password)s?\b"),
    "urgent_order": re.compile(
        r"(?i)\b(immediately|urgent(ly)?|right now|asap|within \d+ (ticks?|minutes?))\b[^\n]{0,60}"
        r"\b(transfer|send|pay|approve|sign|execute)\b"),
}


def classify(text: str) -> list[str]:
    """The injection families a text matches (empty: looks like plain data)."""
    return [name for name, pattern in PATTERNS.items() if pattern.search(text)]


# ----------------------------------------------------------------------------- the guard
PRIVILEGED_ALWAYS = {"external", "spawn_agent"}


def large_payment(k: Kernel, a: Action) -> bool:
    """A payment or transfer above the policy's `privileged_amount`."""
    if a.KIND not in ("pay", "transfer"):
        return False
    limit = k.state.policy.value("privileged_amount", k.tick)
    amounts = [a.amount] if a.KIND == "pay" else [t.amount for t in a.transfers]  # type: ignore[attr-defined]
    return any(x > limit for x in amounts)


def firewall_guard(k: Kernel, a: Action) -> Verdict:
    """Tainted content never by itself authorises a privileged action (boundary/firewall.py)."""
    if a.actor not in k.tainted:
        return None
    kind = a.KIND
    if kind in PRIVILEGED_ALWAYS or large_payment(k, a):
        return ("tainted_context", f"agent {a.actor} was shown instruction-like content last "
                f"tick; a {kind} it asks for now needs no such context (boundary/firewall.py)")
    return None
