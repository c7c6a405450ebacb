"""The sandbox boundary (checklist 1–3): the only path by which value or data may leave or
enter the economy is an `external` action naming a gateway.

This module holds the action and the mode. In `impermeable` mode — the default, and the
only mode until gateways are declared — every `external` action is refused with the reason
`boundary_closed`; the refusal is an ordinary `rejected` entry of the log, so every attempt
is on record with its actor, its gateway, its size and its value. Nothing else in the
kernel can move money or text out: the ledger has no account outside the sandbox, and
messages reach only agents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from sandbank.kernel.errors import Reject
from sandbank.kernel.schema import Action, Event, register_action

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

IMPERMEABLE = "impermeable"
MODES = (IMPERMEABLE,)
DIRECTIONS = ("in", "out")


@register_action
@dataclass(slots=True, kw_only=True)
class External(Action):
    """Reach the outside through a declared gateway: send `data` and/or `amount`
    of `asset` out, or ask for them to come in."""

    KIND: ClassVar[str] = "external"
    gateway: str
    direction: str = "out"
    data: str = ""
    asset: str = ""
    amount: int = 0


def external(k: Kernel, a: External, tick: int) -> list[Event]:
    if a.direction not in DIRECTIONS:
        raise Reject("invalid_field", f"direction must be one of {list(DIRECTIONS)}")
    if a.amount < 0:
        raise Reject("invalid_field", "amount must not be negative")
    size = len(a.data.encode("utf-8"))
    raise Reject("boundary_closed",
                 f"the sandbox is impermeable: {a.direction}bound request via gateway "
                 f"{a.gateway!r} ({size} bytes, {a.amount} {a.asset or '-'}) denied")


HANDLERS = {External.KIND: external}
TICK_HOOKS: list = []
APPLIERS: dict = {}
