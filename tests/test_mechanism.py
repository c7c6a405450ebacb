"""A mechanism plugs in without a kernel file changing: one written here — its own action,
event, state, guard, tick hook, observation view, visibility and YAML section — runs in a
scenario, and its state is in every signed digest, so verify, replay and the run's own
end-of-run check hold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
import pytest

from sandbank.agents.base import Agent, policy
from sandbank.audit.replay import replay_log
from sandbank.audit.verify import verify_log
from sandbank.economy import STANDARD
from sandbank.kernel.digest import DigestMap
from sandbank.kernel.errors import ConfigError, Reject
from sandbank.kernel.guards import MARKET_DESIGN, Guard
from sandbank.kernel.mechanism import GUARD_RANKS, PUBLIC, Mechanism
from sandbank.kernel.schema import ACTION_TYPES, EVENT_TYPES, SYSTEM, Action, Event
from sandbank.lab.runner import run_scenario
from sandbank.lab.scenario import ScenarioError, parse_scenario
from sandbank.store.sqlite import SQLiteStore


@dataclass(slots=True, kw_only=True)
class RingBell(Action):
    KIND: ClassVar[str] = "ring_bell"
    times: int = 1


@dataclass(slots=True, kw_only=True)
class BellRung(Event):
    KIND: ClassVar[str] = "bell_rung"
    times: int


@dataclass(slots=True, kw_only=True)
class BellsTallied(Event):
    KIND: ClassVar[str] = "bells_tallied"
    total: int


class Bells:
    def __init__(self) -> None:
        self.limit = 0
        self.rung: dict[int, int] = {}
        self.tallies = 0
        self._digest = DigestMap(lambda item: list(item))

    def configure(self, header: Any) -> None:
        self.limit = header.config["bells"]["limit"]

    def apply_rung(self, ev: BellRung, tick: int) -> None:
        self.rung[ev.actor] = self.rung.get(ev.actor, 0) + ev.times
        self._digest.touch(ev.actor, (ev.actor, self.rung[ev.actor]))

    def apply_tallied(self, ev: BellsTallied, tick: int) -> None:
        self.tallies += 1
        self._digest.touch("tallies", ("tallies", self.tallies))

    def digest(self) -> bytes:
        return self._digest.digest()


def ring(k, a: RingBell, tick: int) -> list[Event]:
    if not 1 <= a.times <= 3:
        raise Reject("invalid_field", "times must be within 1..3")
    ev = BellRung(actor=a.actor, times=a.times)
    k.state.apply(ev, tick)
    return [ev]


def bell_guard(k, a: Action):
    b = k.state.bells
    if a.KIND == "ring_bell" and b.rung.get(a.actor, 0) + a.times > b.limit:
        return "bell_limit", f"agent {a.actor} has rung its {b.limit} bells"
    return None


def tally(k, tick: int) -> list[Event]:
    if tick % 5:
        return []
    ev = BellsTallied(actor=SYSTEM, total=sum(k.state.bells.rung.values()))
    k.state.apply(ev, tick)
    return [ev]


def check_bells(values: dict[str, Any], assets: tuple[str, ...]) -> None:
    v = values["bells"]
    if not isinstance(v, dict) or set(v) - {"limit"}:
        raise ConfigError("bells may set only limit")
    if type(v.get("limit")) is not int or v["limit"] < 1:
        raise ConfigError("bells.limit must be an integer >= 1")


BELLS = Mechanism(
    "bells", state=Bells, configure=Bells.configure,
    config={"bells": {"limit": 3}}, check_config=check_bells, sections={"bells": "bells"},
    handlers={"ring_bell": ring},
    appliers={BellRung: lambda s: s.bells.apply_rung,
              BellsTallied: lambda s: s.bells.apply_tallied},
    guards=((GUARD_RANKS["risk"], Guard("bell_limit", MARKET_DESIGN, bell_guard,
                                        "no agent rings more than its bells")),),
    tick_end=((100, tally),),
    views=lambda k: lambda agent: {"bells": k.state.bells.rung.get(agent, 0)},
    visibility={"bell_rung": PUBLIC, "bells_tallied": PUBLIC},
)


@pytest.fixture
def bells():
    """The mechanism's kinds registered with the schema for this test only (the guard tests
    walk every registered kind)."""
    ACTION_TYPES["ring_bell"], EVENT_TYPES["bell_rung"] = RingBell, BellRung
    EVENT_TYPES["bells_tallied"] = BellsTallied

    @policy("bell_ringer")
    class Ringer(Agent):
        seen: ClassVar[list[int]] = []

        def act(self, obs):
            Ringer.seen.append(obs.extra["bells"])
            return [RingBell(actor=self.id, times=1)]

    yield Ringer
    for table, kinds in ((ACTION_TYPES, ["ring_bell"]), (EVENT_TYPES, ["bell_rung",
                                                                      "bells_tallied"])):
        for kind in kinds:
            table.pop(kind)


SCENARIO = {"name": "bells", "seed": 3, "ticks": 12, "bells": {"limit": 4},
            "population": [{"policy": "bell_ringer", "count": 3}]}


def test_a_mechanism_written_outside_the_kernel_runs_in_a_scenario(bells, tmp_path):
    sc = parse_scenario(SCENARIO, "inline", mechanisms=(BELLS,))
    res = run_scenario(sc, tmp_path / "run")
    assert res.summary["verified"], res.summary
    store = SQLiteStore(tmp_path / "run" / "log.db", readonly=True, create=False)
    bodies = [orjson.loads(e.body) for e in store.entries()]
    header = bodies[0]
    assert header["config"]["bells"] == {"limit": 4}  # its section, in the signed header
    assert header["safeguards"]["bell_limit"]["enabled"] is True
    rung = [d for d in bodies if d["kind"] == "bell_rung"]
    refused = [d for d in bodies if d["kind"] == "rejected" and d["reason"] == "bell_limit"]
    assert len(rung) == 3 * 4 and len(refused) == 3 * (12 - 4)  # each rings 4, then refused
    assert all("blind" not in d for d in rung)  # public, as it declares
    tallies = [(d["tick"], d["total"]) for d in bodies if d["kind"] == "bells_tallied"]
    assert tallies and all(t % 5 == 0 for t, _ in tallies)  # its tick-end hook, every 5th
    assert [n for _, n in tallies] == [sum(d["times"] for d in rung if d["tick"] <= t)
                                       for t, _ in tallies]
    assert bells.seen[:3] == [0, 0, 0] and max(bells.seen) == 4  # what the view shows
    assert verify_log(store).ok
    assert not replay_log(store, ()).ok  # without it, its events have no state to fold into
    rp = replay_log(store, (*STANDARD, BELLS))
    assert rp.ok and rp.state.bells.rung == {a: 4 for a in rp.state.bells.rung}
    store.close()


def test_its_yaml_section_is_checked_by_the_mechanism_naming_the_key(bells):
    with pytest.raises(ScenarioError, match=r"inline: bells\.limit must be an integer >= 1"):
        parse_scenario({**SCENARIO, "bells": {"limit": 0}}, "inline", mechanisms=(BELLS,))
    with pytest.raises(ScenarioError, match=r"unknown key 'bell' in the scenario \(did you mean "
                                            r"'bells'\?\)"):
        parse_scenario({**{k: v for k, v in SCENARIO.items() if k != "bells"},
                        "bell": {"limit": 2}}, "inline", mechanisms=(BELLS,))
    with pytest.raises(ScenarioError, match="unknown key 'bells'"):  # not in this economy
        parse_scenario(SCENARIO, "inline")
    sc = parse_scenario({k: v for k, v in SCENARIO.items() if k != "bells"}, "inline",
                        mechanisms=(BELLS,))
    assert sc.kernel_config().bells == {"limit": 3}  # its default


# ---------------------------------------------------------------- what the protocol refuses
def test_each_standard_mechanism_requires_every_part_of_the_state_it_reads():
    """`requires` is checked when a kernel is built: it must name every other mechanism
    whose state part a mechanism's module reads (`state.<name>`, or `s.<name>` in a fold)."""
    import inspect
    import re
    import sys

    names = {m.name for m in STANDARD}
    missing = {}
    for m in STANDARD:
        module = sys.modules[next(iter(m.handlers.values())).__module__]
        read = set(re.findall(r"\b(?:state|s)\.(\w+)", inspect.getsource(module))) & names
        if read - {m.name} - set(m.requires):
            missing[m.name] = sorted(read - {m.name} - set(m.requires))
    assert not missing


def test_a_mechanism_guard_cannot_run_before_identity():
    from sandbank.economy import assembly
    from sandbank.kernel.mechanism import MechanismError

    early = Mechanism("early", guards=((50, Guard("early", MARKET_DESIGN, bell_guard, "")),))
    with pytest.raises(MechanismError, match=r"guards \['early'\] rank at or before"):
        assembly((*STANDARD, early))
    with pytest.raises(ValueError, match=r"\['principal'\] need a state"):
        Mechanism("who", principal=lambda part, actor: None)
    from sandbank.kernel.state import EconomyState

    with pytest.raises(MechanismError, match="may not be named 'ledger'"):
        EconomyState((Mechanism("ledger", state=dict),))
    with pytest.raises(MechanismError, match=r"mechanism bells needs \['nowhere'\]"):
        assembly((*STANDARD, Mechanism("bells", requires=("nowhere",))))


def test_an_action_no_mechanism_here_handles_is_nobodys_malformed_act(bells):
    """Kinds are registered per process, handlers per economy: an economy without bells
    refuses a bell before any guard (no nonce consumed), as nobody's act."""
    from conftest import Economy

    e = Economy(n=2, verify_signatures=True)
    e.k.submit(RingBell(actor=1, times=1).signed(e.keys[1], 1))
    s = e.k.step()
    last = e.k.log.last_committed[-1]
    assert (s.rejected, s.reasons) == (1, {"malformed_action": 1})
    assert (last["actor"], last["reason"]) == (-1, "malformed_action")
    assert "no mechanism of this economy handles 'ring_bell'" in last["message"]
    assert e.k.state.registry.agents[1].nonce == 0
