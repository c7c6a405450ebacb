"""Kill the writer with SIGKILL mid-run: at most the tick being written is lost, and the
log still verifies, replays, and can be continued."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sandbank.economy
from sandbank.audit.verify import verify_log
from sandbank.economy import replay_log
from sandbank.store.sqlite import SQLiteStore

HERE = Path(__file__).parent


def check(path):
    s = SQLiteStore(path, readonly=True, create=False)
    v, r, last = verify_log(s), replay_log(s), s.last_checkpoint()
    s.close()
    assert v.ok, v.problem
    assert r.ok, r.problem
    return last.tick


def test_sigkill_mid_tick_loses_only_the_open_tick_and_the_log_can_continue(tmp_path):
    path = tmp_path / "crash.db"
    proc = subprocess.Popen([sys.executable, str(HERE / "crash_writer.py"), str(path), "new",
                             str(HERE), "trap"], stdout=subprocess.PIPE, text=True)
    committed, open_tick = 0, None
    deadline = time.monotonic() + 120
    while open_tick is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("committed"):
            committed = int(line.split()[1])
        elif line.startswith("mid-tick"):  # inside the tick's transaction: entries written
            open_tick = int(line.split()[1])
        elif not line:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert open_tick is not None and committed >= 8, "the writer never reached the trap"
    assert open_tick == committed + 1
    s = SQLiteStore(path, readonly=True, create=False)
    last = s.last_checkpoint()
    assert last.tick == committed  # nothing acknowledged was lost, the open tick is gone
    assert s.entry_count() == last.size  # not one row of the open tick's entries is left
    s.close()
    assert check(path) == committed

    out = subprocess.run([sys.executable, str(HERE / "crash_writer.py"), str(path), "resume",
                          str(HERE), str(committed + 3)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert check(path) == committed + 3


def test_a_resumed_market_economy_continues_exactly_like_an_uninterrupted_one(tmp_path):
    """Tasks, auctions, orders and halts in flight survive a stop: same log, same root."""
    sys.path.insert(0, str(HERE))
    from conftest import Economy
    from sandbank.markets.auctions import BidAuction, CreateAuction
    from sandbank.markets.exchange import PlaceOrder
    from sandbank.markets.tasks import AwardTask, BidTask, Deliver, PostTask

    def script(tick, start):
        t = tick - start
        acts = [PlaceOrder(actor=1 + t % 3, asset="WGT", side="buy" if t % 2 else "sell",
                           qty=2 + t % 3, price=95 + (t * 7) % 11)]
        if t == 1:
            acts += [PostTask(actor=1, skills={"code": 0}, reward=100, deadline=tick + 30),
                     CreateAuction(actor=2, asset="WGT", quantity=3, format="second_price",
                                   closes=tick + 12)]
        if t == 3:
            acts += [BidTask(actor=2, task=1, price=80), BidAuction(actor=3, auction=1, price=40)]
        if t == 14:
            acts += [AwardTask(actor=1, task=1, bid=1)]
        if t == 16:
            acts += [Deliver(actor=2, contract=1)]
        return acts

    def build(path):
        return Economy(n=3, fund=10_000, store=SQLiteStore(path), assets=("CRD", "WGT"),
                       markets=({"asset": "WGT", "quote": "CRD", "band_bps": 500},),
                       policy={"trade_fee_bps": 30})

    a = build(tmp_path / "a.db")
    start = a.k.tick
    for _ in range(24):
        a.do(*script(a.k.tick + 1, start))
    b = build(tmp_path / "b.db")
    for _ in range(15):  # past the auction's clearing and the award
        b.do(*script(b.k.tick + 1, start))
    b.k.close()
    k = sandbank.economy.resume(SQLiteStore(tmp_path / "b.db"), b.op)
    for _ in range(9):
        for act in script(k.tick + 1, start):
            k.submit(act)
        k.step()
    assert k.state.tasks.tasks[1].status == "passed"
    assert k.state.auctions.auctions[1].status == "cleared"
    assert k.log.store.last_checkpoint().root == a.k.store.last_checkpoint().root
    assert k.state.digest() == a.k.state.digest()
