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
nonce, the identity's rate limit) and nothing else: there is no second, weaker path, and a
message gets the very answer `POST /v1/actions` would give it — nothing about tasks. A
message refused there is answered with a JSON-RPC error (`InvalidParams`, its `data.code`
the HTTP API's problem code), counted into the tick's one bounded refusal record, attributed
to nobody, and leaves no task behind. The only exception: the byte-identical envelope of a
task still kept returns that task (a resend; only who holds the signed envelope can make
it). A validly signed *other* action with a nonce a kept task holds passed the door (the
actor signed two actions with one nonce: the sequencer refuses the later one) and is
answered `stale_nonce`, naming no task. (JSON numbers travel as protobuf doubles: integral
ones are read back as integers, exact up to 2**53 - 1, the log's range; RFC 8785 writes 1.0
and 1 alike, so the signed bytes are the same. NaN and Infinity are `malformed_action`.)
A request the SDK cannot parse (not JSON, not JSON-RPC, params of the wrong shape) is
counted into the refusal record too (`malformed_json` / `malformed_request`, nobody's), and
logged as one line without a traceback.

**The task.** A task exists only for an action that passed the door: it is created
`submitted` and is `working` ("queued for tick T") when SendMessage answers; then
`completed` (its entries are in the log), `rejected` (the sequencer refused it), or `failed`
(a later entry of the action was a refusal; or it will never run: its nonce was taken by
another action of the same agent, the agent is revoked — the sequencer drops a revoked
identity's actions as nobody's — or GRACE_TICKS after its tick no log entry names it and it
is no longer queued). The task id (a uuid4) is a capability: whoever holds it reads the
task (the action's own sender, normally), and a task never shows more of the log than the
public may read (`may_read`, the HTTP API's rule, for a reader with no credentials): its
history keeps only the message's id and `{kind, actor, nonce}` — never the signed envelope,
its fields or its signature; the artifact `log-entry` gives the entries' seqs and tick (they
are consecutive), the kind of each public one (`withheld` otherwise) and the first entry
itself only if it is public and at most ENTRY_BYTES; a refusal's reason and message are
quoted in the status only if its entry is public, otherwise the status says where to read
it (`/v1/proof/{seq}` with the actor's read signature, `RemoteAgent.prove`). The task's
state itself tells its holder whether the action ran, was refused or failed.

**Bounds.** At most MAX_TASKS tasks are kept (the oldest finished one is forgotten first,
then the oldest), at most MAX_TASKS_PER_ACTOR of one agent. A kept task is small: its
outcome is stored compactly (first seq, count, tick, the kinds of at most MAX_ENTRIES_LISTED
entries, the first entry's bytes if public and at most ENTRY_BYTES) and its artifact is
built when read; a public refusal is quoted up to REASON_CHARS, a context id and the kept
message id up to ID_CHARS: a task holds under 4 KiB as a rule and at most about 9 KiB (some
36 MiB for MAX_TASKS; measured, the artifact as protobuf Structs cost some 38 KiB a task
with 64 entries when it was kept built). A request body is at most
MAX_BODY bytes. At most MAX_WAITERS requests wait for a tick at once, at most
MAX_WAITERS_PER_SOURCE of one source (a blocking SendMessage waits at most BLOCK_SECONDS, a
stream STREAM_SECONDS; past the cap a SendMessage answers at once, a stream ends after the
task, and a SubscribeToTask is refused, `too_many_waiters`, counted). The log keeps
everything: a forgotten task's action is still found with `GET /v1/entries?actor&nonce`.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hashlib
import logging
import sys
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
    InvalidRequestError,
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
from sandbank.identity.registry import REVOKED
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
ID_CHARS = 128  # a context id, and the message id kept in the history, are cut to this
ENTRY_BYTES = 2_048  # a public entry larger than this is named in the artifact, not copied
MAX_ENTRIES_LISTED = 64
REASON_CHARS = 64, 240  # a public refusal's reason and message are quoted up to these
GRACE_TICKS = 2  # no entry this many ticks after its tick, and not queued: it will not run
MAX_WAITERS = 256
MAX_WAITERS_PER_SOURCE = 8
WITHHELD = "withheld"  # the kind of an entry the public may not read (as GET /v1/entries)
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


@dataclass(slots=True)
class Tracked:
    task: Task  # id, context, metadata, status; the history keeps {kind, actor, nonce} only
    actor: int
    nonce: int
    digest: bytes  # of the envelope: a resend of the same one finds this task
    tick: int  # the tick it was queued for
    checked: int = -1  # the tick at which the log was last looked at for it
    done: bool = False
    # the outcome, compactly (the artifact is built from it when read): the action's entries
    # are consecutive, seq .. seq + count - 1, all of tick `at`
    seq: int = -1
    count: int = 0
    at: int = -1
    kinds: tuple[str, ...] = ()  # of the first MAX_ENTRIES_LISTED; WITHHELD if not public
    entry: bytes | None = None  # the first entry, if public and at most ENTRY_BYTES
    withheld: str | None = None  # why the first entry is not in the artifact


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
        self.waiting: dict[str, int] = {}  # waiters per source
        self._queued: tuple[int, set[tuple[int, int]]] = (-1, set())

    def _source(self, context: ServerCallContext) -> str:
        request = context.state.get("sandbank_request")
        return self.src(request) if request is not None else "unknown"

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
        try:
            d = _integers(MessageToDict(data[0].data))
        except ValueError:  # NaN or Infinity: not JSON, nor any action's field
            self._refuse(request, "malformed_action", "a number JSON cannot carry (NaN or "
                         "Infinity)")
        digest = hashlib.sha256(orjson.dumps(d, option=orjson.OPT_SORT_KEYS)).digest()
        key = ((d["actor"], d["nonce"]) if isinstance(d, dict) and type(d.get("actor")) is int
               and type(d.get("nonce")) is int else None)
        known = self.by_action.get(key) if key is not None else None
        if known is not None and self.tasks[known].digest == digest:
            return self.tasks[known]  # this very envelope passed the door before: its task
        try:  # everything else: the HTTP API's door, with its answers (nothing about tasks)
            answer = self.accept(d, request, ENDPOINT, source_charged=True)
        except Exception as e:  # a Problem (the HTTP API's door): counted there already
            code, detail = getattr(e, "code", None), getattr(e, "detail", None)
            if code is None:
                raise
            raise InvalidParamsError(message=f"{code}: {detail}",
                                     data={"code": code, "status": str(e.status)}) from None
        actor, nonce, tick = d["actor"], d["nonce"], answer["tick"]
        if (actor, nonce) in self.by_action:  # signed by the actor, a nonce already queued:
            # the sequencer refuses it (a refusal of nobody, logged); no task is named
            raise InvalidParamsError(message=f"stale_nonce: nonce {nonce} is another queued "
                                     f"action's of actor {actor}: this one will not run",
                                     data={"code": "stale_nonce", "status": "409"})
        task_id = str(uuid.uuid4())
        context_id = msg.context_id[:ID_CHARS] or str(uuid.uuid4())
        task = Task(id=task_id, context_id=context_id)
        what = {"kind": d["kind"], "actor": actor, "nonce": nonce}
        task.metadata.update({**what, "tick": tick})
        task.history.append(Message(  # what the message was, never what it carried
            role=Role.ROLE_USER, message_id=msg.message_id[:ID_CHARS], task_id=task_id,
            context_id=context_id, parts=[Part(data=ParseDict(what, struct_pb2.Value()),
                                               media_type="application/json")]))
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
    def _public(self, kind: str) -> bool:
        """May the public (no credentials) read an entry of this kind? The HTTP API's rule."""
        return may_read({"kind": kind}, None, overseer=False, table=self.box.k.visibility)

    def _still_queued(self, actor: int, nonce: int) -> bool:
        """Is the action still waiting to run (the door's inbox, the kernel's queue)? Looked
        at once a tick at most, under the economy's lock."""
        box, k = self.box, self.box.k
        if self._queued[0] != k.tick:
            try:  # the door appends to the inbox without the lock
                inbox = [item[0] for item in list(box.inbox)]
            except RuntimeError:  # changed while copied: look again at the next call
                return True
            queue = [item[1] for item in k._queue]
            self._queued = (k.tick, {(a.actor, a.nonce) for a in (*inbox, *queue)
                                     if a is not None and hasattr(a, "nonce")})
        return (actor, nonce) in self._queued[1]

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
            if entries:
                self._outcome(t, entries)
                return True
            ident = k.state.registry.agents.get(t.actor)
            if ident is not None and ident.nonce >= t.nonce:
                _status(t, TaskState.TASK_STATE_FAILED, f"not in the log: nonce {t.nonce} of "
                        f"agent {t.actor} is used — by another action (two actions with one "
                        f"nonce, or out of order within a tick), or by this one if it ran with "
                        f"nothing to record (a retry the ledger already had)",
                        {"reason": "nonce_taken"})
            elif ident is None or ident.status == REVOKED:
                _status(t, TaskState.TASK_STATE_FAILED, f"not run: agent {t.actor} is revoked "
                        f"(the sequencer refuses a revoked identity's actions as nobody's)",
                        {"reason": "agent_revoked"})
            elif k.tick >= t.tick + GRACE_TICKS and not self._still_queued(t.actor, t.nonce):
                _status(t, TaskState.TASK_STATE_FAILED, f"not run: no log entry names it at "
                        f"tick {k.tick}, and it is no longer queued (refused at its tick as "
                        f"nobody's act)", {"reason": "not_run"})
            elif k.tick > t.tick:
                _status(t, TaskState.TASK_STATE_WORKING, f"queued for tick {t.tick}: not run "
                        f"yet (the ticks were full), waiting at tick {k.tick}")
            return True
        finally:
            box.lock.release()

    def _outcome(self, t: Tracked, entries: list[Any]) -> None:
        """The task's final state from its entries, kept compactly; nothing the public may
        not read is kept (nor shown)."""
        first = entries[0]
        t.seq, t.count, t.at = first.seq, len(entries), first.tick
        t.kinds = tuple(sys.intern(e.kind) if self._public(e.kind) else WITHHELD
                        for e in entries[:MAX_ENTRIES_LISTED])
        body = first.body if isinstance(first.body, bytes) else first.body.encode()
        if t.kinds[0] == WITHHELD:
            t.withheld = "restricted"  # read it as the actor: GET /v1/proof/{seq}
        elif len(body) <= ENTRY_BYTES:
            t.entry = body
        else:
            t.withheld = "too_large"
        where = f"log entry {first.seq}, tick {first.tick}"
        refusal = next((e for e in entries if e.kind == "rejected"), None)
        if refusal is None:
            _status(t, TaskState.TASK_STATE_COMPLETED,
                    f"done: {t.kinds[0]} ({where})" if t.kinds[0] != WITHHELD else
                    f"done ({where}; the entry is readable by the actor with its read "
                    f"signature: /v1/proof/{first.seq})")
            return
        state, word = ((TaskState.TASK_STATE_REJECTED, "rejected") if first.kind == "rejected"
                       else (TaskState.TASK_STATE_FAILED, "failed"))
        if not self._public(refusal.kind):
            _status(t, state, f"{word}: refused (the reason is in the log, readable by the "
                    f"actor with its read signature: /v1/proof/{refusal.seq}) ({where})")
            return
        d = orjson.loads(refusal.body)
        why = {"reason": str(d.get("reason", ""))[:REASON_CHARS[0]],
               "message": str(d.get("message", ""))[:REASON_CHARS[1]]}
        _status(t, state, f"{word}: {why['reason']}: {why['message']} ({where})", why)

    def _artifact(self, t: Tracked) -> Artifact:
        data: dict[str, Any] = {
            "actor": t.actor, "nonce": t.nonce, "seq": t.seq, "tick": t.at, "kind": t.kinds[0],
            "entries": [{"seq": t.seq + i, "tick": t.at, "kind": kind}
                        for i, kind in enumerate(t.kinds)],
            "count": t.count, "entry": orjson.loads(t.entry) if t.entry is not None else None}
        if t.withheld is not None:
            data["withheld"] = t.withheld
        return Artifact(
            artifact_id=f"{t.task.id}-log", name="log-entry",
            description="the log entries this action produced (seq .. seq + count - 1): prove "
                        "them against the signed checkpoint with GET /v1/proof/{seq} (or "
                        "RemoteAgent.prove(nonce)); an entry the public may not read is "
                        "`withheld`: read it with the actor's read signature",
            parts=[Part(data=ParseDict(data, struct_pb2.Value()), media_type="application/json")])

    async def _settle(self, t: Tracked, seconds: float) -> None:
        """Look at the log until the task is final, or for `seconds`."""
        deadline = time.monotonic() + seconds
        while not self._refresh(t) and time.monotonic() < deadline:
            await asyncio.sleep(POLL / 2)

    def _hold(self, source: str) -> bool:
        """A waiter's slot (False: MAX_WAITERS wait, or MAX_WAITERS_PER_SOURCE of `source`);
        give it back with `_release`."""
        n = self.waiting.get(source, 0)
        if self.waiters >= MAX_WAITERS or n >= MAX_WAITERS_PER_SOURCE:
            return False
        self.waiters += 1
        self.waiting[source] = n + 1
        return True

    def _release(self, source: str) -> None:
        self.waiters -= 1
        n = self.waiting.get(source, 0) - 1
        if n > 0:
            self.waiting[source] = n
        else:
            self.waiting.pop(source, None)

    async def _changes(self, t: Tracked, seconds: float) -> AsyncGenerator[Any]:
        """The task's updates as stream events until it is final (or `seconds` passed); the
        caller holds a waiter's slot."""
        deadline = time.monotonic() + seconds
        seen = (t.task.status.state, t.task.status.message.message_id)
        while not t.done and time.monotonic() < deadline:
            await asyncio.sleep(POLL)
            self._refresh(t)
            now = (t.task.status.state, t.task.status.message.message_id)
            if now == seen:
                continue
            seen = now
            if t.done and t.seq >= 0:
                yield TaskArtifactUpdateEvent(task_id=t.task.id, context_id=t.task.context_id,
                                              artifact=self._artifact(t), last_chunk=True)
            status = TaskStatus()
            status.CopyFrom(t.task.status)
            yield TaskStatusUpdateEvent(task_id=t.task.id, context_id=t.task.context_id,
                                        status=status)

    def _view(self, t: Tracked, history: int | None = None) -> Task:
        out = Task()
        out.CopyFrom(t.task)
        if t.seq >= 0:
            out.artifacts.append(self._artifact(t))
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
        source = self._source(context)
        if not params.configuration.return_immediately and not t.done and self._hold(source):
            try:  # past the waiters' cap: answered at once (the action is queued all the same)
                async for _ in self._changes(t, BLOCK_SECONDS):
                    pass
            finally:
                self._release(source)
        history = (params.configuration.history_length
                   if params.configuration.HasField("history_length") else None)
        return self._view(t, history)

    async def on_message_send_stream(self, params: SendMessageRequest,
                                     context: ServerCallContext) -> AsyncGenerator[Any]:
        t = self._submit(params, context)
        source = self._source(context)
        held = not t.done and self._hold(source)  # past the cap: the task, and the end
        try:
            yield self._view(t)
            if held:
                async for event in self._changes(t, STREAM_SECONDS):
                    yield event
        finally:
            if held:
                self._release(source)

    async def on_subscribe_to_task(self, params: SubscribeToTaskRequest,
                                   context: ServerCallContext) -> AsyncGenerator[Any]:
        t = self._find(params.id)
        await self._settle(t, 1.0)
        source = self._source(context)
        held = not t.done and self._hold(source)
        if not t.done and not held:
            detail = (f"at most {MAX_WAITERS_PER_SOURCE} requests of one source (and "
                      f"{MAX_WAITERS} in all) wait for a tick at once: GetTask polls")
            self.box.refuse(source, RPC_PATH, "too_many_waiters", None, detail)
            raise InvalidRequestError(message=f"too_many_waiters: {detail}",
                                      data={"code": "too_many_waiters", "status": "429"})
        try:
            yield self._view(t)
            if held:
                async for event in self._changes(t, STREAM_SECONDS):
                    yield event
        finally:
            if held:
                self._release(source)

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


# set once the SDK has parsed a request and hands it to the handler (the handler counts its
# own refusals; before that, a failure is a malformed request, counted by `mount`'s rpc)
_HANDLED: contextvars.ContextVar[bool] = contextvars.ContextVar("sandbank_a2a_handled",
                                                                default=False)
DISPATCHER_LOGGER = "a2a.server.routes.jsonrpc_dispatcher"
LOG_CHARS = 300


class _Context(DefaultServerCallContextBuilder):
    """The SDK's call context, plus the request (its source keys the rate limits and the
    refusal record, as for the HTTP API)."""

    def build(self, request: Request) -> ServerCallContext:
        ctx = super().build(request)
        ctx.state["sandbank_request"] = request
        request.scope["sandbank_a2a_handled"] = True
        _HANDLED.set(True)
        return ctx


class _Quiet(logging.Filter):
    """The SDK's dispatcher logs a malformed request with its full traceback (at ERROR for
    some): one WARNING line of at most LOG_CHARS instead, the request being counted in the
    refusal record. A failure inside our handler keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _HANDLED.get():
            return True
        record.msg, record.args = record.getMessage()[:LOG_CHARS], None
        record.exc_info = record.exc_text = record.stack_info = None
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_dispatcher_log() -> None:
    log = logging.getLogger(DISPATCHER_LOGGER)
    if not any(isinstance(f, _Quiet) for f in log.filters):
        log.addFilter(_Quiet())


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
    quiet_dispatcher_log()
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
        try:  # strict JSON first (no NaN, no lone surrogates, bounded depth and numbers):
            orjson.loads(raw)  # what the SDK's parser would take with a traceback, refused here
        except orjson.JSONDecodeError as e:
            box.refuse(source, RPC_PATH, "malformed_json", None, str(e)[:160])
            return JSONResponse({"jsonrpc": "2.0", "id": None, "error": {
                "code": -32700, "message": f"malformed_json: {e}"}})
        request._body = raw  # read once, within the limit; the dispatcher parses it
        _HANDLED.set(False)
        response = await dispatcher.handle_requests(request)
        if not request.scope.get("sandbank_a2a_handled") and isinstance(response, JSONResponse):
            try:  # the SDK refused it before our handler saw it: count it, as the door would
                error = orjson.loads(bytes(response.body)).get("error")
            except (orjson.JSONDecodeError, AttributeError):
                error = None
            if isinstance(error, dict):
                code = "malformed_json" if error.get("code") == -32700 else "malformed_request"
                box.refuse(source, RPC_PATH, code, None, f"JSON-RPC {error.get('code')}: "
                           f"{str(error.get('message'))[:160]}")
        return response

    app.add_route(CARD_PATH, card, methods=["GET"], include_in_schema=False)
    app.add_route(RPC_PATH, rpc, methods=["POST"], include_in_schema=False)
    return handler
