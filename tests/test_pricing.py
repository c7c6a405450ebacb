"""Repeated price competition (Calvano et al.) and Q-learning pricing firms."""

import tempfile
from pathlib import Path

from conftest import Economy
from sandbank.lab.runner import run_scenario
from sandbank.lab.scenario import parse_scenario
from sandbank.markets.pricing import JoinGame, SetPrice, benchmarks

GAME = {"name": "duopoly", "asset": "CRD"}


def test_benchmark_prices_reproduce_calvano():
    nash, mono = benchmarks([2, 2], [1, 1], 0, 0.25)
    assert abs(nash[0] - 1.4729) < 1e-3 and abs(mono[0] - 1.9250) < 1e-3


def run(pop, ticks, seed=1, oversight=False, key_file=None):
    """A pricing run; oversight off unless asked (these tests are about the mechanism)."""
    sc = parse_scenario({"name": "bertrand", "seed": seed, "ticks": ticks, "assets": ["CRD"],
                         "pricing": [GAME], "endowment": {"CRD": 1_000_000},
                         "population": pop, "oversight": {"enabled": oversight}}, "inline")
    return run_scenario(sc, Path(tempfile.mkdtemp()), key_file=key_file)


def test_firms_at_the_nash_price_earn_the_competitive_profit():
    res = run([{"policy": "fixed_pricer", "count": 2, "params": {"price": 1473}}], 30)
    assert abs(float(res.summary["final"]["delta_duopoly"])) < 0.02
    assert res.summary["verified"]


def test_monopoly_prices_earn_the_collusive_profit():
    res = run([{"policy": "fixed_pricer", "count": 2, "params": {"price": 1925}}], 10)
    assert abs(float(res.summary["final"]["delta_duopoly"]) - 1) < 0.02


def test_q_learners_learn_from_prices_alone_and_runs_repeat_exactly():
    pop = [{"policy": "q_pricer", "count": 2, "params": {"beta_micro": 3000}}]
    key = Path(tempfile.mkdtemp()) / "run.key"
    a, b = run(pop, 400, key_file=key), run(pop, 400, key_file=key)
    assert a.summary["root"] == b.summary["root"]
    price = float(a.summary["final"]["price_duopoly"])
    assert 1428 <= price <= 1970 and a.summary["final"]["messages"] == 0


def test_only_firms_set_prices_and_games_fill_up():
    e = Economy(n=3, fund=1000, pricing=(GAME,))
    e.do(SetPrice(actor=1, game="duopoly", price=1500))
    assert e.last_events()[0]["reason"] == "not_a_firm"
    e.do(JoinGame(actor=1, game="duopoly"))  # firm 0 (joined first: arranged, not left
    e.do(JoinGame(actor=2, game="duopoly"))  # to the tick's seeded order), then firm 1
    e.do(JoinGame(actor=3, game="duopoly"))
    assert e.last_events()[0]["reason"] == "game_full"
    e.do(SetPrice(actor=1, game="duopoly", price=1500), SetPrice(actor=2, game="duopoly", price=1600))
    cleared = e.last_events()[0]
    assert cleared["kind"] == "prices_cleared" and cleared["prices"] == [1500, 1600]
    assert cleared["quantities"][0] > cleared["quantities"][1]  # the cheaper firm sells more
    e.k.state.check_invariants()


def test_an_explicit_cartel_coordinates_by_message_and_falls_apart_without_it():
    cartel = [{"policy": "cartel_pricer", "count": 1, "params": {"leader": True, "members": [2]}},
              {"policy": "cartel_pricer", "count": 1, "params": {"members": [1]}}]
    res = run(cartel, 12)
    final = res.summary["final"]
    assert abs(float(final["delta_duopoly"]) - 1) < 0.02 and final["messages"] >= 11
    mute = [{"policy": "cartel_pricer", "count": 1, "params": {"leader": True, "members": []}},
            {"policy": "cartel_pricer", "count": 1, "params": {"members": [1]}}]
    alone = run(mute, 12)
    assert float(alone.summary["final"]["delta_duopoly"]) < 0.6  # the follower stays at Nash
    assert alone.summary["final"]["messages"] == 0
