"""A run's tidy tables, as Parquet files beside `summary.json` (for pandas, polars, DuckDB,
R's arrow):

    metrics.parquet   one row per run tick: every column of metrics.csv (lab/metrics.py)
    events.parquet    one row per log entry: seq, tick, kind, actor (0 when none), body
                      (the entry's canonical JSON, exactly as the log hashed it)
    trades.parquet    one row per fill: seq (the log entry), tick, asset, price, qty, buyer,
                      seller, taker ("buy"/"sell"; "call" for a call auction's fill)
    alerts.parquet    one row per alert: tick, seq, alert, detector, score, subjects, summary
    trips.parquet     one row per breaker trip: tick, ticket, scope, level, target, alert
    agents.parquet    one row per identity at the end: id, name, group, policy, owner,
                      parent, depth, status, reputation, balance_<asset> per asset (and
                      llm_calls, llm_failures, llm_prompt_tokens, llm_completion_tokens
                      when the run called a model)

Every table is built from the log and the final state, never from an agent's label (`group`
and `policy` are what the scenario admitted each identity as). The events table is the log:
a researcher who trusts it should `verify` the log first (`Run.verify()`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

TABLES = ("metrics", "events", "trades", "alerts", "trips", "agents")


def _column(values: list[Any]) -> list[Any]:
    """One column's values, of one type: "" (the CSV's "no value", e.g. a price before the
    first trade) is a null in a numeric column; a column of mixed kinds (lists, say) is
    JSON text."""
    kinds = {type(v) for v in values if v is not None and v != ""}
    if kinds <= {int, float, bool} or kinds <= {str}:
        return [None if v == "" and kinds - {str} else v for v in values]
    if kinds <= {int, float}:
        return values
    return [None if v is None else orjson.dumps(v).decode() if not isinstance(v, str) else v
            for v in values]


def write_rows(rows: list[dict[str, Any]] | dict[str, list[Any]], path: Path,
           schema: dict[str, str] | None = None) -> None:
    """Rows (or columns) to Parquet; an empty table keeps its columns (`schema`: name ->
    arrow type name, used when there are no rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(rows, dict):
        table = pa.table(rows)
    elif rows:
        columns = list(dict.fromkeys(k for r in rows for k in r))
        table = pa.table({c: _column([r.get(c) for r in rows]) for c in columns})
    else:
        table = pa.table({c: pa.array([], type=getattr(pa, t)()) for c, t in (schema or {}).items()})
    pq.write_table(table, path, compression="zstd")


def _events_and_trades(store: Any) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    seqs, ticks, kinds, actors, bodies = [], [], [], [], []
    trades: list[dict[str, Any]] = []
    owner_of_order: dict[int, int] = {}
    loads = orjson.loads
    for e in store.entries():
        seqs.append(e.seq)
        ticks.append(e.tick)
        kinds.append(e.kind)
        body = bytes(e.body)
        bodies.append(body.decode())
        if e.kind in ("order_placed", "call_auction") or b'"actor":' in body:
            d = loads(body)
            actor = d.get("actor", 0) if isinstance(d.get("actor", 0), int) else 0
            actors.append(actor)
            if e.kind == "order_placed":
                owner_of_order[d["order"]] = actor
                for maker_order, price, qty, _ in d["fills"]:
                    maker = owner_of_order.get(maker_order, 0)
                    buyer, seller = (actor, maker) if d["side"] == "buy" else (maker, actor)
                    trades.append({"seq": e.seq, "tick": e.tick, "asset": d["asset"],
                                   "price": price, "qty": qty, "buyer": buyer,
                                   "seller": seller, "taker": d["side"]})
            elif e.kind == "call_auction":
                for buy, sell, qty, *_ in d["fills"]:
                    trades.append({"seq": e.seq, "tick": e.tick, "asset": d["asset"],
                                   "price": d["price"], "qty": qty,
                                   "buyer": owner_of_order.get(buy, 0),
                                   "seller": owner_of_order.get(sell, 0), "taker": "call"})
        else:
            actors.append(0)
    return ({"seq": seqs, "tick": ticks, "kind": kinds, "actor": actors, "body": bodies}, trades)


TRADE_SCHEMA = {"seq": "int64", "tick": "int64", "asset": "string", "price": "int64",
                "qty": "int64", "buyer": "int64", "seller": "int64", "taker": "string"}
ALERT_SCHEMA = {"tick": "int64", "seq": "int64", "alert": "int64", "detector": "string",
                "score": "float64", "subjects": "string", "evidence": "int64",
                "summary": "string"}
TRIP_SCHEMA = {"tick": "int64", "ticket": "int64", "scope": "string", "level": "string",
               "target": "string", "alert": "int64", "reason": "string"}


def agent_rows(state: Any, group_of: dict[int, tuple[str, str]],
               llm: dict[int, list[int]] | None = None) -> list[dict[str, Any]]:
    """Every identity's final state (`group_of`: admitted id -> (group, policy); a spawned
    identity inherits its lineage root's); with model calls in the run (`llm`: agent ->
    calls, failures, prompt and completion tokens), those four columns too."""
    reg, led = state.registry, state.ledger
    assets = sorted(led.treasury)
    rep = getattr(state, "reputation", None)
    rows = []
    for aid in sorted(reg.agents):
        a = reg.agents[aid]
        group, policy = group_of.get(reg.lineage_root(aid), ("", ""))
        row = {"id": aid, "name": a.name, "group": group, "policy": policy,
               "owner": reg.owners[a.owner].name if a.owner in reg.owners else str(a.owner),
               "parent": a.parent, "depth": a.depth, "status": a.status,
               "reputation": rep.score(aid) if rep is not None else 0}
        for asset in assets:
            acct = led.account_of(aid, asset)
            row[f"balance_{asset}"] = acct.balance if acct is not None else 0
        if llm:
            row.update(zip(("llm_calls", "llm_failures", "llm_prompt_tokens",
                            "llm_completion_tokens"), llm.get(aid, [0, 0, 0, 0]), strict=True))
        rows.append(row)
    return rows


def write_tables(out: Path, store: Any, metrics: Any, agents: list[dict[str, Any]]) -> None:
    """Write every table of a finished run into its folder `out`."""
    out = Path(out)
    write_rows(list(metrics.rows), out / "metrics.parquet", {"tick": "int64"})
    events, trades = _events_and_trades(store)
    write_rows(events, out / "events.parquet")
    write_rows(trades, out / "trades.parquet", TRADE_SCHEMA)
    write_rows([{**a, "subjects": orjson.dumps(a["subjects"]).decode()} for a in metrics.alerts],
           out / "alerts.parquet", ALERT_SCHEMA)
    write_rows([{**t, "target": str(t["target"])} for t in metrics.trips], out / "trips.parquet",
           TRIP_SCHEMA)
    write_rows(agents, out / "agents.parquet", {"id": "int64"})
