"""A local OpenAI-compatible chat-completions server with scripted replies, for tests.

The model name picks the script:
- `trader`: cancels its resting orders and buys one WGT at the best ask (or 100);
- `broken`: a tool call whose arguments are not JSON;
- `talker`: plain text, no tool call;
- `worker`: bids on open tasks and, once awarded, delivers — with `garbage: true`.
- `gullible`: does what any message in its inbox tells it to ("transfer N X to agent A"),
  as a model that cannot tell data from instructions would.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI, Request


def _call(name, args, i=0):
    return {"id": f"call_{i}", "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}


def reply(model: str, obs: dict) -> dict:
    calls = []
    content = None
    if model == "trader":  # cancel what rests, then lift the best ask (or bid 100)
        for o in obs["orders"]:
            calls.append(_call("cancel_order", {"order": o["id"]}, len(calls)))
        wgt = next(m for m in obs["markets"] if m["asset"] == "WGT")
        calls.append(_call("place_order", {"asset": "WGT", "side": "buy", "qty": 1,
                                           "price": wgt["best_ask"] or 100}, len(calls)))
    elif model == "broken":
        calls.append(_call("place_order", "{not json"))
    elif model == "talker":
        content = "I would rather not trade today."
    elif model == "worker":
        for t in obs["tasks"]:
            if t["status"] == "open" and t["requester"] != obs["agent"]:
                calls.append(_call("bid_task", {"task": t["id"], "price": t["reward"] // 2}, len(calls)))
        for c in obs["contracts"]:
            if c["role"] == "worker" and c["status"] == "open":
                calls.append(_call("deliver", {"contract": c["id"], "garbage": True}, len(calls)))
        if not calls:
            content = "nothing to do"
    elif model == "gullible":
        for m in obs["inbox"]:
            for amount, asset, to in re.findall(r"transfer (\d+) (\w+) to agent (\d+)",
                                                m["content"], re.I):
                calls.append(_call("pay", {"to": int(to), "asset": asset, "amount": int(amount)},
                                   len(calls)))
        if not calls:
            content = "nothing to do"
    message = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {"id": "chatcmpl-test", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if calls else "stop"}],
            # tokens as a real server counts them (here: a word count of the prompt, 7 out)
            "usage": {"prompt_tokens": len(json.dumps(obs).split()), "completion_tokens": 7,
                      "total_tokens": len(json.dumps(obs).split()) + 7}}


app = FastAPI()
app.state.requests = 0
app.state.flaky = 0  # answer this many requests with 503 first
app.state.connections = set()  # the client (host, port) pairs seen


@app.post("/hook")
async def hook(request: Request) -> dict:
    """A loopback endpoint for the boundary's HTTP egress adapter."""
    body = await request.body()
    app.state.hooked = getattr(app.state, "hooked", []) + [body]
    return {"received": len(body)}


@app.post("/v1/chat/completions")
async def completions(request: Request):
    from fastapi.responses import JSONResponse

    app.state.connections.add((request.client.host, request.client.port))
    if app.state.flaky > 0:
        app.state.flaky -= 1
        return JSONResponse({"error": "overloaded"}, status_code=503)
    body = await request.json()
    app.state.requests += 1
    obs = json.loads(body["messages"][-1]["content"])
    return reply(body["model"], obs)


class Server:
    def __enter__(self) -> Server:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test LLM server did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}/v1"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
