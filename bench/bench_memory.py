"""Memory in run length (issues 18 and 20): does a running economy's memory stay flat as it
runs, or grow with every tick? A scenario of zero-intelligence traders (every agent acting
every tick, oversight and the log on) is stepped past a warm-up long enough to fill every
window (detectors, histories); then the Python heap is measured (tracemalloc, after a full
collection) every `--every` ticks, and the slope of a least-squares line through those
samples (the first one interval after tracing starts) is the growth per tick. What grows is
named: the lines of sandbank's code that hold the memory added between the first and the
last sample.

    .venv/bin/python bench/bench_memory.py [--agents 300] [--warmup 120] [--ticks 120]
                                           [--every 20] [--limit 8]

Exit 1 when the growth exceeds `--limit` bytes per agent per tick (memory "flat in run
length" means only what the log stores on disk may grow). The heap, not RSS: RSS moves with
the allocator's arenas and is too noisy to fit a slope to at this size. tracemalloc slows the
run about threefold, so the sizes are small; the growth per agent-tick does not depend on
them much (check with two sizes).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path


def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def series_size(rows) -> int:
    """Bytes of the run's metric series (one row a tick: the run's output, written to
    metrics.parquet at the end), which grows with ticks whatever the population."""
    return sum(sys.getsizeof(r) + sum(sys.getsizeof(v) for v in r.values()) for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=120,
                    help="ticks before the first sample (past the first full digest, at "
                         "tick 100, whose type caches are made once)")
    ap.add_argument("--ticks", type=int, default=120, help="ticks measured after the warm-up")
    ap.add_argument("--every", type=int, default=20, help="ticks between samples")
    ap.add_argument("--limit", type=float, default=8.0,
                    help="bytes per agent per tick above which memory is not flat (exit 1)")
    ap.add_argument("--top", type=int, default=12, help="growing lines to name")
    args = ap.parse_args()
    if min(args.agents, args.ticks, args.every) < 1 or args.ticks < 2 * args.every:
        print("--agents, --every >= 1 and --ticks >= 2 × --every", file=sys.stderr)
        return 2

    from sandbank.identity.keys import RunSecret
    from sandbank.lab.runner import LabEconomy
    from sandbank.lab.scenario import parse_scenario
    from sandbank.store.sqlite import SQLiteStore

    total = args.warmup + args.ticks
    sc = parse_scenario({
        "name": f"memory-{args.agents}", "seed": 1, "ticks": total, "assets": ["CRD", "WGT"],
        "markets": [{"asset": "WGT", "quote": "CRD"}],
        "endowment": {"CRD": 10_000_000, "WGT": 1_000},
        "population": [{"policy": "zi_trader", "count": args.agents}],
        "safeguards": {"max_actions_per_actor_per_tick": 100, "max_agents_per_owner": 100_000},
    }, "bench")
    folder = Path(tempfile.mkdtemp(prefix="sandbank-memory-"))
    econ = LabEconomy(sc, SQLiteStore(folder / "log.db"), RunSecret.generate())
    t0 = time.perf_counter()
    # traced from the start: traced only from the warm-up's end, every window would seem to
    # grow while its untraced entries are replaced by traced ones (a window's whole length)
    tracemalloc.start(1)
    for _ in range(args.warmup):
        econ.step()
    xs, ys, snaps, rows = [], [], [], []
    for t in range(args.ticks + 1):
        if t % args.every == 0:
            gc.collect()
            xs.append(float(t))
            series = series_size(econ.metrics.rows)
            ys.append(float(tracemalloc.get_traced_memory()[0] - series))
            rows.append(float(series))
            snaps.append(tracemalloc.take_snapshot())
            print(f"  tick {args.warmup + t:>5}: heap {ys[-1] / 1e6:8.2f} MB", file=sys.stderr)
        if t < args.ticks:
            econ.step()
    econ.close()
    per_tick = slope(xs, ys)
    per_agent_tick = per_tick / args.agents
    print(f"{args.agents} agents, ticks {args.warmup}..{total}: heap grows "
          f"{per_tick / 1e3:,.1f} KB per tick = {per_agent_tick:,.1f} B per agent per tick "
          f"(limit {args.limit:g}); {time.perf_counter() - t0:.0f} s")
    print(f"besides, the run's metric series: {slope(xs, rows) / 1e3:,.2f} KB per tick "
          f"(one row a tick, whatever the population; its output, kept to the end)")
    print("what grew (the lines holding the memory added over the samples):")
    for st in snaps[-1].compare_to(snaps[0], "lineno")[:args.top]:
        if st.size_diff <= 0:
            break
        frame = st.traceback[0]
        print(f"  {st.size_diff / 1e3:10,.0f} KB  {st.count_diff:>+9,} blocks  "
              f"{frame.filename.split('src/')[-1].split('site-packages/')[-1]}:{frame.lineno}")
    return 1 if per_agent_tick > args.limit else 0


if __name__ == "__main__":
    sys.exit(main())
