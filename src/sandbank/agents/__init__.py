"""Agents: the tiny protocol every participant implements, and a library of policies.

An agent receives an `Observation` (what it may know) and returns actions. It never holds
the kernel, another agent, or hidden metrics. Ten lines:

    from sandbank.agents import Agent
    from sandbank.markets.exchange import PlaceOrder

    class Bargain(Agent):
        def act(self, obs):
            wgt = next(m for m in obs.markets if m.asset == "WGT")
            if wgt.best_ask and wgt.best_ask < self.params.get("limit", 100):
                return [PlaceOrder(actor=self.id, asset="WGT", side="buy", qty=1,
                                   price=wgt.best_ask)]
            return []
"""

from sandbank.agents.base import POLICIES, Agent, AsyncAgent, Directory, policy

__all__ = ["Agent", "AsyncAgent", "Directory", "POLICIES", "policy"]
