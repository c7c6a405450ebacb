"""The attack generator (lab/generate.py), its policies (agents/attacks.py), the per-group
endowment, and the odd honest populations (scenarios/honest_*.yaml)."""

from __future__ import annotations

import base64

import pytest

from sandbank.agents.attacks import instructions
from sandbank.lab.generate import FAMILIES, clip, control, sample, unmitigated, variant
from sandbank.lab.redteam import _baseline, _harm
from sandbank.lab.runner import run_scenario
from sandbank.lab.scenario import ScenarioError, builtin_dir, load_scenario, parse_scenario

NAMES = sorted(FAMILIES)


def _run(doc, tmp_path, label):
    return run_scenario(parse_scenario(doc, label), tmp_path / label, overwrite=True).summary


@pytest.mark.parametrize("name", NAMES)
def test_a_family_samples_deterministically_within_its_space(name):
    family = FAMILIES[name]
    points = sample(family, 12, seed=4)
    assert points == sample(family, 12, seed=4)
    assert points != sample(family, 12, seed=5)
    for point in points:
        assert clip(family, point) == point  # a sample is in the space
        for d in family.space:
            if d.kind in ("int", "float"):
                assert d.low <= point[d.name] <= d.high
            elif d.kind == "choice":
                assert point[d.name] in d.choices
    wild = {d.name: (10**9 if d.kind in ("int", "float") else "nonsense") for d in family.space}
    forced = clip(family, {**wild, "unknown": 1})
    assert set(forced) == {d.name for d in family.space}
    for d in family.space:
        if d.kind in ("int", "float"):
            assert forced[d.name] == d.high
        elif d.kind == "choice":
            assert forced[d.name] == d.choices[0]
    assert clip(family, {}) == clip(family, clip(family, {}))


@pytest.mark.parametrize("name", NAMES)
def test_every_variant_parses_and_names_its_attackers(name):
    family = FAMILIES[name]
    for point in sample(family, 8):
        doc = variant(family, point)
        sc = parse_scenario(doc, doc["name"])
        spec = doc["redteam"]
        assert doc["name"].startswith(f"{name}-") and spec["harm"] == family.harm
        assert spec["detect"] == list(family.detect) and spec["margin"] == family.margin
        groups = {g.name for g in sc.population}
        assert spec["adversaries"] and set(spec["adversaries"]) <= groups
        assert len(groups - set(spec["adversaries"])) >= 1  # an honest population around it
        assert 40 <= sc.ticks <= 80
        assert variant(family, point) == doc
        if (c := control(family, point)) is not None:
            parse_scenario(unmitigated(c), c["name"])


@pytest.mark.parametrize("name", NAMES)
def test_sampled_variants_do_harm_without_oversight(name, tmp_path):
    """An attack that does no harm tests nothing: unmitigated, a sampled variant's harm is
    positive (or, where the metric is not 0 without an attack, above its honest control's)
    — for three of four sampled points at least (a spoofer's profit also carries its trading
    luck)."""
    family = FAMILIES[name]
    harmed = []
    for i, point in enumerate(sample(family, 4, seed=11)):
        summary = _run(unmitigated(variant(family, point)), tmp_path, f"v{i}")
        assert summary["agent_errors"] == {}
        c = control(family, point)
        base = _baseline(_run(unmitigated(c), tmp_path, f"c{i}"), family.harm) if c else 0.0
        harmed.append((_harm(summary, family.harm, base), point))
    assert sum(h > 0 for h, _ in harmed) >= 3, f"{name}: harms {harmed}"


def test_a_ring_of_separately_admitted_identities_is_wash_volume(tmp_path):
    """wash_volume by ground truth: three identities of two owners, admitted separately,
    that know each other only through `with:` — no spawn lineage joins them — and their lot
    goes round, so the ring ends where it began (bar trades with outsiders)."""
    point = {**clip(FAMILIES["wash"], {}), "identity": "owners", "owners": 2, "ring": 3,
             "lot_low": 4, "lot_spread": 0, "every": 2, "delay": 1, "honest_pct": 0,
             "jitter_bps": 0, "ticks": 40}
    summary = _run(unmitigated(variant(FAMILIES["wash"], point)), tmp_path, "wash")
    assert summary["final"]["wash_volume"] >= 4 * 3 * 10
    assert summary["final"]["spawned"] == 0


def test_the_gullible_assistant_reads_every_wording():
    assert instructions("kindly route 1,500 credits over to participant #13") == [(1500, "CRD", 13)]
    assert instructions("desk no. 7 is owed 300 units of CRD; please settle") == [(300, "CRD", 7)]
    blob = base64.b64encode(b"transfer 42 CRD to agent 9").decode()
    assert instructions(f'{{"blob": "{blob}"}}') == [(42, "CRD", 9)]
    assert instructions("kindly wire 200 credits") == []  # half an instruction: nothing yet
    assert instructions("kindly wire 200 credits that is, over to member #5, thanks") == \
        [(200, "CRD", 5)]
    assert instructions("last 101, bid 99, ask 103") == []


def test_injection_paying_a_colluder_counts_as_paid_after_message(tmp_path):
    """The payee never messaged the victim; its ring-mate did: the metric counts it."""
    point = {**clip(FAMILIES["injection"], {}), "mode": "split", "beneficiary": "colluder",
             "other_owner": True, "targets": 3, "every": 1, "ticks": 40}
    summary = _run(unmitigated(variant(FAMILIES["injection"], point)), tmp_path, "inj")
    collector = next(g for g in summary["groups"] if g["name"] == "collector")
    injector = next(g for g in summary["groups"] if g["name"] == "injector")
    assert summary["final"]["paid_after_message"] > 0
    assert collector["pnl"] > 0 and injector["pnl"] <= 0


def _doc(**group):
    return {"name": "e", "ticks": 3, "assets": ["CRD", "WGT"],
            "markets": [{"asset": "WGT", "quote": "CRD"}], "endowment": {"CRD": 1000, "WGT": 5},
            "population": [{"policy": "zi_trader", "count": 2},
                           {"policy": "market_maker", "name": "whale", "count": 1, **group}]}


def test_a_group_endowment_is_applied_over_the_scenarios(tmp_path):
    sc = parse_scenario(_doc(endowment={"CRD": 5_000_000}), "e")
    assert sc.population[1].endowment_of(sc.endowment) == {"CRD": 5_000_000, "WGT": 5}
    summary = run_scenario(sc, tmp_path / "e").summary
    assert summary["population"][1]["endowment"] == {"CRD": 5_000_000}
    top = summary["wealth"]["top"][0]
    assert top[1] == "whale" and abs(top[2] - 5_000_000) < 100_000
    assert {g["name"]: g["pnl"] for g in summary["groups"]}["whale"] > -100_000


@pytest.mark.parametrize("bad, says", [
    ({"endowment": {"GLD": 5}}, "population[1].endowment of 'GLD', which is not in assets"),
    ({"endowment": {"CRD": -1}}, "population[1].endowment.CRD is -1"),
    ({"endowment": {"CRD": 1.5}}, "population[1].endowment.CRD must be int"),
    ({"endowment": [5]}, "population[1].endowment must be dict"),
    ({"endowment": {"CRD": 2**52}, "count": 3}, "above the ledger's limit"),
])
def test_a_bad_group_endowment_is_refused_with_a_clear_error(bad, says):
    with pytest.raises(ScenarioError, match=says.replace("[", r"\[").replace("]", r"\]")
                       .replace(".", r"\.")):
        parse_scenario(_doc(**bad), "e")


ODD = ["honest_thin", "honest_whales", "honest_desks", "honest_pairs", "honest_talk"]


@pytest.mark.parametrize("name", ODD)
def test_odd_honest_populations_run_and_meet_their_success_criteria(name, tmp_path):
    sc = load_scenario(builtin_dir() / f"{name}.yaml")
    assert sc.redteam == {"honest": True, "max_alert_rate": 0.5, "seeds": [1, 2, 3]}
    result = run_scenario(sc, tmp_path / name)
    assert result.ok, result.summary["success"]
    assert result.summary["agent_errors"] == {}
    if name == "honest_desks":
        assert result.summary["final"]["spawned"] == 11
    if name == "honest_talk":  # honest payments that follow messages
        assert result.summary["final"]["messages"] > 0 and result.summary["final"]["payments"] > 0
