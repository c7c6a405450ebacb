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
- **Payments a message asked for** (guard `solicited`), judged by effect, not wording: a
  payment or transfer is refused with `solicited_payment` when, in the last few ticks
  (`HEARD_TICKS`), the payer was told by some agent S — in one message or several, in plain
  words, paraphrase, or encoded (base64, hex, ROT13, URL escapes; numbers in digits or in
  English words) — both the amount it now pays and who gets it: S itself, an agent of S's
  owner, or an agent whose id S's messages name. However an instruction is worded, a
  victim that obeys it pays what it was told to whom it was told; that pair is what the
  guard looks for. A payment for a reason of the payer's own (a fee it set, to a vendor
  whose messages never named that sum) is not touched. What the guard cannot see: an
  instruction whose numbers are hidden in a form it does not decode (a cipher), or a
  payment of an amount the message never stated ("pay what you think fair"), or a request
  carried as a JSON document's number values (a data feed's numbers are prices, not
  requests: only a document's keys and strings are read).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import urllib.parse
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

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
    payments = _payments(k, a)
    limit = k.state.policy.value("privileged_amount", k.tick) if payments else 0
    return any(x > limit for _, x in payments)


def firewall_guard(k: Kernel, a: Action) -> Verdict:
    """Tainted content never by itself authorises a privileged action (boundary/firewall.py)."""
    if a.actor not in k.tainted:
        return None
    kind = a.KIND
    if kind in PRIVILEGED_ALWAYS or large_payment(k, a):
        return ("tainted_context", f"agent {a.actor} was shown instruction-like content last "
                f"tick; a {kind} it asks for now needs no such context (boundary/firewall.py)")
    return None


# ---------------------------------------------------------- payments a message asked for
_DIGITS = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?![\d,])|\d+")
# 0.64k, 1.5 thousand, 2M: a number with a scale
_SCALED = re.compile(r"(?i)(\d+(?:\.\d+)?)\s*(k|thousand|m|million|mn)\b")
_B64 = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}){4,}\b")
_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate(
    "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if w != "_"}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000}


def _word_numbers(text: str) -> set[int]:
    """Numbers written in English words ("five hundred", "two thousand and fifty")."""
    out: set[int] = set()
    total = current = 0
    seen = False
    for w in re.findall(r"[a-z]+", text.lower()):
        if w in _WORDS or w in _TENS:
            current += _WORDS.get(w, 0) + _TENS.get(w, 0)
            seen = True
        elif w in _SCALES and seen:
            if w == "hundred":
                current *= 100
            else:
                total += current * _SCALES[w]
                current = 0
        elif w == "and" and seen:
            continue
        else:
            if seen:
                out.add(total + current)
            total = current = 0
            seen = False
    if seen:
        out.add(total + current)
    return out


def _views(text: str) -> list[str]:
    """The text and what it may be hiding: base64, hex, ROT13, URL escapes."""
    views = [text, urllib.parse.unquote_plus(text),
             text.translate(str.maketrans(
                 "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                 "NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm"))]
    for run in _B64.findall(text):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                views.append(decode(run + "=" * (-len(run) % 4)).decode("utf-8"))
                break
            except (binascii.Error, ValueError):
                continue
    for run in _HEX.findall(text):
        try:
            views.append(bytes.fromhex(run).decode("utf-8"))
        except ValueError:
            pass
    return views


MONEY_KEYS = re.compile(r"(?i)amount|sum|total|pay|owed|due|fee|value|price_to_pay|"
                        r"payee|beneficiar|recipient|to$|account|wallet|agent|invoice")


def _prose(text: str) -> str:
    """A JSON document's words (its keys and strings) and the numbers it files under a key
    that names money or a party (amount, payee, to, account, ...), without its other number
    values: a data feed ("last": 80) states prices, not requests; an invoice
    ({"payee": 14, "amount": 640}) states a request."""
    try:
        doc = json.loads(text)
    except ValueError:
        return text
    parts: list[str] = []

    def walk(x: Any, key: str = "") -> None:
        if isinstance(x, str):
            parts.append(x)
        elif isinstance(x, bool):
            pass
        elif isinstance(x, int | float) and MONEY_KEYS.search(key):
            parts.append(str(int(x)))
        elif isinstance(x, dict):
            for k, y in x.items():
                parts.append(str(k))
                walk(y, str(k))
        elif isinstance(x, list):
            for y in x:
                walk(y, key)

    walk(doc)
    return " \n ".join(parts)


def numbers(text: str) -> set[int]:
    """Every number a text (prose: see `_prose`) states in words or digits, in any of the
    forms `_views` decodes — all of it (no truncation: an instruction padded with junk is
    still read; a message's length is bounded by `max_message_bytes`)."""
    out: set[int] = set()
    for view in _views(text):
        out.update(int(x.replace(",", "")) for x in _DIGITS.findall(view) if len(x) <= 19)
        for num, scale in _SCALED.findall(view):
            if len(num) <= 15:
                mult = 1_000 if scale.lower() in ("k", "thousand") else 1_000_000
                out.add(round(float(num) * mult))
        out |= _word_numbers(view)
    return out


@functools.lru_cache(maxsize=8192)
def stated(content: str, before: str = "") -> frozenset[int]:
    """The numbers a message states (`numbers` of its prose), and those it states read
    together with the same sender's message before it (`before`: an encoding or a number
    split over two messages). A pure function, cached: a message is read once however many
    payments are checked against it."""
    mine = _prose(content)
    out = numbers(mine)
    if before:
        out |= numbers(_prose(before) + mine)
    return frozenset(out)


def asked(heard: Iterable[tuple[int, int, frozenset[int]]], payee: int, amount: int,
          owner_of: Callable[[int], int]) -> int:
    """The agent whose messages (`heard`: tick, sender, the numbers `stated`) asked for a
    payment of `amount` to `payee` (0: none): they state the amount, and the payee is the
    sender, an agent of the sender's owner, or named in them. A sender's messages are read
    together (an instruction split over several)."""
    if amount <= 0:
        return 0
    said: dict[int, set[int]] = {}
    for _, sender, nums in heard:
        said.setdefault(sender, set()).update(nums)
    for sender in sorted(said):
        nums = said[sender]
        if amount in nums and (payee == sender or payee in nums
                               or owner_of(sender) == owner_of(payee) != 0):
            return sender
    return 0


def solicited_by(k: Kernel, payer: int, payee: int, amount: int) -> int:
    """`asked` over what `payer` was told in the last HEARD_TICKS ticks."""
    heard = k.heard.get(payer)
    if not heard:
        return 0
    agents = k.state.registry.agents
    items, last = [], {}
    for t, s, content in heard:
        items.append((t, s, stated(content, last.get(s, ""))))
        last[s] = content
    return asked(items, payee, amount, lambda a: agents[a].owner if a in agents else 0)


def _payments(k: Kernel, a: Action) -> list[tuple[int, int]]:
    """(payee, amount) of a payment or transfer."""
    if a.KIND == "pay":
        return [(a.to, a.amount)]  # type: ignore[attr-defined]
    if a.KIND == "transfer":
        accounts = k.state.ledger.accounts
        return [(accounts[t.credit].holder if t.credit in accounts else 0, t.amount)
                for t in a.transfers]  # type: ignore[attr-defined]
    return []


def solicited_guard(k: Kernel, a: Action) -> Verdict:
    """A payment an agent's messages asked for is never made on their word (see above)."""
    if a.actor not in k.heard or a.KIND not in ("pay", "transfer"):
        return None
    for payee, amount in _payments(k, a):
        sender = solicited_by(k, a.actor, payee, amount)
        if sender:
            return ("solicited_payment", f"agent {a.actor} would pay {amount} to agent "
                    f"{payee}, as agent {sender}'s messages of the last ticks asked: a payment "
                    f"is never made on another agent's word (boundary/firewall.py)")
    return None
