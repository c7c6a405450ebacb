"""docs/tutorial.md is a script: every Python block runs, in order, in one namespace, in a
temporary folder (what the tutorial shows works as written)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

import sandbank

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"


def test_tutorial_runs_as_written(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{TUTORIAL}:block{i + 1}", "exec"), ns)
    assert (tmp_path / "runs" / "demo-fee" / "report.html").is_file()
    assert isinstance(ns["table"], pd.DataFrame)


@pytest.mark.parametrize("mode", ["inline", "beside"])
def test_parquet_round_trip(tmp_path, monkeypatch, mode):
    """What the tables hold is what the run did: the metrics equal metrics.csv, the events
    are the log's entries byte for byte, the trades sum to the fills, the agents' balances
    are the ledger's (they sum to the endowments minus fees). Alike whether the replay that
    builds the events and trades ran after the run or beside it, following the log on the
    other core (lab/beside.py)."""
    import csv

    from sandbank.store.sqlite import SQLiteStore

    monkeypatch.setenv("SANDBANK_REPLAY", mode)
    r = sandbank.run("demo", seed=3, ticks=12, out=tmp_path / "r")
    assert r.summary["replay_check"] == ("beside" if mode == "beside" else "in process")
    back = sandbank.load(tmp_path / "r")
    assert back.summary == r.summary
    with open(tmp_path / "r" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    m = back.metrics
    assert len(m) == len(rows) == 12
    for col in ("tick", "fills", "welfare", "events"):
        assert [int(x) for x in m[col]] == [int(row[col]) for row in rows]
    store = SQLiteStore(r.log, readonly=True, create=False)
    entries = list(store.entries())
    store.close()
    ev = back.events
    assert list(ev.seq) == [e.seq for e in entries]
    assert list(ev.kind) == [e.kind for e in entries]
    assert [b.encode() for b in ev.body] == [bytes(e.body) for e in entries]
    t = back.trades
    assert int(t.shape[0]) == r.final["fills"]
    assert (t.price > 0).all() and (t.qty > 0).all() and (t.buyer != t.seller).all()
    a = back.agents
    assert len(a) == r.summary["agents"] + len(sum((g["spawned"] for g in r.summary["groups"]), []))
    assert set(a.group) >= {g["name"] for g in r.summary["groups"]}
    # a buyer's net goods bought equals its change in goods held (no other source of WGT
    # but the endowment and trades in this scenario)
    bought = t.groupby("buyer").qty.sum().sub(t.groupby("seller").qty.sum(), fill_value=0)
    zi = a[a.group == "zi_trader"].set_index("id")
    for aid, row in zi.iterrows():
        assert row.balance_WGT - 500 == int(bought.get(aid, 0))


def test_overrides_are_checked(tmp_path):
    with pytest.raises(sandbank.ScenarioError, match="no 'nonesuch'"):
        sandbank.run("demo", ticks=2, out=tmp_path / "x", nonesuch__key=1)
    with pytest.raises(sandbank.ScenarioError, match="no built-in scenario"):
        sandbank.run("no_such_scenario", out=tmp_path / "y")
    sandbank.run("demo", ticks=2, out=tmp_path / "z")
    with pytest.raises(sandbank.RunError, match="already holds a run"):
        sandbank.run("demo", ticks=2, out=tmp_path / "z")


def test_a_column_mixing_kinds_is_written_as_text(tmp_path):
    """A sweep grid like `key: [false, 300]` gives a column of booleans and numbers, which
    arrow refuses as one type: it is written as JSON text, not lost with the whole table."""
    import pandas as pd

    from sandbank.lab.tables import write_rows

    write_rows([{"x": False, "y": 1}, {"x": 300, "y": ""}, {"x": True, "y": 2.5}],
               tmp_path / "t.parquet")
    t = pd.read_parquet(tmp_path / "t.parquet")
    assert list(t["x"]) == ["false", "300", "true"]
    assert t["y"].isna().tolist() == [False, True, False]
