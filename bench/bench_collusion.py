"""Tacit collusion without communication (Calvano et al. 2020), inside the economy: two
Q-learning pricing firms in the baseline logit duopoly, every price and profit settled by the
ledger and logged. Reports the mean price and Calvano's profit gain Δ over the last 1,000
periods (0: Bertrand–Nash, 1: joint monopoly), next to two firms fixed at the Nash price.

    .venv/bin/python bench/bench_collusion.py [--periods 20000] [--beta-micro 400] [--seeds 1,2,3]

β is far larger than Calvano's 4e-6 so that a run takes seconds, not hours; expect less
collusion than the paper's ~0.85 at this short horizon.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from sandbank.lab.runner import run_scenario
from sandbank.lab.scenario import parse_scenario


def run(pop, periods: int, seed: int) -> tuple[float, float, float]:
    sc = parse_scenario({"name": "bertrand", "seed": seed, "ticks": periods, "assets": ["CRD"],
                         "pricing": [{"name": "duopoly", "asset": "CRD"}],
                         "endowment": {"CRD": 1_000_000}, "population": pop}, "bench")
    out = Path(tempfile.mkdtemp(prefix="sandbank-collusion-"))
    t0 = time.perf_counter()
    run_scenario(sc, out)
    dt = time.perf_counter() - t0
    rows = list(csv.DictReader(open(out / "metrics.csv")))[-1000:]
    price = sum(float(r["price_duopoly"]) for r in rows) / len(rows)
    delta = sum(float(r["delta_duopoly"]) for r in rows) / len(rows)
    return price, delta, dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--periods", type=int, default=20_000)
    ap.add_argument("--beta-micro", type=int, default=400)
    ap.add_argument("--seeds", default="1,2,3")
    args = ap.parse_args()
    price, delta, _ = run([{"policy": "fixed_pricer", "count": 2}], 2_000, 1)
    print(f"Nash-price firms:  mean price {price / 1000:.4f}, Δ {delta:+.3f}")
    for seed in [int(s) for s in args.seeds.split(",")]:
        price, delta, dt = run([{"policy": "q_pricer", "count": 2,
                                 "params": {"beta_micro": args.beta_micro}}], args.periods, seed)
        print(f"Q-learners seed {seed}: mean price {price / 1000:.4f}, Δ {delta:+.3f} "
              f"({args.periods:,} periods in {dt:.1f} s)")


if __name__ == "__main__":
    main()
