"""Kernel benchmarks (issue 2): ledger transfers/s through the whole kernel path with the
audit log written to a SQLite file, the same with per-action Ed25519 signature checks,
and `verify` / `replay` throughput. Prints medians of --repeat runs.

    .venv/bin/python bench/bench_kernel.py [--transfers 200000] [--repeat 3]

What is timed for "transfers/s": submit -> order -> guards -> ledger -> canonical encode ->
leaf hash -> Merkle append -> group commit to SQLite (WAL) with a signed checkpoint per
tick. Building and signing the actions (agent-side work) is not timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.keys

from conftest import Economy  # noqa: E402
from sandbank.audit.verify import verify_log  # noqa: E402
from sandbank.economy import replay_log  # noqa: E402
from sandbank.kernel.schema import Transfer, TransferSpec  # noqa: E402
from sandbank.store.sqlite import SQLiteStore  # noqa: E402

AGENTS = 200


def build_actions(e: Economy, n: int, sign: bool) -> list[list[Transfer]]:
    per_tick = 5_000
    ticks, tid = [], 10**6
    for t in range(max(1, n // per_tick)):
        batch = []
        for i in range(per_tick):
            src = (i + t) % AGENTS + 1
            dst = (i * 7 + t + 1) % AGENTS + 1
            if dst == src:
                dst = src % AGENTS + 1
            tid += 1
            a = Transfer(actor=src, transfers=[TransferSpec(
                id=tid, debit=e.account[src], credit=e.account[dst], amount=1)])
            batch.append(e.sign(a) if sign else a)
        ticks.append(batch)
    return ticks


def run_once(n: int, sign: bool, path: Path) -> tuple[float, int]:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    e = Economy(n=AGENTS, fund=10**12, store=SQLiteStore(path), verify_signatures=sign,
                max_actions_per_actor_per_tick=10**6)
    ticks = build_actions(e, n, sign)
    done = 0
    t0 = time.perf_counter()
    for batch in ticks:
        submit = e.k.submit
        for a in batch:
            submit(a)
        s = e.k.step()
        assert s.rejected == 0, s.reasons
        done += s.accepted
    dt = time.perf_counter() - t0
    e.k.close()
    return done / dt, done


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--transfers", type=int, default=200_000)
    ap.add_argument("--signed-transfers", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sandbank-bench-"))
    path = tmp / "bench.db"
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, log at {path}")

    rates = [run_once(args.transfers, False, path)[0] for _ in range(args.repeat)]
    print(f"transfers/s, log to SQLite file:        median {statistics.median(rates):>10,.0f} "
          f"(runs: {', '.join(f'{r:,.0f}' for r in rates)}; {args.transfers:,} transfers)")

    store = SQLiteStore(path, readonly=True, create=False)
    n = store.entry_count()
    v_rates, r_rates = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        rep = verify_log(store)
        v_rates.append(n / (time.perf_counter() - t0))
        assert rep.ok, rep.problem
        t0 = time.perf_counter()
        rr = replay_log(store)
        r_rates.append(n / (time.perf_counter() - t0))
        assert rr.ok, rr.problem
    store.close()
    print(f"verify entries/s:                       median {statistics.median(v_rates):>10,.0f} "
          f"({n:,} entries)")
    print(f"replay entries/s:                       median {statistics.median(r_rates):>10,.0f}")

    rates = [run_once(args.signed_transfers, True, path)[0] for _ in range(args.repeat)]
    print(f"transfers/s, + per-action Ed25519 check: median {statistics.median(rates):>10,.0f} "
          f"(runs: {', '.join(f'{r:,.0f}' for r in rates)}; {args.signed_transfers:,} transfers)")


if __name__ == "__main__":
    main()
