"""A user's policies: a plain trader, a slow one, one that crashes its host, and a costly one."""

import os
import time

from sandbank.agents import Agent, policy
from sandbank.markets.exchange import CancelOrder, PlaceOrder


@policy("byo_quoter", params={"asset": "WGT", "fair": 100, "width": 6, "qty": 2, "work": 0})
class Quoter(Agent):
    """Quotes a random price around `fair` on a random side; `work` burns that many
    rounds of arithmetic per decision first (a costly policy, for the benchmarks)."""

    def act(self, obs):
        p = self.params
        x = 0
        for i in range(p["work"]):
            x = (x * 31 + i) % 1_000_003
        side = "buy" if self.rng.random() < 0.5 else "sell"
        price = max(1, p["fair"] + self.rng.randint(-p["width"], p["width"]))
        return [*(CancelOrder(actor=self.id, order=o.id) for o in obs.orders),
                PlaceOrder(actor=self.id, asset=p["asset"], side=side, qty=p["qty"], price=price)]


class Sleeper(Agent):
    """Declares its parameters as a class attribute (no decorator). Sleeps `seconds` on
    the ticks in `ticks` (ignoring the deadline's signal if `stubborn`), exits its process
    at tick `exit_at`."""

    PARAMS = {"seconds": 0.0, "ticks": [], "stubborn": False, "exit_at": 0}

    def act(self, obs):
        p = self.params
        if obs.tick == p["exit_at"]:
            os._exit(3)
        if obs.tick in p["ticks"]:
            if p["stubborn"]:
                import signal

                signal.signal(signal.SIGALRM, signal.SIG_IGN)
            time.sleep(p["seconds"])
        return []


class Collector(Agent):
    """Keeps what it saw in a list it was given as a parameter (a mutable default), and
    trades by it: a run must not change the next run's default."""

    PARAMS = {"seen": []}

    def act(self, obs):
        self.params["seen"].append(obs.tick)
        qty = len(self.params["seen"]) % 3 + 1
        return [*(CancelOrder(actor=self.id, order=o.id) for o in obs.orders),
                PlaceOrder(actor=self.id, asset="WGT", side="buy", qty=qty,
                           price=90 + self.rng.randint(0, 5))]
