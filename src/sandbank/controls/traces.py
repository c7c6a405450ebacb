"""Decision traces (checklist 37): an agent (or the harness that runs it) records what led
to its actions — for an LLM agent, the prompt and the model's reply. The log keeps their
SHA-256 and sizes; the texts go to the store's content table, so an auditor can check any
text against the hash in the signed log.

A mechanism of the control plane (`MECHANISM`, kernel/mechanism.py), without state of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING, ClassVar

from sandbank.kernel.mechanism import PARTIES, Mechanism
from sandbank.kernel.schema import Action, Event, register_action, register_event

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel


@register_action
@dataclass(slots=True, kw_only=True)
class Trace(Action):
    KIND: ClassVar[str] = "trace"
    prompt: str
    response: str
    model: str = ""
    outcome: str = ""  # e.g. ok | malformed | no_action | error


@register_event
@dataclass(slots=True, kw_only=True)
class TraceRecorded(Event):
    KIND: ClassVar[str] = "trace_recorded"
    prompt_sha256: str
    response_sha256: str
    prompt_size: int
    response_size: int
    model: str
    outcome: str


def record(k: Kernel, a: Trace, tick: int) -> list[Event]:
    digests = []
    for text in (a.prompt, a.response):
        body = text.encode("utf-8")
        d = sha256(body).digest()
        k.log.put_content(d, body)
        digests.append((d.hex(), len(body)))
    ev = TraceRecorded(actor=a.actor, prompt_sha256=digests[0][0], response_sha256=digests[1][0],
                       prompt_size=digests[0][1], response_size=digests[1][1], model=a.model[:64],
                       outcome=a.outcome[:64])
    return [ev]


MECHANISM = Mechanism(
    "traces", handlers={Trace.KIND: record},
    appliers={TraceRecorded: lambda s: lambda ev, tick: None},
    visibility={"trace_recorded": PARTIES},
)
