"""Population scale (issue 4): a scenario of zero-intelligence traders, every agent acting
every tick, with the audit log on. Reports ticks/s, agent-actions/s and peak memory at each
population size. Target: 1,000 agents × 100 ticks in under 20 s, cost per tick linear in
active agents.

    .venv/bin/python bench/bench_lab.py [--sizes 100,1000,10000] [--ticks 100] [--oversight off]

Each size runs in a fresh process so peak memory is per run.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one(agents: int, ticks: int, oversight: bool = True) -> dict[str, float]:
    from sandbank.lab.runner import run_scenario
    from sandbank.lab.scenario import parse_scenario

    sc = parse_scenario({
        "name": f"scale-{agents}", "seed": 1, "ticks": ticks, "assets": ["CRD", "WGT"],
        "markets": [{"asset": "WGT", "quote": "CRD"}],
        "endowment": {"CRD": 10_000_000, "WGT": 1_000},
        "population": [{"policy": "zi_trader", "count": agents}],
        "safeguards": {"max_actions_per_actor_per_tick": 100, "max_agents_per_owner": 100_000},
        "oversight": {"enabled": oversight},
    }, "bench")
    out = Path(tempfile.mkdtemp(prefix="sandbank-scale-"))
    t0 = time.perf_counter()
    res = run_scenario(sc, out)
    dt = time.perf_counter() - t0
    import csv

    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    actions = sum(int(r["accepted"]) + int(r["rejected"]) for r in rows)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    side_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the replay beside
    return {"agents": agents, "ticks": ticks, "seconds": round(dt, 2),
            "ticks_per_s": round(ticks / dt, 2), "actions_per_s": round(actions / dt),
            "actions": actions, "peak_mb": round(peak_mb), "side_mb": round(side_mb),
            "replay": res.summary["replay_check"], "entries": res.summary["entries"],
            "oversight_seconds": res.summary["oversight_seconds"],
            "oversight_timings": res.summary["oversight_timings"]}


def exponent(xs: list[float], ys: list[float]) -> float:
    """The slope of log y against log x (least squares): y grows as x to this power."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum(
        (a - mx) ** 2 for a in lx)


def run_one(agents: int, ticks: int, oversight: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", str(agents), "--ticks", str(ticks),
                          "--oversight", oversight], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{r['agents']:>6} agents × {r['ticks']} ticks: {r['seconds']:>7.2f} s, "
          f"{r['ticks_per_s']:>7.2f} ticks/s, {r['actions_per_s']:>7,} actions/s "
          f"({r['actions']:,} actions, {r['entries']:,} log entries), peak {r['peak_mb']} MB "
          f"(+{r['side_mb']} MB: the replay {r['replay']}), "
          f"oversight {r['oversight_seconds']:.2f} s", flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--ticks", type=int, default=100)
    ap.add_argument("--tick-counts", default="",
                    help="also run the first size at these tick counts (e.g. 50,100,200): the "
                         "growth exponent in ticks")
    ap.add_argument("--oversight", choices=["on", "off"], default="on",
                    help="run the oversight monitor every tick (default: on)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.ticks, args.oversight == "on")))
        return
    sizes = [int(x) for x in args.sizes.split(",")]
    runs = [run_one(n, args.ticks, args.oversight) for n in sizes]
    if len(runs) > 1:
        print(f"growth exponent in agents: {exponent(sizes, [r['seconds'] for r in runs]):.2f} "
              f"(time ∝ agents^k; 1 is linear)")
    if args.tick_counts:
        counts = [int(x) for x in args.tick_counts.split(",")]
        by_ticks = [run_one(sizes[0], t, args.oversight) for t in counts]
        print(f"growth exponent in ticks: "
              f"{exponent(counts, [r['seconds'] for r in by_ticks]):.2f} at {sizes[0]} agents")


if __name__ == "__main__":
    main()
