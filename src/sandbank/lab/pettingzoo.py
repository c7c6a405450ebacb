"""A PettingZoo `ParallelEnv` over a sandbank scenario, for reinforcement learning.

    from sandbank.lab.pettingzoo import SandbankParallelEnv
    env = SandbankParallelEnv("honest_thin", seed=1, ticks=20)   # RL controls the zi_traders
    obs, infos = env.reset()
    while env.agents:
        actions = {a: env.action_space(a).sample() for a in env.agents}
        obs, rewards, terminations, truncations, infos = env.step(actions)
    env.close()

The scenario's economy is built exactly as `sandbank run` builds it (lab/runner.py's
`LabEconomy`): the population, keys, oversight, scheduled interventions. The agents the
environment controls (`agents=`) no longer run their policy; each `step(actions)` queues
their actions — signed with their own keys, through the kernel's guards, ledger and log like
any other agent's, no side door — and runs one tick of the economy (every other agent acts
by its own policy in the same tick). The run is deterministic: the same scenario, seed and
action sequence give the same observations, rewards and infos.

Agents are named as the run names them: `<group>-<i>` (e.g. `zi_trader-0`).

Action — `MultiDiscrete([4, 2 * offsets + 1, max_qty])`, `[kind, offset, qty]`:
    kind    0 hold (do nothing; resting orders stay), 1 buy, 2 sell, 3 cancel every resting
            order of the agent's
    offset  the limit price is `mid + (offset - offsets) * price_step` (at least 1), where
            mid is the midpoint of the best bid and ask, else the last price, else the one
            side quoted, else `reference_price`; an offset across the spread trades at once
    qty     the order's quantity is `qty + 1`
With `replace=True` (the default) a buy or sell first cancels the agent's resting orders,
so it quotes at most one order at a time. `None` (or an agent left out of `actions`) holds.
An action outside the space (wrong shape, a value out of range, not integers) is refused by
the environment and reported in `infos[agent]["refused"]` with reason `malformed_action`
(it never reaches the kernel: it is not an action). What the kernel refuses (funds it does
not have, a frozen agent, a halted market, ...) is logged as every refusal is, and reported
in `infos[agent]["refused"]` with the kernel's reason and message.

Observation — `Box(shape=(12,), float64)`, fields in `OBS_FIELDS` order:
    cash, cash_available          the agent's balance of the market's quote asset (minor
                                  units), and what it can still spend (resting buys hold funds)
    holdings, holdings_available  the same for the market's asset
    best_bid, bid_qty, best_ask, ask_qty   top of the book (0 when a side is empty)
    last_price                    the last trade's price (0 before the first trade)
    tick                          run ticks done (0 after reset, `ticks` at the end)
    open_orders                   the agent's resting orders
    active                        1 while the agent's status is active, else 0

Reward — the change over the step of the agent's marked-to-market wealth: cash balance +
holdings × mark, the mark being the last price (`reference_price` before the first trade).
Fees paid and revaluation of the holdings by other agents' trades both count.

Episode end — every agent is truncated when the scenario's `ticks` have run; an agent is
terminated when its status becomes one of `terminate_on` (default suspended or revoked —
expelled; a frozen agent stays, and its actions are refused by the kernel until it is
unfrozen).

Infos — per agent: `tick` (kernel tick), `run_tick`, `wealth`, `action` (the decoded action:
kind, price, qty; or None), `refused` (a list of {action, reason, message}), `feedback`
((kind, outcome) of each of its actions in the tick, as its next observation has them) and
`entries` (the log entries its actions produced in the tick).

`reset(seed=...)` builds a fresh economy under that seed (`seed=None`: the last seed — the
constructor's, else the scenario's); `options` are accepted and ignored. The log is kept in
memory (`log=`: a SQLite file, replaced at each reset); keys derive from a run secret made
once per environment (`key_file=`: a file's, so logs are byte-identical across processes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sandbank.extras import require

try:  # the base class when PettingZoo is there; constructing the env requires it either way
    from pettingzoo import ParallelEnv as _Base
except ImportError:  # pragma: no cover - exercised only without the `rl` extra
    _Base = object  # type: ignore[assignment,misc]

OBS_FIELDS = ("cash", "cash_available", "holdings", "holdings_available", "best_bid", "bid_qty",
              "best_ask", "ask_qty", "last_price", "tick", "open_orders", "active")
KINDS = ("hold", "buy", "sell", "cancel")
HOLD, BUY, SELL, CANCEL = range(4)


def _positive(name: str, value: Any) -> int:
    if type(value) is not int or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class SandbankParallelEnv(_Base):  # type: ignore[misc,valid-type]
    """A sandbank scenario as a PettingZoo parallel environment (see the module's docstring
    for the action and observation encodings, the reward and the episode's end).

    `scenario`: a built-in name, a YAML file or a mapping (as `sandbank.run` takes);
    `seed`, `ticks`, `overrides` (dotted keys): as `sandbank.run`'s. `agents`: which agents
    the environment controls — a population group's name, an agent's name (`zi_trader-3`),
    an agent id, or a list of these; default every agent of the groups whose policy is
    `zi_trader`. `asset`: the market traded (default the scenario's first market's).
    `signatures`: every action signed and checked (default True; None: as the scenario
    says)."""

    metadata = {"name": "sandbank_v0", "render_modes": ["human", "ansi"],
                "is_parallelizable": True}

    def __init__(self, scenario: str | Path | Mapping[str, Any] = "honest_thin", *,
                 seed: int | None = None, ticks: int | None = None,
                 agents: str | int | Iterable[str | int] | None = None,
                 render_mode: str | None = None, asset: str | None = None,
                 max_qty: int = 10, offsets: int = 5, price_step: int = 1,
                 reference_price: int = 100, replace: bool = True,
                 terminate_on: Iterable[str] = ("suspended", "revoked"),
                 overrides: Mapping[str, Any] | None = None, signatures: bool | None = True,
                 key_file: str | Path | None = None, log: str | Path | None = None) -> None:
        require("rl", "the PettingZoo adapter")
        import numpy as np
        from gymnasium import spaces

        from sandbank.identity.keys import KeyFileError, RunSecret
        from sandbank.lab.api import _dotted, _scenario_doc

        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of "
                             f"{self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.max_qty = _positive("max_qty", max_qty)
        self.offsets = _positive("offsets", offsets)
        self.price_step = _positive("price_step", price_step)
        self.reference_price = _positive("reference_price", reference_price)
        self.replace = bool(replace)
        self.terminate_on = frozenset(terminate_on)
        self.signatures = signatures
        self.log_path = Path(log) if log is not None else None
        if seed is not None and type(seed) is not int:
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self._doc, self._source, self._base = _scenario_doc(scenario)
        self._changes = _dotted(overrides, {})
        self._ticks = ticks
        try:
            self._secret = RunSecret.load(key_file) if key_file else RunSecret.generate()
        except KeyFileError as e:
            raise ValueError(str(e)) from None
        sc = self._scenario(seed)  # checks the scenario (ScenarioError is a ValueError)
        self._seed = sc.seed
        self.ticks = sc.ticks
        markets = sc.setting("markets")
        if not markets:
            raise ValueError(f"scenario {sc.name} has no market: the PettingZoo adapter trades "
                             f"on one (add a `markets` section)")
        market = markets[0] if asset is None else next(
            (m for m in markets if m["asset"] == asset), None)
        if market is None:
            raise ValueError(f"scenario {sc.name} has no market in {asset!r} (its markets: "
                             f"{', '.join(m['asset'] for m in markets)})")
        self.asset, self.quote = market["asset"], market["quote"]
        plan = [(f"{g.name}-{i}", g) for g in sc.population for i in range(g.count)]
        self._index = self._select(agents, plan)  # agent name -> position in the plan
        self.possible_agents: list[str] = list(self._index)
        self.agents: list[str] = []
        self._np = np
        low = np.array([-np.inf, -np.inf, -np.inf, -np.inf] + [0.0] * 8)
        high = np.full(len(OBS_FIELDS), np.inf)
        high[OBS_FIELDS.index("tick")] = self.ticks
        high[OBS_FIELDS.index("active")] = 1
        self._obs_spaces = {a: spaces.Box(low, high, dtype=np.float64)
                            for a in self.possible_agents}
        self._act_spaces = {a: spaces.MultiDiscrete([len(KINDS), 2 * self.offsets + 1,
                                                     self.max_qty])
                            for a in self.possible_agents}
        self.econ: Any = None
        self._store: Any = None

    # ------------------------------------------------------------------ setup
    def _scenario(self, seed: int | None) -> Any:
        from sandbank.lab.scenario import scenario_of
        from sandbank.lab.sweep import apply_config

        doc = self._doc
        if self._changes:
            doc = apply_config(doc, self._changes, doc.get("seed", 0) if seed is None else seed,
                               self._source)
        return scenario_of(doc, self._source, base=self._base, seed=seed, ticks=self._ticks,
                           what=self._source + (f" (with {', '.join(sorted(self._changes))})"
                                                if self._changes else ""), ticks_label="ticks")

    @staticmethod
    def _select(agents: Any, plan: list[tuple[str, Any]]) -> dict[str, int]:
        names = {name: i for i, (name, _) in enumerate(plan)}
        groups: dict[str, list[int]] = {}
        for i, (_, g) in enumerate(plan):
            groups.setdefault(g.name, []).append(i)
        if agents is None:
            chosen = [i for i, (_, g) in enumerate(plan) if g.policy == "zi_trader"]
            if not chosen:
                raise ValueError(f"the scenario has no zi_trader agents: say which agents the "
                                 f"environment controls (agents=<group, agent name or id>; "
                                 f"groups: {', '.join(groups)})")
        else:
            items = [agents] if isinstance(agents, str | int) else list(agents)
            if not items:
                raise ValueError("agents is empty: name at least one agent or group")
            chosen = []
            for item in items:
                if type(item) is int:
                    if not 1 <= item <= len(plan):  # ids follow the population's order
                        raise ValueError(f"no agent with id {item} (the scenario's agents are "
                                         f"1..{len(plan)})")
                    chosen.append(item - 1)
                elif isinstance(item, str) and item in groups:
                    chosen += groups[item]
                elif isinstance(item, str) and item in names:
                    chosen.append(names[item])
                else:
                    raise ValueError(f"agents: {item!r} is neither a group ({', '.join(groups)}) "
                                     f"nor an agent name (e.g. {plan[0][0]}) nor an agent id")
        return {plan[i][0]: i for i in sorted(set(chosen))}

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A fresh economy under `seed` (None: the last seed); `options` are ignored."""
        from sandbank.lab.runner import LabEconomy
        from sandbank.store.sqlite import SQLiteStore

        if seed is not None:
            if type(seed) is not int:
                raise ValueError(f"seed must be an integer, got {seed!r}")
            self._seed = seed
        sc = self._scenario(self._seed)
        self.close()
        if self.log_path is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.log_path) + suffix).unlink(missing_ok=True)
        self._store = SQLiteStore(self.log_path if self.log_path is not None else ":memory:")
        econ = LabEconomy(sc, self._store, self._secret, signatures=self.signatures)
        self.econ = econ
        self.ids: dict[str, int] = {}
        for name, i in self._index.items():
            aid = econ.ids[i]
            if econ.k.state.registry.agents[aid].name != name:  # pragma: no cover - defensive
                raise RuntimeError(f"agent {aid} is not {name}: the plan and admission disagree")
            self.ids[name] = aid
        mine = set(self.ids.values())
        econ.agents = [a for a in econ.agents if a.id not in mine]  # their policies stop here
        econ.hosted = [a for a in econ.hosted if a not in mine]
        self.agents = list(self.possible_agents)
        if seed is not None:
            for n, a in enumerate(self.possible_agents):
                self._act_spaces[a].seed(seed + n)
        self._wealth = {a: self._wealth_of(self.ids[a]) for a in self.agents}
        obs = {a: self._observe(a) for a in self.agents}
        infos = {a: {"tick": econ.k.tick, "run_tick": 0, "wealth": self._wealth[a],
                     "action": None, "refused": [], "feedback": [], "entries": []}
                 for a in self.agents}
        if self.render_mode == "human":
            self.render()
        return obs, infos

    # ------------------------------------------------------------------ spaces
    def observation_space(self, agent: str) -> Any:
        try:
            return self._obs_spaces[agent]
        except KeyError:
            raise ValueError(f"no agent {agent!r} in this environment") from None

    def action_space(self, agent: str) -> Any:
        try:
            return self._act_spaces[agent]
        except KeyError:
            raise ValueError(f"no agent {agent!r} in this environment") from None

    # ------------------------------------------------------------------ views
    def _market(self) -> Any:
        return self.econ.k.state.exchange.markets[self.asset]

    def _mid(self) -> int:
        from sandbank.markets.exchange import BUY, SELL

        book = self._market().book
        bid, ask = book.best_price(BUY), book.best_price(SELL)
        if bid is not None and ask is not None:
            return (bid + ask) // 2
        last = self._market().last_price
        return last or bid or ask or self.reference_price

    def _wealth_of(self, aid: int) -> int:
        led = self.econ.k.state.ledger
        cash, held = led.account_of(aid, self.quote), led.account_of(aid, self.asset)
        mark = self._market().last_price or self.reference_price
        return ((cash.balance if cash is not None else 0)
                + (held.balance if held is not None else 0) * mark)

    def _observe(self, agent: str) -> Any:
        obs = self.econ.k.observe(self.ids[agent])
        acct = {a.asset: a for a in obs.accounts}
        cash, held = acct.get(self.quote), acct.get(self.asset)
        m = next((v for v in obs.markets if v.asset == self.asset), None)
        values = [cash.balance if cash else 0, cash.available if cash else 0,
                  held.balance if held else 0, held.available if held else 0,
                  (m.best_bid or 0) if m else 0, m.bid_qty if m else 0,
                  (m.best_ask or 0) if m else 0, m.ask_qty if m else 0,
                  m.last_price if m else 0, self.econ.t,
                  sum(1 for o in obs.orders if o.asset == self.asset),
                  1 if obs.status == "active" else 0]
        return self._np.array(values, dtype=self._np.float64)

    # ------------------------------------------------------------------ acting
    def _decode(self, agent: str, action: Any) -> tuple[dict[str, Any] | None, str]:
        """(kind, offset, qty) of an action, or (None, why it is malformed)."""
        np = self._np
        if action is None:
            return {"kind": "hold"}, ""
        try:
            a = np.asarray(action)
        except Exception as e:  # noqa: BLE001 - anything that is no array is malformed
            return None, f"not an array ({type(e).__name__})"
        if a.shape != (3,):
            return None, f"shape {a.shape}, expected (3,): [kind, offset, qty]"
        if not np.issubdtype(a.dtype, np.integer):
            if not (np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a))
                    and np.all(a == np.round(a))):
                return None, f"values {a.tolist()} are not integers"
        kind, offset, qty = (int(x) for x in a)
        if not 0 <= kind < len(KINDS):
            return None, f"kind {kind} is not 0..3 (0 hold, 1 buy, 2 sell, 3 cancel)"
        if not 0 <= offset <= 2 * self.offsets:
            return None, f"offset {offset} is not 0..{2 * self.offsets}"
        if not 0 <= qty < self.max_qty:
            return None, f"qty {qty} is not 0..{self.max_qty - 1}"
        out: dict[str, Any] = {"kind": KINDS[kind]}
        if kind in (BUY, SELL):
            out["price"] = max(1, self._mid() + (offset - self.offsets) * self.price_step)
            out["qty"] = qty + 1
        return out, ""

    def _actions(self, aid: int, decoded: dict[str, Any]) -> list[Any]:
        from sandbank.markets.exchange import CancelOrder, PlaceOrder

        kind = decoded["kind"]
        out: list[Any] = []
        if kind == "cancel" or (self.replace and kind in ("buy", "sell")):
            out += [CancelOrder(actor=aid, order=o.id) for o in self.econ.k.observe(aid).orders
                    if o.asset == self.asset]
        if kind in ("buy", "sell"):
            out.append(PlaceOrder(actor=aid, asset=self.asset, side=kind, qty=decoded["qty"],
                                  price=decoded["price"]))
        return out

    def step(self, actions: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
        """One tick of the economy with the controlled agents' `actions` (agent -> action;
        an agent left out holds)."""
        from sandbank.kernel.sequencer import QueueFull

        if self.econ is None:
            raise RuntimeError("call reset() before step()")
        if not self.agents:
            raise RuntimeError("the episode is over (every agent is done): call reset()")
        if not isinstance(actions, Mapping):
            raise ValueError(f"actions must map agent names to actions, got "
                             f"{type(actions).__name__}")
        for agent in actions:
            if agent not in self._index:
                raise ValueError(f"no agent {agent!r} in this environment (its agents: "
                                 f"{', '.join(self.possible_agents)})")
            if agent not in self.agents:
                raise ValueError(f"agent {agent!r} is done (terminated or truncated): it takes "
                                 f"no more actions this episode")
        econ = self.econ
        refused: dict[str, list[dict[str, Any]]] = {a: [] for a in self.agents}
        taken: dict[str, dict[str, Any] | None] = {}
        for agent in self.agents:
            decoded, why = self._decode(agent, actions.get(agent))
            taken[agent] = decoded
            if decoded is None:
                refused[agent].append({"action": "place_order", "reason": "malformed_action",
                                       "message": f"action {actions.get(agent)!r} of {agent} "
                                                  f"is outside its action space: {why}"})
                continue
            for action in self._actions(self.ids[agent], decoded):
                try:
                    econ.submit(action)
                except QueueFull as e:
                    refused[agent].append({"action": action.KIND, "reason": "queue_full",
                                           "message": str(e)})
        econ.step(full_digest=econ.t == self.ticks - 1)
        k = econ.k
        by_actor: dict[int, list[dict[str, Any]]] = {}
        for d in k.log.last_committed:
            if "actor" in d:
                by_actor.setdefault(d["actor"], []).append(d)
        obs, rewards, terms, truncs, infos = {}, {}, {}, {}, {}
        done = econ.t >= self.ticks
        for agent in self.agents:
            aid = self.ids[agent]
            entries = by_actor.get(aid, [])
            refused[agent] += [{"action": (d.get("action") or {}).get("kind", ""),
                                "reason": d["reason"], "message": d["message"]}
                               for d in entries if d["kind"] == "rejected"]
            wealth = self._wealth_of(aid)
            obs[agent] = self._observe(agent)
            rewards[agent] = float(wealth - self._wealth[agent])
            self._wealth[agent] = wealth
            terms[agent] = k.state.registry.agents[aid].status in self.terminate_on
            truncs[agent] = done and not terms[agent]
            view = k.observe(aid)
            infos[agent] = {"tick": k.tick, "run_tick": econ.t, "wealth": wealth,
                            "action": taken[agent], "refused": refused[agent],
                            "feedback": [(f.kind, f.outcome) for f in view.feedback],
                            "entries": entries}
        self.agents = [a for a in self.agents if not (terms[a] or truncs[a])]
        if self.render_mode == "human":
            self.render()
        return obs, rewards, terms, truncs, infos

    # ------------------------------------------------------------------ the rest
    def render(self) -> str | None:
        """`ansi`: the tick's market and the controlled agents' positions as text;
        `human`: the same, printed."""
        if self.render_mode is None or self.econ is None:
            return None
        m = self._market()
        from sandbank.markets.exchange import BUY, SELL

        lines = [f"tick {self.econ.t}/{self.ticks} {self.asset}/{self.quote}: "
                 f"bid {m.book.best_price(BUY)} ask {m.book.best_price(SELL)} "
                 f"last {m.last_price}"]
        led = self.econ.k.state.ledger
        for agent in self.possible_agents:
            aid = self.ids[agent]
            cash, held = led.account_of(aid, self.quote), led.account_of(aid, self.asset)
            lines.append(f"  {agent} (#{aid}): {self.quote} {cash.balance if cash else 0}, "
                         f"{self.asset} {held.balance if held else 0}, "
                         f"wealth {self._wealth_of(aid)}")
        text = "\n".join(lines)
        if self.render_mode == "human":
            print(text)
            return None
        return text

    def close(self) -> None:
        """Stop the economy's agent hosts and close its store (reset builds a new one)."""
        if self.econ is not None:
            self.econ.close()
            self.econ = None
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def kernel(self) -> Any:
        """The economy's kernel (read its state and log; act only through `step`)."""
        if self.econ is None:
            raise RuntimeError("call reset() first")
        return self.econ.k
