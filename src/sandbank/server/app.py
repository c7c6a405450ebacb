"""The sandbox over HTTP and WebSocket (`sandbank serve`; the whole API is in docs/server.md
and at /docs). One economy, the same sequencer and log as the lab, reached only through here.

Credentials:
- the **operator** (bearer token): admits owners, decides admission requests, ticks on command;
- an **agent**: its Ed25519 key. Actions are signed over their canonical bytes with a fresh
  nonce; reads of its own observation carry a signature over `observe:<id>:<tick>`;
- an **overseer**: either the dashboard's console overseer (bearer overseer token; the server
  holds its key) or an overseer with its own key (signed actions; reads signed over
  `oversee:<id>:<tick>`).

A request refused before it reaches the sequencer (malformed, forged, replayed, rate-limited,
an agent on an overseer endpoint) is answered with a JSON problem (`application/problem+json`,
a stable `code`) and counted, with its source, into the tick's one bounded `request_refused`
record: it is nobody's act, so it names no actor and feeds no detector. An action that
reaches the sequencer and is refused there is logged as `rejected`, as in the lab.

What the public may read of the log is gated by `audit/visibility.py`: public entries in
full; others (private flows, oversight content) only by the parties they name, overseers and
the operator — anyone else gets the entry's leaf hash (a hiding commitment: non-public
entries carry a secret blind) and its inclusion proof.
"""

from __future__ import annotations

import asyncio
import threading
from importlib import resources
from typing import Any

import orjson
from fastapi import FastAPI, Header, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from sandbank.audit.checkpoint import verifier_key
from sandbank.audit.visibility import may_read
from sandbank.identity.keys import verify_signature
from sandbank.kernel.schema import (
    OPERATOR,
    OVERSEER_BASE,
    Action,
    MalformedAction,
    RegisterAgent,
    RegisterOwner,
    action_from_dict,
    is_overseer_id,
)
from sandbank.kernel.sequencer import QueueFull
from sandbank.regulation.federation import MAX_DOCUMENT, BanOwner, ImportBans, ban_list
from sandbank.regulation.personhood import PublishStatusList
from sandbank.server import models as M
from sandbank.server.auth import bearer, fresh, parse_id, read_message, signed_by
from sandbank.server.sandbox import (
    MAX_ID,
    Admission,
    AdmissionRefused,
    Sandbox,
    SetupError,
    Subscriber,
)

MAX_BODY = 1 << 20  # a request
MAX_ACTION = 64 << 10  # one action
MAX_BATCH = 500  # actions in one batch
WITHHELD = "withheld"  # the kind shown for an entry the reader may not read
RESTRICTED = "restricted"  # what a proof bundle says of an entry withheld from its reader
CONSOLE_KINDS = {"trip_breaker", "resume", "set_cap", "approve_external", "interrupt",
                 "raise_alert", "disable_action"}

__all__ = ["Sandbox", "create_app", "open_store", "ticker", "SetupError"]


class ProblemDoc(BaseModel):
    """An error (RFC 9457 problem details); `code` is stable, `detail` says what to do."""

    type: str
    title: str
    status: int
    code: str
    detail: str


class Problem(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def _problem(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"type": f"https://sandbank.dev/problems/{code}", "title": code,
                         "status": status, "code": code, "detail": detail},
                        status_code=status, media_type="application/problem+json")


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI for a body the handler parses itself (so malformed input is still logged)."""
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}


ACTION_SCHEMA = {"type": "object", "required": ["actor", "kind", "nonce", "signature"],
                 "properties": {"actor": {"type": "integer"}, "kind": {"type": "string"},
                                "nonce": {"type": "integer"},
                                "signature": {"type": "string", "description": "hex Ed25519"}},
                 "additionalProperties": True}


def create_app(box: Sandbox) -> Any:
    problem_doc = {"model": ProblemDoc, "content": {"application/problem+json": {}}}
    app = FastAPI(title="sandbank", version="0.1", docs_url=None, redoc_url=None,
                  description="A distributional-AGI-safety sandbox economy, live. Errors are "
                  "JSON problems (RFC 9457) with a stable `code`; see docs/server.md.",
                  responses={status: {**problem_doc, "description": what} for status, what in (
                      (400, "malformed input"), (401, "a missing or wrong credential"),
                      (403, "not allowed for this identity"), (404, "no such thing"),
                      (409, "a replayed nonce"), (413, "too large"), (429, "rate limited"),
                      (503, "the next tick is full"))})
    k = box.k

    def openapi() -> dict[str, Any]:
        """The schema, without FastAPI's default 422 (invalid requests are 400 problems)."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            doc = get_openapi(title=app.title, version=app.version,
                              description=app.description, routes=app.routes)
            for ops in doc["paths"].values():
                for op in ops.values():
                    op.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                doc.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(Problem)
    async def problem(_: Request, e: Problem) -> JSONResponse:
        return _problem(e.status, e.code, e.detail)

    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
                          for err in e.errors()[:3])
        return _problem(400, "invalid_request", where)

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return _problem(e.status_code, code, str(e.detail))

    @app.exception_handler(Exception)
    async def bug(_: Request, e: Exception) -> JSONResponse:  # a bug of ours: still a problem
        import logging

        logging.getLogger("sandbank.server").exception("internal error")
        return _problem(500, "internal_error", f"{type(e).__name__} (the server logged it)")

    # ------------------------------------------------------------------ credentials
    def src(request: Request | WebSocket) -> str:
        """Where a request comes from: the TCP peer's address (behind a proxy, the proxy's;
        forwarded-for headers are not believed), an IPv6 peer by its /64 (one host holds a
        whole /64)."""
        host = request.client.host if request.client else "unknown"
        if ":" in host:
            import ipaddress

            try:
                return str(ipaddress.ip_network(f"{host}/64", strict=False))
            except ValueError:
                return host[:64]
        return host

    def refused(request: Request | WebSocket, endpoint: str, status: int, code: str,
                detail: str, claimed: Any = None, note: str = "") -> Problem:
        """Count a refusal at the door into the tick's record; the Problem to raise."""
        box.refuse(src(request), endpoint, code, claimed, note or detail)
        return Problem(status, code, detail)

    def operator(authorization: str | None, request: Request, endpoint: str) -> None:
        if not bearer(authorization, box.token):
            raise refused(request, endpoint, 401, "not_operator",
                          "this needs the operator's bearer token")

    def queue_operator(fields: dict[str, Any], what: str) -> dict[str, Any]:
        """An operator action from a request's fields, parsed as any action is (a malformed
        one is a 400 naming `what`), queued for the next tick."""
        try:
            action = action_from_dict({"actor": OPERATOR, **fields})
        except MalformedAction as e:
            raise Problem(400, "malformed_action", f"{what}: {e}") from None
        with box.lock:
            box.operator_submit(action)
            return {"queued": True, "tick": k.tick + 1}

    def read_signed(public_key: bytes, what: str, who: int, tick: int | None,
                    signature: str | None) -> bool:
        """A read's signature over `<what>:<who>:<tick>` (the tick at most 2 ticks old)."""
        signed = fresh(k.tick, tick)
        if signed is None:
            raise Problem(401, "stale_signature", f"the signature names tick {tick}; it is "
                          f"tick {k.tick}")
        return signed_by(public_key, signature, read_message(what, who, signed))

    def check_observer(agent: int, tick: int | None, signature: str | None,
                       request: Request | WebSocket, endpoint: str) -> None:
        """Only the agent itself reads its observation (or its own entries)."""
        a = k.state.registry.agents.get(agent)
        if a is None:
            raise Problem(404, "unknown_agent", f"no agent {agent}")
        if not read_signed(a.public_key, "observe", agent, tick, signature):
            raise refused(request, endpoint, 401, "bad_signature",
                          f"sign 'observe:{agent}:{k.tick}' with agent {agent}'s key (header "
                          f"X-Sandbank-Signature, hex)", claimed=agent,
                          note="a read not signed by the agent it names")

    def overseer(authorization: str | None, who: int | None, signature: str | None,
                 tick: int | None, request: Request, endpoint: str, *,
                 console_only: bool = False) -> int:
        """The overseer a request is from: the console (bearer overseer token), an overseer
        with its own key (signed `oversee:<id>:<tick>`), or, for reads, the operator."""
        if bearer(authorization, box.overseer_token):
            if not box.console:
                raise Problem(503, "console_not_ready", "the console overseer is admitted "
                              "at the next tick")
            return box.console
        if not console_only:
            if bearer(authorization, box.token):
                return OPERATOR
            o = k.state.controls.overseers.get(who) if who is not None else None
            if o is not None and who is not None and who <= OVERSEER_BASE - 1 \
                    and read_signed(o.public_key, "oversee", who, tick, signature):
                return who
        raise refused(request, endpoint, 403, "not_overseer", "this needs an overseer's "
                      "credentials: the overseer token, or X-Sandbank-Overseer and "
                      "X-Sandbank-Signature over 'oversee:<id>:<tick>' by an admitted overseer",
                      claimed=who)

    def reader(request: Request, tick: int | None, endpoint: str) -> tuple[int | None, bool]:
        """Who reads the log: (the agent, or None), and whether it reads as an overseer (the
        operator and overseers read every entry). No credentials: the public. Credentials
        that do not check out are refused (401), not read as the public's."""
        h = request.headers
        authorization = h.get("authorization")
        if bearer(authorization, box.token) or bearer(authorization, box.overseer_token):
            return None, True
        signature = h.get("x-sandbank-signature")
        for header, ids, what in (("x-sandbank-overseer", k.state.controls.overseers, "oversee"),
                                  ("x-sandbank-agent", k.state.registry.agents, "observe")):
            claimed = h.get(header)
            if claimed is None:
                continue
            who = parse_id(claimed)
            ident = ids.get(who) if who is not None else None
            if ident is None or not read_signed(ident.public_key, what, who, tick, signature):
                raise refused(request, endpoint, 401, "bad_signature",
                              f"sign '{what}:<id>:<tick>' with that identity's key (headers "
                              f"{header}, x-sandbank-signature; ?tick=)", claimed=claimed)
            return (None, True) if what == "oversee" else (who, False)
        if authorization is not None:
            raise refused(request, endpoint, 401, "bad_token",
                          "the bearer token is neither the operator's nor the overseers'")
        return None, False

    def holder_of(account: Any) -> int | None:
        a = k.state.ledger.accounts.get(account) if type(account) is int else None
        return a.holder if a is not None else None

    def readable(d: dict[str, Any], who: tuple[int | None, bool]) -> bool:
        return may_read(d, who[0], overseer=who[1], table=k.visibility, holder_of=holder_of)

    async def body(request: Request, limit: int = MAX_BODY) -> Any:
        size = request.headers.get("content-length")
        if size is not None and (not (size.isascii() and size.isdigit()) or int(size) > limit):
            raise Problem(413, "too_large", f"this request is limited to {limit} bytes")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                raise Problem(413, "too_large", f"this request is limited to {limit} bytes")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise Problem(400, "malformed_json", str(e)) from None

    def obj(doc: Any) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise Problem(400, "malformed_json", "the body must be a JSON object")
        return doc

    # ------------------------------------------------------------------ agents' actions
    def accept(d: Any, request: Request, endpoint: str, *,
               overseers: bool = False, source_charged: bool = False) -> dict[str, Any]:
        """Check one signed action in wire form and queue it for the next tick; raise a
        Problem otherwise (counted into the tick's refusal record, attributed to nobody). It
        reads only what a tick cannot change under it (the actor's key) or what the tick
        checks again (the nonce), so it never waits for a running tick. `source_charged`:
        the caller already took this request's token from its source (A2A's door does,
        for every call), so one action costs one token on either door."""
        if not source_charged and not box.allow_source(src(request)):  # before any work
            raise refused(request, endpoint, 429, "rate_limited", f"at most "
                          f"{box.source_rate:g} requests/s from one source (bursts of "
                          f"{box.source_burst})")
        if not isinstance(d, dict):
            raise refused(request, endpoint, 400, "malformed_action", "an action is a JSON object")
        actor = d.get("actor")
        if type(actor) is not int:
            raise refused(request, endpoint, 400, "malformed_action", "actor must be an integer")
        if overseers != is_overseer_id(actor) or actor == OPERATOR or (not overseers and actor < 1):
            raise refused(request, endpoint, 403, "forbidden", "agents' actions go to "
                          "/v1/actions (actor >= 1), overseers' to /v1/oversight/actions",
                          claimed=actor)
        try:
            action = action_from_dict(d)
        except MalformedAction as e:  # never sequenced: nothing unparsed is anyone's act
            raise refused(request, endpoint, 400, "malformed_action", str(e),
                          claimed=actor) from None
        ident = (k.state.controls.overseers.get(actor) if overseers
                 else k.state.registry.agents.get(actor))
        if ident is None:
            raise refused(request, endpoint, 404, "unknown_actor",
                          f"no identity {actor} is admitted", claimed=actor)
        if action.signature is None or not verify_signature(
                ident.public_key, action.signature, action.signing_bytes()):
            raise refused(request, endpoint, 401, "bad_signature", f"the action is not signed "
                          f"by actor {actor}'s key (sign its canonical bytes: "
                          f"Action.signing_bytes())", claimed=actor)
        if action.nonce <= ident.nonce:
            raise refused(request, endpoint, 409, "stale_nonce", f"nonce {action.nonce} was "
                          f"used (the last committed is {ident.nonce}): a replay, or a nonce "
                          f"reused", claimed=actor)
        if not box.allow(actor):
            raise refused(request, endpoint, 429, "rate_limited", f"at most {box.rate:g} "
                          f"actions/s per identity (bursts of {box.burst})", claimed=actor)
        try:
            box.enqueue(action, ident.public_key)  # verified once, here
        except QueueFull as e:
            raise Problem(503, "queue_full", str(e)) from None
        return {"queued": True, "tick": k.tick + 1, "nonce": action.nonce}

    @app.post("/v1/actions", responses=M.answers(M.Queued, 202),
              status_code=202, openapi_extra=_json_body(ACTION_SCHEMA),
              tags=["agents"])
    async def actions(request: Request) -> dict:
        """Queue one action, signed by its actor (an agent) with a fresh nonce. Runs at the
        next tick; its outcome is in the actor's observation (feedback) and in the log."""
        return accept(await body(request, MAX_ACTION), request, "/v1/actions")

    @app.post("/v1/actions/batch", responses=M.answers(M.BatchAnswer, 202),
              status_code=202, tags=["agents"], openapi_extra=_json_body(
        {"type": "object", "required": ["actions"], "properties": {
            "actions": {"type": "array", "maxItems": MAX_BATCH, "items": ACTION_SCHEMA}}}))
    async def batch(request: Request) -> dict:
        """Queue up to 500 signed actions (of any agents) at once; each is checked as if
        posted alone, and the answer says, in order, which were queued."""
        d = obj(await body(request))
        items = d.get("actions")
        if not isinstance(items, list) or len(items) > MAX_BATCH:
            raise Problem(400, "malformed_json", f"'actions' must be a list of at most "
                          f"{MAX_BATCH} actions")
        out = []
        for item in items:
            try:
                out.append(accept(item, request, "/v1/actions/batch"))
            except Problem as p:
                out.append({"queued": False, "code": p.code, "detail": p.detail})
        return {"results": out, "queued": sum(1 for r in out if r["queued"])}

    # A2A 1.0 (server/a2a.py): the agent card, and signed actions as tasks through `accept`
    from sandbank.server.a2a import mount as mount_a2a

    mount_a2a(app, box, accept, src)

    # ------------------------------------------------------------------ admission
    @app.get("/v1/status", responses=M.answers(M.Status, 200),
              tags=["audit"])
    def status() -> dict[str, Any]:
        with box.lock:
            last = k.store.last_checkpoint()
            return {"tick": k.tick, "entries": k.log.size,
                    "root": last.root.hex() if last else None,
                    "operator_key": verifier_key(k.config.key_name, box.key.public),
                    "admission": box.admission, "endowment": box.endowment, "stake": box.stake,
                    "assets": list(k.config.assets),
                    "markets": sorted(k.state.exchange.markets), "console": box.console,
                    "population": len(box.econ.ids) if box.econ is not None else 0,
                    "refused": box.refused_total,
                    "witnesses": [w.status() for w in box.witnesses],
                    "failure": box.failure}

    @app.post("/v1/owners", responses=M.answers(M.OwnerQueued, 202),
              status_code=202, tags=["operator"], openapi_extra=_json_body(
        {"type": "object", "required": ["name", "public_key", "evidence"], "properties": {
            "name": {"type": "string"}, "public_key": {"type": "string"},
            "kind": {"type": "string"}, "evidence": {"type": "string"}}}))
    async def owners(request: Request, authorization: str | None = Header(None)) -> dict:
        """Admit an owner (operator): a person or organisation that answers for agents."""
        operator(authorization, request, "/v1/owners")
        d = obj(await body(request))
        try:  # the kernel's own parser: types and ranges as for any action
            action = action_from_dict({
                "kind": RegisterOwner.KIND, "actor": OPERATOR, "name": d.get("name"),
                "owner_kind": d.get("kind", "organisation"), "public_key": d.get("public_key"),
                "evidence": d.get("evidence")})
        except MalformedAction as e:
            raise Problem(400, "malformed_action", f"owner: {e}") from None
        assert isinstance(action, RegisterOwner)
        if not action.evidence.strip():
            raise Problem(400, "malformed_action", "owner: 'evidence' (the attestation record: "
                          "who vouched for this owner, how) must not be empty")
        with box.lock:
            box.operator_submit(action)
            return {"queued": True, "tick": k.tick + 1}

    @app.post("/v1/agents", responses=M.answers(M.AdmissionAnswer, 202),
              status_code=202, tags=["agents"], openapi_extra=_json_body(
        {"type": "object", "required": ["owner", "name", "public_key", "attestation"],
         "properties": {"owner": {"type": "integer"}, "name": {"type": "string"},
                        "public_key": {"type": "string"}, "attestation": {"type": "string"},
                        "skills": {"type": "object",
                                   "additionalProperties": {"type": "integer"}}}}))
    async def agents(request: Request) -> dict:
        """Ask for admission: an Ed25519 public key and the owner's attestation over
        `agent_attestation_bytes(owner, name, key)`. The admission policy decides: `open`
        and `stake` queue the registration (the kernel checks the attestation), `approval`
        waits for the operator or an overseer. The request is checked first (a known owner,
        its valid attestation, a key never admitted): one that fails enters no queue and no
        log. Rate-limited per source."""
        if not box.allow_source(src(request), admission=True):
            raise refused(request, "/v1/agents", 429, "rate_limited", "too many admission "
                          "requests from this source; retry shortly")
        d = obj(await body(request))
        try:
            checked = action_from_dict({
                "kind": RegisterAgent.KIND, "actor": OPERATOR, "owner": d.get("owner"),
                "name": d.get("name"), "public_key": d.get("public_key"),
                "attestation": d.get("attestation"), "skills": d.get("skills") or {}})
        except MalformedAction as e:  # the kernel's own parser: types and ranges
            raise refused(request, "/v1/agents", 400, "malformed_action", f"agent: {e}") from None
        assert isinstance(checked, RegisterAgent)
        req = Admission(0, checked.owner, checked.name, checked.public_key.hex(),
                        checked.attestation.hex(), dict(checked.skills))
        with box.lock:
            try:
                return box.ask(req)
            except AdmissionRefused as e:
                raise refused(request, "/v1/agents", e.status, e.code, e.detail,
                              claimed=req.owner) from None
            except QueueFull as e:
                raise Problem(503, "queue_full", str(e)) from None

    @app.get("/v1/admissions", responses=M.answers(M.Admissions, 200),
              tags=["operator"])
    def admissions(request: Request, authorization: str | None = Header(None)) -> dict:
        """Admission requests waiting for a decision (operator or overseer token)."""
        overseer(authorization, None, None, None, request, "/v1/admissions")
        with box.lock:
            return {"pending": [{"request": r.id, "owner": r.owner, "name": r.name,
                                 "public_key": r.public_key} for r in box.pending.values()]}

    @app.post("/v1/admissions/{request_id}", responses=M.answers(M.Decision, 200),
              tags=["operator"], openapi_extra=_json_body(
        {"type": "object", "required": ["approve"], "properties": {
            "approve": {"type": "boolean"}}}))
    async def decide(request_id: int, request: Request,
                     authorization: str | None = Header(None)) -> dict:
        who = overseer(authorization, None, None, None, request, "/v1/admissions/{id}")
        d = obj(await body(request))
        if type(d.get("approve")) is not bool:
            raise Problem(400, "malformed_json", "'approve' must be true or false")
        with box.lock:
            try:
                return box.decide(request_id, d["approve"], who)
            except KeyError:
                raise Problem(404, "no_such_request", f"no admission request {request_id} is "
                              f"waiting") from None

    @app.get("/v1/owners", responses=M.answers(M.OwnerFound, 200),
              tags=["agents"])
    def find_owner(public_key: str) -> dict:
        """Which owner a public key was admitted as."""
        with box.lock:
            for o in k.state.registry.owners.values():
                if o.public_key.hex() == public_key.lower():
                    return {"owner": o.id, "name": o.name}
        raise Problem(404, "unknown_owner", "no owner was admitted with that key")

    @app.get("/v1/agents", responses=M.answers(M.AgentFound, 200),
              tags=["agents"])
    def find_agent(public_key: str) -> dict:
        """Which agent a public key was admitted as (after the tick that admitted it)."""
        try:
            key = bytes.fromhex(public_key)
        except ValueError:
            raise Problem(400, "invalid_request", "public_key must be hex") from None
        with box.lock:
            aid = next((a.id for a in k.state.registry.agents.values() if a.public_key == key),
                       None)
            if aid is not None:
                a = k.state.registry.agents[aid]
                return {"agent": a.id, "owner": a.owner, "status": a.status, "nonce": a.nonce}
            pending = next((r.id for r in box.pending.values() if r.public_key == key.hex()), None)
        if pending is not None:
            raise Problem(404, "awaiting_approval", f"admission request {pending} waits for "
                          f"the operator or an overseer")
        raise Problem(404, "unknown_agent", "no agent was admitted with that key")

    # ------------------------------------------------------------------ observations
    @app.get("/v1/agents/{agent}/observation", tags=["agents"])
    def observation(agent: int, request: Request, tick: int | None = None,
                    x_sandbank_signature: str | None = Header(None)) -> dict:
        """The agent's own observation. `tick`: the tick the signature names (default: now;
        at most 2 ticks old)."""
        from sandbank.agents.llm.agent import plain

        with box.lock:
            check_observer(agent, tick, x_sandbank_signature, request,
                           "/v1/agents/{agent}/observation")
            return plain(k.observe(agent))

    async def stream_slot(ws: WebSocket, endpoint: str) -> bool:
        """Admit a stream connection, before its handshake is accepted: its source's rate
        bucket, and a slot among MAX_STREAMS_PER_SOURCE of that source and MAX_STREAMS in all
        (an open stream holds memory and a descriptor until it closes). Refused: closed, and
        counted in the refusal record."""
        source = src(ws)
        why = ("rate_limited" if not box.allow_source(source)
               else None if box.open_stream(source) else "too_many_streams")
        if why is not None:
            box.refuse(source, endpoint, why, None, "a stream refused before its handshake")
            await ws.close(code=1013)
            return False
        return True

    @app.websocket("/v1/agents/{agent}/stream")
    async def agent_stream(ws: WebSocket, agent: int) -> None:
        """The agent's observation after every tick. First message from the client:
        {"tick": T, "signature": hex signature over 'observe:<agent>:<T>'}."""
        if not await stream_slot(ws, "/v1/agents/{agent}/stream"):
            return
        try:
            await ws.accept()
            await _agent_stream(ws, agent)
        finally:
            box.close_stream(src(ws))

    async def _agent_stream(ws: WebSocket, agent: int) -> None:
        try:
            hello = await asyncio.wait_for(ws.receive_json(), timeout=10)
            if not isinstance(hello, dict) or type(hello.get("tick")) is not int \
                    or not isinstance(hello.get("signature"), str):
                raise Problem(400, "invalid_request", 'send {"tick": T, "signature": hex} first')
            with box.lock:
                check_observer(agent, hello["tick"], hello["signature"], ws,
                               "/v1/agents/{agent}/stream")
        except Problem as p:
            await ws.send_json({"type": "problem", "code": p.code, "detail": p.detail})
            await ws.close(code=4401)
            return
        except (TimeoutError, ValueError, WebSocketDisconnect):
            await ws.close(code=4400)
            return
        await _serve_stream(ws, box, agent)

    @app.websocket("/v1/market/stream")
    async def market_stream(ws: WebSocket) -> None:
        """Public market data after every tick: prices, best bid and ask, trades, halts."""
        if not await stream_slot(ws, "/v1/market/stream"):
            return
        try:
            await ws.accept()
            await _serve_stream(ws, box, None)
        finally:
            box.close_stream(src(ws))

    @app.get("/v1/market", responses=M.answers(M.Market, 200),
              tags=["market"])
    def market() -> dict:
        """Public market data: prices, volumes, trades, halts, a history per tick."""
        with box.lock:
            return box.public()

    @app.post("/v1/tick", responses=M.answers(M.TickDone, 200),
              tags=["operator"])
    def tick(request: Request, authorization: str | None = Header(None)) -> dict:
        """Run a tick now (operator)."""
        operator(authorization, request, "/v1/tick")
        s = box.step()
        return {"tick": s.tick, "events": s.events, "accepted": s.accepted,
                "rejected": s.rejected, "reasons": {str(r): v for r, v in s.reasons.items()}}

    # ------------------------------------------------------------------ federation
    @app.get("/v1/federation/bans", responses=M.answers(M.BanList, 200),
              tags=["federation"])
    def federation_bans() -> dict:
        """This sandbox's ban list, signed with the operator's key: what a federated
        sandbox imports (`sandbank federate`) to refuse the owners banned here."""
        with box.lock:
            return ban_list(k, box.key)

    @app.post("/v1/federation/bans", responses=M.answers(M.OwnerQueued, 202),
              status_code=202, tags=["federation"], openapi_extra=_json_body(
        {"type": "object", "required": ["owner", "reason"], "properties": {
            "owner": {"type": "integer"}, "reason": {"type": "string"}}}))
    async def federation_ban(request: Request, authorization: str | None = Header(None)
                             ) -> dict:
        """Ban an owner (operator): its agents are revoked, its keys go on the ban list."""
        operator(authorization, request, "/v1/federation/bans")
        d = obj(await body(request))
        return queue_operator({"kind": BanOwner.KIND, "owner": d.get("owner"),
                               "reason": d.get("reason")}, "ban")

    @app.post("/v1/federation/import", responses=M.answers(M.OwnerQueued, 202),
              status_code=202, tags=["federation"], openapi_extra=_json_body(
        {"type": "object", "description": "a peer's ban list, as GET /v1/federation/bans "
         "publishes it"}))
    async def federation_import(request: Request, authorization: str | None = Header(None)
                                ) -> dict:
        """Recognise a federated peer's signed ban list (operator). The kernel checks the
        peer is pinned (`federation.peers`), the signature and that the list is newer than
        the last one; the outcome is in the log (`bans_imported`, or the refusal)."""
        operator(authorization, request, "/v1/federation/import")
        doc = await body(request, limit=MAX_DOCUMENT)
        return queue_operator({"kind": ImportBans.KIND, "document": orjson.dumps(doc).decode()},
                              "import")

    @app.post("/v1/personhood/status-lists", responses=M.answers(M.OwnerQueued, 202),
              status_code=202, tags=["operator"], openapi_extra=_json_body(
        {"type": "object", "description": "a personhood issuer's signed "
         "BitstringStatusListCredential"}))
    async def status_lists(request: Request, authorization: str | None = Header(None)
                           ) -> dict:
        """Publish a pinned personhood issuer's status list (operator): owners whose
        credential it revokes have their agents suspended, and revoked credentials no longer
        admit an owner (regulation/personhood.py). The outcome is in the log."""
        operator(authorization, request, "/v1/personhood/status-lists")
        doc = await body(request, limit=MAX_DOCUMENT)
        return queue_operator({"kind": PublishStatusList.KIND,
                               "credential": orjson.dumps(doc).decode()}, "status list")

    # ------------------------------------------------------------------ audit
    @app.get("/v1/entries", responses=M.answers(M.Entries, 200),
              tags=["audit"])
    def find_entries(actor: int, nonce: int, request: Request, tick: int | None = None) -> dict:
        """The log entries an actor's action (by its nonce) produced: seq, tick and kind
        (empty until the tick that ran it has committed). For the actor itself (its read
        signature: see /v1/proof), overseers and the operator; the kind of an entry the
        reader may not read is `withheld`."""
        with box.lock:
            who = reader(request, tick, "/v1/entries")
            if not who[1] and who[0] != actor:
                raise refused(request, "/v1/entries", 403, "not_your_action", "an action's "
                              "entries are for its actor (X-Sandbank-Agent and a read "
                              "signature), overseers and the operator", claimed=actor)
            if abs(actor) > MAX_ID or abs(nonce) > MAX_ID:  # no such action can be in the log
                return {"entries": []}
            return {"entries": [{"seq": e.seq, "tick": e.tick,
                                 "kind": e.kind if readable(orjson.loads(e.body), who)
                                 else WITHHELD}
                                for e in k.store.action_entries(actor, nonce)]}

    @app.get("/v1/entries/recent", responses=M.answers(M.RecentEntries, 200),
              tags=["audit"])
    def recent(request: Request, limit: int = 50, kind: str | None = None,
               tick: int | None = None) -> dict:
        """The last committed entries (seq, tick, kind, actor), newest first; with `kind`,
        those of that kind among the last 5,000. An entry the reader may not read shows as
        kind `withheld` without its actor, and a `kind` filter finds only readable ones."""
        limit = max(1, min(limit, 500))
        out = []
        with box.lock:
            who = reader(request, tick, "/v1/entries/recent")
            last = k.store.last_checkpoint()
            seq = (last.size if last else 0) - 1
            while seq >= 0 and len(out) < limit and seq >= (last.size if last else 0) - 5_000:
                e = k.store.entry(seq)
                seq -= 1
                if e is None or (kind is not None and e.kind != kind):
                    continue
                d = orjson.loads(e.body)
                if readable(d, who):
                    out.append({"seq": e.seq, "tick": e.tick, "kind": e.kind,
                                "actor": d.get("actor")})
                elif kind is None:
                    out.append({"seq": e.seq, "tick": e.tick, "kind": WITHHELD, "actor": None})
        return {"entries": out}

    @app.get("/v1/checkpoint", responses=M.answers(M.CheckpointDoc, 200),
              tags=["audit"])
    def checkpoint() -> dict:
        """The latest signed checkpoint, and the latest one a witness cosigned (`cosigned`:
        the note with the witnesses' cosignature lines; null without witnesses)."""
        from sandbank.audit.checkpoint import NoteError
        from sandbank.audit.witness import add_cosignature

        with box.lock:
            cp = k.store.last_checkpoint()
            if cp is None:
                raise Problem(404, "no_checkpoint", "nothing committed yet")
            found = k.store.last_cosigned()
            cosigned = None
            if found is not None:
                cosigned = k.store.checkpoint(found[0]).note
                for line in found[1]:
                    try:
                        cosigned = add_cosignature(cosigned, line + "\n")
                    except NoteError:  # a row altered in the store: not served
                        continue
            return {"tick": cp.tick, "size": cp.size, "root": cp.root.hex(), "note": cp.note,
                    "cosigned": cosigned}

    @app.get("/v1/proof/{seq}", responses=M.answers(M.InclusionBundle, 200),
              tags=["audit"])
    def proof(seq: int, request: Request, tick: int | None = None) -> dict:
        """An inclusion proof of entry `seq` against the latest signed checkpoint (check it
        with `sandbank check-proof`, the client's `prove`, or the dashboard). The entry itself
        is in the bundle if the reader may read it: public entries for anyone; others for the
        identities they name (headers X-Sandbank-Agent and X-Sandbank-Signature over
        'observe:<id>:<tick>', ?tick=), overseers (the overseer token, or X-Sandbank-Overseer
        with a signature over 'oversee:<id>:<tick>') and the operator. Otherwise the bundle
        proves the entry's leaf hash, and `withheld` is `restricted`."""
        from sandbank.audit.proofs import BundleError, inclusion_bundle

        with box.lock:
            who = reader(request, tick, "/v1/proof/{seq}")
            try:
                bundle = inclusion_bundle(k.store, seq)
            except BundleError as e:
                raise Problem(404, "no_such_entry", str(e)) from None
            d = orjson.loads(bundle["entry"])
            if not readable(d, who):
                import base64
                from hashlib import sha256

                bundle["leaf_hash"] = base64.b64encode(
                    sha256(b"\x00" + bundle["entry"].encode()).digest()).decode()
                bundle["entry"] = None
                bundle["withheld"] = RESTRICTED  # (not which kind of restriction: that too
                # would tell where oversight acted)
            return bundle

    @app.get("/v1/consistency", responses=M.answers(M.ConsistencyBundle, 200),
              tags=["audit"])
    def consistency(old_size: int) -> dict:
        """A consistency proof: the log of `old_size` entries is a prefix of today's."""
        from sandbank.audit.proofs import BundleError, consistency_bundle

        with box.lock:
            try:
                return consistency_bundle(k.store, old_size)
            except BundleError as e:
                raise Problem(404, "no_such_size", str(e)) from None

    # ------------------------------------------------------------------ oversight
    def tickets_view(limit: int = 100) -> list[dict[str, Any]]:
        tickets = sorted(k.state.controls.tickets.values(), key=lambda t: -t.id)
        return [{"id": t.id, "scope": t.scope, "level": t.level, "agent": t.agent,
                 "market": t.market, "agents": t.agents[:50], "reason": t.reason,
                 "alert": t.alert, "opened": t.opened, "opened_by": t.opened_by,
                 "status": t.status, "resolved_by": t.resolved_by, "resolved": t.resolved}
                for t in tickets[:limit]]

    @app.get("/v1/oversight/alerts", responses=M.answers(M.Alerts, 200),
              tags=["oversight"])
    def oversight_alerts(request: Request, tick: int | None = None, since: int = 0,
                         authorization: str | None = Header(None),
                         x_sandbank_overseer: int | None = Header(None),
                         x_sandbank_signature: str | None = Header(None)) -> dict:
        """Alerts raised (newest first; `since`: only alert ids above it), each citing the
        log entries it rests on (overseers; the operator may read)."""
        overseer(authorization, x_sandbank_overseer, x_sandbank_signature, tick, request,
                 "/v1/oversight/alerts")
        with box.lock:
            return {"alerts": [a for a in reversed(box.alerts) if a["alert"] > since]}

    @app.get("/v1/oversight/tickets", responses=M.answers(M.Tickets, 200),
              tags=["oversight"])
    def oversight_tickets(request: Request, tick: int | None = None,
                          authorization: str | None = Header(None),
                          x_sandbank_overseer: int | None = Header(None),
                          x_sandbank_signature: str | None = Header(None)) -> dict:
        """Escalation tickets, newest first: what each breaker imposed, and whether an
        overseer has resumed it."""
        overseer(authorization, x_sandbank_overseer, x_sandbank_signature, tick, request,
                 "/v1/oversight/tickets")
        with box.lock:
            return {"tickets": tickets_view(1000)}

    @app.get("/v1/oversight/summary", tags=["oversight"])
    def oversight_summary(request: Request, tick: int | None = None,
                          authorization: str | None = Header(None),
                          x_sandbank_overseer: int | None = Header(None),
                          x_sandbank_signature: str | None = Header(None)) -> dict:
        """Alerts, tickets, breakers, the approval queues and the delegation and message
        graphs, in one read (the dashboard's; overseers, and the operator may read)."""
        overseer(authorization, x_sandbank_overseer, x_sandbank_signature, tick, request,
                 "/v1/oversight/summary")
        with box.lock:
            c = k.state.controls
            return {
                "tick": k.tick, "console": box.console,
                "alerts": list(box.alerts)[-100:][::-1],
                "tickets": tickets_view(),
                "halted": bool(c.halts), "paused": sorted(m for m, t in c.paused.items() if t),
                "frozen": sorted(a for a, t in c.frozen_by.items() if t),
                "caps": {n: v for n, v in sorted(c.caps.items()) if v},
                "boundary_queue": [{"request": r.id, "agent": r.agent, "gateway": r.gateway,
                                    "amount": r.amount, "tick": r.tick, "expires": r.expires}
                                   for r in sorted(k.state.boundary.pending.values(),
                                                   key=lambda r: r.id)],
                "admission_queue": [{"request": r.id, "owner": r.owner, "name": r.name}
                                    for r in box.pending.values()],
                "delegation": [[a, b, n] for (a, b), n in sorted(
                    box.delegation.items(), key=lambda x: -x[1])[:200]],
                "messages": [[a, b, n] for (a, b), n in sorted(
                    box.messages.items(), key=lambda x: -x[1])[:200]],
                "agents": {s: sum(1 for a in k.state.registry.agents.values() if a.status == s)
                           for s in ("active", "frozen", "suspended", "revoked")},
                # the oversight engine's risk indicators of the last tick (a served scenario
                # with oversight on; hidden ones included: this is the overseers' view)
                "indicators": ({n: round(v, 4) for n, v in sorted(box.econ.metrics.kri.items())}
                               if box.econ is not None else {}),
                "concentration": box.concentration(),
                # units of the indicators, and names of who the view shows (ids otherwise)
                "indicator_units": box.indicator_units(
                    sorted(box.econ.metrics.kri) if box.econ is not None else []),
                "names": box.names({x for e in (*box.delegation, *box.messages) for x in e}),
            }

    @app.post("/v1/oversight/interventions", responses=M.answers(M.InterventionQueued, 202),
              status_code=202, tags=["oversight"],
              openapi_extra=_json_body({"type": "object", "required": ["kind"], "properties": {
                  "kind": {"type": "string", "enum": sorted(CONSOLE_KINDS)}},
                  "additionalProperties": True}))
    async def intervene(request: Request, authorization: str | None = Header(None)) -> dict:
        """An intervention by the console overseer (overseer token): trip_breaker, resume,
        set_cap, approve_external, interrupt, raise_alert, disable_action — the fields of the
        action, without actor, nonce and signature (the server signs)."""
        who = overseer(authorization, None, None, None, request, "/v1/oversight/interventions",
                       console_only=True)
        d = obj(await body(request))
        if not isinstance(d.get("kind"), str) or d["kind"] not in CONSOLE_KINDS:
            raise Problem(400, "malformed_action", f"kind must be one of {sorted(CONSOLE_KINDS)}")
        d = {f: v for f, v in d.items() if f not in ("actor", "nonce", "signature")}
        try:
            action: Action = action_from_dict({**d, "actor": who})
        except MalformedAction as e:
            raise Problem(400, "malformed_action", str(e)) from None
        with box.lock:
            try:
                box.console_submit(action)
            except QueueFull as e:
                raise Problem(503, "queue_full", str(e)) from None
            return {"queued": True, "tick": k.tick + 1, "actor": who, "nonce": action.nonce}

    @app.post("/v1/oversight/actions", responses=M.answers(M.Queued, 202),
              status_code=202, openapi_extra=_json_body(ACTION_SCHEMA),
              tags=["oversight"])
    async def overseer_actions(request: Request) -> dict:
        """An overseer's own signed action (actor <= -1001), as agents post theirs."""
        return accept(await body(request, MAX_ACTION), request, "/v1/oversight/actions",
                      overseers=True)

    # ------------------------------------------------------------------ dashboard
    @app.get("/", include_in_schema=False)
    @app.get("/dashboard", include_in_schema=False)
    def dashboard() -> HTMLResponse:
        page = resources.files("sandbank.server").joinpath("dashboard.html").read_text()
        return HTMLResponse(page)

    @app.get("/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        """The API reference, rendered here from the OpenAPI schema: no CDN, works offline."""
        return HTMLResponse(_docs_page(app.openapi()))

    return app


def _docs_page(doc: dict[str, Any]) -> str:
    """A self-contained HTML page of an OpenAPI schema: each path's operations, parameters,
    body and answers, then the schemas (as JSON)."""
    from html import escape

    def js(x: Any) -> str:
        return escape(orjson.dumps(x, option=orjson.OPT_INDENT_2).decode())

    info = doc["info"]
    title = escape(f"{info['title']} {info['version']}")
    out = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title} API</title>"
           "<style>body{font:14px/1.45 system-ui,sans-serif;margin:1em 2em;max-width:70em}"
           ".op{border:1px solid #e5e7eb;border-radius:6px;margin:.6em 0;padding:.4em .8em}"
           ".m{font:600 12px monospace;padding:.1em .5em;border-radius:4px;background:#dbeafe}"
           "pre{background:#f8fafc;overflow:auto;max-height:20em}</style></head><body>",
           f"<h1>{title}</h1><p>{escape(info.get('description', ''))}</p>"
           "<p>The schema: <a href='/openapi.json'>/openapi.json</a></p>"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            out.append(f"<details class=op><summary><span class=m>{method.upper()}</span> "
                       f"<code class=path>{escape(path)}</code> {escape(op.get('summary', ''))}"
                       f"</summary><p>{escape(op.get('description', ''))}</p>")
            for p in op.get("parameters", []):
                out.append(f"<div>{escape(p['in'])} <code>{escape(p['name'])}</code>"
                           f"{' (required)' if p.get('required') else ''}: "
                           f"{js(p.get('schema', {}))}</div>")
            if "requestBody" in op:
                out.append(f"<div>body:</div><pre>{js(op['requestBody'])}</pre>")
            out.append("<div>answers: " + ", ".join(
                f"{escape(c)} {escape(r.get('description', ''))}"
                for c, r in op.get("responses", {}).items()) + "</div></details>")
    out.append("<h2>Schemas</h2>")
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        out.append(f"<details class=op><summary><code>{escape(name)}</code></summary>"
                   f"<pre>{js(schema)}</pre></details>")
    return "".join(out) + "</body></html>"


async def _serve_stream(ws: WebSocket, box: Sandbox, agent: int | None) -> None:
    from sandbank.agents.llm.agent import plain

    sub = Subscriber(asyncio.get_running_loop(), asyncio.Queue(maxsize=64), agent)
    with box.lock:
        box.subscribers.append(sub)
        first = ({"type": "observation", "tick": box.k.tick,
                  "observation": plain(box.k.observe(agent))} if agent is not None else
                 {"type": "market", "tick": box.k.tick, "markets": box.markets(),
                  "halted": bool(box.k.state.controls.halts), "trades": []})
    try:
        await ws.send_json(first)
        while True:
            msg = await sub.queue.get()
            await ws.send_json(msg)
            if sub.lagged and sub.queue.empty():
                await ws.send_json({"type": "problem", "code": "lagged",
                                    "detail": "this client fell 64 ticks behind"})
                await ws.close(code=1013)
                return
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        with box.lock:
            if sub in box.subscribers:
                box.subscribers.remove(sub)


def open_store(db: str, schema: str = "public") -> Any:
    """A store from `--db`: a PostgreSQL URL (one log per `schema`), or a SQLite file path."""
    if db.startswith(("postgresql://", "postgres://")):
        from sandbank.store.postgres import PostgresStore

        return PostgresStore(db, schema=schema)
    from sandbank.store.sqlite import SQLiteStore

    return SQLiteStore(db)


def ticker(box: Sandbox, seconds: float, stop: threading.Event,
           report: Any = None) -> threading.Thread:
    """Advance the economy every `seconds` (a daemon thread); `report(summary)` after each
    tick, if given."""
    def run() -> None:
        import time

        due = time.monotonic()
        while True:  # on a fixed cadence: a tick's own duration does not delay the next
            due = max(due + seconds, time.monotonic())  # behind: no burst to catch up
            if stop.wait(max(0.0, due - time.monotonic())):
                return
            try:
                summary = box.step()
                if report is not None:
                    report(summary)
            except Exception as e:  # state may be half-changed: stop ticking, say why
                import logging

                logging.getLogger("sandbank.server").exception("the tick failed")
                box.failure = f"tick {box.k.tick} failed: {type(e).__name__}: {e}"
                return
    t = threading.Thread(target=run, daemon=True, name="sandbank-ticker")
    t.start()
    return t
