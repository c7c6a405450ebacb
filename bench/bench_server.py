"""Load test of the live server on loopback (issue 7): sustained signed actions per second and
HTTP latency at a stated concurrency, the log verified and replayed afterwards; optionally a
kill -9 under load and a restart, checking that no committed tick was lost.

    .venv/bin/python bench/bench_server.py [--seconds 10] [--agents 100] [--concurrency 16]
                                           [--batch 100] [--kill]

What runs: `sandbank serve` (one uvicorn process, SQLite log, a tick every --tick seconds) and,
in this process, an asyncio load generator (keep-alive HTTP/1.1 on asyncio streams) posting
`pay` actions (1 CRD to the next agent) that were signed before the clock starts — signing
is the agents' work, not the server's. Each agent's actions go through one connection in
nonce order. Two phases:
  single  one action per request  (POST /v1/actions), --concurrency requests in flight;
  batch   --batch actions per request (POST /v1/actions/batch), 4 requests in flight.
"accepted/s" counts 202s (each action's signature and nonce checked at the door, queued);
"committed" counts the actions the sequencer then applied, read from the log afterwards.
Self-stopping: each phase runs --seconds; the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbank.audit.verify import verify_log  # noqa: E402
from sandbank.client import Client  # noqa: E402
from sandbank.economy import replay_log  # noqa: E402
from sandbank.identity.keys import SigningKey  # noqa: E402
from sandbank.kernel.schema import agent_attestation_bytes  # noqa: E402
from sandbank.markets.payments import Pay  # noqa: E402
from sandbank.store.sqlite import SQLiteStore  # noqa: E402
from tests.live_server import OPERATOR_TOKEN, LiveServer  # noqa: E402


def admit(url: str, n: int) -> list[tuple[int, SigningKey]]:
    c = Client(url)
    owner = SigningKey.generate()
    oid = c.admit_owner(OPERATOR_TOKEN, "bench", owner, "load test")
    keys = [SigningKey.generate() for i in range(n)]
    for i, key in enumerate(keys):
        c._post("/v1/agents", json={
            "owner": oid, "name": f"load-{i}", "public_key": key.public.hex(),
            "attestation": owner.sign(agent_attestation_bytes(oid, f"load-{i}", key.public)).hex()})
    agents = [c._poll(lambda k=key: c.agent(k), ("unknown_agent",), 60) for key in keys]
    agents[-1].wait_funded("CRD", wait=60)
    return [(a.id, a.key) for a in agents]


def sign_all(agents: list[tuple[int, SigningKey]], per_agent: int, start: dict[int, int]
             ) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    ids = [a for a, _ in agents]
    for i, (aid, key) in enumerate(agents):
        to = ids[(i + 1) % len(ids)]
        bodies = []
        for n in range(start.get(aid, 0) + 1, start.get(aid, 0) + per_agent + 1):
            a = Pay(actor=aid, to=to, asset="CRD", amount=1).signed(key, n)
            bodies.append(orjson.dumps(a.to_dict()))
        out[aid] = bodies
    return out


class Conn:
    """A minimal keep-alive HTTP/1.1 connection on asyncio streams: httpx costs the load
    generator more CPU per request than the server spends, on the same two cores."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def open(self) -> Conn:
        self.r, self.w = await asyncio.open_connection(self.host, self.port)
        return self

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.w.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: "
                     f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.r.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.r.readexactly(length)

    def close(self) -> None:
        self.w.close()


def _hostport(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    return host, int(port)


async def run_single(url: str, signed: dict[int, list[bytes]], concurrency: int,
                     seconds: float) -> tuple[int, list[float], dict[int, int]]:
    lat: list[float] = []
    errors: dict[int, int] = {}
    used: dict[int, int] = {}
    stop = time.perf_counter() + seconds
    agents = sorted(signed)

    async def worker(w: int) -> None:
        conn = await Conn(*_hostport(url)).open()
        mine = agents[w::concurrency]
        try:
            while time.perf_counter() < stop:
                progressed = False
                for aid in mine:
                    if time.perf_counter() >= stop:
                        return
                    i = used.get(aid, 0)
                    if i >= len(signed[aid]):
                        continue
                    t0 = time.perf_counter()
                    status, _ = await conn.post("/v1/actions", signed[aid][i])
                    lat.append(time.perf_counter() - t0)
                    used[aid] = i + 1
                    progressed = True
                    if status != 202:
                        errors[status] = errors.get(status, 0) + 1
                if not progressed:
                    return
        finally:
            conn.close()

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return sum(used.values()), lat, errors


async def run_batch(url: str, signed: dict[int, list[bytes]], batch: int, seconds: float,
                    inflight: int = 4) -> tuple[int, list[float], int]:
    """Connection w carries agents w, w+inflight, ...: each of its requests holds those
    agents' next actions in nonce order, so no agent's nonces can overtake each other."""
    lat: list[float] = []
    sent = refused = 0
    stop = time.perf_counter() + seconds
    agents = sorted(signed)

    async def worker(w: int) -> None:
        nonlocal sent, refused
        mine = agents[w::inflight]
        order = [signed[aid][n] for n in range(max(len(signed[a]) for a in mine))
                 for aid in mine if n < len(signed[aid])]
        conn = await Conn(*_hostport(url)).open()
        try:
            for i in range(0, len(order), batch):
                if time.perf_counter() >= stop:
                    return
                t0 = time.perf_counter()
                _, body = await conn.post("/v1/actions/batch",
                                          b'{"actions":[' + b",".join(order[i:i + batch]) + b"]}")
                lat.append(time.perf_counter() - t0)
                doc = orjson.loads(body)
                sent += doc.get("queued", 0)
                refused += len(doc.get("results", [])) - doc.get("queued", 0)
        finally:
            conn.close()

    await asyncio.gather(*(worker(w) for w in range(inflight)))
    return sent, lat, refused


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")


def committed(db: str) -> tuple[int, dict[str, int]]:
    store = SQLiteStore(db, readonly=True, create=False)
    paid, rejected = 0, {}
    for e in store.entries():
        if e.kind == "paid":
            paid += 1
        elif e.kind == "rejected":
            d = orjson.loads(e.body)
            if d.get("actor", 0) > 0:
                rejected[d["reason"]] = rejected.get(d["reason"], 0) + 1
    store.close()
    return paid, rejected


def check(db: str) -> tuple[bool, bool, int]:
    store = SQLiteStore(db, readonly=True, create=False)
    t0 = time.perf_counter()
    v = verify_log(store).ok
    r = replay_log(store).ok
    n = store.entry_count()
    store.close()
    print(f"  verify {'ok' if v else 'FAILED'}, replay {'ok' if r else 'FAILED'} "
          f"({n:,} entries, {time.perf_counter() - t0:.1f} s)")
    return v, r, n


def nonces(url: str, agents: list[tuple[int, SigningKey]]) -> dict[int, int]:
    c = Client(url)
    return {aid: c.agent(key).nonce for aid, key in agents}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--tick", type=float, default=0.1)
    ap.add_argument("--kill", action="store_true", help="also kill -9 under load and restart")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sandbank-load-"))
    srv = LiveServer(folder, "--endow", "CRD=100000000", "--rate", "100000", "--burst", "100000",
                     "--source-rate", "1000000", "--source-burst", "1000000",
                     "--admission-rate", "1000",  # (one load generator: one source)
                     tick=args.tick, scenario=None)
    print(f"server: one uvicorn process, SQLite log in {folder}, tick {args.tick} s, "
          f"{os.cpu_count()} cores; {args.agents} agents")
    srv.start()
    ok = True
    try:
        agents = admit(srv.url, args.agents)
        per_agent = int(args.seconds * 6000 / args.agents) + 10
        signed = sign_all(agents, per_agent, {})
        n, lat, errors = asyncio.run(run_single(srv.url, signed, args.concurrency, args.seconds))
        print(f"single: {n / args.seconds:,.0f} accepted actions/s at concurrency "
              f"{args.concurrency}; latency p50 {pct(lat, .5):.1f} ms, p99 {pct(lat, .99):.1f} ms;"
              f" non-202: {errors or 'none'}")
        time.sleep(3 * args.tick + 0.5)
        signed = sign_all(agents, per_agent * 2, nonces(srv.url, agents))
        n2, lat2, refused = asyncio.run(run_batch(srv.url, signed, args.batch, args.seconds))
        print(f"batch:  {n2 / args.seconds:,.0f} accepted actions/s, {args.batch} per request, "
              f"4 in flight; request latency p50 {pct(lat2, .5):.1f} ms, p99 {pct(lat2, .99):.1f} "
              f"ms; refused {refused}")
        time.sleep(3 * args.tick + 0.5)
        if args.kill:
            signed = sign_all(agents, per_agent, nonces(srv.url, agents))

            async def load_then_kill() -> dict:
                task = asyncio.ensure_future(run_batch(srv.url, signed, args.batch, 30))
                await asyncio.sleep(args.seconds / 2)
                seen = httpx.get(f"{srv.url}/v1/checkpoint", timeout=5).json()
                srv.kill()
                try:
                    await task
                except Exception:  # the server died under the load generator: expected
                    pass
                return seen

            seen = asyncio.run(load_then_kill())
            print(f"kill -9 under load after tick {seen['tick']} (size {seen['size']:,})")
            srv.start()
            store = SQLiteStore(srv.db, readonly=True, create=False)
            cp = store.checkpoint(seen["tick"])
            kept = cp is not None and cp.root.hex() == seen["root"] and cp.size == seen["size"]
            store.close()
            print(f"  restarted: the checkpoint of tick {seen['tick']} is "
                  f"{'in the log, same root' if kept else 'MISSING OR DIFFERENT'}")
            ok &= kept
    finally:
        srv.stop()
    paid, rejected = committed(srv.db)
    print(f"committed: {paid:,} payments in the log; agents' actions the sequencer refused: "
          f"{rejected or 'none'}")
    v, r, _ = check(srv.db)
    return 0 if ok and v and r else 1


if __name__ == "__main__":
    sys.exit(main())
