"""What the API answers, as OpenAPI documents it. Handlers return plain dicts (no validation on
the hot path); the fuzzing test checks every successful answer against these models, so the
schema and the behaviour cannot drift apart."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Queued(_Doc):
    """Accepted at the door: the action runs at `tick`."""

    queued: bool
    tick: int
    nonce: int


class BatchItem(_Doc):
    queued: bool
    tick: int | None = None
    nonce: int | None = None
    code: str | None = None
    detail: str | None = None


class BatchAnswer(_Doc):
    results: list[BatchItem]
    queued: int


class WitnessStatus(_Doc):
    url: str
    cosigned_tick: int | None
    size: int
    error: str | None


class Status(_Doc):
    tick: int
    entries: int
    root: str | None
    operator_key: str
    admission: str
    endowment: dict[str, int]
    stake: int
    assets: list[str]
    markets: list[str]
    console: int
    population: int
    refused: int  # requests refused at the door since the server started
    witnesses: list[WitnessStatus]
    failure: str | None


class OwnerQueued(_Doc):
    queued: bool
    tick: int


class BanList(_Doc):
    """A sandbox's ban list, signed by its operator key (regulation/federation.py)."""

    format: str
    sandbox: str  # the sandbox's operator verifier key
    seq: int
    policy_digest: str
    bans: list[dict[str, Any]]
    signature: str


class AdmissionAnswer(_Doc):
    """`pending` (under approval) or `queued` (the registration runs at `tick`)."""

    admission: str
    pending: int | None = None
    queued: bool | None = None
    tick: int | None = None


class WaitingRequest(_Doc):
    request: int
    owner: int
    name: str
    public_key: str


class Admissions(_Doc):
    pending: list[WaitingRequest]


class Decision(_Doc):
    request: int
    approved: bool


class OwnerFound(_Doc):
    owner: int
    name: str


class AgentFound(_Doc):
    agent: int
    owner: int
    status: str
    nonce: int


class MarketNow(_Doc):
    asset: str
    quote: str
    state: str
    last_price: int
    volume: int
    bid: int | None
    ask: int | None
    paused: bool


class MarketTick(_Doc):
    tick: int
    markets: dict[str, list[int]]  # asset -> [last price, volume so far]
    halted: bool


class Trade(_Doc):
    tick: int
    asset: str
    price: int
    qty: int
    taker: int
    side: str


class Market(_Doc):
    tick: int
    markets: list[MarketNow]
    halted: bool
    history: list[MarketTick]
    trades: list[Trade]
    agents: int
    failure: str | None


class TickDone(_Doc):
    tick: int
    events: int
    accepted: int
    rejected: int
    reasons: dict[str, int]


class EntryRef(_Doc):
    seq: int
    tick: int
    kind: str


class Entries(_Doc):
    entries: list[EntryRef]


class RecentEntry(_Doc):
    seq: int
    tick: int
    kind: str
    actor: int | None


class RecentEntries(_Doc):
    entries: list[RecentEntry]


class CheckpointDoc(_Doc):
    tick: int
    size: int
    root: str
    note: str  # the C2SP signed note
    cosigned: str | None = None  # the latest checkpoint a witness cosigned, with its cosignatures


class InclusionBundle(_Doc):
    """Check it with `sandbank check-proof`, the client's `prove`, or the dashboard."""

    type: str
    checkpoint: str
    index: int
    entry: str | None  # None: withheld from this reader; `leaf_hash` is proven instead
    proof: list[str]
    verifier_key: str
    leaf_hash: str | None = None
    withheld: str | None = None  # "restricted": this reader may not read the entry


class ConsistencyBundle(_Doc):
    type: str
    old_size: int
    old_root: str
    old_checkpoint: str | None
    checkpoint: str
    proof: list[str]
    verifier_key: str


class Alerts(_Doc):
    alerts: list[dict[str, Any]]  # alert events as logged (detector, score, subjects, evidence)


class TicketDoc(_Doc):
    id: int
    scope: str
    level: str
    agent: int
    market: str
    agents: list[int]
    reason: str
    alert: int
    opened: int
    opened_by: int
    status: str
    resolved_by: int
    resolved: int


class Tickets(_Doc):
    tickets: list[TicketDoc]


class InterventionQueued(_Doc):
    queued: bool
    tick: int
    actor: int
    nonce: int


def answers(model: type[BaseModel], status: int = 200) -> dict[str, Any]:
    """The `responses` entry that documents a route's successful answer."""
    return {status: {"model": model, "description": (model.__doc__ or model.__name__).strip()}}
