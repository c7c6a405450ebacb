"""OpenTelemetry tracing of decisions, model calls and actions (sandbank/telemetry.py):
spans tied to the log entries the actions produced, the log unchanged by tracing."""

from __future__ import annotations

import json
import subprocess
import sys

import orjson
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode  # noqa: E402

from llm_server import Server  # noqa: E402
from sandbank import telemetry  # noqa: E402
from sandbank.agents.base import Agent, policy  # noqa: E402
from sandbank.lab.runner import run_scenario  # noqa: E402
from sandbank.lab.scenario import parse_scenario  # noqa: E402
from sandbank.markets.messaging import SendMessage  # noqa: E402
from sandbank.markets.payments import Pay  # noqa: E402
from sandbank.store.sqlite import SQLiteStore  # noqa: E402


@policy("test_tel_scripted")
class Scripted(Agent):
    """Each tick: a payment it can afford, one it cannot (refused), and a message in
    another's name (never queued); every third tick it raises instead."""

    def act(self, obs):
        if obs.tick % 3 == 0:
            raise RuntimeError("scripted failure")
        return [Pay(actor=self.id, to=self.id % 3 + 1, asset="CRD", amount=10),
                Pay(actor=self.id, to=self.id % 3 + 1, asset="CRD", amount=10**12),
                SendMessage(actor=self.id + 100, to=1, content="not me")]


@policy("test_tel_yielding")
class Yielding(Agent):
    """A policy whose act is a generator (the runner only iterates what act returns)."""

    def act(self, obs):
        yield Pay(actor=self.id, to=self.id % 3 + 1, asset="CRD", amount=1)


MARKET = {"assets": ["CRD", "WGT"], "markets": [{"asset": "WGT", "quote": "CRD"}],
          "endowment": {"CRD": 100_000, "WGT": 100}}


def scripted(signatures=False):
    return parse_scenario({"name": "tel", "seed": 5, "ticks": 6, **MARKET,
                           "safeguards": {"signatures": signatures},
                           "population": [{"policy": "test_tel_scripted", "count": 3},
                                          {"policy": "zi_trader", "count": 2}]}, "inline")


def memory():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, telemetry.configure(provider=provider)


def by_op(spans, op):
    return [s for s in spans if s.attributes.get("gen_ai.operation.name") == op]


def log_of(path):
    store = SQLiteStore(path, readonly=True, create=False)
    try:
        return [tuple(e) for e in store.entries()], store.last_checkpoint().root
    finally:
        store.close()


@pytest.mark.parametrize("signatures", [False, True])
def test_decisions_and_actions_are_spans_tied_to_their_log_entries(tmp_path, signatures):
    exporter, tracing = memory()
    key = tmp_path / "run.key"
    res = run_scenario(scripted(signatures), tmp_path / "on", key_file=key, trace=tracing)
    tracing.close()
    spans = exporter.get_finished_spans()
    assert {s.instrumentation_scope.schema_url for s in spans} == {telemetry.SCHEMA_URL}
    ticks = {s.context.span_id: s for s in spans if s.name.startswith("tick ")}
    decisions = {s.context.span_id: s for s in by_op(spans, "invoke_agent")}
    actions = by_op(spans, "execute_tool")
    assert len(ticks) == 6 and all(s.parent is None for s in ticks.values())
    # one decision per agent per tick, under its tick, with the tick and the agent's id
    assert len(decisions) == 5 * 6
    for d in decisions.values():
        tick = ticks[d.parent.span_id]
        assert d.attributes["sandbank.tick"] == tick.attributes["sandbank.tick"]
        assert d.attributes["gen_ai.agent.id"] in {"1", "2", "3", "4", "5"}
        assert d.context.trace_id == tick.context.trace_id
    failed = [d for d in decisions.values() if d.status.status_code is StatusCode.ERROR]
    assert failed and {d.attributes["error.type"] for d in failed} == {"RuntimeError"}
    assert {d.attributes["gen_ai.agent.name"] for d in failed} <= {
        "test_tel_scripted-0", "test_tel_scripted-1", "test_tel_scripted-2"}
    # every action under the decision that emitted it, and tied to the entry it produced
    store = SQLiteStore(tmp_path / "on" / "log.db", readonly=True, create=False)
    outcomes = set()
    try:
        for a in actions:
            d = decisions[a.parent.span_id]
            assert a.attributes["gen_ai.agent.id"] == d.attributes["gen_ai.agent.id"]
            outcome = a.attributes["sandbank.action.outcome"]
            outcomes.add((a.attributes["gen_ai.tool.name"], outcome,
                          a.attributes["sandbank.action.reason"] if outcome == "refused" else ""))
            if "sandbank.log.seq" not in a.attributes:  # never queued: no entry
                assert a.attributes["sandbank.action.reason"] == "not_its_identity"
                continue
            entry = store.entry(a.attributes["sandbank.log.seq"])
            body = orjson.loads(entry.body)
            assert body["actor"] == a.attributes["sandbank.actor"] == int(
                a.attributes["gen_ai.agent.id"])
            assert entry.leaf_hash.hex() == a.attributes["sandbank.log.leaf_hash"]
            assert entry.kind == a.attributes["sandbank.log.kind"]
            assert entry.tick == a.attributes["sandbank.log.tick"] == d.attributes["sandbank.tick"]
            assert (entry.kind == "rejected") == (outcome == "refused")
            if outcome == "refused":
                assert a.attributes["error.type"] == body["reason"]
            if signatures:  # the store's own action index names the same entry
                nonce = a.attributes["sandbank.action.nonce"]
                got = store.action_entries(body["actor"], nonce)
                assert got[0].seq == entry.seq
                assert len(got) == a.attributes["sandbank.log.entries"]
    finally:
        store.close()
    kinds = {o[:2] for o in outcomes}
    assert {("pay", "accepted"), ("pay", "refused"), ("send_message", "refused"),
            ("place_order", "accepted")} <= kinds
    assert ("send_message", "refused", "not_its_identity") in outcomes
    # the same run untraced: the same log, entry by entry, and the same root
    plain = run_scenario(scripted(signatures), tmp_path / "off", key_file=key)
    assert plain.summary["root"] == res.summary["root"]
    assert log_of(tmp_path / "on" / "log.db") == log_of(tmp_path / "off" / "log.db")
    last = max(ticks.values(), key=lambda s: s.attributes["sandbank.tick"])
    assert last.attributes["sandbank.log.root"] == res.summary["root"]


def test_llm_calls_are_chat_spans_with_their_token_usage(tmp_path):
    pop = [{"policy": "market_maker", "count": 1},
           {"policy": "llm", "count": 2, "params": {"model": "trader", "retries": 0}}]
    exporter, tracing = memory()
    with Server() as srv:
        for g in pop[1:]:
            g["params"]["base_url"] = srv.url
        sc = parse_scenario({"name": "tel-llm", "seed": 2, "ticks": 3, **MARKET,
                             "population": pop, "concurrency": 2}, "inline")
        res = run_scenario(sc, tmp_path / "r", trace=tracing)
    dead = parse_scenario({"name": "tel-dead", "seed": 2, "ticks": 1, **MARKET,
                           "population": [{"policy": "llm", "count": 1, "params": {
                               "model": "trader", "retries": 0,
                               "base_url": "http://127.0.0.1:9/v1"}}],
                           "success": {"min_llm_ok": 0}}, "inline")
    run_scenario(dead, tmp_path / "dead", trace=tracing)
    tracing.close()
    spans = exporter.get_finished_spans()
    decisions = {s.context.span_id: s for s in by_op(spans, "invoke_agent")}
    chats = by_op(spans, "chat")
    ok = [c for c in chats if c.status.status_code is not StatusCode.ERROR]
    assert len(ok) == res.summary["llm"]["calls"] == 6
    for c in ok:
        a = c.attributes
        assert c.name == "chat trader" and a["gen_ai.request.model"] == "trader"
        assert a["gen_ai.provider.name"] == "openai" and a["server.address"] == "127.0.0.1"
        assert a["gen_ai.usage.output_tokens"] == 7 and a["gen_ai.usage.input_tokens"] > 0
        assert a["gen_ai.response.finish_reasons"] == ("tool_calls",)
        parent = decisions[c.parent.span_id]  # under the decision of the agent that asked
        assert parent.attributes["sandbank.policy"] == "llm"
    assert sum(c.attributes["gen_ai.usage.input_tokens"] for c in ok) == \
        res.summary["llm"]["prompt_tokens"]
    failed = [c for c in chats if c.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1 and failed[0].attributes["error.type"] == "LLMError"
    tools = {a.attributes["gen_ai.tool.name"] for a in by_op(spans, "execute_tool")
             if decisions[a.parent.span_id].attributes["sandbank.policy"] == "llm"}
    assert {"place_order", "trace"} <= tools  # its tool calls, and the trace of the exchange


def test_the_file_exporter_writes_json_lines_and_the_cli_switches_it_on(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from sandbank.cli import app

    doc = {"name": "tel-cli", "seed": 5, "ticks": 2, **MARKET,
           "population": [{"policy": "zi_trader", "count": 3}]}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    r = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "r"),
                                 "--trace", "file"])
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "r" / "trace.jsonl").read_text().splitlines()
    spans = [json.loads(line) for line in lines]
    assert len(spans) == 2 + 3 * 2 + sum(1 for s in spans if s["name"].startswith("execute_tool"))
    ops = {s["attributes"].get("gen_ai.operation.name") for s in spans}
    assert {"invoke_agent", "execute_tool"} <= ops
    assert all(s["context"]["trace_id"] and s["end_time"] for s in spans)
    assert spans[0]["resource"]["attributes"]["service.name"] == "sandbank"
    r = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "x"),
                                 "--trace", "jaeger"])
    assert r.exit_code == 2 and "--trace must be otlp or file" in r.output


def test_tracing_off_imports_nothing_and_costs_a_shared_no_op():
    code = ("import sys, sandbank.lab.runner, sandbank.agents.llm.agent, sandbank.lab.api; "
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert telemetry.configure() is None
    assert telemetry.decision(None, 1, 1) is telemetry.NOOP
    assert telemetry.chat("m", "http://x") is telemetry.NOOP  # outside a traced decision


def test_a_missing_extra_says_which_install(monkeypatch, tmp_path):
    from sandbank.extras import MissingExtra

    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(MissingExtra, match=r"pip install 'sandbank\[otel\]'"):
        telemetry.configure("file", path=tmp_path / "t.jsonl")


def test_the_attribute_names_are_the_installed_semantic_conventions():
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
    from opentelemetry.semconv.attributes import error_attributes, server_attributes
    from opentelemetry.semconv.schemas import Schemas

    known = {v for k, v in vars(gen_ai).items() if k.startswith("GEN_AI_")}
    assert set(telemetry.GEN_AI_ATTRIBUTES) <= known
    assert telemetry.ERROR_TYPE == error_attributes.ERROR_TYPE
    assert telemetry.SERVER_ADDRESS == server_attributes.SERVER_ADDRESS
    assert telemetry.SERVER_PORT == server_attributes.SERVER_PORT
    assert telemetry.SCHEMA_URL in {s.value for s in Schemas}
    ops = {v.value for v in gen_ai.GenAiOperationNameValues}
    assert {"invoke_agent", "chat", "execute_tool"} <= ops
    assert telemetry.PROVIDER in {v.value for v in gen_ai.GenAiProviderNameValues}


def test_otlp_over_http_reaches_a_collector_at_v1_traces(tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    got = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.path, self.headers["Content-Type"], len(body)))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        tracing = telemetry.configure("otlp", endpoint=f"http://127.0.0.1:{srv.server_port}")
        sc = parse_scenario({"name": "tel-otlp", "seed": 5, "ticks": 2, **MARKET,
                             "population": [{"policy": "zi_trader", "count": 2}]}, "inline")
        run_scenario(sc, tmp_path / "r", trace=tracing)
        tracing.close()
    finally:
        srv.shutdown()
    assert got and all(p == "/v1/traces" and t == "application/x-protobuf" and n > 0
                       for p, t, n in got)


def test_a_policy_that_yields_its_actions_runs_traced_as_untraced(tmp_path):
    doc = {"name": "gen", "seed": 1, "ticks": 3, **MARKET,
           "population": [{"policy": "test_tel_yielding", "count": 3}]}
    key = tmp_path / "run.key"
    plain = run_scenario(parse_scenario(doc, "inline"), tmp_path / "plain", key_file=key)
    exporter, tracing = memory()
    try:
        traced = run_scenario(parse_scenario(doc, "inline"), tmp_path / "traced",
                              key_file=key, trace=tracing)
    finally:
        tracing.close()
    assert traced.summary["root"] == plain.summary["root"]
    assert len(by_op(exporter.get_finished_spans(), "execute_tool")) == 9
