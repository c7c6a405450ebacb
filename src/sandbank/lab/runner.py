"""Run a scenario: build the economy, let the population act tick by tick, measure, and
write the run folder:

    <out>/log.db        the audit log (verify it with `sandbank verify`)
    <out>/metrics.csv   one row per tick (see lab/metrics.py)
    <out>/summary.json  scenario, seed, final root, totals, success criteria
    <out>/report.html   a self-contained report
"""

from __future__ import annotations

import asyncio
import csv
import gc
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sandbank.agents.base import POLICIES, Agent, AsyncAgent, Directory
from sandbank.audit.checkpoint import verifier_key
from sandbank.audit.verify import verify_log
from sandbank.boundary.boundary import ApproveExternal, ExternalResponse
from sandbank.identity.keys import SigningKey
from sandbank.kernel.canonical import parse
from sandbank.kernel.controls import MONITOR, OVERSEER, RegisterOverseer, Resume
from sandbank.kernel.roles import AssignRoles, IssueCertificate
from sandbank.kernel.schema import (
    OPERATOR,
    Action,
    OpenAccount,
    RegisterAgent,
    RegisterOwner,
    SpawnAgent,
    Transfer,
    TransferSpec,
    agent_attestation_bytes,
)
from sandbank.kernel.sequencer import Kernel, TickSummary
from sandbank.lab.metrics import Metrics, lorenz
from sandbank.lab.scenario import SUCCESS_KEYS, Scenario
from sandbank.oversight.engine import Oversight
from sandbank.reputation.reputation import SetTrusted
from sandbank.store.sqlite import SQLiteStore


class RunError(RuntimeError):
    pass


@dataclass
class RunResult:
    out: Path
    summary: dict[str, Any]
    ok: bool


def _sign(action: Action, key: SigningKey, nonce: int) -> Action:
    action.nonce = nonce
    action.signature = key.sign(action.signing_bytes())
    return action


def _decide(k: Kernel, agents: list[Agent], concurrency: int) -> dict[int, Any]:
    """Every agent's actions for this tick (or the exception it raised). Agents that wait on
    something (AsyncAgent: a model, a network) run concurrently, at most `concurrency` at a
    time; results are used in agent order, so the run stays deterministic."""
    out: dict[int, Any] = {}
    waiting = []
    for agent in agents:
        obs = k.observe(agent.id)
        if isinstance(agent, AsyncAgent):
            waiting.append((agent, obs))
            continue
        try:
            out[agent.id] = agent.act(obs)
        except Exception as e:
            out[agent.id] = e
    if waiting:
        async def gather() -> list[Any]:
            gate = asyncio.Semaphore(concurrency)

            async def one(agent: AsyncAgent, obs: Any) -> Any:
                async with gate:
                    try:
                        return await agent.act_async(obs)
                    except Exception as e:
                        return e

            return await asyncio.gather(*(one(a, o) for a, o in waiting))

        for (agent, _), result in zip(waiting, asyncio.run(gather()), strict=True):
            out[agent.id] = result
    return out


def pnl(k: Kernel, agents: list[int], endowment: dict[str, int]) -> int:
    """A group's profit and loss in the fee asset, counting the identities its members
    spawned: holdings now minus endowments, goods marked at their market's last price."""
    s = k.state
    fee = s.policy.fee_asset
    reg = s.registry
    members = [m for a in agents for m in (a, *reg.descendants(a))]
    total = 0
    for asset in s.ledger.treasury:
        held = sum(acct.balance for a in members
                   if (acct := s.ledger.account_of(a, asset)) is not None)
        change = held - endowment.get(asset, 0) * len(agents)
        if asset == fee:
            total += change
        elif asset in s.exchange.markets:
            total += change * s.exchange.markets[asset].last_price
    return total


def answer(k: Kernel, adapters: dict[str, Any], content: Callable[[str], str | None]
           ) -> list[Action]:
    """What the outside says to the requests that crossed in the last tick."""
    out: list[Action] = []
    for d in k.log.last_committed:
        if d["kind"] == "external_sent" and d["gateway"] in adapters:
            data = content(d["sha256"]) or "" if d["size"] else ""
            a = adapters[d["gateway"]].handle(d, data)
            out.append(ExternalResponse(actor=OPERATOR, request=d["request"], data=a.data,
                                        amount=a.amount, status=a.status))
    return out


def approve(k: Kernel, rule: dict[str, int], overseer: int, tick: int) -> list[Action]:
    """The simulated human reviewer of the approval queue: at most `capacity` decisions a
    tick, on requests that waited `delay` ticks, oldest first; `approve` 1 (default) approves,
    0 denies. What it cannot get to is denied by default when it expires."""
    waiting = sorted(k.state.boundary.pending.values(), key=lambda r: r.id)
    # its decision lands next tick, after that tick's expiries: skip what will have expired
    ready = [r for r in waiting if tick - r.tick >= rule.get("delay", 0) and r.expires > tick + 1]
    return [ApproveExternal(actor=overseer, request=r.id, approve=bool(rule.get("approve", 1)),
                            note="reviewed") for r in ready[: rule.get("capacity", 1)]]


def review(k: Kernel, after: dict[str, int], overseer: int, tick: int) -> list[Action]:
    """The simulated human overseer: resume open tickets of the levels it reviews once
    they are `after[level]` ticks old (a scenario's `oversight.review`)."""
    return [Resume(actor=overseer, ticket=t.id, note=f"reviewed after {tick - t.opened} ticks")
            for t in sorted(k.state.controls.tickets.values(), key=lambda t: t.id)
            if t.status == "open" and t.level in after and tick - t.opened >= after[t.level]]


def run_scenario(sc: Scenario, out: Path, *, overwrite: bool = False,
                 on_tick: Callable[[int, int], None] | None = None) -> RunResult:
    out = Path(out)
    log_path = out / "log.db"
    if log_path.exists() and not overwrite:
        raise RunError(f"{out} already holds a run; pass --overwrite or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(str(log_path) + suffix).unlink(missing_ok=True)
    t0 = time.perf_counter()
    cfg = sc.kernel_config()
    op_key = SigningKey.derive(sc.seed, "operator")
    k = Kernel(SQLiteStore(log_path), cfg, op_key)
    sign = cfg.verify_signatures
    nonces: dict[int, int] = {}
    keys: dict[int, SigningKey] = {OPERATOR: op_key}

    def content(digest: str) -> str | None:  # a message's text, for the monitor
        body = k.store.content(bytes.fromhex(digest))
        return body.decode("utf-8", "replace") if body is not None else None

    controller: dict[int, int] = {}  # spawned agent -> the population agent that holds its key
    spawning: dict[tuple[int, str], SigningKey] = {}

    def submit(action: Action) -> None:
        if isinstance(action, SpawnAgent):  # the lab holds keys: give the child its own
            key = SigningKey.derive(sc.seed, f"spawn/{action.actor}/{action.name}")
            action.public_key = key.public
            spawning[(action.actor, action.name)] = key
        if sign:
            nonces[action.actor] = nonces.get(action.actor, 0) + 1
            _sign(action, keys[action.actor], nonces[action.actor])
        k.submit(action)

    # -- admission: owners, agents (with the owners' attestations), accounts, endowments
    owner_keys, owner_ids = {}, {}
    for o in sc.owners:
        key = SigningKey.derive(sc.seed, f"owner/{o['name']}")
        owner_keys[o["name"]] = key
        submit(RegisterOwner(actor=OPERATOR, name=o["name"], owner_kind=o.get("kind", "organisation"),
                             public_key=key.public, evidence=f"scenario {sc.name}: listed owner"))
    k.step()
    for oid, o in k.state.registry.owners.items():
        owner_ids[o.name] = oid
    plan: list[tuple[str, Any, SigningKey]] = []
    n = 0
    for g in sc.population:
        for i in range(g.count):
            n += 1
            name = f"{g.name}-{i}"
            key = SigningKey.derive(sc.seed, f"agent/{n}")
            owner = owner_ids[g.owner]
            submit(RegisterAgent(actor=OPERATOR, owner=owner, name=name, public_key=key.public,
                                 skills=dict(g.skills),
                                 attestation=owner_keys[g.owner].sign(
                                     agent_attestation_bytes(owner, name, key.public))))
            plan.append((name, g, key))
    k.step()
    ids = sorted(k.state.registry.agents)
    if len(ids) != len(plan):
        why = sorted({parse(e.body)["message"] for e in k.store.entries() if e.kind == "rejected"})
        raise RunError(f"{len(plan) - len(ids)} agents were refused admission: "
                       f"{'; '.join(why[:3])} (raise safeguards.max_agents_per_owner, or add owners)")
    for aid, (_, _, key) in zip(ids, plan, strict=True):  # ids follow the order of admission
        keys[aid] = key
        for asset in sc.assets:
            submit(OpenAccount(actor=OPERATOR, asset=asset, holder=aid))
    k.step()
    led = k.state.ledger
    tid = 0
    for asset, amount in sorted(sc.endowment.items()):
        if amount > 0:
            specs = []
            for aid in ids:
                tid += 1
                specs.append(TransferSpec(id=tid, debit=led.treasury[asset],
                                          credit=led.account_of(aid, asset).id, amount=amount))
            for chunk in range(0, len(specs), 8000):
                submit(Transfer(actor=OPERATOR, transfers=specs[chunk:chunk + 8000]))
    k.step()
    directory = Directory({aid: dict(g.skills) for aid, (_, g, _) in zip(ids, plan, strict=True)})
    agents: list[Agent] = [
        POLICIES[g.policy](aid, random.Random(f"{sc.seed}/agent/{aid}"), g.params, directory)
        for aid, (_, g, _) in zip(ids, plan, strict=True)
    ]
    members: dict[str, list[int]] = {}  # population group name -> its agents
    for aid, (_, g, _) in zip(ids, plan, strict=True):
        members.setdefault(g.name, []).append(aid)
    # -- oversight: the monitor (restricts only) and a human overseer (reviews, resumes)
    oversight = Oversight(sc.oversight) if sc.oversight.enabled else None
    monitor = overseer = 0
    if oversight is not None:
        for name, kind in (("monitor", MONITOR), ("overseer", OVERSEER)):
            key = SigningKey.derive(sc.seed, f"oversight/{name}")
            submit(RegisterOverseer(actor=OPERATOR, name=name, overseer_kind=kind,
                                    public_key=key.public, evidence=f"scenario {sc.name}"))
            spawning[(OPERATOR, f"oversight/{name}")] = key
    for group in sc.safeguards.get("trusted", []):
        for aid in members[group]:
            submit(SetTrusted(actor=OPERATOR, agent=aid, trusted=True))
    for group, roles in sc.roles.items():
        for aid in members[group]:
            submit(AssignRoles(actor=OPERATOR, agent=aid, roles=list(roles)))
    for group, lapse in sc.certificates.items():  # run tick -> kernel tick (after this one)
        for aid in members[group]:
            submit(IssueCertificate(actor=OPERATOR, agent=aid, expires=k.tick + 1 + lapse))
    k.step()
    for o in k.state.controls.overseers.values():
        keys[o.id] = spawning.pop((OPERATOR, f"oversight/{o.name}"))
        monitor, overseer = (o.id, overseer) if o.kind == MONITOR else (monitor, o.id)
    from sandbank.boundary.gateways import make_adapter

    adapters = {g["name"]: make_adapter(g.get("adapter", {}), g.get("max_bytes", 4096))
                for g in sc.gateways}
    metrics = Metrics(k)
    metrics.values = {a.id: v for a in agents if (v := a.induced_values())}
    errors: dict[str, int] = {}
    setup_ticks = k.tick
    oversight_seconds = 0.0  # time the monitor took (reported, never used by the economy)
    # The economy's state is millions of long-lived objects without cycles; CPython's full
    # collections rescan them all, which made each tick slower as a run grew (measured at
    # 10,000 agents: 0.94 s -> 1.27 s per tick within 25 ticks; flat 0.82 s without). So
    # automatic collection is off during the tick loop: young generations are collected
    # every 10 ticks, everything once the run ends.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for t in range(sc.ticks):
            registry = k.state.registry.agents
            active = [a for a in agents if registry[a.id].status == "active"]
            decided = _decide(k, active, sc.concurrency)
            for agent in active:
                actions = decided[agent.id]
                if isinstance(actions, Exception):  # an agent's bug is measured, not fatal
                    metrics.agent_errors += 1
                    errors[type(actions).__name__] = errors.get(type(actions).__name__, 0) + 1
                    continue
                for action in actions:
                    # agents act only as themselves, or as the identities they spawned
                    if action.actor != agent.id and controller.get(action.actor) != agent.id:
                        metrics.agent_errors += 1
                        continue
                    submit(action)
            scheduled = sc.interventions_at(t + 1, members, overseer)
            for action in scheduled:
                submit(action)
            summary: TickSummary = k.step()
            if scheduled:
                metrics.interventions(t + 1, summary.tick, scheduled)
            if adapters:  # the outside answers what crossed, in the next tick
                for action in answer(k, adapters, content):
                    submit(action)
            if oversight is not None and sc.oversight.approvals and k.state.boundary.pending:
                for action in approve(k, sc.oversight.approvals, overseer, summary.tick):
                    submit(action)
            if oversight is not None:
                started = time.perf_counter()
                responses, kri = oversight.step(summary.tick, k.log.last_committed, k.state,
                                                content, monitor)
                oversight_seconds += time.perf_counter() - started
                responses += review(k, sc.oversight.review, overseer, summary.tick)
                for action in responses:
                    submit(action)
                metrics.kri = kri
            if spawning:
                for d in k.log.last_committed:
                    if d["kind"] == "agent_registered" and d["parent"]:
                        keys[d["agent"]] = spawning.pop((d["parent"], d["name"]))
                        controller[d["agent"]] = controller.get(d["parent"], d["parent"])
                spawning.clear()  # refused spawns: their keys are never used
            metrics.observe_tick(summary)
            if on_tick:
                on_tick(t + 1, sc.ticks)
            if t % 10 == 9:
                gc.collect(1)
    finally:
        if gc_was_enabled:
            gc.enable()
        gc.collect()
    elapsed = time.perf_counter() - t0
    k.state.check_invariants()
    fee_asset = k.state.policy.fee_asset
    wealth = sorted((acct.balance, aid) for aid in k.state.registry.agents
                    if (acct := k.state.ledger.account_of(aid, fee_asset)) is not None)
    group_of = {aid: g.name for aid, (_, g, _) in zip(ids, plan, strict=True)}
    groups, first = [], 0
    for g in sc.population:  # ids follow the population's order
        mine = ids[first:first + g.count]
        groups.append({"name": g.name, "policy": g.policy, "ids": [mine[0], mine[-1]],
                       "pnl": pnl(k, mine, sc.endowment)})
        first += g.count
    last = k.store.last_checkpoint()
    assert last is not None
    report = verify_log(k.store)
    k.close()
    final = metrics.rows[-1] if metrics.rows else {}
    actual = {"min_trades": metrics.cum["fills"], "min_tasks_passed": metrics.cum["tasks_passed"],
              "min_events": last.size, "max_agent_errors": metrics.agent_errors,
              "min_llm_ok": metrics.cum["llm_calls"] - metrics.cum["llm_failures"]}
    success = {}
    for key, required in sc.success.items():
        ok = actual[key] <= required if key.startswith("max_") else actual[key] >= required
        success[key] = {"required": required, "actual": actual[key], "ok": ok,
                        "meaning": SUCCESS_KEYS[key]}
    summary_doc = {
        "scenario": sc.name, "description": sc.description, "source": sc.source,
        "seed": sc.seed, "ticks": sc.ticks, "setup_ticks": setup_ticks, "agents": len(ids),
        "population": [{"policy": g.policy, "count": g.count, "owner": g.owner,
                        "skills": g.skills, "params": g.params} for g in sc.population],
        "safeguards": sc.safeguards, "policy": sc.policy, "markets": sc.markets,
        "entries": last.size, "root": last.root.hex(), "verified": report.ok,
        "operator_key": verifier_key(cfg.key_name, op_key.public),
        "seconds": round(elapsed, 3), "oversight_seconds": round(oversight_seconds, 3),
        "oversight_timings": {name: round(x, 4) for name, x in sorted(
            (oversight.timings if oversight is not None else {}).items())},
        "final": final, "rejections": metrics.rejections,
        "agent_errors": errors, "interventions": metrics.intervened,
        "oversight": sc.oversight.enabled, "alerts": metrics.alerts, "trips": metrics.trips,
        "wealth": {"asset": fee_asset, "lorenz": lorenz([w for w, _ in wealth]),
                   "top": [[aid, group_of.get(aid, f"spawned by {k.state.registry.lineage_root(aid)}"),
                            w] for w, aid in wealth[::-1][:10]]},
        "groups": groups,
        "delegation_edges": [[a, b, n] for (a, b), n in
                                                     sorted(metrics.edges.items())],
        "success": success, "ok": report.ok and all(s["ok"] for s in success.values()),
        "kernel_config": {k2: (list(v) if isinstance(v, tuple) else v)
                          for k2, v in asdict(cfg).items()},
    }
    with open(out / "metrics.csv", "w", newline="") as f:
        if metrics.rows:
            columns = list(dict.fromkeys(key for row in metrics.rows for key in row))
            w = csv.DictWriter(f, fieldnames=columns, restval="")
            w.writeheader()
            w.writerows(metrics.rows)
    (out / "summary.json").write_text(json.dumps(summary_doc, indent=2) + "\n")
    from sandbank.lab.report import write_report

    write_report(out)
    return RunResult(out, summary_doc, summary_doc["ok"])
