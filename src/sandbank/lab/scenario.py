"""Scenarios: one YAML file describes an economy, its population and its safeguards.

The schema is strict: an unknown key, a wrong type or an unknown policy parameter is an
error that names the key and the file (with a suggestion for a likely typo), raised before
anything runs.

    name: patchwork
    description: specialists form coalitions; a fraudster takes work and delivers garbage
    seed: 1
    ticks: 60
    assets: [CRD, WGT]
    markets: [{asset: WGT, quote: CRD, band_bps: 1500}]
    policy: {trade_fee_bps: 10, taxes: {compute: 2}}
    endowment: {CRD: 100000, WGT: 50}       # per agent
    owners: [{name: ada, kind: human}]
    population:                             # each: policy, count, owner, name (the group:
                                            # default the policy), skills, params, endowment
      - {policy: requester, count: 4, owner: ada}
      - {policy: specialist, count: 6, skills: {code: 9}}
      - {policy: market_maker, count: 2, endowment: {CRD: 10000000}}  # over the one above,
                                            # per agent of this group, asset by asset
    safeguards: {disabled: [rate_limit], signatures: false}
    interventions:                          # operator actions at given ticks of the run
      - {tick: 30, kind: set_agent_status, group: fraudster, status: frozen, reason: fraud}
      - {tick: 40, kind: set_policy, param: task_bond_bps, value: 2000}
    success: {min_trades: 1, min_tasks_passed: 1}
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import sandbank.agents.attacks  # noqa: F401  (registers the parameterised attacks)
import sandbank.agents.learning  # noqa: F401  (registers the learning policies)
import sandbank.agents.llm  # noqa: F401  (registers the llm policy)
import sandbank.agents.lookalikes  # noqa: F401  (registers the odd honest policies)
import sandbank.agents.scripted  # noqa: F401  (registers the policies)
import sandbank.economy  # noqa: F401  (registers every action kind)
from sandbank.agents.hosts import HostSettings
from sandbank.agents.loader import PolicyError, PolicyRef, check_params, resolve, search_path
from sandbank.controls.controls import founding_governors
from sandbank.economy import STANDARD, assembly, check_config
from sandbank.kernel.schema import ACTION_TYPES, OPERATOR, Action, MalformedAction, action_from_dict
from sandbank.kernel.sequencer import ConfigError, KernelConfig
from sandbank.ledger.ledger import MAX_AMOUNT
from sandbank.oversight.engine import OversightConfig, OversightConfigError

SUCCESS_KEYS = {"min_trades": "fills in any market", "min_tasks_passed": "tasks passed",
                "min_events": "log entries", "max_agent_errors": "agent exceptions",
                "min_llm_ok": "model replies that parsed into actions or a clean pass",
                "min_missions_met": "missions whose objective was met",
                "max_gini_outcome_bps": "the highest Gini of outcomes in the run (bps; sampled "
                                        "every 10 ticks)"}
# the scenario's own safeguards; each mechanism adds the ones it owns (`safeguards.<key>`
# in its `sections`, kernel/mechanism.py)
CORE_SAFEGUARD_KEYS = {"disabled", "signatures", "trusted", "max_actions_per_actor_per_tick",
                       "max_agents_per_owner", "max_spawn_depth", "max_children_per_agent",
                       "idempotency_window"}


def _sections(mechanisms: tuple[Any, ...]) -> dict[str, tuple[str, Any]]:
    asm = assembly(mechanisms)
    return {where: (key, asm.config[key][1])
            for m in asm.mechanisms for where, key in m.sections.items()}


def mechanism_sections(extra: tuple[Any, ...] = ()) -> dict[str, tuple[str, Any]]:
    """Every scenario key a mechanism owns (a top-level key, or `safeguards.<key>`) ->
    (its config key, its default): the standard economy's, and those of `extra` mechanisms."""
    return _sections((*STANDARD, *extra)) if extra else SECTIONS


def _safeguard_keys(sections: dict[str, Any]) -> set[str]:
    return CORE_SAFEGUARD_KEYS | {w.split(".", 1)[1] for w in sections
                                  if w.startswith("safeguards.")}


SECTIONS = _sections(STANDARD)
SAFEGUARD_KEYS = _safeguard_keys(SECTIONS)  # of the standard economy



def governor_names(config: Any) -> list[str]:
    """The founding governors a lab run admits, named governor1, governor2, ...
    (`controls.founding_governors` of them)."""
    return [f"governor{i}" for i in range(1, founding_governors(config) + 1)]

class ScenarioError(ValueError):
    """The scenario file is wrong; the message names the file and the key."""


# what a scenario's `redteam` section may say (lab/redteam.py runs it)
REDTEAM_KEYS = {"detect", "harm", "margin", "seeds", "honest", "max_alert_rate", "ablate",
                "adversaries", "cause"}


def spec_of(doc: dict[str, Any], source: str) -> dict[str, Any] | None:
    spec = doc.get("redteam")
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) - REDTEAM_KEYS:
        raise ScenarioError(f"{source}: redteam must be a mapping of {sorted(REDTEAM_KEYS)}")
    if not spec.get("honest") and not ({"detect", "harm"} <= set(spec)):
        raise ScenarioError(f"{source}: redteam needs `detect` and `harm` (or `honest: true`)")
    cause = spec.get("cause")
    if cause is not None and (not isinstance(cause, str) or cause not in doc or not any(
            k == cause or k.startswith(f"{cause}.") for k in spec.get("ablate", {}))):
        raise ScenarioError(f"{source}: redteam.cause names the scenario section whose "
                            f"institution must cut the harm alone, and `ablate` must switch "
                            f"it off (got {cause!r})")
    return spec


@dataclass
class Group:
    policy: str
    count: int = 1
    owner: str = ""
    name: str = ""
    skills: dict[str, int] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    # per agent of the group, asset by asset over the scenario's `endowment`
    endowment: dict[str, int] = field(default_factory=dict)
    ref: PolicyRef | None = None  # the resolved policy (agents/loader.py)

    def endowment_of(self, scenario: dict[str, int]) -> dict[str, int]:
        """What each agent of the group is endowed with: the scenario's, with the group's
        own amounts over it."""
        return {**scenario, **self.endowment}


# what a scenario's `agents` section may say: how the population runs (agents/hosts.py)
AGENTS_KEYS = {"hosts": (int, type(None)), "backend": str, "deadline": (int, float),
               "memory_mb": int, "cpu_seconds": int, "open_files": int, "file_mb": int,
               "network": bool, "path": list, "require_containment": bool, "ray_address": str}
BACKENDS = ("process", "ray")


def parse_agents(data: Any, source: str, base: Path, paths: tuple[str, ...] = ()) -> HostSettings:
    """The `agents` section: hosts (None: only policies not shipped with sandbank run in
    hosts; 0: every agent in the runner's process; N: every agent in N hosts at least),
    backend, limits, the import path (`path`, relative to the scenario file; `paths` from
    the command line come first)."""
    _typed(data, dict, "agents", source)
    _check_keys(data, set(AGENTS_KEYS), "agents", source)
    for key, typ in AGENTS_KEYS.items():
        if key in data:
            _typed(data[key], typ, f"agents.{key}", source)
    if data.get("backend", "process") not in BACKENDS:
        raise ScenarioError(f"{source}: agents.backend must be one of {', '.join(BACKENDS)}, "
                            f"got {data['backend']!r}")
    for key in ("memory_mb", "cpu_seconds", "open_files", "file_mb"):
        if key in data and data[key] < 1:
            raise ScenarioError(f"{source}: agents.{key} must be >= 1, got {data[key]}")
    if isinstance(data.get("hosts"), bool) or (data.get("hosts") is not None
                                               and not 0 <= data["hosts"] <= 256):
        raise ScenarioError(f"{source}: agents.hosts must be within 0..256, got {data['hosts']}")
    if data.get("deadline", 0) < 0:
        raise ScenarioError(f"{source}: agents.deadline must be >= 0 seconds (0: none)")
    own = []
    for i, p in enumerate(data.get("path", [])):
        _typed(p, str, f"agents.path[{i}]", source)
        folder = (base / p).resolve()
        if not folder.is_dir():
            raise ScenarioError(f"{source}: agents.path[{i}]: no folder at {folder}")
        own.append(str(folder))
    for p in paths:
        if not Path(p).is_dir():
            raise ScenarioError(f"--path {p}: no such folder")
    fields = {k: v for k, v in data.items() if k != "path"}
    if "deadline" in fields:
        fields["deadline"] = float(fields["deadline"])
    return HostSettings(**fields, paths=search_path((*paths, *own)))


MISSION_KEYS = {"name", "asset", "reward", "target", "duration", "rule", "cap"}


@dataclass
class Scenario:
    name: str
    population: list[Group]
    description: str = ""
    seed: int = 0
    ticks: int = 50
    assets: list[str] = field(default_factory=lambda: ["CRD"])
    endowment: dict[str, int] = field(default_factory=dict)
    owners: list[dict[str, str]] = field(default_factory=lambda: [
        {"name": "default", "kind": "organisation"}])
    safeguards: dict[str, Any] = field(default_factory=dict)
    success: dict[str, int] = field(default_factory=dict)
    concurrency: int = 8  # agents waiting on a model (or a network) at once
    agents: HostSettings = field(default_factory=HostSettings)  # how the population runs
    interventions: list[dict[str, Any]] = field(default_factory=list)
    oversight: Any = None  # oversight.engine.OversightConfig (parsed from a mapping)
    redteam: dict[str, Any] = field(default_factory=dict)  # what it attacks (lab/redteam.py)
    roles: dict[str, list[str]] = field(default_factory=dict)  # group -> roles (roles.py)
    certificates: dict[str, int] = field(default_factory=dict)  # group -> run tick they lapse
    uninsured: list[str] = field(default_factory=list)  # groups that buy no insurance cover
    # group -> the certificate file its agents disclose at entry (regulation/certification.py)
    disclose: dict[str, str] = field(default_factory=dict)
    # missions the operator funds from the treasury as the run starts (markets/missions.py)
    missions: list[dict[str, Any]] = field(default_factory=list)
    source: str = "<scenario>"
    # the mechanisms' sections (`markets`, `gateways`, ...): scenario key -> value as written
    sections: dict[str, Any] = field(default_factory=dict)
    # mechanisms beyond the standard economy's (kernel/mechanism.py), with their sections
    mechanisms: tuple[Any, ...] = ()

    @functools.cached_property
    def table(self) -> dict[str, tuple[str, Any]]:
        return mechanism_sections(self.mechanisms)

    def setting(self, where: str) -> Any:
        """What the scenario sets at `where` (a mechanism's key, e.g. `markets` or
        `safeguards.boundary`), else the owner's default."""
        if where.startswith("safeguards."):
            key = where.split(".", 1)[1]
            if key in self.safeguards:
                return self.safeguards[key]
        elif where in self.sections:
            return self.sections[where]
        return _plain(self.table[where][1])

    def interventions_at(self, tick: int, groups: dict[str, list[int]],
                         overseer: int = 0, by: dict[str, int] | None = None) -> list[Action]:
        """The operator's (and the overseer's) actions the scenario schedules for run tick
        `tick` (1-based); one naming a `group` (instead of an `agent`) applies to every
        agent of that group. Overseer actions are taken by `overseer`, or by the lab's
        identity `by` names (`by`: name -> actor id: governor1, monitor, ...)."""
        out = []
        for i in self.interventions:
            if i["tick"] == tick:
                fields = {k: v for k, v in i.items() if k not in ("tick", "group", "by")}
                cls = ACTION_TYPES[i["kind"]]
                actor = overseer if cls.OVERSEER_ONLY else OPERATOR
                if "by" in i:
                    actor = OPERATOR if i["by"] == "operator" else (by or {})[i["by"]]
                if "group" in i and "agents" in cls.__dataclass_fields__:  # one action, all
                    out.append(action_from_dict({**fields, "agents": list(groups[i["group"]]),
                                                 "actor": actor}))
                    continue
                for agent in groups[i["group"]] if "group" in i else [None]:
                    extra = {"agent": agent} if agent is not None else {}
                    out.append(action_from_dict({**fields, **extra, "actor": actor}))
        return out

    def kernel_config(self) -> KernelConfig:
        sg = self.safeguards
        extra = {k: sg[k] for k in sorted(CORE_SAFEGUARD_KEYS - {"disabled", "signatures",
                                                                 "trusted"}) if k in sg}
        owned = {}  # what the scenario sets of each mechanism's keys, as the kernel takes it
        for where, (key, default) in self.table.items():
            owned[key] = _as_config(self.setting(where), default)
        try:
            return check_config(KernelConfig(
                seed=self.seed, origin=f"sandbank.lab/{self.name}/seed-{self.seed}",
                assets=tuple(self.assets), verify_signatures=bool(sg.get("signatures", False)),
                disabled_guards=tuple(sg.get("disabled", ())), **extra, **owned),
                (*STANDARD, *self.mechanisms))
        except (ConfigError, TypeError) as e:
            raise ScenarioError(f"{self.source}: {e}") from None


def _yaml_type(default: Any) -> type:
    """What a scenario writes for a key whose default is `default`."""
    return list if isinstance(default, tuple) else type(default)


def _as_config(value: Any, default: Any) -> Any:
    """A scenario's value as the kernel takes it, by the shape of the key's default: a
    flag, a tuple (of copied mappings), a copied mapping, or the value itself."""
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, tuple):
        return tuple(dict(x) if isinstance(x, dict) else x for x in value)
    return dict(value) if isinstance(default, dict) else value


def _plain(default: Any) -> Any:
    return list(default) if isinstance(default, tuple) else default


def _check_keys(data: dict[str, Any], allowed: set[str], where: str, source: str) -> None:
    for key in data:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            raise ScenarioError(f"{source}: unknown key {key!r} in {where}"
                                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                                + f"; allowed: {', '.join(sorted(allowed))}")


def _typed(value: Any, typ: type | tuple[type, ...], key: str, source: str) -> Any:
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        name = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise ScenarioError(f"{source}: {key} must be {name}, got {value!r}")
    return value


MAX_TICKS = 1_000_000
MAX_SEED = 2**53 - 1  # the seed is logged: it must stay exact in the canonical encoding


def parse_scenario(data: Any, source: str = "<scenario>", *,
                   mechanisms: tuple[Any, ...] = (), paths: tuple[str, ...] = (),
                   base: Path | None = None) -> Scenario:
    """A scenario from its mapping; `mechanisms`: beyond the standard economy's, whose
    sections it may then set; `paths`: folders to import user policies from (before the
    scenario's `agents.path`, which is relative to `base`, default: the working directory)."""
    table = mechanism_sections(mechanisms)
    top = {w: v for w, v in table.items() if "." not in w}
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping of keys to values")
    allowed = {f for f in Scenario.__dataclass_fields__
               if f not in ("source", "sections", "mechanisms")}
    allowed |= set(top)
    _check_keys(data, allowed, "the scenario", source)
    for required in ("name", "population"):
        if required not in data:
            raise ScenarioError(f"{source}: missing required key {required!r}")
    _typed(data["name"], str, "name", source)
    for key, typ in (("description", str), ("seed", int), ("ticks", int), ("assets", list),
                     ("endowment", dict), ("owners", list),
                     ("safeguards", dict), ("success", dict), ("population", list),
                     ("concurrency", int), ("interventions", list), ("oversight", dict),
                     ("redteam", dict), ("roles", dict), ("certificates", dict),
                     ("uninsured", list), ("missions", list), ("disclose", dict),
                     ("agents", dict),
                     *((w, _yaml_type(d)) for w, (_, d) in top.items())):
        if key in data:
            _typed(data[key], typ, key, source)
    if not 1 <= data.get("ticks", 1) <= MAX_TICKS:
        raise ScenarioError(f"{source}: ticks must be within 1..{MAX_TICKS:,}, got "
                            f"{data['ticks']}")
    if not 0 <= data.get("seed", 0) <= MAX_SEED:
        raise ScenarioError(f"{source}: seed must be within 0..2**53-1, got {data['seed']}")
    _check_keys(data.get("safeguards", {}), _safeguard_keys(table), "safeguards", source)
    _check_keys(data.get("success", {}), set(SUCCESS_KEYS), "success", source)
    for k, v in data.get("success", {}).items():
        _typed(v, int, f"success.{k}", source)
    owners = data.get("owners", [{"name": "default", "kind": "organisation"}])
    for i, o in enumerate(owners):
        _typed(o, dict, f"owners[{i}]", source)
        _check_keys(o, {"name", "kind"}, f"owners[{i}]", source)
        if o.get("kind", "organisation") not in ("human", "organisation"):
            raise ScenarioError(f"{source}: owners[{i}].kind must be human or organisation")
    owner_names = [o["name"] for o in owners]
    settings = parse_agents(data.get("agents", {}), source, base or Path.cwd(), paths)
    groups = []
    if not data["population"]:
        raise ScenarioError(f"{source}: population is empty")
    for i, g in enumerate(data["population"]):
        where = f"population[{i}]"
        _typed(g, dict, where, source)
        _check_keys(g, set(Group.__dataclass_fields__), where, source)
        if "policy" not in g:
            raise ScenarioError(f"{source}: {where} needs a policy")
        params = _typed(g.get("params", {}), dict, f"{where}.params", source)
        try:
            ref = resolve(g["policy"], settings.paths)
            params = check_params(ref, params)
        except PolicyError as e:
            raise ScenarioError(f"{source}: {where}: {e}") from None
        count = _typed(g.get("count", 1), int, f"{where}.count", source)
        if not 1 <= count <= 100_000:
            raise ScenarioError(f"{source}: {where}.count must be within 1..100000")
        owner = g.get("owner", owner_names[0])
        if owner not in owner_names:
            raise ScenarioError(f"{source}: {where}.owner {owner!r} is not one of the owners "
                                f"{owner_names}")
        skills = _typed(g.get("skills", {}), dict, f"{where}.skills", source)
        endowment = _typed(g.get("endowment", {}), dict, f"{where}.endowment", source)
        groups.append(Group(policy=g["policy"], count=count, owner=owner,
                            name=g.get("name", g["policy"]), skills=dict(skills),
                            params=params, endowment=dict(endowment), ref=ref))
    fields = {k: v for k, v in data.items() if k not in ("population", "agents") and k not in top}
    fields["agents"] = settings
    fields["sections"] = {k: v for k, v in data.items() if k in top}
    fields["mechanisms"] = tuple(mechanisms)
    fields["owners"] = owners
    fields["redteam"] = spec_of(data, source) or {}
    try:
        fields["oversight"] = OversightConfig.parse(data.get("oversight"))
    except OversightConfigError as e:
        raise ScenarioError(f"{source}: oversight: {e}") from None
    sc = Scenario(population=groups, source=source, **fields)
    agents = sum(g.count for g in sc.population)
    wheres = [("endowment", sc.endowment)] + [(f"population[{i}].endowment", g.endowment)
                                              for i, g in enumerate(sc.population)]
    for where, endowment in wheres:
        for asset, amount in endowment.items():
            if asset not in sc.assets:
                raise ScenarioError(f"{source}: {where} of {asset!r}, which is not in assets "
                                    f"{sc.assets}")
            _typed(amount, int, f"{where}.{asset}", source)
            if amount < 0:
                raise ScenarioError(f"{source}: {where}.{asset} is {amount}: an endowment is "
                                    f"a whole number >= 0")
    for asset in sorted({a for _, e in wheres for a in e}):
        minted = sum(g.endowment_of(sc.endowment).get(asset, 0) * g.count for g in sc.population)
        if minted > MAX_AMOUNT:  # the treasury mints it all: it must stay exact
            raise ScenarioError(f"{source}: the endowments of {asset} for {agents:,} agents "
                                f"mint {minted:,}, above the ledger's limit of {MAX_AMOUNT:,} "
                                f"(2**53-1) per asset")
    names = sorted({g.name for g in sc.population})
    trusted = sc.safeguards.get("trusted", [])
    if not isinstance(trusted, list) or not all(t in names for t in trusted):
        raise ScenarioError(f"{source}: safeguards.trusted must list population groups "
                            f"({', '.join(names)}): the pre-trusted seeds of graph trust")
    from sandbank.controls.roles import ROLES

    for group, roles in sc.roles.items():
        if group not in names:
            raise ScenarioError(f"{source}: roles: {group!r} is not a population group")
        bad = [r for r in roles if r not in ROLES] if isinstance(roles, list) else [roles]
        if bad:
            raise ScenarioError(f"{source}: roles.{group}: unknown roles {bad}; known: "
                                f"{', '.join(sorted(ROLES))}")
    for group, lapse in sc.certificates.items():
        if group not in names or type(lapse) is not int or lapse < 1:
            raise ScenarioError(f"{source}: certificates: {group!r} must be a population group "
                                f"with the run tick its certificates lapse (>= 1)")
    if not all(isinstance(g, str) and g in names for g in sc.uninsured):
        raise ScenarioError(f"{source}: uninsured must list population groups "
                            f"({', '.join(names)}): those that buy no insurance cover")
    if sc.uninsured and not sc.setting("insurance"):
        raise ScenarioError(f"{source}: uninsured names groups, but the scenario has no "
                            f"insurance section")
    for group, cert in sc.disclose.items():
        if group not in names or not isinstance(cert, str):
            raise ScenarioError(f"{source}: disclose: {group!r} must be a population group "
                                f"with the certificate file its agents disclose")
        where = Path(cert) if Path(cert).is_absolute() else \
            (Path(source).parent if source not in ("inline", "<scenario>") else Path.cwd()) / cert
        if not where.is_file():
            raise ScenarioError(f"{source}: disclose.{group}: no certificate file {where}")
        sc.disclose[group] = str(where)
    if sc.disclose and not sc.setting("certification"):
        raise ScenarioError(f"{source}: disclose names groups, but the scenario has no "
                            f"certification section")
    from sandbank.markets.missions import DEFAULT_CAP, MAX_PARTICIPANTS, MAX_SHAPLEY, RULES

    for i, m in enumerate(sc.missions):
        where = f"missions[{i}]"
        _typed(m, dict, where, source)
        _check_keys(m, MISSION_KEYS, where, source)
        for key in ("name", "reward", "target", "duration"):
            if key not in m:
                raise ScenarioError(f"{source}: {where} needs {key!r}")
        _typed(m["name"], str, f"{where}.name", source)
        for key in ("reward", "target", "duration", "cap"):
            if key in m and (type(m[key]) is not int or not 1 <= m[key] <= MAX_AMOUNT):
                raise ScenarioError(f"{source}: {where}.{key} must be a whole number >= 1")
        if m.get("rule", "proportional") not in RULES:
            raise ScenarioError(f"{source}: {where}.rule must be one of {list(RULES)}")
        top = MAX_SHAPLEY if m.get("rule") == "shapley" else MAX_PARTICIPANTS
        if m.get("cap", min(DEFAULT_CAP, top)) > top:
            raise ScenarioError(f"{source}: {where}.cap must be at most {top} for its rule")
        if m.get("asset", sc.assets[0]) not in sc.assets:
            raise ScenarioError(f"{source}: {where}.asset must be one of {sc.assets}")
        if m["duration"] > sc.ticks:
            raise ScenarioError(f"{source}: {where}.duration is longer than the run")
    operator_kinds = sorted(k for k, c in ACTION_TYPES.items()
                            if c.OPERATOR_ONLY or c.OVERSEER_ONLY or c.SUPERVISOR)
    for i, iv in enumerate(sc.interventions):
        where = f"interventions[{i}]"
        _typed(iv, dict, where, source)
        tick = _typed(iv.get("tick"), int, f"{where}.tick", source)
        if not 1 <= tick <= sc.ticks:
            raise ScenarioError(f"{source}: {where}.tick must be within 1..{sc.ticks}")
        kind = iv.get("kind")
        if kind not in operator_kinds:
            hint = difflib.get_close_matches(str(kind), operator_kinds, n=1)
            raise ScenarioError(f"{source}: {where}.kind {kind!r} is not an operator or "
                                f"overseer action"
                                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                                + f"; known: {', '.join(operator_kinds)}")
        fields = {k: v for k, v in iv.items() if k not in ("tick", "group", "by")}
        if "by" in iv:
            names = ["operator", "monitor", "overseer", *governor_names(sc.kernel_config())]
            if iv["by"] not in names or (iv["by"] in ("monitor", "overseer")
                                         and not sc.oversight.enabled):
                raise ScenarioError(f"{source}: {where}.by must name one of the lab's "
                                    f"identities: {', '.join(names)} (the monitor and the "
                                    f"overseer only with oversight on; governors only "
                                    f"under safeguards.governance_quorum)")
        if "group" in iv:
            names = sorted({g.name for g in sc.population})
            takes = ACTION_TYPES[kind].__dataclass_fields__
            one = "agents" if "agents" in takes else "agent"
            if iv["group"] not in names or one in iv:
                raise ScenarioError(f"{source}: {where}.group must name one population group "
                                    f"({', '.join(names)}) and replace `{one}`")
            if one not in takes:
                raise ScenarioError(f"{source}: {where}: {kind} does not act on an agent, so "
                                    f"it takes no group")
            fields[one] = [1] if one == "agents" else 1
        try:
            action_from_dict({**fields, "actor": OPERATOR})
        except MalformedAction as e:
            raise ScenarioError(f"{source}: {where}: {e}") from None
    sc.kernel_config()  # the kernel's own checks, reported against this file
    from sandbank.boundary.gateways import make_adapter

    for i, g in enumerate(sc.setting("gateways")):
        try:
            make_adapter(g.get("adapter", {}))
        except (ValueError, TypeError) as e:
            raise ScenarioError(f"{source}: gateways[{i}].adapter: {e}") from None
    return sc


def read_yaml(path: Path, what: str) -> Any:
    """A YAML file's content, or a ScenarioError that says what is wrong with the file."""
    if not path.is_file():
        raise ScenarioError(f"no {what} file at {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ScenarioError(f"{path}: not valid YAML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(f"cannot read the {what} file {path}: {e}") from None


def with_agents(data: Any, agents: dict[str, Any] | None) -> Any:
    """A scenario's mapping with `agents` settings (from the command line) over its own."""
    if not agents or not isinstance(data, dict):
        return data
    own = data.get("agents", {})
    return {**data, "agents": {**own, **agents} if isinstance(own, dict) else own}


def load_scenario(path: str | Path, *, seed: int | None = None, ticks: int | None = None,
                  paths: tuple[str, ...] = (), agents: dict[str, Any] | None = None) -> Scenario:
    """A scenario file, with `seed` and `ticks` overridden (and checked like the file's);
    `paths`: folders to import user policies from; `agents`: settings of its `agents`
    section to override (`{"hosts": 2}`)."""
    path = Path(path)
    return scenario_of(with_agents(read_yaml(path, "scenario"), agents), str(path),
                       base=path.resolve().parent, seed=seed, ticks=ticks, paths=paths)


def scenario_of(data: Any, source: str, *, base: Path, seed: int | None = None,
                ticks: int | None = None, paths: tuple[str, ...] = (), what: str = "",
                ticks_label: str = "--ticks") -> Scenario:
    """The scenario of a mapping read from `source` (`what`: how errors name it), with
    `seed` and `ticks` overridden, checked like the mapping's own (`ticks_label`: how an
    error names the override)."""
    if isinstance(data, dict) and seed is not None:
        data = {**data, "seed": seed}
    sc = parse_scenario(data, what or source + (" (with --seed)" if seed is not None else ""),
                        paths=paths, base=base)
    sc.source = source
    if ticks is not None:  # shorter than scheduled interventions: those never come
        if type(ticks) is not int or not 1 <= ticks <= MAX_TICKS:
            raise ScenarioError(f"{ticks_label} must be within 1..{MAX_TICKS:,}, got {ticks}")
        sc.ticks = ticks
    return sc


def builtin_dir() -> Path:
    """The scenario library shipped inside the package (`scenarios/` in a checkout is a
    link to it), so `sandbank demo` works after `pip install`."""
    return Path(__file__).resolve().parents[1] / "scenarios"
