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
from sandbank.markets.payments import Pay
from sandbank.server.a2a import SCHEME, message_for
from tests.live_server import LiveServer

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
                assert art["kind"] == "paid" and int(art["nonce"]) == pay["nonce"]
                assert art["withheld"] == "restricted"  # a payment is the parties' to read
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

                # refused by the sequencer: the task is rejected with the log's reason
                broke = me.envelope(Pay(actor=me.id, to=payee.id, asset="CRD", amount=10**12))
                rejected = await until_final(polling, (await send(polling, broke)).task.id)
                assert rejected.status.state == TaskState.TASK_STATE_REJECTED
                why = MessageToDict(rejected.status.message.parts[1].data)
                assert why["reason"] and why["reason"] in rejected.status.message.parts[0].text
                assert artifact(rejected)["kind"] == "rejected"

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
