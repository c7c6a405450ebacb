"""Market benchmarks (issue 3): order-book operations per second (a mix of resting limit
orders, cancels and crossing orders) and task-contract lifecycles per second, with the
audit log written to a SQLite file. Prints medians of --repeat runs.

    .venv/bin/python bench/bench_markets.py [--ops 100000] [--tasks 5000] [--repeat 3]

Only the kernel is timed (submit -> guards -> mechanism -> settlement -> log -> commit);
generating the actions between ticks is not.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.keys

from conftest import Economy  # noqa: E402
from sandbank.markets.exchange import CancelOrder, PlaceOrder  # noqa: E402
from sandbank.markets.tasks import AwardTask, BidTask, Deliver, PostTask  # noqa: E402
from sandbank.store.sqlite import SQLiteStore  # noqa: E402

AGENTS = 100
PER_TICK = 5_000


def fresh(path: Path, **cfg) -> Economy:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return Economy(n=AGENTS, fund=10**12, store=SQLiteStore(path),
                   max_actions_per_actor_per_tick=10**6, **cfg)


MIXES = {  # shares of (cancel, crossing order); the rest are resting limit orders
    "typical": (0.45, 0.10),  # exchanges see mostly adds and cancels
    "fill-heavy": (0.25, 0.25),
}


def orderbook(n_ops: int, path: Path, seed: int, mix_name: str = "typical") -> tuple[float, dict[str, int]]:
    p_cancel, p_cross = MIXES[mix_name]
    e = fresh(path, assets=("CRD", "WGT"), markets=({"asset": "WGT", "quote": "CRD"},),
              policy={"trade_fee_bps": 5})
    rng = random.Random(seed)
    done, elapsed = 0, 0.0
    mix = {"rest": 0, "cancel": 0, "cross": 0}
    while done < n_ops:
        orders = list(e.k.state.exchange.orders.values())
        rng.shuffle(orders)
        batch = []
        for _ in range(PER_TICK):
            roll = rng.random()
            agent = rng.randint(1, AGENTS)
            if roll < p_cancel and orders:
                o = orders.pop()
                batch.append(CancelOrder(actor=o.agent, order=o.id))
                mix["cancel"] += 1
            elif roll < p_cancel + p_cross:
                buy = rng.random() < 0.5
                batch.append(PlaceOrder(actor=agent, asset="WGT", side="buy" if buy else "sell",
                                        qty=rng.randint(1, 5), price=110 if buy else 90))
                mix["cross"] += 1
            else:
                buy = rng.random() < 0.5
                batch.append(PlaceOrder(actor=agent, asset="WGT", side="buy" if buy else "sell",
                                        qty=rng.randint(1, 20),
                                        price=rng.randint(90, 99) if buy else rng.randint(101, 110)))
                mix["rest"] += 1
        t0 = time.perf_counter()
        for a in batch:
            e.k.submit(a)
        e.k.step()
        elapsed += time.perf_counter() - t0
        done += len(batch)
    fills = sum(1 for x in e.k.store.entries() if x.kind == "order_placed" and b'"fills":[[' in x.body)
    mix["orders_with_fills"] = fills
    e.k.state.check_invariants()
    e.k.close()
    return done / elapsed, mix


def tasks(n_tasks: int, path: Path) -> float:
    e = fresh(path, skills={i: {"code": 2} for i in range(1, AGENTS + 1)})  # always solvable
    tm = e.k.state.tasks
    posted = awarded = 0
    elapsed = 0.0
    per_tick = 1_000
    while True:
        batch = []
        open_ = [t for t in tm.tasks.values() if t.status == "open"]
        for t in open_:
            if t.bids:
                batch.append(AwardTask(actor=t.requester, task=t.id, bid=min(t.bids)))
            else:
                batch.append(BidTask(actor=t.requester % AGENTS + 1, task=t.id, price=50))
        for t in tm.tasks.values():
            if t.status == "awarded" and tm.contracts[t.contract].status == "open":
                batch.append(Deliver(actor=tm.contracts[t.contract].worker, contract=t.contract))
        if posted < n_tasks:
            for i in range(per_tick):
                batch.append(PostTask(actor=i % AGENTS + 1, skills={"code": 0}, reward=100,
                                      deadline=e.k.tick + 50))
            posted += per_tick
        if not batch:
            break
        t0 = time.perf_counter()
        for a in batch:
            e.k.submit(a)
        e.k.step()
        elapsed += time.perf_counter() - t0
    awarded = sum(1 for t in tm.tasks.values() if t.status == "passed")
    assert awarded == posted, (awarded, posted)
    e.k.state.check_invariants()
    e.k.close()
    return awarded / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=100_000)
    ap.add_argument("--tasks", type=int, default=5_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    path = Path(tempfile.mkdtemp(prefix="sandbank-bench-")) / "markets.db"
    for mix in MIXES:
        runs = [orderbook(args.ops, path, seed, mix) for seed in range(args.repeat)]
        rates = [r for r, _ in runs]
        print(f"order-book ops/s, {mix:<10} (log on): median {statistics.median(rates):>9,.0f} "
              f"(runs: {', '.join(f'{r:,.0f}' for r in rates)}; one run's ops: {runs[0][1]})")
    rates = [tasks(args.tasks, path) for _ in range(args.repeat)]
    print(f"task lifecycles/s (log on):               median {statistics.median(rates):>9,.0f} "
          f"(post, bid, award, deliver, validate, pay; runs: "
          f"{', '.join(f'{r:,.0f}' for r in rates)})")


if __name__ == "__main__":
    main()
