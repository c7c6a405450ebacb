"""The cost of the full-state digest (issue 12): a population of zero-intelligence traders,
every agent acting every tick, at 1,000 and 10,000 agents. After the given ticks it times,
on the same state, the incremental state digest a checkpoint signs every tick (over the
records events touched, with nothing touched: its floor) and the full-state digest
(`EconomyState.full_digest`: every part walked from the live state, the transfer history
included), medians of --repeat. The full digest's cost grows with the history kept in memory
(every transfer ever made, for idempotency), so it is reported at two run lengths.

    .venv/bin/python bench/bench_digest.py [--sizes 1000,10000] [--ticks 10,40] [--repeat 5]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time


def economy(agents: int):
    from sandbank.identity.keys import RunSecret
    from sandbank.lab.runner import LabEconomy
    from sandbank.lab.scenario import parse_scenario
    from sandbank.store.sqlite import SQLiteStore

    sc = parse_scenario({
        "name": f"digest-{agents}", "seed": 1, "ticks": 1000, "assets": ["CRD", "WGT"],
        "markets": [{"asset": "WGT", "quote": "CRD"}],
        "endowment": {"CRD": 10_000_000, "WGT": 1_000},
        "population": [{"policy": "zi_trader", "count": agents}],
        "safeguards": {"max_actions_per_actor_per_tick": 100, "max_agents_per_owner": 100_000},
        "oversight": {"enabled": False},
    }, "bench")
    return LabEconomy(sc, SQLiteStore(":memory:"), RunSecret.generate())


def timed(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--ticks", default="10,40", help="measure after these many run ticks")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    for n in [int(x) for x in args.sizes.split(",")]:
        econ = economy(n)
        state = econ.k.state
        done, tick_seconds = 0, []
        for at in [int(x) for x in args.ticks.split(",")]:
            while done < at:
                t0 = time.perf_counter()
                econ.step()
                tick_seconds.append(time.perf_counter() - t0)
                done += 1
            inc = timed(state.digest, args.repeat)
            full = timed(functools.partial(state.full_digest, econ.k.tick), args.repeat)
            tick = statistics.median(tick_seconds)
            print(f"{n:>6} agents, after {at:>3} ticks ({state.ledger.transfer_count:,} transfers, "
                  f"{len(state.exchange.orders):,} resting orders): tick {tick * 1000:7.1f} ms; "
                  f"incremental digest {inc * 1000:6.2f} ms; full-state digest "
                  f"{full * 1000:7.1f} ms ({full / tick:.0%} of a tick)")


if __name__ == "__main__":
    main()
