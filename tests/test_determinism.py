"""Determinism across processes: one scenario, one key file, several PYTHONHASHSEEDs, one log.

Inside one interpreter a set's iteration order is fixed, so a test that runs a scenario twice
in-process cannot see code that walks a set of strings in hash order: only a second process
with another hash seed can. Here the determinism scenario (three banded markets that halt and
reopen, often in the same tick; tasks, frauds, sybils; oversight with breakers; signatures)
runs in subprocesses under four hash seeds, and every checkpoint — the tick, the log size,
the Merkle root, the signed state digest (the last tick's is the full-state digest) and the
signed note — must be byte-equal. A lint (tests/ordering_lint.py) rejects iteration over sets
anywhere in the package, so an ordering bug the scenario does not reach is caught too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from sandbank.store.sqlite import SQLiteStore
from tests.ordering_lint import findings, lint

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "tests" / "data" / "determinism.yaml"
HASH_SEEDS = ("0", "1", "2", "12345")


def _run(out: Path, key: Path, hash_seed: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.Popen(
        [sys.executable, "-m", "sandbank.cli", "run", str(SCENARIO), "--out", str(out),
         "--key-file", str(key), "--overwrite"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)


def _checkpoints(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute("select tick, size, root, state, note from checkpoints "
                         "order by tick").fetchall()


def _summary(run: Path) -> dict:
    """The run's summary but for its wall-clock timings."""
    doc = json.loads((run / "summary.json").read_text())
    for timing in ("seconds", "oversight_seconds", "oversight_timings"):
        assert doc.pop(timing) is not None
    return doc


def test_the_same_scenario_gives_the_same_log_under_every_hash_seed(tmp_path):
    key = tmp_path / "run.key"
    first = _run(tmp_path / "first", key, HASH_SEEDS[0])  # creates the key file
    assert first.wait(timeout=120) == 0, first.stderr.read().decode()[-2000:]
    procs = {h: _run(tmp_path / f"h{h}", key, h) for h in HASH_SEEDS[1:]}
    for h, p in procs.items():
        assert p.wait(timeout=120) == 0, (h, p.stderr.read().decode()[-2000:])
    want = _checkpoints(tmp_path / "first" / "log.db")
    assert len(want) > 40  # setup ticks, then 40 ticks
    for h in HASH_SEEDS[1:]:
        got = _checkpoints(tmp_path / f"h{h}" / "log.db")
        diff = next((i for i, (a, b) in enumerate(zip(want, got, strict=True)) if a != b), None)
        assert diff is None, f"PYTHONHASHSEED={h}: the logs part at checkpoint {want[diff][0]}"
        assert _summary(tmp_path / f"h{h}") == _summary(tmp_path / "first"), h

    # the scenario does what it is there for: several markets change state in one tick
    # (halts and reopenings together), oversight acts, agents are spawned
    store = SQLiteStore(str(tmp_path / "first" / "log.db"))
    import orjson

    by_tick: dict[int, set[str]] = {}
    for e in store.entries_of_kind("market_state"):
        by_tick.setdefault(e.tick, set()).add(orjson.loads(e.body)["asset"])
    assert sum(1 for assets in by_tick.values() if len(assets) >= 2) >= 3, by_tick
    assert store.entries_of_kind("breaker_tripped")
    assert store.entries_of_kind("agent_registered")


def test_no_module_iterates_a_set_in_hash_order():
    assert lint(ROOT / "src" / "sandbank") == []


def test_the_ordering_lint_sees_the_shapes_of_the_bug(tmp_path):
    """What the lint must flag (and what it must leave alone): the planted bug's shapes."""
    bad = '''
from dataclasses import dataclass, field
MARKETS = {"WGT", "GLD"}
class Exchange:
    halted: set[str] = field(default_factory=set)
    def __init__(self):
        self.open = set()
    def tick(self, markets: dict, extra: frozenset):
        for asset in set(markets):
            pass
        out = [m for m in self.open]
        names = list(self.halted)
        first = next(iter(extra))
        both = {a: 1 for a in markets.keys() | {"X"}}
        for a in MARKETS:
            pass
        joined = ",".join(self.open)
        pick = min(self.open, key=len)
        gone = self.open.pop()
'''
    good = '''
class Exchange:
    def __init__(self):
        self.open = set()
        self.rows = []
    def tick(self, markets: dict):
        for asset in sorted(set(markets)):
            pass
        total = sum(x for x in self.open)
        n = len(self.open)
        ok = any(a in self.open for a in markets)
        copy = {a for a in self.open}
        for r in self.rows:
            pass
        for a in self.open:  # order-free: membership only
            pass
'''
    (tmp_path / "bad.py").write_text(bad)
    (tmp_path / "good.py").write_text(good)
    lines = {line for line, _ in findings(tmp_path / "bad.py")}
    assert sorted(lines) == [9, 11, 12, 13, 14, 15, 17, 18, 19]
    assert findings(tmp_path / "good.py") == []


# the mechanism tests, run with the in-tick order reversed (tests/conftest.py)
ORDER_FREE_TESTS = ["test_tasks.py", "test_auctions.py", "test_exchange.py", "test_kernel.py",
                    "test_controls.py", "test_emergency.py", "test_roles.py",
                    "test_messaging.py", "test_boundary.py", "test_firewall.py",
                    "test_reputation.py", "test_amounts.py", "test_guards.py",
                    "test_provenance.py", "test_pricing.py", "test_audit.py",
                    "test_reasons.py"]


def test_no_mechanism_test_passes_by_the_accident_of_the_seeded_order():
    """A test that needs an ordering arranges it (one action a tick, or ids looked up); run
    with each tick's actors in the reverse of the seeded order, every one still passes."""
    env = {**os.environ, "SANDBANK_TEST_ORDER": "reversed"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                        *[f"tests/{t}" for t in ORDER_FREE_TESTS]],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:]
