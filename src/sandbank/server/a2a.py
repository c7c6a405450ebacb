"""A2A 1.0 for the live sandbox (`a2a-sdk`): an agent card, and each agent action as an A2A
task, over JSON-RPC on the same server as the HTTP API.

- `GET /.well-known/agent-card.json` (public): the sandbox as an A2A agent — its JSON-RPC
  interface, one skill per action kind an agent may take, and the signature scheme.
- `POST /a2a` (JSON-RPC 2.0, header `A2A-Version: 1.0`): `SendMessage`,
  `SendStreamingMessage`, `GetTask`, `SubscribeToTask`, `CancelTask` (always refused: a
  queued action cannot be withdrawn). `ListTasks`, push notifications and the extended card
  are not offered.

**The envelope.** A message carries exactly one DataPart whose data is the signed action in
the very wire form `POST /v1/actions` takes: `{"kind", "actor", "nonce", ...fields,
"signature"}`, the signature Ed25519 by the actor's key over `Action.signing_bytes()` (RFC
8785 canonical JSON of kind, actor, nonce and fields). The server checks it with the HTTP
API's own door (`accept` in server/app.py: source rate limit, parse, the actor's key, the
nonce, the identity's rate limit) and nothing else: there is no second, weaker path. A
message refused there is answered with a JSON-RPC error (`InvalidParams`, its `data.code`
the HTTP API's problem code), counted into the tick's one bounded refusal record, attributed
to nobody, and leaves no task behind. (JSON numbers travel as protobuf doubles: integral
ones are read back as integers, exact up to 2**53 - 1, the log's range; RFC 8785 writes 1.0
and 1 alike, so the signed bytes are the same.)

**The task.** A task exists only for an action that passed the door: it is created
`submitted` and is `working` ("queued for tick T") when SendMessage answers; then
`completed` (its entries are in the log: an artifact `log-entry` names their seq and tick),
`rejected` (the sequencer refused it: the log's `rejected` entry gives the reason, in the
status message and the artifact) or `failed` (a later entry of the action was a refusal,
or its nonce was taken by another action of the same agent so it will never run). The task
id is a capability: whoever holds it reads the outcome (the action's own sender, normally);
the artifact carries the entry itself only if the entry is public, otherwise its seq, tick
and kind (read it with the agent's read signature: `/v1/proof/{seq}`, `RemoteAgent.prove`).
Resending the same envelope returns the same task.

**Bounds.** At most MAX_TASKS tasks are kept (the oldest finished one is forgotten first,
then the oldest), at most MAX_TASKS_PER_ACTOR of one agent; a request body is at most
MAX_BODY bytes; a message is kept in the task's history only up to HISTORY_BYTES; at most
MAX_WAITERS requests wait for a tick at once (a blocking SendMessage waits at most
BLOCK_SECONDS, a stream STREAM_SECONDS). The log keeps everything: a forgotten task's action
is still found with `GET /v1/entries?actor&nonce`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes.common import DefaultServerCallContextBuilder
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    Artifact,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    ExtendedAgentCardNotConfiguredError,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    HTTPAuthSecurityScheme,
    InvalidParamsError,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    PushNotificationNotSupportedError,
    Role,
    SecurityRequirement,
    SecurityScheme,
    SendMessageRequest,
    StringList,
    SubscribeToTaskRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskNotCancelableError,
    TaskNotFoundError,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    UnsupportedOperationError,
)
from google.protobuf import struct_pb2
from google.protobuf.json_format import MessageToDict, ParseDict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbank.audit.checkpoint import verifier_key
from sandbank.audit.visibility import may_read
from sandbank.kernel.schema import ACTION_TYPES

CARD_PATH = "/.well-known/agent-card.json"
RPC_PATH = "/a2a"
ENDPOINT = "/a2a SendMessage"  # how the refusal record names this door
MEDIA_TYPE = "application/vnd.sandbank.signed-action+json"
EXTENSION = "https://sandbank.dev/a2a/signed-action/v1"
SCHEME = "sandbank_ed25519"
MAX_TASKS = 4_096
MAX_TASKS_PER_ACTOR = 256
MAX_BODY = 128 << 10  # a JSON-RPC request (an action is at most 64 KiB, as over HTTP)
HISTORY_BYTES = 4_096  # a message larger than this is not kept in its task's history
ENTRY_BYTES = 8_192  # a public entry larger than this is named in the artifact, not copied
MAX_ENTRIES_LISTED = 64
MAX_WAITERS = 256
BLOCK_SECONDS = 10.0
STREAM_SECONDS = 30.0
POLL = 0.05
FINAL = (TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_REJECTED,
         TaskState.TASK_STATE_FAILED)

# the skills' words for the main action kinds: (description, tags, example fields)
SKILLS: dict[str, tuple[str, list[str], dict[str, Any]]] = {
    "place_order": ("Buy or sell units of an asset on its continuous double auction "
                    "(price-time priority); side 'buy' or 'sell', order_type 'limit' or "
                    "'market', price in quote units per unit.", ["market", "exchange"],
                    {"asset": "WGT", "side": "buy", "qty": 2, "price": 110}),
    "cancel_order": ("Cancel one of your resting orders.", ["market", "exchange"],
                     {"order": 17}),
    "pay": ("Pay another agent: amount of asset from your account to theirs (a ledger "
            "transfer).", ["payments", "ledger"], {"to": 3, "asset": "CRD", "amount": 25,
                                                   "memo": "thanks"}),
    "send_message": ("Send a message to another agent (to=0: everyone); logged, filtered "
                     "and possibly fee-charged.", ["messaging"], {"to": 3, "content": "hi"}),
    "post_task": ("Post a task contract needing skills, with a reward escrowed at award "
                  "and a deadline tick; workers bid.", ["tasks", "contracts"],
                  {"skills": {"code": 1}, "reward": 100, "deadline": 50}),
    "bid_task": ("Bid a price for a posted task.", ["tasks", "contracts"],
                 {"task": 4, "price": 80}),
    "award_task": ("Award your task to a bid (escrows the reward).", ["tasks", "contracts"],
                   {"task": 4, "bid": 2}),
    "deliver": ("Deliver the work of a contract you were awarded; the validator releases "
                "or refunds the reward.", ["tasks", "contracts"], {"contract": 9}),
    "subcontract": ("Subcontract parts of your contract to another worker.",
                    ["tasks", "contracts", "delegation"],
                    {"contract": 9, "worker": 5, "parts": ["tests"], "price": 30}),
    "judge": ("As a judge of a contract, give your verdict on the delivery.",
              ["tasks", "contracts"], {"contract": 9, "verdict": True}),
    "arbitrate": ("As the arbiter of a disputed contract, decide it.",
                  ["tasks", "contracts"], {"contract": 9, "verdict": False}),
    "create_auction": ("Sell a quantity of an asset by sealed-bid auction (held until it "
                       "clears).", ["auctions"],
                       {"asset": "WGT", "quantity": 10, "format": "second_price",
                        "closes": 40}),
    "bid_auction": ("Bid in a sealed-bid auction.", ["auctions"],
                    {"auction": 1, "price": 95}),
    "create_mission": ("Start a mission: a public-good goal that pays its reward to the "
                       "participants if the target is raised by the deadline tick.",
                       ["missions"], {"name": "bridge", "reward": 500, "target": 1000,
                                      "deadline": 60}),
    "join_mission": ("Join a mission.", ["missions"], {"mission": 1}),
    "contribute": ("Contribute an amount to a mission you joined.", ["missions"],
                   {"mission": 1, "amount": 50}),
    "join_game": ("Join a pricing game as one of its firms.", ["pricing"], {"game": "duopoly"}),
    "set_price": ("Set your price in a pricing game (thousandths of a minor unit per unit).",
                  ["pricing"], {"game": "duopoly", "price": 1473}),
    "trace": ("Record what your model was asked and answered (an LLM trace; hashed into the "
              "log).", ["traces"], {"prompt": "...", "response": "...", "model": "m"}),
    "transfer": ("A batch of ledger transfers between your accounts and others' (TigerBeetle "
                 "model: ids scoped to you, two-phase holds, LINKED batches).", ["ledger"],
                 {"transfers": [{"id": 1, "debit": 20, "credit": 31, "amount": 5}]}),
}


_FIELD_TYPES = {"int": 1, "bool": True, "bytes": "00" * 32, "dict[str, int]": {"skill": 1},
                "list[int]": [1], "list[str]": ["part"], "str": "text"}


def agent_kinds() -> list[str]:
    """The action kinds an agent may take (the operator's, overseers' and supervisors' are
    not offered here), as the economy registered them."""
    return sorted(k for k, c in ACTION_TYPES.items()
                  if not (c.OPERATOR_ONLY or c.OVERSEER_ONLY or c.SUPERVISOR))


def skills() -> list[AgentSkill]:
    need = [SecurityRequirement(schemes={SCHEME: StringList()})]
    out = []
    for kind in agent_kinds():
        cls = ACTION_TYPES[kind]
        fields = [(f.name, _FIELD_TYPES.get(str(f.type)), f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING)
                  for f in dataclasses.fields(cls) if f.name not in ("actor", "nonce", "signature")]
        doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        text, tags, example = SKILLS.get(kind, (
            doc if doc and not doc.startswith(f"{cls.__name__}(") else f"The {kind} action.",
            [cls.__module__.rsplit(".", 1)[-1]],
            {n: t if t is not None else "text" for n, t, required in fields if required}))
        listed = ", ".join(f"{n}{'' if r else ' (optional)'}" for n, t, r in fields)
        envelope = {"kind": kind, "actor": 12, "nonce": 7, **example,
                    "signature": "<128 hex: Ed25519 over Action.signing_bytes()>"}
        out.append(AgentSkill(
            id=kind, name=kind.replace("_", " "),
            description=f"{text} Fields: {listed or 'none'}. Send it as the one DataPart of a "
                        f"message, signed by the actor (extension {EXTENSION}).",
            tags=["sandbank", *tags], examples=[orjson.dumps(envelope).decode()],
            input_modes=[MEDIA_TYPE], output_modes=["application/json"],
            security_requirements=need))
    return out


def agent_card(base_url: str, operator_key: str, skill_list: list[AgentSkill]) -> AgentCard:
    from sandbank import __version__

    signed = ("Every message that acts carries, as its one DataPart, an action signed with the "
              "actor's Ed25519 key exactly as POST /v1/actions takes it: {kind, actor, nonce, "
              "...fields, signature}, signature = hex Ed25519 over RFC 8785 canonical JSON of "
              "{kind, actor, nonce, ...fields}. Not an HTTP header: the credential is inside "
              "the message. Unsigned or wrongly signed messages are refused (JSON-RPC "
              "InvalidParams) and attributed to nobody.")
    params = struct_pb2.Struct()
    params.update({"media_type": MEDIA_TYPE, "signature": "ed25519-hex",
                   "signing_bytes": "RFC 8785 canonical JSON of {kind, actor, nonce, ...fields}",
                   "wire_form": "the body of POST /v1/actions", "operator_key": operator_key,
                   "join": "admission: POST /v1/agents (docs/server.md)"})
    return AgentCard(
        name="sandbank", version=__version__,
        description="A live sandbank economy (a bounded market of AI agents with a ledger, an "
                    "order book, auctions, task contracts and a verifiable audit log). Each "
                    "message carries one signed action; its task completes when the action's "
                    "tick is committed to the log.",
        supported_interfaces=[AgentInterface(url=f"{base_url}{RPC_PATH}", protocol_binding="JSONRPC",
                                             protocol_version="1.0")],
        provider=AgentProvider(organization="sandbank", url=base_url),
        documentation_url=f"{base_url}/docs",
        capabilities=AgentCapabilities(streaming=True, push_notifications=False,
                                       extensions=[AgentExtension(
                                           uri=EXTENSION, description=signed, required=True,
                                           params=params)]),
        security_schemes={SCHEME: SecurityScheme(http_auth_security_scheme=HTTPAuthSecurityScheme(
            scheme="Sandbank-Ed25519", description=signed))},
        default_input_modes=[MEDIA_TYPE], default_output_modes=["application/json", "text/plain"],
        skills=skill_list)


def message_for(envelope: dict[str, Any], *, context_id: str | None = None) -> Message:
    """An A2A message carrying a signed action (`RemoteAgent.envelope(action)`), for a client
    of this endpoint."""
    return Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), context_id=context_id,
                   parts=[Part(data=ParseDict(envelope, struct_pb2.Value()),
                               media_type=MEDIA_TYPE)])


def _integers(value: Any) -> Any:
    """JSON numbers back from protobuf doubles: an integral one within the log's range is an
    integer again (anything else stays a float, which no action field takes)."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53 - 1:
        return int(value)
    if isinstance(value, list):
        return [_integers(v) for v in value]
    if isinstance(value, dict):
        return {k: _integers(v) for k, v in value.items()}
    return value


@dataclass
class Tracked:
    task: Task
    actor: int
    nonce: int
    digest: bytes  # of the envelope: a resend of the same one finds this task
    tick: int  # the tick it was queued for
    checked: int = -1  # the tick at which the log was last looked at for it
    done: bool = False


def _status(t: Tracked, state: int, text: str, data: dict[str, Any] | None = None) -> None:
    parts = [Part(text=text)]
    if data is not None:
        parts.append(Part(data=ParseDict(data, struct_pb2.Value()), media_type="application/json"))
    status = TaskStatus(state=state, message=Message(
        role=Role.ROLE_AGENT, message_id=str(uuid.uuid4()), task_id=t.task.id,
        context_id=t.task.context_id, parts=parts))
    status.timestamp.GetCurrentTime()
    t.task.status.CopyFrom(status)
    t.done = state in FINAL


class SandbankHandler(RequestHandler):
    """The sandbox's A2A request handler: messages become signed actions through the HTTP
    API's door, tasks follow them into the log."""

    def __init__(self, box: Any, accept: Callable[..., dict[str, Any]],
                 src: Callable[[Any], str]) -> None:
        self.box, self.accept, self.src = box, accept, src
        self.tasks: OrderedDict[str, Tracked] = OrderedDict()
        self.by_action: dict[tuple[int, int], str] = {}
        self.per_actor: dict[int, int] = {}
        self.waiters = 0

    # ------------------------------------------------------------------ the door
    def _refuse(self, request: Any, code: str, detail: str, claimed: Any = None) -> NoReturn:
        if request is not None:
            self.box.refuse(self.src(request), ENDPOINT, code, claimed, detail)
        raise InvalidParamsError(message=f"{code}: {detail}", data={"code": code})

    def _submit(self, params: SendMessageRequest, context: ServerCallContext) -> Tracked:
        request = context.state.get("sandbank_request")
        msg = params.message
        if msg.task_id:
            self._refuse(request, "malformed_action", "each action is a task of its own: send "
                         "the message without a taskId")
        data = [p for p in msg.parts if p.HasField("data")]
        if len(data) != 1:
            self._refuse(request, "malformed_action", f"a message carries exactly one DataPart: "
                         f"the signed action (media type {MEDIA_TYPE}); it has {len(data)}")
        d = _integers(MessageToDict(data[0].data))
        digest = hashlib.sha256(orjson.dumps(d, option=orjson.OPT_SORT_KEYS)).digest()
        if isinstance(d, dict) and type(d.get("actor")) is int and type(d.get("nonce")) is int:
            known = self.by_action.get((d["actor"], d["nonce"]))
            if known is not None:  # this exact envelope passed the door before: its task
                t = self.tasks[known]
                if t.digest == digest:
                    return t
                self._refuse(request, "stale_nonce", f"nonce {d['nonce']} of actor "
                             f"{d['actor']} is another action's (task {known})", d["actor"])
        try:
            answer = self.accept(d, request, ENDPOINT)
        except Exception as e:  # a Problem (the HTTP API's door): counted there already
            code, detail = getattr(e, "code", None), getattr(e, "detail", None)
            if code is None:
                raise
            raise InvalidParamsError(message=f"{code}: {detail}",
                                     data={"code": code, "status": str(e.status)}) from None
        actor, nonce, tick = d["actor"], d["nonce"], answer["tick"]
        task_id = str(uuid.uuid4())
        context_id = msg.context_id[:128] or str(uuid.uuid4())
        task = Task(id=task_id, context_id=context_id)
        task.metadata.update({"actor": actor, "nonce": nonce, "kind": d["kind"], "tick": tick})
        if msg.ByteSize() <= HISTORY_BYTES:
            kept = Message()
            kept.CopyFrom(msg)
            kept.task_id, kept.context_id = task_id, context_id
            task.history.append(kept)
        t = Tracked(task, actor, nonce, digest, tick)
        _status(t, TaskState.TASK_STATE_SUBMITTED, "accepted: signed by the actor")
        self._make_room(actor)
        self.tasks[task_id] = t
        self.by_action[(actor, nonce)] = task_id
        self.per_actor[actor] = self.per_actor.get(actor, 0) + 1
        _status(t, TaskState.TASK_STATE_WORKING, f"queued for tick {tick}")
        return t

    def _make_room(self, actor: int) -> None:
        """Forget a task if the store (or the actor's share of it) is full: the oldest
        finished one first, else the oldest."""
        if self.per_actor.get(actor, 0) >= MAX_TASKS_PER_ACTOR:
            self._forget(next(i for i, t in self.tasks.items() if t.actor == actor))
        while len(self.tasks) >= MAX_TASKS:
            oldest = list(zip(range(64), self.tasks.items(), strict=False))
            done = next((i for _, (i, t) in oldest if t.done), None)
            self._forget(done if done is not None else next(iter(self.tasks)))

    def _forget(self, task_id: str) -> None:
        t = self.tasks.pop(task_id)
        self.by_action.pop((t.actor, t.nonce), None)
        n = self.per_actor.get(t.actor, 0) - 1
        if n > 0:
            self.per_actor[t.actor] = n
        else:
            self.per_actor.pop(t.actor, None)

    # ------------------------------------------------------------------ the log
    def _refresh(self, t: Tracked) -> bool:
        """Look the action up in the log once per tick; False if a tick holds the economy
        (try again shortly: the door never waits for a tick, nor does this)."""
        box, k = self.box, self.box.k
        if t.done or k.tick < t.tick or t.checked >= k.tick:
            return True
        if not box.lock.acquire(blocking=False):
            return False
        try:
            t.checked = k.tick
            entries = k.store.action_entries(t.actor, t.nonce)
            if not entries:
                ident = k.state.registry.agents.get(t.actor)
                if ident is not None and ident.nonce >= t.nonce:
                    _status(t, TaskState.TASK_STATE_FAILED, f"not run: nonce {t.nonce} was taken "
                            f"by another action of agent {t.actor} (two actions with one nonce, "
                            f"or out of order within a tick)", {"reason": "nonce_taken"})
                elif k.tick > t.tick:
                    _status(t, TaskState.TASK_STATE_WORKING, f"queued for tick {t.tick}: not run "
                            f"yet (the ticks were full), waiting at tick {k.tick}")
                return True
            self._outcome(t, entries)
            return True
        finally:
            box.lock.release()

    def _outcome(self, t: Tracked, entries: list[Any]) -> None:
        k = self.box.k
        first = orjson.loads(entries[0].body)
        listed = [{"seq": e.seq, "tick": e.tick, "kind": e.kind}
                  for e in entries[:MAX_ENTRIES_LISTED]]
        data: dict[str, Any] = {"actor": t.actor, "nonce": t.nonce, "seq": entries[0].seq,
                                "tick": entries[0].tick, "kind": entries[0].kind,
                                "entries": listed, "count": len(entries), "entry": None}
        if not may_read(first, None, overseer=False, table=k.visibility):
            data["withheld"] = "restricted"  # read it as the actor: GET /v1/proof/{seq}
        elif len(entries[0].body) <= ENTRY_BYTES:
            data["entry"] = first
        else:
            data["withheld"] = "too_large"
        t.task.artifacts.append(Artifact(
            artifact_id=f"{t.task.id}-log", name="log-entry",
            description="the log entries this action produced: prove them against the signed "
                        "checkpoint with GET /v1/proof/{seq} (or RemoteAgent.prove(nonce))",
            parts=[Part(data=ParseDict(data, struct_pb2.Value()), media_type="application/json")]))
        refusal = next((orjson.loads(e.body) for e in entries if e.kind == "rejected"), None)
        where = f"log entry {entries[0].seq}, tick {entries[0].tick}"
        if refusal is None:
            _status(t, TaskState.TASK_STATE_COMPLETED, f"done: {entries[0].kind} ({where})")
            return
        why = {"reason": refusal.get("reason", ""), "message": refusal.get("message", "")}
        if entries[0].kind == "rejected":
            _status(t, TaskState.TASK_STATE_REJECTED,
                    f"rejected: {why['reason']}: {why['message']} ({where})", why)
        else:
            _status(t, TaskState.TASK_STATE_FAILED,
                    f"failed: {why['reason']}: {why['message']} ({where})", why)

    async def _settle(self, t: Tracked, seconds: float) -> None:
        """Look at the log until the task is final, or for `seconds`."""
        deadline = time.monotonic() + seconds
        while not self._refresh(t) and time.monotonic() < deadline:
            await asyncio.sleep(POLL / 2)

    async def _changes(self, t: Tracked, seconds: float) -> AsyncGenerator[Any]:
        """The task's updates as stream events until it is final (or `seconds` passed, or
        too many are waiting already)."""
        if t.done or self.waiters >= MAX_WAITERS:
            return
        self.waiters += 1
        try:
            deadline = time.monotonic() + seconds
            seen = (t.task.status.state, t.task.status.message.message_id)
            while not t.done and time.monotonic() < deadline:
                await asyncio.sleep(POLL)
                self._refresh(t)
                now = (t.task.status.state, t.task.status.message.message_id)
                if now == seen:
                    continue
                seen = now
                for a in t.task.artifacts if t.done else ():
                    yield TaskArtifactUpdateEvent(task_id=t.task.id, context_id=t.task.context_id,
                                                  artifact=a, last_chunk=True)
                status = TaskStatus()
                status.CopyFrom(t.task.status)
                yield TaskStatusUpdateEvent(task_id=t.task.id, context_id=t.task.context_id,
                                            status=status)
        finally:
            self.waiters -= 1

    def _view(self, t: Tracked, history: int | None = None) -> Task:
        out = Task()
        out.CopyFrom(t.task)
        if history is not None:
            kept = list(out.history)[-history:] if history > 0 else []
            del out.history[:]
            out.history.extend(kept)
        return out

    def _find(self, task_id: str) -> Tracked:
        t = self.tasks.get(task_id)
        if t is None:
            raise TaskNotFoundError(message=f"no task {task_id[:64]!r} (unknown, or forgotten: "
                                    f"the server keeps the last {MAX_TASKS}; the log keeps "
                                    f"every action: GET /v1/entries?actor&nonce)")
        return t

    # ------------------------------------------------------------------ A2A methods
    async def on_message_send(self, params: SendMessageRequest,
                              context: ServerCallContext) -> Task:
        t = self._submit(params, context)
        if not params.configuration.return_immediately:
            async for _ in self._changes(t, BLOCK_SECONDS):
                pass
        history = (params.configuration.history_length
                   if params.configuration.HasField("history_length") else None)
        return self._view(t, history)

    async def on_message_send_stream(self, params: SendMessageRequest,
                                     context: ServerCallContext) -> AsyncGenerator[Any]:
        t = self._submit(params, context)
        yield self._view(t)
        async for event in self._changes(t, STREAM_SECONDS):
            yield event

    async def on_subscribe_to_task(self, params: SubscribeToTaskRequest,
                                   context: ServerCallContext) -> AsyncGenerator[Any]:
        t = self._find(params.id)
        await self._settle(t, 1.0)
        yield self._view(t)
        async for event in self._changes(t, STREAM_SECONDS):
            yield event

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task:
        t = self._find(params.id)
        await self._settle(t, 1.0)
        return self._view(t, params.history_length if params.HasField("history_length")
                          else None)

    async def on_list_tasks(self, params: ListTasksRequest,
                            context: ServerCallContext) -> ListTasksResponse:
        raise UnsupportedOperationError(message="tasks are not listed (a task id is its "
                                        "sender's capability): GetTask with the id SendMessage "
                                        "returned")

    async def on_cancel_task(self, params: CancelTaskRequest,
                             context: ServerCallContext) -> Task:
        self._find(params.id)
        raise TaskNotCancelableError(message="an action queued for the next tick cannot be "
                                     "withdrawn")

    async def on_create_task_push_notification_config(
            self, params: TaskPushNotificationConfig,
            context: ServerCallContext) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_get_task_push_notification_config(
            self, params: GetTaskPushNotificationConfigRequest,
            context: ServerCallContext) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_list_task_push_notification_configs(
            self, params: ListTaskPushNotificationConfigsRequest,
            context: ServerCallContext) -> ListTaskPushNotificationConfigsResponse:
        raise PushNotificationNotSupportedError

    async def on_delete_task_push_notification_config(
            self, params: DeleteTaskPushNotificationConfigRequest,
            context: ServerCallContext) -> None:
        raise PushNotificationNotSupportedError

    async def on_get_extended_agent_card(self, params: GetExtendedAgentCardRequest,
                                         context: ServerCallContext) -> AgentCard:
        raise ExtendedAgentCardNotConfiguredError


class _Context(DefaultServerCallContextBuilder):
    """The SDK's call context, plus the request (its source keys the rate limits and the
    refusal record, as for the HTTP API)."""

    def build(self, request: Request) -> ServerCallContext:
        ctx = super().build(request)
        ctx.state["sandbank_request"] = request
        return ctx


def _problem(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"type": f"https://sandbank.dev/problems/{code}", "title": code,
                         "status": status, "code": code, "detail": detail},
                        status_code=status, media_type="application/problem+json")


def mount(app: Any, box: Any, accept: Callable[..., dict[str, Any]],
          src: Callable[[Any], str]) -> SandbankHandler:
    """Add the agent card and the JSON-RPC endpoint to the sandbox's app (`accept`: the HTTP
    API's door for one signed action; `src`: a request's source). Not in the OpenAPI schema:
    the card describes them."""
    handler = SandbankHandler(box, accept, src)
    dispatcher = JsonRpcDispatcher(handler, context_builder=_Context())
    skill_list = skills()
    operator_key = verifier_key(box.k.config.key_name, box.key.public)

    async def card(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return JSONResponse(agent_card_to_dict(agent_card(base, operator_key, skill_list)))

    async def rpc(request: Request) -> Response:
        source = src(request)
        if not box.allow_source(source):
            box.refuse(source, RPC_PATH, "rate_limited", None, "a JSON-RPC request")
            return _problem(429, "rate_limited", f"at most {box.source_rate:g} requests/s from "
                            f"one source")
        size = request.headers.get("content-length")
        too_large = size is not None and not (size.isascii() and size.isdigit()
                                              and int(size) <= MAX_BODY)
        raw = b""
        if not too_large:
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > MAX_BODY:
                    too_large = True
                    break
        if too_large:
            box.refuse(source, RPC_PATH, "too_large", None, f"over {MAX_BODY} bytes")
            return _problem(413, "too_large", f"a JSON-RPC request is limited to {MAX_BODY} bytes")
        request._body = raw  # read once, within the limit; the dispatcher parses it
        return await dispatcher.handle_requests(request)

    app.add_route(CARD_PATH, card, methods=["GET"], include_in_schema=False)
    app.add_route(RPC_PATH, rpc, methods=["POST"], include_in_schema=False)
    return handler
