"""Oversight cost per tick (issue 5): the monitor (indicators, every detector, breakers) on a
population of zero-intelligence traders, every agent acting every tick, at 1,000 and 10,000
agents. Reports the monitor's time per tick, the events per tick it read, and the growth
exponent log(cost ratio) / log(events ratio) — 1.0 is linear.

    .venv/bin/python bench/bench_oversight.py [--sizes 1000,10000] [--ticks 30] [--repeat 3]

Each run is a fresh process (bench_lab.one); medians over --repeat. Per component too, and
the reference: grouping the tick's events by kind (`tickview`) — work that is linear by
construction, so its exponent shows what the machine (caches, allocation) adds at scale.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

LAB = Path(__file__).with_name("bench_lab.py")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--ticks", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    results = []
    for n in [int(x) for x in args.sizes.split(",")]:
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, str(LAB), "--one", str(n), "--ticks",
                                  str(args.ticks)], capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        per_tick = statistics.median(r["oversight_seconds"] for r in runs) / args.ticks
        events = statistics.median(r["entries"] for r in runs) / args.ticks
        share = statistics.median(r["oversight_seconds"] / r["seconds"] for r in runs)
        parts = {name: statistics.median(r["oversight_timings"].get(name, 0.0) for r in runs)
                 for name in runs[0]["oversight_timings"]}
        results.append((n, per_tick, events, parts))
        print(f"{n:>6} agents: oversight {per_tick * 1000:8.1f} ms/tick for {events:,.0f} events/tick "
              f"({per_tick / events * 1e6:.2f} µs/event; {share:.0%} of the run)")
    for (n0, c0, e0, p0), (n1, c1, e1, p1) in zip(results, results[1:], strict=False):
        grow = math.log(e1 / e0)
        print(f"growth {n0} -> {n1} agents: cost ×{c1 / c0:.2f} for events ×{e1 / e0:.2f}: "
              f"exponent {math.log(c1 / c0) / grow:.2f}")
        for name in sorted(p0, key=lambda k: -p1.get(k, 0)):
            if p0[name] > 0 and p1.get(name, 0) > 0:
                print(f"  {name:>20}: {p1[name] / args.ticks * 1000:7.1f} ms/tick at {n1}, "
                      f"exponent {math.log(p1[name] / p0[name]) / grow:.2f}")


if __name__ == "__main__":
    main()
