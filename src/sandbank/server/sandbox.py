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
- per-agent **rate limits** (a token bucket) and the **refusal record**: a request refused
  before it reached the sequencer (a bad credential, an agent on an overseer endpoint, a
  rate limit) is written into the signed log as a `request_refused` event;
- the alerts seen, the public market data and, for overseers, the wealth concentration and
  graphs the dashboard shows (which entries each action produced is in the store: the kernel
  writes it with each tick);
- **subscribers**: WebSocket streams fed after every tick.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from sandbank.identity.keys import SigningKey
from sandbank.kernel.canonical import parse
from sandbank.kernel.controls import OVERSEER, RecordAdmission, RecordRefusal, RegisterOverseer
from sandbank.kernel.schema import (
    OPERATOR,
    PENDING,
    POST_PENDING,
    Action,
    OpenAccount,
    RegisterAgent,
    Transfer,
    TransferSpec,
)
from sandbank.kernel.sequencer import Kernel, QueueFull, TickSummary
from sandbank.lab.metrics import gini

ADMISSION = ("open", "approval", "stake")
MAX_ID = 2**53 - 1  # identities the canonical log can hold
log = logging.getLogger("sandbank.server")
CONSOLE = "console"
REFUSALS_PER_TICK = 50  # refusals written to the log per tick; more are counted in one record
STAKE_CODE = 1  # the code of a stake hold (a pending operator transfer)
OPERATOR_INBOX = object()  # inbox marks: an operator action (signed when drained)
RAW_INBOX = object()  # ... a malformed action in wire form
STARTUP_VIEW = 100_000  # entries re-read at a restart for the dashboard's alerts and graphs
HISTORY = 600  # ticks of prices and concentration kept for the dashboard


class SetupError(ValueError):
    """A server configuration that cannot work (told to the operator at start)."""


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


def console_key(operator_key: SigningKey) -> SigningKey:
    """The console overseer's key: derived from the operator's, so a restarted server is the
    same overseer (it never leaves the server)."""
    return SigningKey.from_seed(sha256(b"sandbank/console/" + operator_key.seed_bytes()).digest())


class Sandbox:
    """One economy behind a lock: every kernel call of the API goes through here."""

    def __init__(self, kernel: Kernel, operator_key: SigningKey, operator_token: str, *,
                 econ: Any = None, admission: str = "open",
                 endowment: dict[str, int] | None = None, stake: int = 0,
                 overseer_token: str | None = None, rate: float = 50.0, burst: int = 200) -> None:
        if not kernel.config.verify_signatures:
            raise SetupError("a live sandbox checks every action's signature "
                             "(KernelConfig.verify_signatures=True; in a scenario: "
                             "safeguards.signatures: true)")
        if admission not in ADMISSION:
            raise SetupError(f"admission must be one of {list(ADMISSION)}")
        assets = kernel.state.ledger.treasury
        for asset, amount in (endowment or {}).items():
            if asset not in assets or type(amount) is not int or amount < 0:
                raise SetupError(f"endowment {asset}={amount}: assets are {sorted(assets)} and "
                                 f"amounts whole numbers >= 0")
        fee = kernel.state.policy.fee_asset
        if stake < 0 or (stake and (endowment or {}).get(fee, 0) < stake):
            raise SetupError(f"a stake ({stake} {fee}) is held from the endowment: endow at "
                             f"least that much {fee}")
        if admission == "stake" and not stake:
            raise SetupError("admission 'stake' needs --stake N (units of the fee asset)")
        if overseer_token is not None and len(overseer_token) < 16:
            raise SetupError("the overseer token must be at least 16 characters")
        if rate <= 0 or burst < 1:
            raise SetupError("rate limits: rate > 0 actions/s and burst >= 1")
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
        self.buckets: dict[int | str, Bucket] = {}
        self.pending: dict[int, Admission] = {}
        self.next_request = 1
        self.endowing: dict[int, set[str]] = {}
        self.stakes: dict[int, int] = {}  # agent -> id of the operator's hold on its stake
        self.subscribers: list[Subscriber] = []
        self.refused_this_tick = 0
        self.refusals_dropped = 0
        self.alerts: deque[dict[str, Any]] = deque(maxlen=1000)
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.trades: deque[dict[str, Any]] = deque(maxlen=200)
        self.delegation: dict[tuple[int, int], int] = {}
        self.messages: dict[tuple[int, int], int] = {}
        self.console = 0
        self.console_key = console_key(operator_key)
        self.console_nonce = 0
        # one pass over the operator's transfers: the next free id, the stakes still held and
        # the accounts ever credited (a restart completes interrupted endowments with these)
        led = kernel.state.ledger
        last_tid, credited = 0, set()
        for (actor, tid), rec in led.transfers.items():
            if actor != OPERATOR:
                continue
            last_tid = max(last_tid, tid)
            credited.add(rec[1])
            if rec[4] & PENDING and rec[7] == STAKE_CODE and (actor, tid) not in led.resolved:
                self.stakes[led.accounts[rec[0]].holder] = tid
        self.next_tid = max(last_tid + 1, 1_000_000)  # clear of the lab's setup ids
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

    def refuse(self, who: int, endpoint: str, code: str, detail: str) -> None:
        """Put a refused request on record (at most REFUSALS_PER_TICK a tick: a flood of
        bad requests must not flood the log; the rest are counted in the next record). The
        record is written with the next tick; this never waits for the economy's lock."""
        if type(who) is not int or abs(who) > MAX_ID:  # a claimed id the log cannot hold
            detail = f"claimed identity {str(who)[:40]}: {detail}"
            who = 0
        with self.counter_lock:
            if self.refused_this_tick >= REFUSALS_PER_TICK:
                self.refusals_dropped += 1
                return
            self.refused_this_tick += 1
            if self.refusals_dropped:
                detail = f"{detail} (and {self.refusals_dropped} refusals not recorded one by one)"
                self.refusals_dropped = 0
            self.inbox.append((RecordRefusal(actor=OPERATOR, who=who, endpoint=endpoint,
                                             code=code, detail=detail[:500]), OPERATOR_INBOX))

    def enqueue(self, action: Action, checked_with: bytes | None) -> None:
        """Queue a checked action for the next tick without waiting for the economy's lock
        (a tick may be running): the ticker moves the inbox into the kernel's queue, in
        arrival order, before the tick. Raises QueueFull as the kernel would."""
        if len(self.inbox) + len(self.k._queue) >= self.k.config.max_actions_per_tick:
            raise QueueFull("the next tick is full; resubmit after it runs")
        self.inbox.append((action, checked_with))

    def enqueue_raw(self, doc: Any) -> None:
        """A malformed action, sequenced anyway so that its refusal is on record."""
        self.inbox.append((doc, RAW_INBOX))

    def _drain(self) -> None:
        """Move the inbox into the kernel's queue (under the lock, before a tick). What does
        not fit waits for the next tick: nothing accepted at the door is dropped."""
        inbox = self.inbox
        while inbox:
            item, how = inbox.popleft()
            try:
                if how is OPERATOR_INBOX:
                    self.operator_submit(item)
                elif how is RAW_INBOX:
                    self.k.submit_raw(item)
                else:
                    self.k.submit(item, checked_with=how)
            except QueueFull:
                inbox.appendleft((item, how))
                return
            except Exception:  # a bug of ours must not stop the economy: logged, skipped
                log.exception("an inbox item could not be queued: %r", item)

    def allow(self, agent: int | str) -> bool:
        """Take a token from the agent's bucket (rate actions/s, up to burst at once)."""
        now = time.monotonic()
        b = self.buckets.get(agent)
        if b is None:
            b = self.buckets[agent] = Bucket(float(self.burst), now)
        b.tokens = min(float(self.burst), b.tokens + (now - b.at) * self.rate)
        b.at = now
        if b.tokens < 1:
            return False
        b.tokens -= 1
        return True

    # ------------------------------------------------------------------ admission
    def ask(self, req: Admission) -> dict[str, Any]:
        """An agent's admission request: queued for approval (and put on record), or
        straight to the kernel."""
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
            self._drain()
            with self.counter_lock:
                self.refused_this_tick = 0
            summary = self.econ.step() if self.econ is not None else self.k.step()
            for d in self.k.log.last_committed:
                self._view(d)
                self._react(d)
            self._record_history(summary.tick)
            messages = self._stream_messages(summary.tick)
        for sub, msg in messages:
            sub.loop.call_soon_threadsafe(_offer, sub, msg)
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


def _offer(sub: Subscriber, msg: dict[str, Any]) -> None:
    """On the subscriber's event loop: queue a message; a subscriber too slow to keep up is
    told once and then disconnected (its queue is full)."""
    if sub.queue.full():
        sub.lagged = True
        return
    sub.queue.put_nowait(msg)
