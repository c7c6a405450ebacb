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
    if kinds <= {int, float} or kinds <= {bool} or kinds <= {str}:
        return [None if v == "" and kinds - {str} else v for v in values]
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


class LogTables:
    """The events and trades tables, built entry by entry (`add`, e.g. from the replay's walk
    at the end of a run, so the log is read and parsed once for both). The events stream to
    `events.parquet` in row groups of CHUNK entries, so memory holds one chunk of them
    whatever the log's length; the trades (one row per fill) and the map of orders to their
    placers (two ints per order) are kept until `finish`."""

    CHUNK = 8_192

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / "events.parquet"
        self.writer: Any = None
        self._reset()
        self.trades: list[dict[str, Any]] = []
        self.owner_of_order: dict[int, int] = {}

    def _reset(self) -> None:
        self.seqs: list[int] = []
        self.ticks: list[int] = []
        self.kinds: list[str] = []
        self.actors: list[int] = []
        self.bodies: list[bytes] = []

    def add(self, e: Any, d: dict[str, Any]) -> None:
        """One entry and its parsed body (read, never changed)."""
        self.seqs.append(e.seq)
        self.ticks.append(e.tick)
        self.kinds.append(e.kind)
        self.bodies.append(bytes(e.body))
        actor = d.get("actor", 0)
        actor = actor if type(actor) is int else 0
        self.actors.append(actor)
        if e.kind == "order_placed":
            self.owner_of_order[d["order"]] = actor
            owner_of_order, side = self.owner_of_order, d["side"]
            for maker_order, price, qty, _ in d["fills"]:
                maker = owner_of_order.get(maker_order, 0)
                buyer, seller = (actor, maker) if side == "buy" else (maker, actor)
                self.trades.append({"seq": e.seq, "tick": e.tick, "asset": d["asset"],
                                    "price": price, "qty": qty, "buyer": buyer,
                                    "seller": seller, "taker": side})
        elif e.kind == "call_auction":
            for buy, sell, qty, *_ in d["fills"]:
                self.trades.append({"seq": e.seq, "tick": e.tick, "asset": d["asset"],
                                    "price": d["price"], "qty": qty,
                                    "buyer": self.owner_of_order.get(buy, 0),
                                    "seller": self.owner_of_order.get(sell, 0), "taker": "call"})
        if len(self.seqs) >= self.CHUNK:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        batch = pa.table({"seq": pa.array(self.seqs, pa.int64()),
                          "tick": pa.array(self.ticks, pa.int64()),
                          "kind": pa.array(self.kinds, pa.string()),
                          "actor": pa.array(self.actors, pa.int64()),
                          # (bytes checked as UTF-8 by arrow: much faster than from str)
                          "body": pa.array(self.bodies, pa.binary()).cast(pa.string())})
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, batch.schema, compression="zstd")
        self.writer.write_table(batch)
        self._reset()

    def finish(self) -> list[dict[str, Any]]:
        """Close events.parquet (written even for an empty log); the trades."""
        if self.seqs or self.writer is None:
            self._flush()
        self.writer.close()
        self.writer = None
        return self.trades

    def abandon(self) -> None:
        """Close and remove a half-written events.parquet (the run failed its check)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.path.unlink(missing_ok=True)

    @classmethod
    def from_store(cls, store: Any, out: Path) -> LogTables:
        """The same tables from a log on its own (a run folder written before)."""
        tables, loads = cls(out), orjson.loads
        for e in store.entries():
            tables.add(e, loads(bytes(e.body)))
        return tables


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


def write_tables(out: Path, log: LogTables | Any, metrics: Any,
                 agents: list[dict[str, Any]]) -> None:
    """Write every table of a finished run into its folder `out`; `log`: the LogTables its
    replay filled, the store to read them from, or None if the replay beside the run wrote
    them."""
    out = Path(out)
    write_rows(list(metrics.rows), out / "metrics.parquet", {"tick": "int64"})
    if log is not None:  # (None: the events and trades are written already, lab/beside.py)
        tables = log if isinstance(log, LogTables) else LogTables.from_store(log, out)
        write_rows(tables.finish(), out / "trades.parquet", TRADE_SCHEMA)
    write_rows([{**a, "subjects": orjson.dumps(a["subjects"]).decode()} for a in metrics.alerts],
           out / "alerts.parquet", ALERT_SCHEMA)
    write_rows([{**t, "target": str(t["target"])} for t in metrics.trips], out / "trips.parquet",
           TRIP_SCHEMA)
    write_rows(agents, out / "agents.parquet", {"id": "int64"})
