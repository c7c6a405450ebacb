"""A2A 1.0 against a real `sandbank serve`, driven by the a2a-sdk's own card resolver and
client: signed actions sent as messages become tasks that complete when their tick is
committed, the artifact names the log entry (proven against the signed checkpoint), and
unsigned or wrongly signed messages are refused without reaching the log."""

import asyncio
import time

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    InvalidParamsError,
    SendMessageRequest,
    TaskNotCancelableError,
    TaskState,
)
from google.protobuf.json_format import MessageToDict

from sandbank.client import Client
from sandbank.identity.keys import SigningKey
from sandbank.markets.exchange import PlaceOrder
from sandbank.markets.messaging import SendMessage
from sandbank.markets.payments import Pay
from sandbank.server.a2a import SCHEME, message_for
from tests.live_server import OPERATOR_TOKEN, LiveServer

FINAL = (TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_REJECTED,
         TaskState.TASK_STATE_FAILED)


def artifact(task):
    [a] = [a for a in task.artifacts if a.name == "log-entry"]
    return MessageToDict(a.parts[0].data)


async def until_final(client, task_id, wait=15.0):
    deadline = time.monotonic() + wait
    while True:
        task = await client.get_task(GetTaskRequest(id=task_id))
        if task.status.state in FINAL or time.monotonic() > deadline:
            return task
        await asyncio.sleep(0.1)


async def send(client, envelope):
    """The first answer to a message (the task, or the first stream event)."""
    async for event in client.send_message(SendMessageRequest(message=message_for(envelope))):
        return event


def test_signed_actions_as_a2a_tasks(tmp_path):
    with LiveServer(tmp_path, "--endow", "CRD=10000,WGT=50", scenario=None, tick=0.1) as srv:
        owner, owner_key = srv.owner("a2a-owner")
        c = Client(srv.url)
        me = c.join(owner, "a2a-agent", SigningKey.load(owner_key))
        payee = c.join(owner, "a2a-payee", SigningKey.load(owner_key))
        me.wait_funded("CRD")
        payee.wait_funded("CRD")
        mallory = SigningKey.generate()

        async def session():
            async with httpx.AsyncClient(timeout=20) as http:
                card = await A2ACardResolver(http, srv.url).get_agent_card()
                assert card.name == "sandbank" and card.capabilities.streaming
                assert [i.url for i in card.supported_interfaces] == [f"{srv.url}/a2a"]
                ids = {s.id for s in card.skills}
                assert {"place_order", "cancel_order", "pay", "send_message", "post_task",
                        "bid_task", "deliver"} <= ids
                assert SCHEME in card.security_schemes
                assert all(SCHEME in s.security_requirements[0].schemes for s in card.skills)
                assert "set_cap" not in ids  # overseers' actions are not agents' skills

                polling = ClientFactory(ClientConfig(streaming=False, polling=True)).create(card)
                streaming = ClientFactory(ClientConfig(streaming=True)).create(card)

                # a signed payment: working at once, completed once its tick is committed
                pay = me.envelope(Pay(actor=me.id, to=payee.id, asset="CRD", amount=7))
                first = await send(polling, pay)
                assert first.task.status.state == TaskState.TASK_STATE_WORKING
                assert "queued for tick" in first.task.status.message.parts[0].text
                again = await send(polling, pay)  # the same envelope again: the same task
                assert again.task.id == first.task.id
                done = await until_final(polling, first.task.id)
                assert done.status.state == TaskState.TASK_STATE_COMPLETED, done.status
                art = artifact(done)
                assert int(art["nonce"]) == pay["nonce"]
                # a payment is the parties' to read: not even its kind is shown (as to the
                # public by GET /v1/entries/recent)
                assert art["kind"] == "withheld" and art["withheld"] == "restricted"
                assert art["entry"] is None and int(art["count"]) == 1
                proven = me.prove(pay["nonce"])  # in the signed log, against the checkpoint
                assert proven == [int(e["seq"]) for e in art["entries"]]
                assert int(art["seq"]) == proven[0]
                with pytest.raises(TaskNotCancelableError):
                    await polling.cancel_task(CancelTaskRequest(id=done.id))

                # a signed order over the stream: the task, then its artifact and final status
                order = me.envelope(PlaceOrder(actor=me.id, asset="WGT", side="buy", qty=1,
                                               price=5))
                events = [e async for e in streaming.send_message(
                    SendMessageRequest(message=message_for(order)))]
                assert events[0].task.status.state == TaskState.TASK_STATE_WORKING
                assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
                [update] = [e.artifact_update for e in events if e.HasField("artifact_update")]
                placed = MessageToDict(update.artifact.parts[0].data)
                assert placed["kind"] == "order_placed" and placed["entry"]["price"] == 5
                assert me.prove(order["nonce"]) == [int(placed["seq"])]

                # refused by the sequencer: the task is rejected; the reason (a parties'
                # entry) is the actor's to read with its read signature, not the task's
                broke = me.envelope(Pay(actor=me.id, to=payee.id, asset="CRD", amount=10**12))
                rejected = await until_final(polling, (await send(polling, broke)).task.id)
                assert rejected.status.state == TaskState.TASK_STATE_REJECTED
                text = rejected.status.message.parts[0].text
                assert "readable by the actor with its read signature: /v1/proof/" in text
                assert len(rejected.status.message.parts) == 1
                assert artifact(rejected)["kind"] == "withheld"
                [(_, entry)] = me.proven(broke["nonce"])  # the actor reads it, proven
                assert entry["kind"] == "rejected" and entry["reason"] not in text
                assert entry["message"] not in text

                # refused at the door: signed by another key, altered after signing, unsigned
                n = me.nonce + 1
                forged = Pay(actor=me.id, to=payee.id, asset="CRD", amount=1).signed(
                    mallory, n).to_dict()
                altered = {**Pay(actor=me.id, to=payee.id, asset="CRD", amount=1).signed(
                    me.key, n).to_dict(), "amount": 999}
                unsigned = {k: v for k, v in forged.items() if k != "signature"}
                refused_before = c.status()["refused"]
                for bad in (forged, altered, unsigned):
                    with pytest.raises(InvalidParamsError) as e:
                        await send(polling, bad)
                    assert e.value.data["code"] == "bad_signature", e.value
                    with pytest.raises(InvalidParamsError):
                        await send(streaming, bad)
                srv.wait_tick(c.status()["tick"] + 3)
                assert me.entries(n) == []  # nothing reached the log, nothing was queued
                assert c.status()["refused"] >= refused_before + 6
                # ... and the nonce is still free: the next signed action takes it
                ok = me.envelope(Pay(actor=me.id, to=payee.id, asset="CRD", amount=1))
                assert ok["nonce"] == n
                task = await until_final(polling, (await send(polling, ok)).task.id)
                assert task.status.state == TaskState.TASK_STATE_COMPLETED
                assert [e["kind"] for e in me.wait(n)] == ["paid"]
                await polling.close()
                await streaming.close()

        asyncio.run(session())
        # the money moved exactly twice: 7 and 1
        got = next(a["balance"] for a in payee.observe()["accounts"] if a["asset"] == "CRD")
        assert got == 10_000 + 8


def rpc(url, method, params, **http):
    """One raw JSON-RPC call, as anyone may make it (no SDK client): its JSON and text."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    r = httpx.post(f"{url}/a2a", json=body, headers={"A2A-Version": "1.0"}, timeout=20, **http)
    return r.json(), r.text


def send_raw(url, envelope):
    return rpc(url, "SendMessage", {"message": MessageToDict(message_for(envelope)),
                                    "configuration": {"returnImmediately": True}})


def test_a2a_attacks(tmp_path):
    """What the public (no key, no credentials) gets out of /a2a: no task ids from refusals,
    no envelope and no private reason from a task; a revoked agent's task ends; a malformed
    request is counted and logged without a traceback."""
    with LiveServer(tmp_path, "--endow", "CRD=10000,WGT=50", scenario=None, tick=0.5) as srv:
        owner, owner_key = srv.owner("a2a-owner")
        owner2, owner2_key = srv.owner("a2a-banned")
        c = Client(srv.url)
        alice = c.join(owner, "alice", SigningKey.load(owner_key))
        bob = c.join(owner, "bob", SigningKey.load(owner_key))
        carol = c.join(owner2, "carol", SigningKey.load(owner2_key))
        for a in (alice, bob, carol):
            a.wait_funded("CRD")
        r = httpx.post(f"{srv.url}/v1/federation/bans", json={"owner": owner2, "reason": "t"},
                       headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        assert r.status_code == 202, r.text
        # (a 202 queues the ban: it revokes carol's agents at the next tick, not now)
        deadline = time.monotonic() + 20
        while httpx.get(f"{srv.url}/v1/federation/bans").json()["seq"] < 1:
            assert time.monotonic() < deadline, "the ban never took effect"
            time.sleep(0.05)
        url, mallory = srv.url, SigningKey.generate()

        # a private payment and a private message, pending: their task ids are the sender's
        pay = alice.envelope(Pay(actor=alice.id, to=bob.id, asset="CRD", amount=4242,
                                 memo="secret memo: rent"))
        pay_task = send_raw(url, pay)[0]["result"]["task"]["id"]
        note = alice.envelope(SendMessage(actor=alice.id, to=bob.id, content="PRIVATE hunter2"))
        note_task = send_raw(url, note)[0]["result"]["task"]["id"]
        # probes for those nonces: the answers the HTTP door gives, the same as for a nonce
        # never used (but the number), and no task id, nor a hint that a task exists
        free = note["nonce"] + 50
        for nonce in (pay["nonce"], note["nonce"]):
            probes = [{"kind": "pay", "actor": alice.id, "nonce": nonce},
                      Pay(actor=alice.id, to=bob.id, asset="CRD", amount=1).signed(
                          mallory, nonce).to_dict()]
            for probe in probes:
                answer, text = send_raw(url, probe)
                unused, _ = send_raw(url, {**probe, "nonce": free})
                assert answer["error"]["message"] == unused["error"]["message"].replace(
                    str(free), str(nonce))
                assert pay_task not in text and note_task not in text and "task" not in text
        # the actor itself, another signed action with a queued nonce: stale_nonce, no id
        other = Pay(actor=alice.id, to=bob.id, asset="CRD", amount=1).signed(
            alice.key, pay["nonce"]).to_dict()
        answer, text = send_raw(url, other)
        assert answer["error"]["data"][0]["metadata"]["code"] == "stale_nonce", text
        assert pay_task not in text and note_task not in text
        # a broke order, refused by the sequencer (its reason quotes the balance)
        order = alice.envelope(PlaceOrder(actor=alice.id, asset="WGT", side="buy", qty=10**6,
                                          price=10**6))
        order_task = send_raw(url, order)[0]["result"]["task"]["id"]
        # a revoked agent's signed action passes the door, but will never run
        ban = carol.envelope(Pay(actor=carol.id, to=bob.id, asset="CRD", amount=1))
        banned_task = send_raw(url, ban)[0]["result"]["task"]["id"]

        # whoever holds a task id reads no more than the public reads of the log
        async def final(task_id):
            async with httpx.AsyncClient(timeout=20) as http:
                card = await A2ACardResolver(http, url).get_agent_card()
                return await until_final(ClientFactory(ClientConfig()).create(card), task_id)

        for task_id, envelope in ((pay_task, pay), (note_task, note)):
            assert asyncio.run(final(task_id)).status.state == TaskState.TASK_STATE_COMPLETED
            got, text = rpc(url, "GetTask", {"id": task_id})
            for secret in ("secret memo", "hunter2", "4242", envelope["signature"], '"to"'):
                assert secret not in text, (secret, text)
            [kept] = got["result"]["history"]
            assert kept["parts"][0]["data"] == {"kind": envelope["kind"], "actor": alice.id,
                                                "nonce": envelope["nonce"]}
            assert got["result"]["artifacts"][0]["parts"][0]["data"]["kind"] == "withheld"
        rejected = asyncio.run(final(order_task))
        assert rejected.status.state == TaskState.TASK_STATE_REJECTED
        [(_, entry)] = alice.proven(order["nonce"])
        _, text = rpc(url, "GetTask", {"id": order_task})
        assert entry["message"] and entry["message"] not in text and entry["reason"] not in text
        assert "readable by the actor with its read signature: /v1/proof/" in text
        banned = asyncio.run(final(banned_task))
        assert banned.status.state == TaskState.TASK_STATE_FAILED, banned.status
        assert "revoked" in banned.status.message.parts[0].text

        # malformed requests: a JSON-RPC error, counted as refused, no traceback logged
        before = c.status()["refused"]
        nan = (b'{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"role":'
               b'"ROLE_USER","messageId":"m","parts":[{"data":{"kind":"pay","actor":NaN}}]}}}')
        for raw in (b"{", b'{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"\xff"}}',
                    b'[{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"x"}}]',
                    b'{"jsonrpc":"2.0","id":1,"method":"GetTask","params":[1]}', nan):
            r = httpx.post(f"{url}/a2a", content=raw, timeout=20,
                           headers={"A2A-Version": "1.0", "Content-Type": "application/json"})
            assert r.status_code == 200 and r.json()["error"]["code"] != -32603, r.text
        srv.wait_tick(c.status()["tick"] + 1)
        assert c.status()["refused"] >= before + 5
    log = (tmp_path / "server.out").read_text()
    assert "Traceback" not in log, log[-3000:]


def test_a2a_waiters_per_source():
    """At most MAX_WAITERS_PER_SOURCE of one source wait on a task: the next subscription is
    refused (and counted); another source still gets its slot; a slot is given back."""
    from types import SimpleNamespace

    from a2a.server.context import ServerCallContext
    from a2a.types import InvalidRequestError, SubscribeToTaskRequest, Task

    from sandbank.server.a2a import MAX_WAITERS_PER_SOURCE, SandbankHandler, Tracked

    refused = []
    box = SimpleNamespace(k=SimpleNamespace(tick=0), refuse=lambda *a: refused.append(a))
    handler = SandbankHandler(box, accept=None, src=lambda request: request)
    handler.tasks["t"] = Tracked(Task(id="t"), 1, 1, b"", tick=10**9)  # never final here

    def ctx(source):
        return ServerCallContext(state={"sandbank_request": source})

    async def run():
        streams = [handler.on_subscribe_to_task(SubscribeToTaskRequest(id="t"), ctx("a"))
                   for _ in range(MAX_WAITERS_PER_SOURCE)]
        for s in streams:
            assert (await anext(s)).id == "t"
        with pytest.raises(InvalidRequestError) as e:
            await anext(handler.on_subscribe_to_task(SubscribeToTaskRequest(id="t"), ctx("a")))
        assert "too_many_waiters" in str(e.value.message)
        other = handler.on_subscribe_to_task(SubscribeToTaskRequest(id="t"), ctx("b"))
        assert (await anext(other)).id == "t"
        await streams[0].aclose()  # a slot given back: the source may wait again
        again = handler.on_subscribe_to_task(SubscribeToTaskRequest(id="t"), ctx("a"))
        assert (await anext(again)).id == "t"
        for s in (*streams, other, again):
            await s.aclose()
        assert handler.waiters == 0 and handler.waiting == {}

    asyncio.run(run())
    assert [r[2] for r in refused] == ["too_many_waiters"]
