"""Preference delegation (checklist 55): user-principal agents trade on their users' behalf,
never past their users' preferences, and the outcome Gini is tracked against a bound."""

from __future__ import annotations

import copy
import json

import yaml

from sandbank.lab.runner import run_scenario
from sandbank.lab.scenario import builtin_dir, parse_scenario
from sandbank.store.sqlite import SQLiteStore

DOC = yaml.safe_load((builtin_dir() / "delegation.yaml").read_text())


def test_with_equal_endowments_the_outcome_gini_stays_below_the_bound(tmp_path):
    res = run_scenario(parse_scenario(copy.deepcopy(DOC), "delegation"), tmp_path / "sym")
    assert res.ok, res.summary["success"]
    got = res.summary["success"]["max_gini_outcome_bps"]
    assert got["ok"] and got["actual"] < got["required"] == 1000
    # and the bound is a real test: unequal endowments break it, loudly
    skewed = copy.deepcopy(DOC)
    skewed["population"][1]["endowment"] = {"CRD": 100_000, "WGT": 200}
    res = run_scenario(parse_scenario(skewed, "skewed"), tmp_path / "skewed")
    assert not res.ok and not res.summary["success"]["max_gini_outcome_bps"]["ok"]


def test_a_delegate_never_trades_past_its_users_preference(tmp_path):
    run_scenario(parse_scenario(copy.deepcopy(DOC), "delegation"), tmp_path / "run")
    entries = [json.loads(e.body) for e in
               SQLiteStore(str(tmp_path / "run" / "log.db"), readonly=True).entries()]
    value = {}
    for d in entries:
        if d["kind"] == "agent_registered":
            value[d["agent"]] = 90 if d["name"].startswith("low") else 110
    orders = {}
    fills = 0
    for d in entries:
        if d["kind"] == "order_placed":
            orders[d["order"]] = d["actor"]
            for maker, price, _qty, _ in d["fills"]:
                taker = d["actor"]
                buyer, seller = (taker, orders[maker]) if d["side"] == "buy" else \
                    (orders[maker], taker)
                assert price <= value[buyer] and price >= value[seller], (d, price)
                fills += 1
    assert fills > 10
