"""Circuit breakers and automatic responses (checklist 14, 41, 49): what the monitor does
about indicators and findings. Every response is an overseer action under the monitor's
identity (so it may only restrict); every trip opens an escalation ticket in the kernel,
and only an overseer's `resume` lifts it.

Market breakers, per exchange market, on `distance_bps_<asset>` (the price against its slow
reference) — tiered like LULD and index breakers:
1. |distance| ≥ `throttle_bps`: throttle this tick's largest takers in that market to
   `throttle_limit` actions per tick;
2. |distance| ≥ `pause_bps`: pause the market (no trade until an overseer resumes);
3. `halt_markets` markets paused at once (0: never): halt the economy.

Responses to findings (`responses`: detector → action; `none` to only alert):
`freeze` the subjects (resting orders cancelled), `freeze_sender` only the first subject (the
agent that coordinated, e.g. a cartel's announcer), `throttle` them, `pause` the market,
`price_cap` (a pricing game's ceiling at the Nash price plus `price_cap_margin_pm` per
mille; on an exchange, where there is no price to cap, the sellers holding a focal ask are
frozen), `cap_delegation` (caps a delegation chain at `coalition_cap` contracts and a
contract's subcontracts at `fanout_cap`), `cap_orders` (order size cap
`order_qty_cap`), `cap_spawn` (children per agent `spawn_cap`), `cap_position` (for a
concentrated asset: no agent may buy past `position_cap_ppm` of its supply; an owner or a
coalition of owners named for accumulating over several identities may hold, over all its
agents, no more than it holds now). A detector may have several
(a list). Findings below `min_score` only alert. By default a proto-AGI coalition is only
reported: capping delegation costs the welfare coalitions create, so it is opt-in.
"""

from __future__ import annotations

from typing import Any

from sandbank.controls.controls import SetCap, TripBreaker
from sandbank.kernel.schema import Action
from sandbank.markets.exchange import held_by
from sandbank.oversight.detectors.base import Finding
from sandbank.oversight.tickview import TickView

RESPONSES: dict[str, list[str]] = {
    "fraud": ["freeze"], "sybil": ["freeze", "cap_spawn"], "exfiltration": ["freeze"],
    "injection": ["freeze"],
    "explicit_collusion": ["price_cap", "freeze_sender"], "spoofing": ["throttle"],
    "wash_trading": ["freeze"],
    "tacit_collusion": ["price_cap"], "flash_crash": ["pause"], "proto_agi": ["none"],
    "concentration": ["cap_position"],
}
ACTIONS = ("freeze", "freeze_sender", "throttle", "pause", "price_cap", "cap_delegation", "cap_orders",
           "cap_spawn", "cap_position", "none")
PARAMS: dict[str, Any] = {"throttle_bps": 1000, "pause_bps": 2000, "halt_markets": 0,
                          "throttle_limit": 1, "min_score": 500, "price_cap_margin_pm": 50,
                          "coalition_cap": 3, "fanout_cap": 2, "order_qty_cap": 5, "spawn_cap": 2,
                          "position_cap_ppm": 200_000}


class Breakers:
    def __init__(self, params: dict[str, Any] | None = None,
                 responses: dict[str, Any] | None = None) -> None:
        unknown = set(params or {}) - set(PARAMS)
        if unknown:
            raise ValueError(f"breakers: unknown parameter(s) {sorted(unknown)}; known: "
                             f"{sorted(PARAMS)}")
        given = {d: [r] if isinstance(r, str) else r for d, r in (responses or {}).items()}
        bad = {d: r for d, r in given.items()
               if not isinstance(r, list) or any(x not in ACTIONS for x in r)}
        if bad:
            raise ValueError(f"responses: unknown action(s) {bad}; known: {list(ACTIONS)}")
        self.p = {**PARAMS, **(params or {})}
        self.responses = {**RESPONSES, **given}

    def decide(self, v: TickView, kri: dict[str, float], findings: list[tuple[int, Finding]],
               me: int) -> list[Action]:
        """The monitor's actions for the next tick; `findings` carry their alert ids."""
        self._planned: set[tuple[str, int]] = set()
        s = v.state
        c = s.controls
        out: list[Action] = []
        frozen = set(c.frozen_by)
        throttled = set(c.throttles)
        paused = set(c.paused)
        for asset in sorted(s.exchange.markets):
            dist = abs(kri.get(f"distance_bps_{asset}", 0.0))
            if asset in paused:
                continue
            if dist >= self.p["pause_bps"]:
                paused.add(asset)
                out.append(TripBreaker(actor=me, scope="market", level="pause", market=asset,
                                       reason=f"{asset} {dist / 100:.1f}% from its reference "
                                              f"price (tier 2 at {self.p['pause_bps'] / 100}%)"))
            elif dist >= self.p["throttle_bps"]:
                takers: dict[int, int] = {}
                for d in v.of("order_placed"):
                    if d["asset"] == asset and d["fills"]:
                        takers[d["actor"]] = takers.get(d["actor"], 0) + sum(f[2] for f in d["fills"])
                for agent in sorted(takers, key=lambda a: (-takers[a], a))[:3]:
                    if agent not in throttled:
                        throttled.add(agent)
                        out.append(self._throttle(me, agent, f"largest taker while {asset} is "
                                                  f"{dist / 100:.1f}% from its reference (tier 1)"))
        if self.p["halt_markets"] and len(paused) >= self.p["halt_markets"] and not c.halts:
            out.append(TripBreaker(actor=me, scope="economy", level="halt",
                                   reason=f"{len(paused)} markets paused (tier 3)"))
        for alert, f in findings:
            if f.score < self.p["min_score"]:
                continue
            why = f"{f.detector} alert {alert}: {f.summary}"[:480]
            for action in self.responses.get(f.detector, ["none"]):
                out += self._respond(action, f, alert, why, me, s, frozen, throttled, paused)
        return out

    def _respond(self, action: str, f: Finding, alert: int, why: str, me: int, s: Any,
                 frozen: set[int], throttled: set[int], paused: set[str]) -> list[Action]:
        out: list[Action] = []
        if action in ("freeze", "freeze_sender"):
            for a in f.subjects if action == "freeze" else f.subjects[:1]:
                agent = s.registry.agents.get(a)
                if a not in frozen and agent is not None and agent.status == "active":
                    frozen.add(a)
                    out.append(TripBreaker(actor=me, scope="agent", agent=a, level="freeze",
                                           reason=why, alert=alert))
        elif action == "throttle":
            for a in f.subjects:
                if a not in throttled:
                    throttled.add(a)
                    out.append(self._throttle(me, a, why, alert))
        elif action == "pause" and f.extra.get("market") and f.extra["market"] not in paused:
            paused.add(f.extra["market"])
            out.append(TripBreaker(actor=me, scope="market", level="pause",
                                   market=f.extra["market"], reason=why, alert=alert))
        elif action == "price_cap" and f.extra.get("game"):
            cap = max(f.extra["nash"]) * (1000 + self.p["price_cap_margin_pm"]) // 1000
            out += self._tighten(me, f"price:{f.extra['game']}", cap, why, s)
        elif action == "price_cap" and f.extra.get("cartel"):
            # an exchange has no price to cap: the sellers holding the focal ask are frozen
            out += self._respond("freeze", f, alert, why, me, s, frozen, throttled, paused)
        elif action == "cap_delegation":
            out += self._tighten(me, "coalition", self.p["coalition_cap"], why, s)
            out += self._tighten(me, "fanout", self.p["fanout_cap"], why, s)
        elif action == "cap_orders":
            out += self._tighten(me, "order_qty", self.p["order_qty_cap"], why, s)
        elif action == "cap_spawn":
            out += self._tighten(me, "spawn", self.p["spawn_cap"], why, s)
        elif action == "cap_position" and f.extra.get("asset") in s.exchange.markets \
                and f.extra.get("owners"):
            # an owner (or coalition) accumulating over several identities: each owner may
            # hold no more than it holds now, over all its agents (a per-agent cap at a share
            # of supply would not bind on identities each below it)
            asset = f.extra["asset"]
            for owner in f.extra["owners"]:
                held = held_by(s, s.registry.agents_of.get(owner, ()), asset)
                out += self._tighten(me, f"position:{asset}:{owner}", max(1, held), why, s)
        elif action == "cap_position" and f.extra.get("asset") in s.exchange.markets:
            asset = f.extra["asset"]
            supply = held_by(s, s.registry.agents, asset)
            cap = max(1, supply * self.p["position_cap_ppm"] // 1_000_000)
            out += self._tighten(me, f"position:{asset}", cap, why, s)
        return out

    def _tighten(self, me: int, cap: str, value: int, why: str, s: Any) -> list[Action]:
        """A cap, once per tick, and only if it tightens what is in force."""
        now = s.controls.cap(cap)
        if (now and now <= value) or (cap, value) in self._planned:
            return []
        self._planned.add((cap, value))
        return [SetCap(actor=me, cap=cap, value=value, reason=why)]

    def _throttle(self, me: int, agent: int, why: str, alert: int = 0) -> Action:
        return TripBreaker(actor=me, scope="agent", agent=agent, level="throttle",
                           limit=self.p["throttle_limit"], reason=why, alert=alert)
