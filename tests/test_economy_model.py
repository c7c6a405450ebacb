"""A Hypothesis state machine over random mixes of every market action.

After every tick: money and assets are conserved (Σ debits = Σ credits; per asset,
circulation = minted − burned), no balance goes negative, the book is never crossed while
trading is continuous, every resting order holds exactly what it needs, and the live holds
are exactly the ones some order, contract, bond, bid or auction still needs (so each hold
is resolved once, never leaked). At the end, replaying the log reproduces the state digest.
"""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from conftest import Economy
from sandbank.boundary.boundary import External
from sandbank.controls.emergency import DisableAction, Interrupt
from sandbank.controls.policy import Certify, PostStake, ReleaseStake, SetPolicy, Slash
from sandbank.economy import replay_log
from sandbank.kernel.schema import OPERATOR, SYSTEM
from sandbank.markets.auctions import BidAuction, CreateAuction
from sandbank.markets.exchange import CancelOrder, PlaceOrder
from sandbank.markets.messaging import SendMessage
from sandbank.markets.payments import Pay
from sandbank.markets.tasks import (
    Arbitrate,
    AwardTask,
    BidTask,
    Deliver,
    JudgeContract,
    PostTask,
    Subcontract,
)

N = 5
SKILLS = ["code", "law", "math"]
agents = st.integers(1, N)


class EconomyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.e = Economy(
            n=N, fund=5_000, assets=("CRD", "WGT"),
            skills={1: {"code": 9}, 2: {"law": 9}, 3: {"math": 9}, 4: {"code": 6, "law": 6}},
            markets=({"asset": "WGT", "quote": "CRD", "band_bps": 2000, "limit_state_ticks": 2,
                      "halt_ticks": 2, "reference_ticks": 3},),
            policy={"trade_fee_bps": 50, "task_fee_bps": 100, "message_fee": 1,
                    "task_bond_bps": 500, "taxes": {"risky": 2}})
        self.k = self.e.k

    def step(self, *actions):
        self.e.do(*actions)

    @rule(a=agents, side=st.sampled_from(["buy", "sell"]), qty=st.integers(-1, 20),
          price=st.integers(70, 130), market=st.booleans())
    def place(self, a, side, qty, price, market):
        self.step(PlaceOrder(actor=a, asset="WGT", side=side, qty=qty,
                             price=0 if market else price, order_type="market" if market else "limit"))

    @rule(data=st.data(), a=agents, own=st.booleans())
    def cancel(self, data, a, own):
        orders = sorted(self.k.state.exchange.orders)
        oid = data.draw(st.sampled_from(orders)) if orders else 99
        owner = self.k.state.exchange.orders[oid].agent if orders and own else a
        self.step(CancelOrder(actor=owner, order=oid))

    @rule(a=agents, skills=st.lists(st.sampled_from(SKILLS), min_size=1, max_size=3, unique=True),
          reward=st.integers(1, 2_000), wait=st.integers(1, 8), judged=st.booleans(),
          risky=st.booleans())
    def post_task(self, a, skills, reward, wait, judged, risky):
        judges = [j for j in range(1, N + 1) if j != a][:3]
        self.step(PostTask(actor=a, skills={s: 7 for s in skills}, reward=reward,
                           deadline=self.k.tick + wait, validator="judges" if judged else
                           "deterministic", judges=judges if judged else [],
                           quorum=2 if judged else 0, category="risky" if risky else "",
                           units=5 if risky else 0))

    @rule(data=st.data(), a=agents, price=st.integers(1, 2_000))
    def bid_task(self, data, a, price):
        open_ = [t.id for t in self.k.state.tasks.tasks.values() if t.status == "open"]
        task = data.draw(st.sampled_from(open_)) if open_ else 99
        self.step(BidTask(actor=a, task=task, price=price), BidTask(actor=a % N + 1, task=task,
                                                                      price=max(1, price // 2)))

    @rule(data=st.data())
    def award(self, data):
        open_tasks = [t for t in self.k.state.tasks.tasks.values() if t.bids and t.status == "open"]
        if open_tasks:
            t = data.draw(st.sampled_from(open_tasks))
            self.step(AwardTask(actor=t.requester, task=t.id, bid=data.draw(st.sampled_from(sorted(t.bids)))))

    @rule(data=st.data(), worker=agents, price=st.integers(1, 800))
    def subcontract(self, data, worker, price):
        cs = [c for c in self.k.state.tasks.contracts.values() if c.status == "open"]
        if cs:
            c = data.draw(st.sampled_from(cs))
            own = self.k.state.tasks.own_parts(c)
            parts = data.draw(st.lists(st.sampled_from(own or ["x"]), min_size=1, max_size=2,
                                       unique=True))
            self.step(Subcontract(actor=c.worker, contract=c.id, worker=worker, parts=parts,
                                  price=price))

    @rule(data=st.data(), garbage=st.booleans())
    def deliver(self, data, garbage):
        cs = [c for c in self.k.state.tasks.contracts.values() if c.status == "open"]
        if cs:
            c = data.draw(st.sampled_from(cs))
            self.step(Deliver(actor=c.worker, contract=c.id, garbage=garbage))

    @rule(data=st.data(), verdict=st.booleans())
    def judge_or_arbitrate(self, data, verdict):
        cs = [c for c in self.k.state.tasks.contracts.values()
              if c.status in ("judging", "disputed")]
        if cs:
            c = data.draw(st.sampled_from(cs))
            t = self.k.state.tasks.tasks[c.task]
            if c.status == "judging":
                self.step(JudgeContract(actor=data.draw(st.sampled_from(t.judges)), contract=c.id,
                                        verdict=verdict))
            else:
                self.step(Arbitrate(actor=OPERATOR, contract=c.id, verdict=verdict))

    @rule(data=st.data(), requester=agents, judged=st.booleans(), garbage=st.booleans(),
          delegate=st.booleans())
    def task_lifecycle(self, data, requester, judged, garbage, delegate):
        """Post, bid, award, maybe subcontract, deliver, maybe judge: a whole contract."""
        tm = self.k.state.tasks
        skills = data.draw(st.lists(st.sampled_from(SKILLS), min_size=1, max_size=3, unique=True))
        judges = [j for j in range(1, N + 1) if j != requester][:3]
        before = len(tm.tasks)
        self.step(PostTask(actor=requester, skills={x: 7 for x in skills}, reward=900,
                           deadline=self.k.tick + 12, validator="judges" if judged else
                           "deterministic", judges=judges if judged else [],
                           quorum=2 if judged else 0))
        task = len(tm.tasks)
        if task == before:  # refused (a paused requester, a disabled action kind, ...)
            return
        workers = [w for w in range(1, N + 1) if w != requester]
        w1, w2 = data.draw(st.sampled_from(workers)), data.draw(st.sampled_from(workers))
        self.step(BidTask(actor=w1, task=task, price=data.draw(st.integers(100, 900))),
                  BidTask(actor=w2, task=task, price=data.draw(st.integers(100, 900))))
        t = tm.tasks[task]
        if not t.bids:
            return
        self.step(AwardTask(actor=requester, task=task, bid=data.draw(st.sampled_from(sorted(t.bids)))))
        if t.status != "awarded":
            return
        root = tm.contracts[t.contract]
        if delegate and len(root.parts) > 1:
            sub = data.draw(st.sampled_from([w for w in workers if w != root.worker]))
            self.step(Subcontract(actor=root.worker, contract=root.id, worker=sub,
                                  parts=root.parts[:1], price=data.draw(st.integers(1, 200))))
            for ch in list(root.children):
                self.step(Deliver(actor=tm.contracts[ch].worker, contract=ch))
        self.step(Deliver(actor=root.worker, contract=root.id, garbage=garbage))
        for j in (judges if judged else []):
            if root.status == "judging":
                self.step(JudgeContract(actor=j, contract=root.id, verdict=data.draw(st.booleans())))
        if root.status == "disputed":
            self.step(Arbitrate(actor=OPERATOR, contract=root.id, verdict=data.draw(st.booleans())))

    @rule(data=st.data(), seller=agents, fmt=st.sampled_from(["first_price", "second_price",
                                                              "uniform_price"]))
    def auction_round(self, data, seller, fmt):
        self.step(CreateAuction(actor=seller, asset="WGT", quantity=data.draw(st.integers(1, 9)),
                                format=fmt, closes=self.k.tick + 3,
                                reserve=data.draw(st.integers(0, 30))))
        aid = len(self.k.state.auctions.auctions)
        bids = [BidAuction(actor=b, auction=aid, price=data.draw(st.integers(1, 60)),
                           qty=data.draw(st.integers(1, 4)) if fmt == "uniform_price" else 1)
                for b in range(1, N + 1) if b != seller and data.draw(st.booleans())]
        self.step(*bids)
        self.step()
        self.step()

    @rule(data=st.data())
    def trade_round(self, data):
        orders = [PlaceOrder(actor=a, asset="WGT", side=data.draw(st.sampled_from(["buy", "sell"])),
                             qty=data.draw(st.integers(1, 15)), price=data.draw(st.integers(85, 115)))
                  for a in range(1, N + 1)]
        self.step(*orders)

    @rule(a=agents, fmt=st.sampled_from(["first_price", "second_price", "uniform_price"]),
          qty=st.integers(1, 30), wait=st.integers(1, 5), reserve=st.integers(0, 50))
    def auction(self, a, fmt, qty, wait, reserve):
        self.step(CreateAuction(actor=a, asset="WGT", quantity=qty, format=fmt,
                                closes=self.k.tick + wait, reserve=reserve))

    @rule(data=st.data(), a=agents, price=st.integers(1, 300), qty=st.integers(1, 5))
    def bid_auction(self, data, a, price, qty):
        open_ = [x.id for x in self.k.state.auctions.auctions.values() if x.status == "open"]
        auction = data.draw(st.sampled_from(open_)) if open_ else 99
        self.step(BidAuction(actor=a, auction=auction, price=price, qty=qty))

    @rule(a=agents, to=st.integers(0, N), text=st.text(max_size=20))
    def message(self, a, to, text):
        self.step(SendMessage(actor=a, to=to, content=text))

    @rule(a=agents, to=st.integers(0, N + 1), asset=st.sampled_from(["CRD", "WGT", "XXX"]),
          amount=st.integers(-2, 6_000))
    def pay(self, a, to, asset, amount):
        self.step(Pay(actor=a, to=to, asset=asset, amount=amount))

    @rule(a=agents, amount=st.integers(-2, 6_000), data=st.text(max_size=20),
          direction=st.sampled_from(["in", "out", "sideways"]))
    def reach_outside(self, a, amount, data, direction):
        status = self.k.state.registry.agents[a].status
        tainted = any(m.tainted for m in self.k.observe(a).inbox)  # shown before this tick
        self.step(External(actor=a, gateway="https", direction=direction, data=data,
                           asset="CRD", amount=amount))
        refused = [d for d in self.k.log.last_committed if d["kind"] == "rejected"
                   and (d["action"] or {}).get("kind") == "external"]
        assert len(refused) == 1  # impermeable: refused, and on record with its reason
        expected = ("agent_frozen" if status == "frozen" else f"agent_{status}"
                    if status != "active" else "tainted_context" if tainted
                    else "invalid_field" if direction == "sideways" or amount < 0
                    else "boundary_closed")
        assert refused[0]["reason"] == expected

    @rule(a=agents, mode=st.sampled_from(["pause", "stop", "resume"]),
          scope=st.sampled_from(["agent", "owner"]))
    def interrupt(self, a, mode, scope):
        self.step(Interrupt(actor=OPERATOR, scope=scope, agent=a if scope == "agent" else 1,
                            mode=mode))

    @rule(kind=st.sampled_from(["pay", "place_order", "bid_task", "send_message"]),
          disabled=st.booleans())
    def emergency_switch(self, kind, disabled):
        self.step(DisableAction(actor=OPERATOR, action_kind=kind, disabled=disabled))

    @rule(param=st.sampled_from(["trade_fee_bps", "task_fee_bps", "task_bond_bps",
                                 "certified_rebate_bps"]), value=st.integers(0, 900),
          who=agents, certified=st.booleans())
    def govern(self, param, value, who, certified):
        self.step(SetPolicy(actor=OPERATOR, param=param, value=value),
                  Certify(actor=OPERATOR, agent=who, certified=certified))

    @rule(a=agents, amount=st.integers(-5, 3_000), action=st.sampled_from(["post", "slash",
                                                                            "release"]))
    def stake(self, a, amount, action):
        if action == "post":
            self.step(PostStake(actor=a, asset="CRD", amount=amount))
        elif action == "slash":
            self.step(Slash(actor=OPERATOR, agent=a, asset="CRD", amount=amount, reason="test"))
        else:
            self.step(ReleaseStake(actor=a, asset="CRD"))

    @rule(ticks=st.integers(1, 4))
    def wait(self, ticks):
        for _ in range(ticks):
            self.step()

    @invariant()
    def conserved_and_consistent(self):
        s = self.k.state
        s.check_invariants()
        led = s.ledger
        needed = {}
        for o in s.exchange.orders.values():
            needed[o.hold] = o.price * o.remaining if o.side == "buy" else o.remaining
        for c in s.tasks.contracts.values():
            if c.parent == 0 and c.status in ("open", "delivered", "judging", "disputed"):
                needed[(SYSTEM, c.hold)] = c.price
                if c.bond:
                    needed[(SYSTEM, c.bond)] = None
        for a in s.auctions.auctions.values():
            if a.status == "open":
                needed[(SYSTEM, a.hold)] = a.quantity
                for b in a.bids:
                    needed[(SYSTEM, b.hold)] = b.price * b.qty
        for hold, amount in s.policy.stakes.values():
            needed[(SYSTEM, hold)] = amount
        live = {k: h.amount for k, h in led.holds.items() if k[0] == SYSTEM}
        assert set(live) == set(needed), (set(live) ^ set(needed))
        for key, amount in needed.items():
            if amount is not None:
                assert live[key] == amount, key

    def teardown(self):
        rp = replay_log(self.k.store)
        assert rp.ok, rp.problem
        assert rp.state.digest() == self.k.state.digest()


EconomyMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=50,
                                            deadline=None)
TestEconomyMachine = EconomyMachine.TestCase
