"""Optional OpenTelemetry tracing of the lab's agent decisions, model calls and actions.

Follows the OpenTelemetry semantic conventions **1.44.0** for generative-AI spans
(schema `https://opentelemetry.io/schemas/1.44.0`, the `schema_url` of every span): the
`gen_ai.*` attribute names as the `opentelemetry-semantic-conventions` 0.66b2 package ships
them (`opentelemetry.semconv._incubating.attributes.gen_ai_attributes`; development status,
since maintained in the OpenTelemetry GenAI conventions repository), and `error.type`,
`server.address`, `server.port` from the stable ones. tests/test_telemetry.py checks every
name used here against the installed package. Our own attributes are under `sandbank.*`.

One trace per run tick:

    tick {n}                     sandbank.tick (the kernel tick the actions land in),
    │                            sandbank.run_tick, sandbank.scenario, sandbank.seed;
    │                            after the commit sandbank.log.size, sandbank.log.root
    └─ invoke_agent {name}       one per agent that decided this tick (INTERNAL):
       │                         gen_ai.operation.name=invoke_agent, gen_ai.agent.id (the
       │                         agent's id), gen_ai.agent.name, sandbank.policy,
       │                         sandbank.tick, sandbank.actions; error.type if it raised
       ├─ chat {model}           each model call of an LLM agent (CLIENT):
       │                         gen_ai.operation.name=chat, gen_ai.provider.name,
       │                         gen_ai.request.model, gen_ai.request.temperature,
       │                         server.address/port, gen_ai.response.model/id/finish_reasons,
       │                         gen_ai.usage.input_tokens/output_tokens; error.type on failure
       └─ execute_tool {kind}    each action the decision emitted (INTERNAL):
                                 gen_ai.operation.name=execute_tool, gen_ai.tool.name (the
                                 action kind), gen_ai.tool.type=function, sandbank.actor,
                                 and, once the tick commits, the log entry it produced:
                                 sandbank.log.seq, sandbank.log.entries, sandbank.log.tick,
                                 sandbank.log.kind, sandbank.log.leaf_hash (the entry's
                                 RFC 9162 leaf hash, hex), sandbank.action.outcome
                                 (accepted | refused), sandbank.action.reason; error.type
                                 = the reason when refused

Action spans start when the action is queued and end after the tick's commit, when the
entries are known. Tracing only reads: the log of a run is byte-identical with it on or
off. Off (the default), nothing here imports opentelemetry and every hook is one shared
no-op object.
"""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from opentelemetry.sdk.trace import TracerProvider

SEMCONV_VERSION = "1.44.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
EXPORTERS = ("otlp", "file")
PROVIDER = "openai"  # gen_ai.provider.name: the API the llm policy speaks (OpenAI-compatible)

# attribute names (checked against the semconv package by the tests)
OPERATION = "gen_ai.operation.name"
AGENT_ID = "gen_ai.agent.id"
AGENT_NAME = "gen_ai.agent.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOOL_NAME = "gen_ai.tool.name"
TOOL_TYPE = "gen_ai.tool.type"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
GEN_AI_ATTRIBUTES = (OPERATION, AGENT_ID, AGENT_NAME, PROVIDER_NAME, REQUEST_MODEL,
                     REQUEST_TEMPERATURE, RESPONSE_MODEL, RESPONSE_ID, FINISH_REASONS,
                     INPUT_TOKENS, OUTPUT_TOKENS, TOOL_NAME, TOOL_TYPE)

# the tracing of the decision being made in this context (task, thread): what chat() reads
_current: contextvars.ContextVar[Tracing | None] = contextvars.ContextVar(
    "sandbank_tracing", default=None)


class _Noop:
    """Every hook when tracing is off: one shared object, no span."""

    __slots__ = ()

    def __enter__(self) -> _Noop:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def done(self, result: Any) -> None:
        pass

    def reply(self, body: Any) -> None:
        pass


NOOP = _Noop()


def decision(tracing: Tracing | None, agent_id: int, tick: int) -> Any:
    """The span of agent `agent_id`'s decision in `tick` (a context manager; `.done(result)`
    with the actions or the exception), or the no-op."""
    return NOOP if tracing is None else _Decision(tracing, agent_id, tick)


def chat(model: str, base_url: str = "", *, mode: str = "live",
         temperature: float | None = None) -> Any:
    """The span of one model call made within a traced decision (`.reply(body)` with the
    reply; an exception leaving it is recorded as error.type), else the no-op."""
    tracing = _current.get()
    return NOOP if tracing is None else _Chat(tracing, model, base_url, mode, temperature)


def _error_type(e: BaseException) -> str:
    kind = getattr(e, "kind", None)
    return kind if isinstance(kind, str) and kind else type(e).__qualname__


class _Decision:
    __slots__ = ("tracing", "agent_id", "tick", "result", "span", "_token", "_attached")

    def __init__(self, tracing: Tracing, agent_id: int, tick: int) -> None:
        self.tracing, self.agent_id, self.tick = tracing, agent_id, tick
        self.result: Any = None

    def __enter__(self) -> _Decision:
        from opentelemetry import context, trace

        self.span = self.tracing._decision_span(self.agent_id, self.tick)
        self._token = _current.set(self.tracing)
        self._attached = context.attach(trace.set_span_in_context(self.span))
        return self

    def done(self, result: Any) -> None:
        self.result = result

    def __exit__(self, et: Any, e: BaseException | None, tb: Any) -> None:
        from opentelemetry import context

        context.detach(self._attached)
        _current.reset(self._token)
        self.tracing._end_decision(self.span, e if e is not None else self.result)


class _Chat:
    __slots__ = ("span", "_attached")

    def __init__(self, tracing: Tracing, model: str, base_url: str, mode: str,
                 temperature: float | None) -> None:
        from urllib.parse import urlsplit

        from opentelemetry.trace import SpanKind

        attrs: dict[str, Any] = {OPERATION: "chat", PROVIDER_NAME: PROVIDER,
                                 REQUEST_MODEL: model, "sandbank.llm.mode": mode}
        if temperature is not None:
            attrs[REQUEST_TEMPERATURE] = float(temperature)
        if base_url:
            try:
                where = urlsplit(base_url)
                if where.hostname:
                    attrs[SERVER_ADDRESS] = where.hostname
                if where.port:
                    attrs[SERVER_PORT] = where.port
            except ValueError:
                pass
        self.span = tracing.tracer.start_span(f"chat {model}".strip(), kind=SpanKind.CLIENT,
                                              attributes=attrs)

    def __enter__(self) -> _Chat:
        return self

    def reply(self, body: Any) -> None:
        if not isinstance(body, dict):
            return
        span = self.span
        if isinstance(body.get("model"), str):
            span.set_attribute(RESPONSE_MODEL, body["model"])
        if isinstance(body.get("id"), str):
            span.set_attribute(RESPONSE_ID, body["id"])
        choices = body.get("choices")
        if isinstance(choices, list):
            reasons = [c["finish_reason"] for c in choices
                       if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)]
            if reasons:
                span.set_attribute(FINISH_REASONS, reasons)
        usage = body.get("usage")
        if isinstance(usage, dict):
            for key, name in (("prompt_tokens", INPUT_TOKENS),
                              ("completion_tokens", OUTPUT_TOKENS)):
                n = usage.get(key)
                if type(n) is int and n >= 0:
                    span.set_attribute(name, n)

    def __exit__(self, et: Any, e: BaseException | None, tb: Any) -> None:
        if e is not None:
            from opentelemetry.trace import StatusCode

            self.span.set_attribute(ERROR_TYPE, _error_type(e))
            self.span.set_status(StatusCode.ERROR, str(e)[:300])
        self.span.end()


class Tracing:
    """The tracing of one run (or several, one after another): a tracer from `provider`
    and the spans of the tick in progress. The runner calls `watch(kernel)` once, then
    per tick `begin_tick`, `decision`s, `action`/`unsubmitted` for what was emitted,
    `committed` after the kernel's step and `end_tick`. `close()` flushes (and shuts down
    a provider this object made)."""

    def __init__(self, provider: TracerProvider, *, owned: bool = False,
                 describe: str = "") -> None:
        from sandbank import __version__

        self.provider = provider
        self.owned = owned
        self.describe = describe  # where the spans go, for a console line
        self.tracer = provider.get_tracer("sandbank", __version__, schema_url=SCHEMA_URL)
        self.agents: dict[int, tuple[str, str]] = {}  # agent id -> (name, policy)
        self.run_attributes: dict[str, Any] = {}
        self._tick_span: Any = None
        self._tick_context: Any = None
        self._tick = 0
        self._decisions: dict[int, Any] = {}  # agent id -> its decision span, this tick
        self._open: list[tuple[Any, Any]] = []  # (queued action, its span), this tick
        self._outcomes: dict[int, tuple[int, int, bool, str]] = {}  # id(action) -> result

    # -- the kernel: which entries each action produced (read, never changed)
    def watch(self, kernel: Any) -> None:
        """Note, for every action the kernel processes, (first seq, entries, ok, reason).
        Wraps the kernel object's per-action step without changing what it does: the
        action index beside the log holds only signed actions (a nonce), this holds all."""
        process = kernel._process
        outcomes = self._outcomes
        log = kernel.log

        def traced(action: Any, tick: int) -> tuple[bool, str]:
            first = log.size
            ok, reason = process(action, tick)
            outcomes[id(action)] = (first, log.size - first, ok, reason)
            return ok, reason

        kernel._process = traced

    # -- the tick
    def begin_tick(self, tick: int, run_tick: int) -> None:
        from opentelemetry import trace

        self.end_tick()  # (a tick left open by an error)
        self._tick = tick
        self._tick_span = self.tracer.start_span(
            f"tick {tick}", attributes={**self.run_attributes, "sandbank.tick": tick,
                                        "sandbank.run_tick": run_tick})
        self._tick_context = trace.set_span_in_context(self._tick_span)

    def _decision_span(self, agent_id: int, tick: int, **more: Any) -> Any:
        name, policy = self.agents.get(agent_id, (str(agent_id), ""))
        span = self.tracer.start_span(
            f"invoke_agent {name}", context=self._tick_context,
            attributes={OPERATION: "invoke_agent", AGENT_ID: str(agent_id), AGENT_NAME: name,
                        "sandbank.policy": policy, "sandbank.tick": tick, **more})
        self._decisions[agent_id] = span
        return span

    def _end_decision(self, span: Any, result: Any) -> None:
        if isinstance(result, BaseException):
            from opentelemetry.trace import StatusCode

            span.set_attribute(ERROR_TYPE, _error_type(result))
            span.set_status(StatusCode.ERROR, str(result)[:300])
        elif hasattr(result, "__len__"):  # (a policy may yield its actions: not counted)
            span.set_attribute("sandbank.actions", len(result))
        span.end()

    def remote_decision(self, agent_id: int, result: Any) -> None:
        """A decision made in an agent host (its model calls there are not traced)."""
        if agent_id not in self._decisions:
            span = self._decision_span(agent_id, self._tick, **{"sandbank.hosted": True})
            self._end_decision(span, result)

    def action(self, agent_id: int, action: Any) -> None:
        """An action agent `agent_id`'s decision emitted, queued: its span stays open until
        `committed` names the entry it produced."""
        from opentelemetry import trace

        parent = self._decisions.get(agent_id)
        kind = getattr(action, "KIND", type(action).__name__)
        attrs: dict[str, Any] = {OPERATION: "execute_tool", TOOL_NAME: kind,
                                 TOOL_TYPE: "function", AGENT_ID: str(agent_id),
                                 "sandbank.actor": action.actor, "sandbank.tick": self._tick}
        if getattr(action, "nonce", 0):
            attrs["sandbank.action.nonce"] = action.nonce
        span = self.tracer.start_span(
            f"execute_tool {kind}", attributes=attrs,
            context=trace.set_span_in_context(parent) if parent is not None
            else self._tick_context)
        self._open.append((action, span))

    def unsubmitted(self, agent_id: int, action: Any, reason: str) -> None:
        """An action the lab did not queue (not the agent's identity, the tick full)."""
        self.action(agent_id, action)
        _, span = self._open.pop()
        self._refused(span, reason)
        span.end()

    @staticmethod
    def _refused(span: Any, reason: str) -> None:
        from opentelemetry.trace import StatusCode

        span.set_attribute("sandbank.action.outcome", "refused")
        span.set_attribute("sandbank.action.reason", reason)
        span.set_attribute(ERROR_TYPE, reason)
        span.set_status(StatusCode.ERROR, reason)

    def committed(self, kernel: Any, summary: Any) -> None:
        """The tick committed: each open action span gets its entry, and ends."""
        open_, self._open = self._open, []
        outcomes = self._outcomes
        firsts = [o for a, _ in open_ if (o := outcomes.get(id(a))) is not None and o[1]]
        entries: dict[int, Any] = {}
        if firsts:
            lo = min(o[0] for o in firsts)
            hi = max(o[0] for o in firsts) + 1
            wanted = {o[0] for o in firsts}
            entries = {e.seq: e for e in kernel.store.entries(lo, hi) if e.seq in wanted}
        for action, span in open_:
            got = outcomes.get(id(action))
            if got is None:
                self._refused(span, "not_processed")
                span.end()
                continue
            first, count, ok, reason = got
            span.set_attribute("sandbank.log.entries", count)
            entry = entries.get(first) if count else None
            if entry is not None:
                span.set_attribute("sandbank.log.seq", entry.seq)
                span.set_attribute("sandbank.log.tick", entry.tick)
                span.set_attribute("sandbank.log.kind", entry.kind)
                span.set_attribute("sandbank.log.leaf_hash", bytes(entry.leaf_hash).hex())
            if ok:
                span.set_attribute("sandbank.action.outcome", "accepted")
                span.set_attribute("sandbank.action.reason", reason)
            else:
                self._refused(span, reason)
            span.end()
        outcomes.clear()
        tick_span = self._tick_span
        if tick_span is not None and summary is not None:
            cp = summary.checkpoint
            tick_span.set_attribute("sandbank.log.size", cp.size)
            tick_span.set_attribute("sandbank.log.root", bytes(cp.root).hex())
            tick_span.set_attribute("sandbank.accepted", summary.accepted)
            tick_span.set_attribute("sandbank.rejected", summary.rejected)

    def end_tick(self) -> None:
        """End the tick's span, and any span a failed tick left open."""
        for _, span in self._open:
            self._refused(span, "tick_not_committed")
            span.end()
        self._open = []
        self._outcomes.clear()
        self._decisions = {}
        if self._tick_span is not None:
            self._tick_span.end()
            self._tick_span = self._tick_context = None

    def close(self) -> None:
        """End what is open and flush the spans (and shut a provider made here down)."""
        self.end_tick()
        self.provider.force_flush()
        if self.owned:
            self.provider.shutdown()


def _missing(e: ImportError) -> Exception:
    from sandbank.extras import MissingExtra

    return MissingExtra(f"tracing needs {e.name or 'opentelemetry-sdk'}, from the 'otel' "
                        f"extra: pip install 'sandbank[otel]'")


def jsonl_exporter(path: str | Path) -> Any:
    """A SpanExporter writing one JSON object a line per span (the SDK's `to_json`)."""
    import threading

    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class JsonLinesExporter(SpanExporter):
        def __init__(self, path: Path) -> None:
            self.path = path
            self._file: Any = None  # opened (truncated) at the first span, closed at shutdown
            self._closed = False
            self._lock = threading.Lock()

        def export(self, spans: Any) -> SpanExportResult:
            with self._lock:
                if self._closed:
                    return SpanExportResult.FAILURE
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = open(self.path, "w")  # noqa: SIM115
                for span in spans:
                    self._file.write(span.to_json(indent=None) + "\n")
                self._file.flush()
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            with self._lock:
                self._closed = True
                if self._file is not None:
                    self._file.close()
                    self._file = None

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    return JsonLinesExporter(Path(path))


def configure(exporter: str | None = None, *, path: str | Path | None = None,
              endpoint: str | None = None, provider: TracerProvider | None = None
              ) -> Tracing | None:
    """Tracing for a run, or None (off). `exporter`: "file" (JSON lines to `path`) or "otlp"
    (OTLP over HTTP to `endpoint`, e.g. http://localhost:4318 — `/v1/traces` is added to a
    bare address; default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / $OTEL_EXPORTER_OTLP_ENDPOINT,
    else localhost:4318). `provider`: a TracerProvider of your own (tests: one with an
    InMemorySpanExporter); it is flushed, not shut down, by `close()`."""
    if exporter is None and provider is None:
        return None
    from sandbank.extras import require

    require("otel", "tracing (--trace)")
    if provider is not None:
        return Tracing(provider, describe="the given tracer provider")
    if exporter not in EXPORTERS:
        raise ValueError(f"trace exporter must be one of {', '.join(EXPORTERS)}, "
                         f"got {exporter!r}")
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from sandbank import __version__

        made = TracerProvider(resource=Resource.create(
            {"service.name": "sandbank", "service.version": __version__}))
        if exporter == "file":
            if path is None:
                raise ValueError("the file trace exporter needs a path")
            span_exporter = jsonl_exporter(path)
            describe = str(path)
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            if endpoint:
                from urllib.parse import urlsplit

                if urlsplit(endpoint).path in ("", "/"):
                    endpoint = endpoint.rstrip("/") + "/v1/traces"
            span_exporter = OTLPSpanExporter(endpoint=endpoint or None)
            describe = f"OTLP {endpoint or '(endpoint from the environment)'}"
    except ImportError as e:
        raise _missing(e) from None
    made.add_span_processor(BatchSpanProcessor(span_exporter))
    return Tracing(made, owned=True, describe=describe)
