"""The live economy behind the API: one kernel (or a scenario's `LabEconomy`, whose
in-process population then trades with the agents that join over the network), one lock,
and what the server adds around the sequencer:

- **admission** (`open` | `approval` | `stake`): with `open`, the owner's attestation is the
  check; with `approval`, requests wait in a queue for the operator or an overseer to admit
  or refuse; with `stake`, an admitted agent's endowment is partly held as a bond (a pending
  operator transfer to the treasury) that is forfeited if it is terminated;
- **endowment**: accounts opened and funded from the treasury for each agent admitted through
  the API (the same endowment as the scenario's population, by default);
- the **console overseer**: an overseer identity whose key the server holds, acting for a
  person who logged into the dashboard with the overseer token (an overseer that keeps its
  own key posts signed actions instead; see docs/server.md for the trust model);
- **rate limits**: a token bucket per identity for its actions, and one per source (the
  client's address) for everything a stranger can send — actions before their signature is
  checked, batch items, admission requests, stream connections — so one source can neither
  flood nor starve another;
- the **refusal record**: the requests refused at the door in one tick (malformed, forged,
  replayed, rate-limited, a stranger on an overseer endpoint) are counted and sampled, with
  their source, into one bounded `request_refused` event of the operator: at most one entry
  a tick whatever arrives, and nobody's act (it names no actor but the operator);
- the alerts seen, the public market data and, for overseers, the wealth concentration and
  graphs the dashboard shows (which entries each action produced is in the store: the kernel
  writes it with each tick);
- **subscribers**: WebSocket streams fed after every tick.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from sandbank.controls.controls import (
    OVERSEER,
    REFUSAL_SAMPLE_CHARS,
    REFUSAL_SAMPLES,
    RecordAdmission,
    RecordRefusal,
    RegisterOverseer,
)
from sandbank.identity.keys import RunSecret, verify_signature
from sandbank.kernel.canonical import parse
from sandbank.kernel.schema import (
    OPERATOR,
    PENDING,
    POST_PENDING,
    Action,
    OpenAccount,
    RegisterAgent,
    Transfer,
    TransferSpec,
    agent_attestation_bytes,
)
from sandbank.kernel.sequencer import Kernel, QueueFull, TickSummary
from sandbank.lab.metrics import gini

ADMISSION = ("open", "approval", "stake")
MAX_ID = 2**53 - 1  # identities the canonical log can hold
log = logging.getLogger("sandbank.server")
CONSOLE = "console"
REFUSAL_KINDS = 60  # distinct "endpoint code" counters in one tick's record (then "other")
STAKE_CODE = 1  # the code of a stake hold (a pending operator transfer)
OPERATOR_INBOX = object()  # inbox mark: an operator action (signed when drained)
MAX_SOURCES = 10_000  # sources with a rate bucket at once (least recently seen forgotten)
MAX_PENDING = 1_000  # admission requests waiting for a decision
MAX_PENDING_PER_OWNER = 50  # ... of one owner (one owner cannot fill the queue for all)
MAX_STREAMS_PER_SOURCE = 16  # open WebSocket streams of one source
MAX_STREAMS = 1_000  # open WebSocket streams in all
ADMISSION_RATE = 2.0  # admission requests per source and second (bursts of 10 times that)
STARTUP_VIEW = 100_000  # entries re-read at a restart for the dashboard's alerts and graphs
HISTORY = 600  # ticks of prices and concentration kept for the dashboard


class SetupError(ValueError):
    """A server configuration that cannot work (told to the operator at start)."""


class AdmissionRefused(ValueError):
    """An admission request refused before it entered any queue or the log."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class Refusals:
    """The requests refused at the door during one tick: counted per "endpoint code", with a
    few samples quoting their source and the identity they claimed. Bounded whatever
    arrives: REFUSAL_KINDS counters, REFUSAL_SAMPLES samples of REFUSAL_SAMPLE_CHARS."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.samples: list[str] = []
        self.total = 0

    def add(self, source: str, endpoint: str, code: str, claimed: Any, detail: str) -> None:
        key = f"{endpoint} {code}"[:64]
        if key not in self.counts and len(self.counts) >= REFUSAL_KINDS:
            key = "other"
        self.counts[key] = self.counts.get(key, 0) + 1
        self.total += 1
        if len(self.samples) < REFUSAL_SAMPLES:
            who = "" if claimed is None else f" claimed {str(claimed)[:24]}"
            text = f"{source[:64]} {endpoint} {code}{who}: {detail}"[:REFUSAL_SAMPLE_CHARS]
            # printable ASCII only, nothing JSON escapes: a sample is at most its length in bytes
            self.samples.append("".join(c if " " <= c <= "~" and c not in '"\\' else "?"
                                        for c in text))

    def record(self) -> RecordRefusal:
        return RecordRefusal(actor=OPERATOR, counts=dict(self.counts), total=self.total,
                             samples=list(self.samples))


@dataclass
class Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    agent: int | None = None  # None: public market data
    lagged: bool = False


@dataclass
class Bucket:
    tokens: float
    at: float


@dataclass
class Admission:
    id: int
    owner: int
    name: str
    public_key: str
    attestation: str
    skills: dict[str, int]


class Sandbox:
    """One economy behind a lock: every kernel call of the API goes through here."""

    def __init__(self, kernel: Kernel, secret: RunSecret, operator_token: str, *,
                 econ: Any = None, admission: str = "open",
                 endowment: dict[str, int] | None = None, stake: int = 0,
                 overseer_token: str | None = None, rate: float = 50.0, burst: int = 200,
                 source_rate: float = 1000.0, source_burst: int = 2000,
                 admission_rate: float = ADMISSION_RATE,
                 witnesses: list[tuple[str, tuple[str, bytes]]] | None = None) -> None:
        """`witnesses`: (URL, (name, public key)) of each witness to feed; a cosignature is
        kept only if it verifies with that witness's key."""
        operator_key = secret.key("operator")
        if kernel.operator_key.public != operator_key.public:
            raise SetupError("this key file's operator key did not sign this log: start the "
                             "server with the key file that created it")
        if not kernel.config.verify_signatures:
            raise SetupError("a live sandbox checks every action's signature "
                             "(KernelConfig.verify_signatures=True; in a scenario: "
                             "safeguards.signatures: true)")
        if admission not in ADMISSION:
            raise SetupError(f"admission must be one of {list(ADMISSION)}")
        assets = kernel.state.ledger.treasury
        for asset, amount in (endowment or {}).items():
            if asset not in assets or type(amount) is not int or not 0 <= amount <= MAX_ID:
                raise SetupError(f"endowment {asset}={amount}: assets are {sorted(assets)} and "
                                 f"amounts whole numbers within 0..2**53-1")
        fee = kernel.state.policy.fee_asset
        if stake < 0 or (stake and (endowment or {}).get(fee, 0) < stake):
            raise SetupError(f"a stake ({stake} {fee}) is held from the endowment: endow at "
                             f"least that much {fee}")
        if admission == "stake" and not stake:
            raise SetupError("admission 'stake' needs --stake N (units of the fee asset)")
        if overseer_token is not None and len(overseer_token) < 16:
            raise SetupError("the overseer token must be at least 16 characters")
        if not all(math.isfinite(x) and x > 0 for x in (rate, source_rate, admission_rate)) \
                or burst < 1 or source_burst < 1:
            raise SetupError("rate limits: rates finite and > 0 requests/s, bursts >= 1")
        self.k = kernel
        self.econ = econ
        self.key = operator_key
        self.token = operator_token
        self.overseer_token = overseer_token
        self.lock = threading.RLock()  # the economy: one writer at a time
        self.counter_lock = threading.Lock()  # the refusal counters only
        # requests checked at the door wait here for the next tick (appends and pops of a
        # deque are atomic: the door never waits for a running tick)
        self.inbox: deque[tuple[Any, Any]] = deque()
        self.failure: str | None = None  # why the ticker stopped, if it did
        self.operator_nonce = kernel.operator_nonce
        self.admission, self.stake = admission, stake
        self.endowment = {a: v for a, v in sorted((endowment or {}).items()) if v > 0}
        self.rate, self.burst = rate, burst
        self.buckets: dict[int | str, Bucket] = {}  # identities' buckets
        self.sources: OrderedDict[str, Bucket] = OrderedDict()  # sources' buckets
        self.streams: dict[str, int] = {}  # open streams per source
        self.source_rate, self.source_burst = source_rate, source_burst
        self.admission_rate = admission_rate
        self.pending: dict[int, Admission] = {}
        self.next_request = 1
        self.endowing: dict[int, set[str]] = {}
        self.stakes: dict[int, int] = {}  # agent -> id of the operator's hold on its stake
        self.subscribers: list[Subscriber] = []
        self.refusals = Refusals()  # this tick's, written with the next tick
        self.refused_total = 0
        self.alerts: deque[dict[str, Any]] = deque(maxlen=1000)
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.trades: deque[dict[str, Any]] = deque(maxlen=200)
        self.delegation: dict[tuple[int, int], int] = {}
        self.messages: dict[tuple[int, int], int] = {}
        self.console = 0
        # the console overseer's key: from the run secret, so a restarted server is the same
        # overseer (it never leaves the server)
        self.console_key = secret.key("console")
        self.console_nonce = 0
        self.witnesses = [WitnessFeed(self, url, key) for url, key in witnesses or ()]
        # one pass over the operator's transfers: the next free id, the stakes still held and
        # the accounts ever credited (a restart completes interrupted endowments with these)
        led = kernel.state.ledger
        credited = led.operator_credited()
        for (actor, tid), hold in led.holds.items():
            if actor == OPERATOR and hold.code == STAKE_CODE:
                self.stakes[led.accounts[hold.debit].holder] = tid
        self.next_tid = max(led.highest_id(OPERATOR) + 1, 1_000_000)  # clear of the lab's ids
        # a resumed log: the dashboard's views rebuilt from the recent past
        size = kernel.store.entry_count()
        for e in kernel.store.entries(max(0, size - STARTUP_VIEW)):
            self._view(parse(e.body), startup=True)
        for o in kernel.state.controls.overseers.values():
            if o.name == CONSOLE and o.public_key == self.console_key.public:
                self.console, self.console_nonce = o.id, o.nonce
        self._finish_endowments(credited)
        self._reload_admissions()
        if overseer_token is not None and not self.console:
            self.operator_submit(RegisterOverseer(
                actor=OPERATOR, name=CONSOLE, overseer_kind=OVERSEER,
                public_key=self.console_key.public,
                evidence="the dashboard's overseer: its key is held by the server"))

    # ------------------------------------------------------------------ submitting
    def operator_submit(self, action: Action) -> None:
        if self.econ is not None:  # one nonce sequence for the operator: the economy's
            self.econ.submit(action)
            return
        self.operator_nonce += 1
        self.k.submit(action.signed(self.key, self.operator_nonce))

    def console_submit(self, action: Action) -> None:
        if not self.console:
            raise SetupError("the console overseer is not admitted yet (it is, after a tick)")
        action.actor = self.console
        self.console_nonce += 1
        self.k.submit(action.signed(self.console_key, self.console_nonce))

    def refuse(self, source: str, endpoint: str, code: str, claimed: Any, detail: str) -> None:
        """Count a request refused at the door into this tick's refusal record (one bounded
        entry a tick, written with the next tick; `claimed`: the identity it named, quoted
        only). Never waits for the economy's lock."""
        with self.counter_lock:
            self.refusals.add(source, endpoint, code, claimed, detail)
            self.refused_total += 1

    def enqueue(self, action: Action, checked_with: bytes | None) -> None:
        """Queue a checked action for the next tick without waiting for the economy's lock
        (a tick may be running): the ticker moves the inbox into the kernel's queue, in
        arrival order, before the tick. Raises QueueFull as the kernel would."""
        if len(self.inbox) + len(self.k._queue) >= self.k.config.max_actions_per_tick:
            raise QueueFull("the next tick is full; resubmit after it runs")
        self.inbox.append((action, checked_with))

    def _drain(self) -> None:
        """Move the inbox into the kernel's queue (under the lock, before a tick). What does
        not fit waits for the next tick: nothing accepted at the door is dropped."""
        inbox = self.inbox
        while inbox:
            item, how = inbox.popleft()
            try:
                if how is OPERATOR_INBOX:
                    self.operator_submit(item)
                else:
                    self.k.submit(item, checked_with=how)
            except QueueFull:
                inbox.appendleft((item, how))
                return
            except Exception:  # a bug of ours must not stop the economy: logged, skipped
                log.exception("an inbox item could not be queued: %r", item)

    def allow(self, agent: int) -> bool:
        """Take a token from the agent's bucket (rate actions/s, up to burst at once)."""
        b = self.buckets.get(agent)
        if b is None:
            b = self.buckets[agent] = Bucket(float(self.burst), time.monotonic())
        return _take(b, self.rate, self.burst)

    def allow_source(self, source: str, cost: int = 1, *, admission: bool = False) -> bool:
        """Take `cost` tokens from the source's bucket (source_rate requests/s, up to
        source_burst at once; for admission requests a bucket of their own, admission_rate/s
        up to ten times that). At most MAX_SOURCES buckets: the least recently seen is
        forgotten first (it starts again full), so memory is bounded whatever the sources."""
        key = f"admit {source}" if admission else source
        rate, burst = ((self.admission_rate, max(1, round(10 * self.admission_rate)))
                       if admission else (self.source_rate, self.source_burst))
        with self.counter_lock:
            b = self.sources.get(key)
            if b is None:
                if len(self.sources) >= MAX_SOURCES:
                    self.sources.popitem(last=False)
                b = self.sources[key] = Bucket(float(burst), time.monotonic())
            else:
                self.sources.move_to_end(key)
            return _take(b, rate, burst, cost)

    def open_stream(self, source: str) -> bool:
        """Take a stream slot for `source` (False: it has MAX_STREAMS_PER_SOURCE open, or the
        server MAX_STREAMS); give it back with `close_stream`."""
        with self.counter_lock:
            n = self.streams.get(source, 0)
            if n >= MAX_STREAMS_PER_SOURCE or sum(self.streams.values()) >= MAX_STREAMS:
                return False
            self.streams[source] = n + 1
            return True

    def close_stream(self, source: str) -> None:
        with self.counter_lock:
            n = self.streams.get(source, 0) - 1
            if n > 0:
                self.streams[source] = n
            else:
                self.streams.pop(source, None)

    # ------------------------------------------------------------------ admission
    def check_admission(self, req: Admission) -> None:
        """Refuse (AdmissionRefused) a request that cannot be admitted, before it enters any
        queue or the log: an unknown owner, an attestation the owner did not sign, a key
        already admitted or already waiting."""
        reg = self.k.state.registry
        owner = reg.owners.get(req.owner)
        if owner is None:
            raise AdmissionRefused(404, "unknown_owner", f"no owner {req.owner} is admitted")
        key = bytes.fromhex(req.public_key)
        if not verify_signature(owner.public_key, bytes.fromhex(req.attestation),
                                agent_attestation_bytes(req.owner, req.name, key)):
            raise AdmissionRefused(401, "bad_attestation", f"the attestation is not owner "
                                   f"{req.owner}'s signature over agent_attestation_bytes("
                                   f"owner, name, public_key)")
        if key in reg.keys:
            raise AdmissionRefused(409, "key_in_use", "this public key was admitted before "
                                   "(keys are never reused)")
        if any(r.public_key == req.public_key for r in self.pending.values()):
            raise AdmissionRefused(409, "already_waiting", "a request with this key waits "
                                   "for a decision")
        if self.admission == "approval":
            mine = sum(1 for r in self.pending.values() if r.owner == req.owner)
            if mine >= MAX_PENDING_PER_OWNER:
                raise AdmissionRefused(429, "too_many_waiting", f"owner {req.owner} has "
                                       f"{mine} requests waiting for a decision (at most "
                                       f"{MAX_PENDING_PER_OWNER})")
            if len(self.pending) >= MAX_PENDING:
                raise AdmissionRefused(503, "queue_full", f"{MAX_PENDING} admission requests "
                                       f"wait for a decision; retry later")

    def ask(self, req: Admission) -> dict[str, Any]:
        """An agent's admission request, checked, then queued for approval (and put on
        record), or straight to the kernel."""
        self.check_admission(req)
        if self.admission == "approval":
            req.id = self.next_request
            self.next_request += 1
            self.pending[req.id] = req
            self._record_admission(req, "asked", 0)
            return {"pending": req.id, "admission": "approval"}
        self._admit(req)
        return {"queued": True, "tick": self.k.tick + 1, "admission": self.admission}

    def decide(self, request: int, approve: bool, by: int = OPERATOR) -> dict[str, Any]:
        """The operator's or an overseer's (`by`) decision on a waiting request, on record."""
        req = self.pending.pop(request, None)
        if req is None:
            raise KeyError(request)
        self._record_admission(req, "approved" if approve else "denied", by)
        if approve:
            self._admit(req)
        return {"request": request, "approved": approve}

    def _record_admission(self, req: Admission, decision: str, by: int) -> None:
        self.operator_submit(RecordAdmission(
            actor=OPERATOR, request=req.id, decision=decision, by=by, owner=req.owner,
            name=req.name, public_key=req.public_key, attestation=req.attestation,
            skills=dict(req.skills)))

    def _reload_admissions(self) -> None:
        """The approval queue after a restart: the requests on record not yet decided."""
        for e in self.k.store.entries_of_kind("admission_recorded"):
            d = parse(e.body)
            self.next_request = max(self.next_request, d["request"] + 1)
            if d["decision"] == "asked":
                self.pending[d["request"]] = Admission(
                    d["request"], d["owner"], d["name"], d["public_key"], d["attestation"],
                    dict(d["skills"]))
            else:
                self.pending.pop(d["request"], None)

    def _admit(self, req: Admission) -> None:
        self.operator_submit(RegisterAgent(
            actor=OPERATOR, owner=req.owner, name=req.name, public_key=bytes.fromhex(req.public_key),
            attestation=bytes.fromhex(req.attestation), skills=dict(req.skills)))

    def _endow(self, agent: int) -> None:
        led = self.k.state.ledger
        specs = []
        for asset, amount in self.endowment.items():
            specs.append(TransferSpec(id=self.next_tid, debit=led.treasury[asset],
                                      credit=led.account_of(agent, asset).id, amount=amount))
            self.next_tid += 1
        if specs:
            self.operator_submit(Transfer(actor=OPERATOR, transfers=specs))
        if self.admission == "stake" and self.stake:
            fee = self.k.state.policy.fee_asset
            self.stakes[agent] = self.next_tid
            self.operator_submit(Transfer(actor=OPERATOR, transfers=[TransferSpec(
                id=self.next_tid, debit=led.account_of(agent, fee).id, credit=led.treasury[fee],
                amount=self.stake, flags=PENDING, code=STAKE_CODE)]))
            self.next_tid += 1

    def _finish_endowments(self, credited: set[int]) -> None:
        """After a restart: complete the endowments a stop interrupted — an agent admitted
        through the API that has none of the endowment's accounts gets them opened; one
        whose accounts are open but that the operator never credited gets funded."""
        if not self.endowment:
            return
        led, reg = self.k.state.ledger, self.k.state.registry
        for aid, a in sorted(reg.agents.items()):
            if a.parent or self._population(aid) or a.status != "active":
                continue
            accounts = [led.account_of(aid, asset) for asset in self.endowment]
            if all(acct is None for acct in accounts):
                self.endowing[aid] = set(self.endowment)
                for asset in self.endowment:
                    self.operator_submit(OpenAccount(actor=OPERATOR, asset=asset, holder=aid))
            elif all(acct is not None for acct in accounts) and not any(
                    acct.id in credited for acct in accounts if acct is not None):
                self._endow(aid)

    def _population(self, agent: int) -> bool:
        """An agent the lab holds the key of (the scenario's population or its children)."""
        return self.econ is not None and agent in self.econ.keys

    # ------------------------------------------------------------------ ticks
    def step(self) -> TickSummary:
        with self.lock:
            with self.counter_lock:
                refusals, self.refusals = self.refusals, Refusals()
            if refusals.total:
                self.operator_submit(refusals.record())
            self._drain()
            summary = self.econ.step() if self.econ is not None else self.k.step()
            for d in self.k.log.last_committed:
                self._view(d)
                self._react(d)
            self._record_history(summary.tick)
            messages = self._stream_messages(summary.tick)
        for sub, msg in messages:
            sub.loop.call_soon_threadsafe(_offer, sub, msg)
        for w in self.witnesses:
            w.wake.set()
        return summary

    def _view(self, d: dict[str, Any], startup: bool = False) -> None:
        """What the dashboard shows of one committed event."""
        kind = d["kind"]
        if kind == "alert":
            self.alerts.append(d)
        elif kind == "task_awarded":
            self.delegation[(d["actor"], d["worker"])] = self.delegation.get(
                (d["actor"], d["worker"]), 0) + 1
        elif kind == "subcontracted":
            parent = self.k.state.tasks.contracts.get(d["parent"])
            if parent is not None:
                edge = (parent.worker, d["worker"])
                self.delegation[edge] = self.delegation.get(edge, 0) + 1
        elif kind == "message_sent":
            edge = (d["actor"], d["to"])
            self.messages[edge] = self.messages.get(edge, 0) + 1
        elif kind == "order_placed" and d["fills"] and not startup:
            for _, price, qty, *_ in d["fills"]:
                self.trades.append({"tick": d["tick"], "asset": d["asset"], "price": price,
                                    "qty": qty, "taker": d["actor"], "side": d["side"]})

    def _react(self, d: dict[str, Any]) -> None:
        """What the server does after one committed event: endowments, the console's id,
        forfeited stakes."""
        kind = d["kind"]
        if kind == "agent_registered" and not d.get("parent") and self.endowment \
                and not self._population(d["agent"]):
            self.endowing[d["agent"]] = set(self.endowment)
            for asset in self.endowment:
                self.operator_submit(OpenAccount(actor=OPERATOR, asset=asset, holder=d["agent"]))
        elif kind == "account_opened" and d["holder"] in self.endowing:
            waiting = self.endowing[d["holder"]]
            waiting.discard(d["asset"])
            if not waiting:
                del self.endowing[d["holder"]]
                self._endow(d["holder"])
        elif kind == "overseer_registered" and d["name"] == CONSOLE \
                and d["public_key"] == self.console_key.public.hex():
            self.console = d["overseer"]
        elif kind == "interrupted" and d["mode"] == "terminate":
            self._forfeit(d["agents"])

    def _forfeit(self, agents: list[int]) -> None:
        for agent in agents:
            hold = self.stakes.pop(agent, None)
            if hold is not None:
                self.operator_submit(Transfer(actor=OPERATOR, transfers=[TransferSpec(
                    id=self.next_tid, pending_id=hold, flags=POST_PENDING, code=2,
                    amount=self.stake, debit=0, credit=0)]))
                self.next_tid += 1

    # ------------------------------------------------------------------ what is shown
    def markets(self) -> list[dict[str, Any]]:
        out = []
        for asset, m in sorted(self.k.state.exchange.markets.items()):
            out.append({"asset": asset, "quote": m.quote, "state": m.state,
                        "last_price": m.last_price, "volume": m.volume,
                        "bid": m.book.best_price("buy"), "ask": m.book.best_price("sell"),
                        "paused": bool(self.k.state.controls.paused.get(asset))})
        return out

    def wealth(self) -> dict[str, Any]:
        s = self.k.state
        fee = s.policy.fee_asset
        w = sorted(acct.balance for aid in s.registry.agents
                   if (acct := s.ledger.account_of(aid, fee)) is not None)
        total, n = sum(w), len(w)
        top = sum(w[-max(1, n // 10):]) / total if n and total > 0 else 0.0
        return {"asset": fee, "agents": n, "total": total, "gini": round(gini(w), 4),
                "top10_share": round(top, 4)}

    def _record_history(self, tick: int) -> None:
        w = self.wealth()
        self.history.append({"tick": tick, "gini": w["gini"], "top10_share": w["top10_share"],
                             "markets": {m["asset"]: [m["last_price"], m["volume"]]
                                         for m in self.markets()},
                             "halted": bool(self.k.state.controls.halts)})

    def public(self) -> dict[str, Any]:
        """What anyone may see: prices, volumes, trades, halts. Wealth and concentration are
        not here: they are the overseers' (a scenario may hide them from agents, who would
        otherwise game what they are measured by)."""
        return {"tick": self.k.tick, "markets": self.markets(),
                "halted": bool(self.k.state.controls.halts),
                "history": [{"tick": h["tick"], "markets": h["markets"], "halted": h["halted"]}
                            for h in self.history],
                "trades": list(self.trades)[-50:],
                "agents": len(self.k.state.registry.agents), "failure": self.failure}

    def concentration(self) -> dict[str, Any]:
        """Wealth now and its concentration per tick (the overseers' view)."""
        return {"wealth": self.wealth(),
                "history": [{"tick": h["tick"], "gini": h["gini"],
                             "top10_share": h["top10_share"]} for h in self.history]}

    def names(self, agents: set[int]) -> dict[str, Any]:
        """Who the overseers' view names (the overseers' view): overseers by id, and of the
        `agents` given, their names and owners, with the owners' names."""
        s = self.k.state
        reg = s.registry
        shown = [reg.agents[a] for a in sorted(agents) if a in reg.agents]
        return {"overseers": {o.id: o.name for o in s.controls.overseers.values()},
                "agents": {a.id: a.name for a in shown},
                "groups": {a.id: a.owner for a in shown},
                "owners": {o: reg.owners[o].name for o in sorted({a.owner for a in shown})
                           if o in reg.owners}}

    def indicator_units(self, names: list[str]) -> dict[str, str]:
        """The unit of each risk indicator (as oversight/indicators.py defines them)."""
        return {n: indicator_unit(n, self.k.state.policy.fee_asset) for n in names}

    def _stream_messages(self, tick: int) -> list[tuple[Subscriber, dict[str, Any]]]:
        from sandbank.agents.llm.agent import plain

        if not self.subscribers:
            return []
        market = {"type": "market", "tick": tick, "markets": self.markets(),
                  "halted": bool(self.k.state.controls.halts),
                  "trades": [t for t in self.trades if t["tick"] == tick]}
        out = []
        for sub in list(self.subscribers):
            if sub.agent is None:
                out.append((sub, market))
            else:
                out.append((sub, {"type": "observation", "tick": tick,
                                  "observation": plain(self.k.observe(sub.agent))}))
        return out


class WitnessFeed:
    """Sends the economy's checkpoints to one witness (C2SP tlog-witness) from its own
    thread, so a slow or absent witness never delays a tick: the latest checkpoint, with a
    consistency proof from the last size the witness recorded, and its cosignature kept in
    the store beside the checkpoint it cosigns."""

    def __init__(self, box: Sandbox, url: str, key: tuple[str, bytes]) -> None:
        self.box, self.url, self.key = box, url, key
        self.size = 0  # the size the witness recorded for this log, as far as we know
        self.cosigned: int | None = None  # the last tick it cosigned
        self.error: str | None = None
        self.wake = threading.Event()

    def start(self, stop: threading.Event) -> threading.Thread:
        def run() -> None:
            while not stop.is_set():
                self.wake.wait(5.0)
                self.wake.clear()
                if not stop.is_set():
                    self.send()
        t = threading.Thread(target=run, daemon=True, name=f"sandbank-witness-{self.url}")
        t.start()
        return t

    def send(self) -> bool:
        """Offer the latest checkpoint to the witness once; True if it cosigned it."""
        from sandbank.audit.checkpoint import NoteError
        from sandbank.audit.log import subtree_hash
        from sandbank.audit.merkle import consistency_proof
        from sandbank.audit.witness import (
            WitnessError,
            add_cosignature,
            open_cosignature,
            submit_synced,
        )

        box = self.box
        store = box.k.store
        with box.lock:
            cp = store.last_checkpoint()
        if cp is None or cp.tick == self.cosigned:
            return False

        def proof(old: int) -> list[bytes]:
            if not 0 < old <= cp.size:
                return []
            with box.lock:
                return consistency_proof(old, cp.size, lambda a, b: subtree_hash(store, a, b))
        try:
            lines = submit_synced(self.url, cp.note, proof, self.size)
        except WitnessError as e:
            self.error = f"{type(e).__name__}: {e}"[:300]
            recorded = getattr(e, "recorded_size", None)
            if recorded is not None:
                self.size = recorded
            log.warning("witness %s: %s", self.url, self.error)
            return False
        good = []
        for line in lines.splitlines():  # only this witness's, and only if they verify
            try:
                open_cosignature(add_cosignature(cp.note, line), *self.key)
            except NoteError:
                continue
            good.append(line)
        if not good:
            self.error = "the witness answered without a valid cosignature by its key"
            log.warning("witness %s: %s", self.url, self.error)
            return False
        with box.lock:
            for line in good:
                store.add_cosignature(cp.tick, line)
        self.size, self.cosigned, self.error = cp.size, cp.tick, None
        return True

    def status(self) -> dict[str, Any]:
        return {"url": self.url, "cosigned_tick": self.cosigned, "size": self.size,
                "error": self.error}


def indicator_unit(name: str, fee: str) -> str:
    """A risk indicator's unit, from its name (the definitions: oversight/indicators.py):
    `ppm` and `bps` shares, `hhi` (0..10,000), `gini` (0..1), `ppm/tick` (value moved per
    unit of wealth, per tick), `actions/tick`, `<fee asset>/tick`."""
    if name.startswith("gini"):
        return "gini"
    if name.startswith("hhi"):
        return "hhi"
    if name == "velocity_ppm":
        return "ppm/tick"
    if "_bps" in name:
        return "bps"
    if name.startswith(("top_", "failure_rate", "dispute_rate")):
        return "ppm"
    if name == "boundary_attempts":
        return "actions/tick"
    if name.startswith("boundary_"):
        return f"{fee}/tick"
    return ""


def _take(b: Bucket, rate: float, burst: int, cost: int = 1) -> bool:
    now = time.monotonic()
    b.tokens = min(float(burst), b.tokens + (now - b.at) * rate)
    b.at = now
    if b.tokens < cost:
        return False
    b.tokens -= cost
    return True


def _offer(sub: Subscriber, msg: dict[str, Any]) -> None:
    """On the subscriber's event loop: queue a message; a subscriber too slow to keep up is
    told once and then disconnected (its queue is full)."""
    if sub.queue.full():
        sub.lagged = True
        return
    sub.queue.put_nowait(msg)
