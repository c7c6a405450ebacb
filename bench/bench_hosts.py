"""Agent hosts (issue 14): the same population in the runner's process, in 1 host and in 2
hosts, for a cheap policy (zero-intelligence traders) and a costly one (a user's quoter
that does `--work` rounds of arithmetic per decision: tests/policies/byo/traders.py).
Reports the run's seconds (medians over `--repeat`) and the ratios to in-process.
Targets: 1 host ≤ 1.5× in-process for the cheap policy; the costly one faster with 2 hosts
than with 1 (on a machine with 2 cores or more). Every run of a policy must give the same
log root whatever the number of hosts (checked).

    .venv/bin/python bench/bench_hosts.py [--agents 1000] [--ticks 100] [--costly-ticks 30]
                                          [--work 4000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

POLICIES = str(Path(__file__).resolve().parents[1] / "tests" / "policies")


def one(policy: str, params: dict, agents: int, ticks: int, hosts: int, key: Path) -> tuple[float, str]:
    from sandbank.lab.runner import run_scenario
    from sandbank.lab.scenario import parse_scenario

    sc = parse_scenario({
        "name": "hosts", "seed": 1, "ticks": ticks, "assets": ["CRD", "WGT"],
        "markets": [{"asset": "WGT", "quote": "CRD"}],
        "endowment": {"CRD": 10_000_000, "WGT": 1_000},
        "population": [{"policy": policy, "count": agents, "params": params}],
        "safeguards": {"max_actions_per_actor_per_tick": 100, "max_agents_per_owner": 100_000},
        "agents": {"hosts": hosts},
    }, "bench", paths=(POLICIES,))
    out = Path(tempfile.mkdtemp(prefix="sandbank-hosts-"))
    t0 = time.perf_counter()
    res = run_scenario(sc, out, key_file=key)
    return time.perf_counter() - t0, res.summary["root"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--ticks", type=int, default=100)
    ap.add_argument("--costly-ticks", type=int, default=30)
    ap.add_argument("--work", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    key = Path(tempfile.mkdtemp()) / "bench.key"
    cases = [("cheap: zi_trader", "zi_trader", {}, a.ticks),
             (f"costly: byo quoter, work {a.work}", "byo.traders:Quoter", {"work": a.work},
              a.costly_ticks)]
    print(f"{a.agents} agents; median of {a.repeat} (seconds for the whole run)")
    for label, policy, params, ticks in cases:
        times: dict[int, list[float]] = {0: [], 1: [], 2: []}
        roots = set()
        for _ in range(a.repeat):
            for hosts in (0, 1, 2):  # alternating, so drift hits every mode alike
                dt, root = one(policy, params, a.agents, ticks, hosts, key)
                times[hosts].append(dt)
                roots.add(root)
        med = {h: statistics.median(v) for h, v in times.items()}
        print(f"{label}, {ticks} ticks: in-process {med[0]:.2f} s · 1 host {med[1]:.2f} s "
              f"({med[1] / med[0]:.2f}×) · 2 hosts {med[2]:.2f} s ({med[2] / med[0]:.2f}×; "
              f"2 hosts / 1 host {med[2] / med[1]:.2f}) · same root: {len(roots) == 1}")
        assert len(roots) == 1, roots


if __name__ == "__main__":
    main()
