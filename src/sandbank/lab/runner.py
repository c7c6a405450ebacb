"""Run a scenario: build the economy, let the population act tick by tick, measure, and
write the run folder:

    <out>/log.db        the audit log (verify it with `sandbank verify`)
    <out>/metrics.csv   one row per tick (see lab/metrics.py)
    <out>/summary.json  scenario, seed, final root, totals, success criteria
    <out>/*.parquet     tidy tables: metrics, events, trades, alerts, trips, agents
                        (lab/tables.py)
    <out>/report.html   a self-contained report
"""

from __future__ import annotations

import asyncio
import csv
import functools
import gc
import itertools
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sandbank.economy
from sandbank import telemetry
from sandbank.agents.base import POLICIES, Agent, AsyncAgent, Directory, run_async
from sandbank.audit.checkpoint import verifier_key
from sandbank.audit.verify import verify_log
from sandbank.boundary.boundary import ApproveExternal, ExternalResponse
from sandbank.controls.controls import GOVERNOR, MONITOR, OVERSEER, RegisterOverseer, Resume
from sandbank.controls.roles import AssignRoles, IssueCertificate
from sandbank.identity.keys import KeyFileError, RunSecret, SigningKey
from sandbank.kernel.canonical import parse
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
from sandbank.kernel.sequencer import Kernel, QueueFull, TickSummary
from sandbank.lab import beside
from sandbank.lab.metrics import Metrics, declared_rings, lorenz
from sandbank.lab.scenario import SUCCESS_KEYS, Scenario, governor_names
from sandbank.markets.missions import DEFAULT_CAP, MAX_SHAPLEY, CreateMission
from sandbank.oversight.engine import Oversight
from sandbank.regulation.certification import Disclose
from sandbank.regulation.insurance import Insure
from sandbank.reputation.reputation import SetTrusted
from sandbank.store.sqlite import SQLiteStore
from sandbank.urls import without_credentials


class RunError(RuntimeError):
    """A run that cannot start or finish; `exit_code` 2 for bad input (the default), 1 when
    the economy itself went wrong (its live state disagrees with its log)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunResult:
    out: Path
    summary: dict[str, Any]
    ok: bool



def _decide(k: Kernel, agents: list[Agent], concurrency: int,
            tracing: telemetry.Tracing | None = None) -> dict[int, Any]:
    """Every in-process agent's actions for this tick (or the exception it raised). Agents
    that wait on something (AsyncAgent: a model, a network) run concurrently, at most
    `concurrency` at a time; results are used in agent order, so the run stays
    deterministic. `tracing`: each decision is a span (telemetry.py)."""
    out: dict[int, Any] = {}
    waiting = []
    tick = k.tick + 1  # the tick the decisions' actions land in
    for agent in agents:
        obs = k.observe(agent.id)
        if isinstance(agent, AsyncAgent):
            waiting.append((agent, obs))
            continue
        with telemetry.decision(tracing, agent.id, tick) as span:
            try:
                out[agent.id] = agent.act(obs)
            except Exception as e:
                out[agent.id] = e
            span.done(out[agent.id])
    if waiting:
        async def gather() -> list[Any]:
            gate = asyncio.Semaphore(concurrency)

            async def one(agent: AsyncAgent, obs: Any) -> Any:
                async with gate:
                    with telemetry.decision(tracing, agent.id, tick) as span:
                        try:
                            result = await agent.act_async(obs)
                        except Exception as e:
                            result = e
                        span.done(result)
                        return result

            return await asyncio.gather(*(one(a, o) for a, o in waiting))

        for (agent, _), result in zip(waiting, run_async(gather()), strict=True):
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


def sales(metrics: Metrics, agents: list[int]) -> dict[str, int]:
    """What a group sold on the exchange: `sold` units, for `proceeds` (quote asset), which
    were worth `sold_at_last` at the market's last price before the tick of each sale."""
    got = [metrics.sales.get(a, [0, 0, 0]) for a in agents]
    return {"sold": sum(x[0] for x in got), "proceeds": sum(x[1] for x in got),
            "sold_at_last": sum(x[2] for x in got)}


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


MAX_ERROR_KINDS = 50  # distinct kinds of agent error counted by name; the rest as "other"
HOST_BATCH = 100  # observations per request to a host (measured: 50..200 alike at 1,000 agents)


def _hosted(g: Any, settings: Any) -> bool:
    """Does group `g` run in hosts? By default only policies not shipped with sandbank."""
    return not g.ref.builtin if settings.hosts is None else settings.hosts > 0


def _policy_class(ref: Any) -> type[Agent]:
    """A policy's class in this process: built-in, or (agents.hosts: 0, trusted code) the
    user's module imported here."""
    if ref.builtin:
        return POLICIES[ref.spec.split(":", 1)[1]]
    from sandbank.agents.host import add_paths, load_class

    add_paths(ref.paths)
    return load_class(ref.spec)


def _shards(hosted: list[tuple[int, Any]], hosts: int | None) -> list[Any]:
    """Hosted agents split into shards. A shard never mixes owners (code in a host can
    read and steer every agent of that host, so an owner's code shares a host only with
    its own agents): `hosts` shards if there are at least as many as owners, else one per
    owner; an owner's share of the hosts follows its share of the agents."""
    from sandbank.agents.hosts import Shard

    by_owner: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
    for aid, g in hosted:
        by_owner.setdefault(g.owner, []).append((aid, g.ref.spec, g.params))
    total = len(hosted)
    want = max(hosts or 1, len(by_owner))
    share = {o: max(1, want * len(a) // total) for o, a in by_owner.items()}
    for o in sorted(by_owner, key=lambda o: -len(by_owner[o])):  # the rest to the largest
        if sum(share.values()) >= want:
            break
        share[o] += 1
    shards = []
    for owner, agents in by_owner.items():
        n = min(share[owner], len(agents))
        size = -(-len(agents) // n)
        shards += [Shard(owner, agents[i:i + size]) for i in range(0, len(agents), size)]
    return shards


class LabEconomy:
    """A scenario's economy, one run tick at a time: the population, its keys, the oversight
    engine, the simulated reviewers and the outside's adapters around one kernel. The lab
    runs it for `ticks` (`run_scenario`); `sandbank serve --scenario` runs it live, with
    outside agents joining through the API between ticks.

    Every key (operator, owners, population, overseers, spawned children) is derived from
    the run's secret (`RunSecret`, kept in a key file outside the log), never from the seed
    the log publishes. On a store that already holds the scenario's log (a live server
    restarted), the kernel is resumed and the population re-attached to its identities (the
    same secret gives the same keys); the agents' private memories and the detectors'
    windows start afresh."""

    def __init__(self, sc: Scenario, store: Any, secret: RunSecret, *,
                 signatures: bool | None = None, live: bool = False,
                 private: tuple[Path | str, ...] = (), governors: tuple[bytes, ...] = (),
                 tracing: telemetry.Tracing | None = None) -> None:
        """`live`: a server runs it until stopped, so per-tick records are bounded.
        `private`: files and folders agent hosts must not see (the run folder, the key
        file; the log's file is added here). `governors`: live, the founding governors'
        public keys (their holders keep the secret keys; in the lab, which simulates them,
        their keys derive from the run secret). `tracing`: spans of the population's
        decisions and actions (telemetry.py); it only reads, the log is the same."""
        self.sc = sc
        self.tracing = tracing
        self.live = live
        self.governor_keys = tuple(governors)
        self.private = [os.path.realpath(p) for p in
                        (*private, *([store.path] if getattr(store, "path", ":memory:")
                                     != ":memory:" else []))]
        self.secret = secret
        self.op_key = secret.key("operator")
        self.keys: dict[int, SigningKey] = {OPERATOR: self.op_key}
        self.nonces: dict[int, int] = {}
        self.controller: dict[int, int] = {}  # spawned agent -> population agent with its key
        self.spawning: dict[tuple[int, str], SigningKey] = {}
        self.t = 0  # run ticks done
        self.errors: dict[str, int] = {}
        self.oversight_seconds = 0.0  # time the monitor took (reported, never used)
        self.warnings: list[str] = []  # what the run must say (uncontained hosts, a host down)
        self.error_examples: dict[str, list[str]] = {}  # agent error kind -> first messages
        self.host_events = 0
        self.oversight = Oversight(sc.oversight) if sc.oversight.enabled else None
        self.monitor = self.overseer = 0
        self.supervisors: dict[str, int] = {}  # the lab's overseer identities, by name
        if store.last_checkpoint() is None:
            cfg = sc.kernel_config()
            if signatures is not None:  # a live server checks every signature
                cfg = cfg.replace(verify_signatures=signatures)
            self.k = sandbank.economy.new_kernel(store, cfg, self.op_key,
                                                 mechanisms=sc.mechanisms)
            self.sign = self.k.config.verify_signatures
            self._admit()
        else:
            self.k = sandbank.economy.resume(store, self.op_key, mechanisms=sc.mechanisms)
            self.sign = self.k.config.verify_signatures
            self._reattach()
        from sandbank.boundary.gateways import make_adapter

        self.adapters = {g["name"]: make_adapter(g.get("adapter", {}), g.get("max_bytes", 4096))
                         for g in sc.setting("gateways")}
        self.metrics = Metrics(self.k, keep_rows=600 if live else None)
        self.metrics.values = self.induced_values()
        self.metrics.rings = declared_rings(sc.population, self.members)
        self.setup_ticks = self.k.tick
        if tracing is not None:  # (after the setup ticks: only the population is traced)
            tracing.agents = {aid: (name, g.policy)
                              for aid, (name, g, _) in zip(self.ids, self.plan, strict=True)}
            tracing.run_attributes = {"sandbank.scenario": sc.name, "sandbank.seed": sc.seed}
            tracing.watch(self.k)

    def _key(self, *label: object) -> SigningKey:
        """An identity's key: from the run secret, under this run's seed (one key file may
        serve many runs, e.g. a sweep; no two runs share a population key)."""
        return self.secret.key("run", self.sc.seed, *label)

    def content(self, digest: str) -> str | None:  # a message's text, for the monitor
        body = self.k.store.content(bytes.fromhex(digest))
        return body.decode("utf-8", "replace") if body is not None else None

    def submit(self, action: Action) -> None:
        """Sign (when the economy checks signatures) and queue an action of an identity the
        lab holds the key of: the operator, the overseers, the population."""
        if isinstance(action, SpawnAgent):  # the lab holds keys: give the child its own
            key = self._key("spawn", action.actor, action.name)
            action.public_key = key.public
            self.spawning[(action.actor, action.name)] = key
        if self.sign:
            self.nonces[action.actor] = self.nonces.get(action.actor, 0) + 1
            action.signed(self.keys[action.actor], self.nonces[action.actor])
        self.k.submit(action)

    def _plan(self) -> list[tuple[str, Any, SigningKey]]:
        plan, n = [], 0
        for g in self.sc.population:
            for i in range(g.count):
                n += 1
                plan.append((f"{g.name}-{i}", g, self._key("agent", n)))
        return plan

    def _admit(self) -> None:
        """Admission: owners, agents (with the owners' attestations), accounts, endowments,
        overseers, trust, roles, certificates."""
        sc, k, submit = self.sc, self.k, self.submit
        owner_keys, owner_ids = {}, {}
        for o in sc.owners:
            key = self._key("owner", o["name"])
            owner_keys[o["name"]] = key
            submit(RegisterOwner(actor=OPERATOR, name=o["name"],
                                 owner_kind=o.get("kind", "organisation"), public_key=key.public,
                                 evidence=f"scenario {sc.name}: listed owner"))
        k.step()
        for oid, o in k.state.registry.owners.items():
            owner_ids[o.name] = oid
        plan = self._plan()
        for name, g, key in plan:
            owner = owner_ids[g.owner]
            submit(RegisterAgent(actor=OPERATOR, owner=owner, name=name, public_key=key.public,
                                 skills=dict(g.skills),
                                 attestation=owner_keys[g.owner].sign(
                                     agent_attestation_bytes(owner, name, key.public))))
        k.step()
        ids = sorted(k.state.registry.agents)
        if len(ids) != len(plan):
            why = sorted({parse(e.body)["message"] for e in k.store.entries()
                          if e.kind == "rejected"})
            raise RunError(f"{len(plan) - len(ids)} agents were refused admission: "
                           f"{'; '.join(why[:3])} (raise safeguards.max_agents_per_owner, "
                           f"or add owners)")
        for aid, (_, _, key) in zip(ids, plan, strict=True):  # ids follow admission order
            self.keys[aid] = key
            for asset in sc.assets:
                submit(OpenAccount(actor=OPERATOR, asset=asset, holder=aid))
        self._setup_step("opening the population's accounts")
        led = k.state.ledger
        tid = 0
        endowed = [g.endowment_of(sc.endowment) for _, g, _ in plan]  # ids follow the plan
        for asset in sorted({a for e in endowed for a in e}):
            specs = []
            for aid, endowment in zip(ids, endowed, strict=True):
                if endowment.get(asset, 0) > 0:
                    tid += 1
                    specs.append(TransferSpec(id=tid, debit=led.treasury[asset],
                                              credit=led.account_of(aid, asset).id,
                                              amount=endowment[asset]))
            if specs:
                for chunk in range(0, len(specs), 8000):
                    submit(Transfer(actor=OPERATOR, transfers=specs[chunk:chunk + 8000]))
        self._setup_step("endowing the population")
        self._population(ids, plan)
        if self.oversight is not None:  # the monitor (restricts only), a human overseer
            for name, kind in (("monitor", MONITOR), ("overseer", OVERSEER)):
                key = self._key("oversight", name)
                submit(RegisterOverseer(actor=OPERATOR, name=name, overseer_kind=kind,
                                        public_key=key.public, evidence=f"scenario {sc.name}"))
        if self.live:  # the founding governors hold their own keys: none is the server's
            for i, public in enumerate(self.governor_keys, 1):
                submit(RegisterOverseer(actor=OPERATOR, name=f"governor{i}",
                                        overseer_kind=GOVERNOR, public_key=public,
                                        evidence="a founding governor, with its own key"))
        else:
            for name in governor_names(k.config):  # the lab's simulated founding governors
                submit(RegisterOverseer(actor=OPERATOR, name=name, overseer_kind=GOVERNOR,
                                        public_key=self._key("oversight", name).public,
                                        evidence=f"scenario {sc.name}: a founding governor"))
        for group in sc.safeguards.get("trusted", []):
            for aid in self.members[group]:
                submit(SetTrusted(actor=OPERATOR, agent=aid, trusted=True))
        for group, roles in sc.roles.items():
            for aid in self.members[group]:
                submit(AssignRoles(actor=OPERATOR, agent=aid, roles=list(roles)))
        for group, lapse in sc.certificates.items():  # run tick -> kernel tick (after this one)
            for aid in self.members[group]:
                submit(IssueCertificate(actor=OPERATOR, agent=aid, expires=k.tick + 1 + lapse))
        self._setup_step("admitting overseers, trust, roles and certificates")
        if sc.disclose:  # each agent discloses its certificate and the digest of the code
            from sandbank.agents.loader import code_digest  # the lab loads for it

            for g in sc.population:
                cert = sc.disclose.get(g.name)
                if cert is None:
                    continue
                text = Path(cert).read_text()
                digest = code_digest(g.policy, self.sc.agents.paths, g.params)
                for aid in self.members[g.name]:
                    submit(Disclose(actor=aid, certificate=text, policy_digest=digest))
            self._setup_step("the population's disclosures")
        if sc.setting("insurance"):  # every agent buys cover (renewed each term), but the
            for name in sorted({g.name for g in sc.population} - set(sc.uninsured)):
                for aid in self.members[name]:  # (groups the scenario leaves uninsured)
                    submit(Insure(actor=aid))
            self._setup_step("buying the population's insurance cover")
        if sc.missions:  # run tick 1 is the next kernel tick: a mission's duration counts from it
            for m in sc.missions:
                top = MAX_SHAPLEY if m.get("rule") == "shapley" else DEFAULT_CAP
                submit(CreateMission(actor=OPERATOR, name=m["name"], reward=m["reward"],
                                     target=m["target"],
                                     deadline=k.tick + 1 + m["duration"],
                                     asset=m.get("asset", ""), rule=m.get("rule", "proportional"),
                                     cap=m.get("cap", top)))
            self._setup_step("funding the scenario's missions")
        self._overseers()

    def _setup_step(self, what: str) -> None:
        """A tick of the setup: every action of it must succeed, or the run would measure an
        economy other than the scenario's (an agent left unfunded, say)."""
        summary = self.k.step()
        if summary.rejected:
            why = sorted({f"{d['reason']}: {d['message']}" for d in self.k.log.last_committed
                          if d["kind"] == "rejected"})
            raise RunError(f"{what}: {summary.rejected} setup actions were refused "
                           f"({'; '.join(why[:3])})")

    def _population(self, ids: list[int], plan: list[tuple[str, Any, SigningKey]]) -> None:
        """The population's agents: in this process (trusted code), or in agent hosts
        (agents/hosts.py) as the scenario's `agents` section says."""
        self.ids, self.plan = ids, plan
        skills = {aid: dict(g.skills) for aid, (_, g, _) in zip(ids, plan, strict=True)}
        self.members: dict[str, list[int]] = {}  # population group name -> its agents
        for aid, (_, g, key) in zip(ids, plan, strict=True):
            self.members.setdefault(g.name, []).append(aid)
            self.keys[aid] = key
        directory = Directory(skills, {n: tuple(x) for n, x in sorted(self.members.items())})
        settings = self.sc.agents
        hosted = [(aid, g) for aid, (_, g, _) in zip(ids, plan, strict=True)
                  if _hosted(g, settings)]
        here = [(aid, g) for aid, (_, g, _) in zip(ids, plan, strict=True)
                if not _hosted(g, settings)]
        untrusted = sorted({g.policy for _, g in here if not g.ref.builtin})
        if untrusted:
            self.warnings.append(f"policies {', '.join(untrusted)} are not shipped with sandbank "
                                 f"and run in the kernel's process (agents.hosts: 0): they can "
                                 f"reach everything the runner holds; run untrusted code in hosts")
        self.agents: list[Agent] = [
            _policy_class(g.ref)(aid, random.Random(f"{self.sc.seed}/agent/{aid}"), g.params,
                                 directory) for aid, g in here]
        self.pool = None
        self.host_of: dict[int, int] = {}
        self.containment: dict[str, str] = {}
        if hosted:
            self._start_hosts(hosted, directory)
        self.hosted = sorted(self.host_of, key=lambda aid: (self.host_of[aid], aid))

    def _start_hosts(self, hosted: list[tuple[int, Any]], directory: Directory) -> None:
        from sandbank.agents.hosts import HostFailure, HostPool, containment, uncontained

        settings = self.sc.agents
        self.containment = containment().measures(settings, settings.backend)
        gaps = uncontained(self.containment)
        if gaps and settings.require_containment:
            raise RunError("containment required (--require-containment) but not available: "
                           + "; ".join(gaps))
        for gap in gaps:
            self.warnings.append(f"agent hosts: {gap}")
        shards = _shards(hosted, settings.hosts)
        binds = sorted({b for _, g in hosted for b in g.ref.binds})
        paths = list(dict.fromkeys(p for _, g in hosted for p in g.ref.paths))
        from sandbank.agents.loader import within

        for b in binds:  # a host must not see the run's secret or its log
            for private in self.private:
                if within(private, b) or within(b, private):
                    raise RunError(f"agent hosts would see {private} (the run's folder, key or "
                                   f"log) through {b}: keep policy folders (--path) apart from "
                                   f"runs and keys")
        try:
            self.pool = HostPool(settings, shards, seed=self.sc.seed, directory=directory,
                                 concurrency=self.sc.concurrency, binds=binds, paths=paths)
        except HostFailure as e:
            raise RunError(str(e)) from None
        for i, shard in enumerate(shards):
            for aid, *_ in shard.agents:
                self.host_of[aid] = i

    def _example(self, kind: str, error: Exception) -> None:
        """Keep the first few distinct messages of each kind of agent error (bounded)."""
        text = str(error) if hasattr(error, "kind") else f"{type(error).__name__}: {error}"
        seen = self.error_examples.setdefault(kind, []) if len(self.error_examples) < 20 else []
        if len(seen) < 3 and text[:300] not in seen:
            seen.append(text[:300])

    def close(self) -> None:
        """Stop the agent hosts (the kernel's store is closed by whoever opened it)."""
        if getattr(self, "pool", None) is not None:
            self.pool.close()

    def induced_values(self) -> dict[int, dict[str, int]]:
        out = {a.id: v for a in self.agents if (v := a.induced_values())}
        if self.pool is not None:
            out.update(self.pool.values)
        return dict(sorted(out.items()))

    def decide(self) -> dict[int, Any]:
        """This tick's decisions of every active agent. Each host gets its batch as soon as
        its observations are built, and thinks while the in-process agents do."""
        k = self.k
        registry = k.state.registry.agents
        pool = self.pool
        if pool is not None:
            # self.hosted is grouped by host, ids ascending in each; a host gets its agents'
            # observations in batches, and decides on one while the next is built
            for i, aids in itertools.groupby(self.hosted, key=self.host_of.__getitem__):
                active = [aid for aid in aids if registry[aid].status == "active"]
                for n in range(0, len(active), HOST_BATCH):
                    pool.begin(i, [(aid, k.observe(aid)) for aid in active[n:n + HOST_BATCH]],
                               k.tick)
        active = [a for a in self.agents if registry[a.id].status == "active"]
        decided = _decide(k, active, self.sc.concurrency, self.tracing)
        if pool is not None:
            remote = pool.finish(k.tick)
            decided.update(remote)
            if self.tracing is not None:
                for aid in sorted(remote):
                    self.tracing.remote_decision(aid, remote[aid])
            if len(pool.events) > self.host_events:
                self.warnings.extend(pool.events[self.host_events:])
                self.host_events = len(pool.events)
        return decided

    def agents_report(self) -> dict[str, Any]:
        """How the population ran, for the run's summary: in-process or in hosts, and what
        contained the hosts."""
        s = self.sc.agents
        return {"in_process": len(self.agents), "hosted": len(self.hosted),
                "backend": s.backend if self.pool is not None else "in-process",
                "hosts": self.pool.status() if self.pool is not None else [],
                "containment": self.containment,
                "deadline_seconds": s.deadline if self.pool is not None else None}

    def _overseers(self) -> None:
        governors = set() if self.live else set(governor_names(self.k.config))
        for o in self.k.state.controls.overseers.values():
            if o.name in ("monitor", "overseer") or o.name in governors:
                self.keys[o.id] = self._key("oversight", o.name)
                self.supervisors[o.name] = o.id
                if o.kind == MONITOR:
                    self.monitor = o.id
                elif o.kind == OVERSEER:
                    self.overseer = o.id

    def _reattach(self) -> None:
        """The population of a resumed log: each planned agent found by owner and name."""
        reg = self.k.state.registry
        owner_ids = {o.name: oid for oid, o in reg.owners.items()}
        by_name = {(a.owner, a.name): aid for aid, a in reg.agents.items() if not a.parent}
        plan = self._plan()
        try:
            ids = [by_name[(owner_ids[g.owner], name)] for name, g, _ in plan]
        except KeyError as e:
            raise RunError(f"this log does not hold the scenario's population ({e}): "
                           f"resume it with the scenario that started it") from None
        for aid, (_, _, key) in zip(ids, plan, strict=True):
            if reg.agents[aid].public_key != key.public:
                raise RunError(f"agent {aid} of this log was not admitted with the scenario's "
                               f"key (another seed, or another key file?)")
        self._population(ids, plan)
        self._overseers()
        for aid, a in reg.agents.items():  # children spawned by the population
            root = reg.lineage_root(aid)
            if a.parent and root in self.keys:
                self.keys[aid] = self._key("spawn", a.parent, a.name)
                self.controller[aid] = root
        self.nonces = {OPERATOR: self.k.operator_nonce}
        for aid in self.keys:
            if aid > 0:
                self.nonces[aid] = reg.agents[aid].nonce
            elif aid != OPERATOR:
                self.nonces[aid] = self.k.state.controls.overseers[aid].nonce

    def step(self, *, full_digest: bool = False) -> TickSummary:
        """One run tick: the population decides, scheduled interventions, the kernel's tick,
        then the outside's answers, the reviewers and the monitor queue for the next.
        `full_digest`: the tick's checkpoint covers the whole state (a run's last tick)."""
        tracing = self.tracing
        if tracing is None:
            return self._step(full_digest)
        tracing.begin_tick(self.k.tick + 1, self.t + 1)
        try:
            return self._step(full_digest)
        finally:
            tracing.end_tick()

    def _step(self, full_digest: bool) -> TickSummary:
        k, sc, submit, metrics, tracing = self.k, self.sc, self.submit, self.metrics, self.tracing
        decided = self.decide()
        for aid in sorted(decided):  # agent order, wherever the agents ran
            actions = decided[aid]
            if isinstance(actions, Exception):  # an agent's bug is measured, not fatal
                kind = getattr(actions, "kind", None) or type(actions).__name__
                if kind not in self.errors and len(self.errors) >= MAX_ERROR_KINDS:
                    kind = "other"  # an agent names its exceptions: the table stays bounded
                if kind != "host down":  # (said once, in the warnings)
                    metrics.agent_errors += 1
                    self.errors[kind] = self.errors.get(kind, 0) + 1
                    self._example(kind, actions)
                continue
            for action in actions:
                # agents act only as themselves, or as the identities they spawned
                if action.actor != aid and self.controller.get(action.actor) != aid:
                    metrics.agent_errors += 1
                    if tracing is not None:
                        tracing.unsubmitted(aid, action, "not_its_identity")
                    continue
                try:
                    submit(action)
                except QueueFull:  # the tick is full: this action is refused, measured
                    metrics.agent_errors += 1
                    self.errors["queue full"] = self.errors.get("queue full", 0) + 1
                    if tracing is not None:
                        tracing.unsubmitted(aid, action, "queue_full")
                else:
                    if tracing is not None:
                        tracing.action(aid, action)
        self.t += 1
        scheduled = sc.interventions_at(self.t, self.members, self.overseer, self.supervisors)
        for action in scheduled:
            submit(action)
        summary: TickSummary = k.step(full_digest=full_digest)
        if tracing is not None:
            tracing.committed(k, summary)
        if scheduled:
            metrics.interventions(self.t, summary.tick, scheduled)
        if self.adapters:  # the outside answers what crossed, in the next tick
            for action in answer(k, self.adapters, self.content):
                submit(action)
        oversight = self.oversight
        if oversight is not None and sc.oversight.approvals and k.state.boundary.pending:
            for action in approve(k, sc.oversight.approvals, self.overseer, summary.tick):
                submit(action)
        if oversight is not None:
            started = time.perf_counter()
            responses, kri = oversight.step(summary.tick, k.log.last_committed, k.state,
                                            self.content, self.monitor)
            self.oversight_seconds += time.perf_counter() - started
            responses += review(k, sc.oversight.review, self.overseer, summary.tick)
            for action in responses:
                submit(action)
            metrics.kri = kri
        if self.spawning:
            for d in k.log.last_committed:
                if d["kind"] == "agent_registered" and d["parent"]:
                    key = self.spawning.pop((d["parent"], d["name"]), None)
                    if key is not None:
                        self.keys[d["agent"]] = key
                        self.controller[d["agent"]] = self.controller.get(d["parent"], d["parent"])
            self.spawning.clear()  # refused spawns: their keys are never used
        metrics.observe_tick(summary)
        return summary


@functools.cache
def build_info() -> dict[str, str]:
    """The sandbank version, and the git revision of its source tree when it runs from a
    checkout ("" when installed, or when git is not there; "+dirty" marks uncommitted
    changes): what a sweep's table and a run's summary record of the code that ran."""
    import subprocess

    import sandbank

    here = Path(__file__).resolve().parents[3]
    revision = ""
    if (here / ".git").exists():
        try:
            revision = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"],
                                      capture_output=True, text=True, timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain",
                                    "--untracked-files=no", "src"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            revision += "+dirty" if revision and dirty else ""
        except (OSError, subprocess.SubprocessError):
            revision = ""
    return {"sandbank": sandbank.__version__, "revision": revision}


KEY_FILE = "run.key"  # the run secret, beside the log (never share it: it signs)
CHECKPOINT_FILE = "checkpoint.txt"  # the latest signed checkpoint (keep a copy elsewhere)


def _without_credentials(value: Any) -> Any:
    """A scenario's parameters as the summary shows them: any URL's user:password@ cut."""
    if isinstance(value, str):
        return without_credentials(value)
    if isinstance(value, dict):
        return {k: _without_credentials(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_credentials(v) for v in value]
    return value


def _check_live_state(k: Kernel, on_entry: Callable[[Any, dict[str, Any]], None] | None = None,
                      side: Any = None) -> bool:
    """The run's own check of its economy at the end: the ledger's invariants hold, and the
    state replayed from the log — every signed digest checked, the last one over the whole
    state — is the live state, part by part (kernel/fingerprint.py). A write that bypassed
    the events (code in the kernel's process adding to a balance, say) fails the run with
    exit 1, naming where the states differ; never a bare assertion. `on_entry`: hears each
    entry of the replay's walk (the run's tables). `side`: the replay that followed the run
    on the second core (lab/beside.py); if it agrees with the live state, that is the check
    (True: it wrote the log's tables); else the replay is done here, which says why."""
    from sandbank.audit.replay import replay_log
    from sandbank.kernel.fingerprint import first_difference

    try:
        k.state.check_invariants()
    except AssertionError as e:
        raise RunError(f"a ledger invariant is broken at the end of the run: {e}",
                       exit_code=1) from None
    if side is not None:
        got = side.result()
        if isinstance(got, tuple) and got[0] == k.tick and got[1] == k.state.fingerprints(k.tick):
            return True
        side.discard()  # (disagreement, a problem or a failure: checked here, named here)
    rp = replay_log(k.store, k.mechanisms, on_entry=on_entry)
    problem = None if rp.ok else f"replaying the log, the {rp.problem}"
    if not rp.ok:  # fold it all regardless, to say where the end states differ
        rp = replay_log(k.store, k.mechanisms, digests=False)
    if rp.state is None or not rp.ok:
        raise RunError(f"the log cannot be replayed: {rp.problem}", exit_code=1)
    live, replayed = k.state.fingerprints(k.tick), rp.state.fingerprints(k.tick)
    differ = [name for name in live if live[name] != replayed[name]]
    if differ or problem:
        where = "(none left at the end)" if not differ else first_difference(
            k.state.part(differ[0], k.tick), rp.state.part(differ[0], k.tick), differ[0])
        raise RunError(f"the economy's live state disagrees with the state its log produces: "
                       f"something changed it without an event (code running in the kernel's "
                       f"process); {problem + '; ' if problem else ''}live vs replayed at the "
                       f"end: {where}", exit_code=1)
    return False


def run_scenario(sc: Scenario, out: Path, *, overwrite: bool = False,
                 on_tick: Callable[[int, int], None] | None = None,
                 key_file: Path | None = None,
                 on_warning: Callable[[str], None] | None = None,
                 trace: telemetry.Tracing | None = None) -> RunResult:
    """Run `sc` into the folder `out`. Keys come from the secret in `key_file` (default
    `<out>/run.key`, created with mode 0600 if absent): the same scenario, seed and key file
    give a byte-identical log. `on_warning` hears each warning when it arises (a host that
    is not contained, at the start; a host that went down, at that tick); the summary keeps
    them all. `trace`: OpenTelemetry spans of the population's decisions, model calls and
    actions (`sandbank.telemetry.configure`; its owner closes it), the log unchanged."""
    out = Path(out)
    log_path = out / "log.db"
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a folder")
    if log_path.exists() and not overwrite:
        raise RunError(f"{out} already holds a run; pass --overwrite or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        secret = RunSecret.load(key_file or out / KEY_FILE)
    except KeyFileError as e:
        raise RunError(str(e)) from None
    except OSError as e:
        raise RunError(f"cannot create the run folder {out}: {e.strerror}") from None
    for suffix in ("", "-wal", "-shm"):
        Path(str(log_path) + suffix).unlink(missing_ok=True)
    (out / CHECKPOINT_FILE).unlink(missing_ok=True)
    t0 = time.perf_counter()
    econ = LabEconomy(sc, SQLiteStore(log_path), secret, private=(out, key_file or out / KEY_FILE),
                      tracing=trace)
    econ.k.log.checkpoint_file = out / CHECKPOINT_FILE
    k, cfg, op_key, metrics = econ.k, econ.k.config, econ.op_key, econ.metrics
    side = beside.Beside(log_path, out, k.mechanisms) \
        if beside.wanted(len(econ.ids), sc.ticks) else None
    ids, plan, oversight = econ.ids, econ.plan, econ.oversight
    said = 0

    def say() -> None:
        nonlocal said
        if on_warning is not None:
            for warning in econ.warnings[said:]:
                on_warning(warning)
        said = len(econ.warnings)

    # The economy's state is millions of long-lived objects without cycles; CPython's full
    # collections rescan them all, which made each tick slower as a run grew (measured at
    # 10,000 agents: 0.94 s -> 1.27 s per tick within 25 ticks; flat 0.82 s without). So
    # automatic collection is off during the tick loop: young generations are collected
    # every 10 ticks, everything once the run ends.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        say()
        for t in range(sc.ticks):
            econ.step(full_digest=t == sc.ticks - 1)
            say()
            if on_tick:
                on_tick(t + 1, sc.ticks)
            if t % 10 == 9:
                gc.collect(1)
    except BaseException:
        if side is not None:
            side.stop()
            side.discard()
        raise
    finally:
        econ.close()
        if gc_was_enabled:
            gc.enable()
        gc.collect()
    errors, setup_ticks, oversight_seconds = econ.errors, econ.setup_ticks, econ.oversight_seconds
    elapsed = time.perf_counter() - t0
    from sandbank.lab.tables import LogTables, agent_rows, write_tables

    log_tables = LogTables(out)
    try:  # (a replay of the whole log, about a third of the run's time; the tables on the way)
        if side is not None:  # it follows the log on the other core; this one verifies
            side.finish()
            report = verify_log(k.store)
        side_tables = _check_live_state(k, log_tables.add, side)
        if side is None:
            report = verify_log(k.store)
        fee_asset = k.state.policy.fee_asset
        wealth = sorted((acct.balance, aid) for aid in k.state.registry.agents
                        if (acct := k.state.ledger.account_of(aid, fee_asset)) is not None)
        group_of = {aid: g.name for aid, (_, g, _) in zip(ids, plan, strict=True)}
        groups, first = [], 0
        reg = k.state.registry
        spawned: dict[int, list[int]] = {}  # admitted root -> the identities its lineage spawned
        for aid in sorted(reg.agents):
            if reg.agents[aid].parent:
                spawned.setdefault(reg.lineage_root(aid), []).append(aid)
        for g in sc.population:  # ids follow the population's order
            mine = ids[first:first + g.count]
            groups.append({"name": g.name, "policy": g.policy, "ids": [mine[0], mine[-1]],
                           "spawned": [c for a in mine for c in spawned.get(a, [])],
                           "pnl": pnl(k, mine, g.endowment_of(sc.endowment)),
                           **sales(metrics, [m for a in mine for m in (a, *reg.descendants(a))])})
            first += g.count
        last = k.store.last_checkpoint()
        assert last is not None
        write_tables(out, None if side_tables else log_tables, metrics, agent_rows(
            k.state, {aid: (g.name, g.policy) for aid, (_, g, _) in zip(ids, plan, strict=True)},
            metrics.llm))
    except BaseException:  # (a half-written table and an open store never outlive a failure)
        log_tables.abandon()
        if side is not None:
            side.stop()
            side.discard()
        k.close()
        raise
    k.close()
    final = metrics.rows[-1] if metrics.rows else {}
    actual = {"min_trades": metrics.cum["fills"], "min_tasks_passed": metrics.cum["tasks_passed"],
              "min_events": last.size, "max_agent_errors": metrics.agent_errors,
              "min_llm_ok": metrics.cum["llm_calls"] - metrics.cum["llm_failures"],
              "min_missions_met": metrics.cum["missions_met"],
              "max_gini_outcome_bps": round(10_000 * max(
                  (r.get("gini_outcome", 0) for r in metrics.rows), default=0))}
    criteria = dict(sc.success)
    if metrics.cum["llm_calls"] and "min_llm_ok" not in criteria:
        criteria["min_llm_ok"] = 1  # every model call failed: a failed run, unless the
        # scenario expects it (success: {min_llm_ok: 0})
    success = {}
    for key, required in criteria.items():
        ok = actual[key] <= required if key.startswith("max_") else actual[key] >= required
        success[key] = {"required": required, "actual": actual[key], "ok": ok,
                        "meaning": SUCCESS_KEYS[key]
                        + ("" if key in sc.success else " (implicit with LLM agents; "
                           "success: {min_llm_ok: 0} when failures are expected)")}
    summary_doc = {
        "scenario": sc.name, "description": sc.description, "source": sc.source,
        **build_info(),
        "seed": sc.seed, "ticks": sc.ticks, "setup_ticks": setup_ticks, "agents": len(ids),
        "population": [{"policy": g.policy, "count": g.count, "owner": g.owner,
                        "skills": g.skills, "params": _without_credentials(g.params),
                        **({"endowment": g.endowment} if g.endowment else {})}
                       for g in sc.population],
        "safeguards": sc.safeguards, "policy": sc.setting("policy"), "markets": sc.setting("markets"),
        "entries": last.size, "root": last.root.hex(), "verified": report.ok,
        # where the end-of-run replay ran: beside the run on another core, or after it here
        "replay_check": "beside" if side_tables else "in process",
        "operator_key": verifier_key(cfg.key_name, op_key.public),
        "seconds": round(elapsed, 3), "oversight_seconds": round(oversight_seconds, 3),
        "oversight_timings": {name: round(x, 4) for name, x in sorted(
            (oversight.timings if oversight is not None else {}).items())},
        "final": final, "rejections": metrics.rejections,
        "agent_errors": errors, "interventions": metrics.intervened,
        "agent_error_examples": econ.error_examples,
        "agents_ran": econ.agents_report(), "warnings": econ.warnings,
        "oversight": sc.oversight.enabled, "alerts": metrics.alerts, "trips": metrics.trips,
        "wealth": {"asset": fee_asset, "lorenz": lorenz([w for w, _ in wealth]),
                   "top": [[aid, group_of.get(aid, f"spawned by {k.state.registry.lineage_root(aid)}"),
                            w] for w, aid in wealth[::-1][:10]]},
        "groups": groups,
        "delegation_edges": [[a, b, n] for (a, b), n in
                                                     sorted(metrics.edges.items())],
        "llm": {"calls": metrics.cum["llm_calls"], "failures": metrics.cum["llm_failures"],
                "prompt_tokens": metrics.cum["llm_prompt_tokens"],
                "completion_tokens": metrics.cum["llm_completion_tokens"],
                "causes": dict(sorted(metrics.llm_causes.items(), key=lambda x: -x[1])),
                "agents": [[aid, *v] for aid, v in sorted(metrics.llm.items())]},
        "success": success, "ok": report.ok and all(s["ok"] for s in success.values()),
        "kernel_config": cfg.as_dict(),
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
