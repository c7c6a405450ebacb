"""The MCP bridge (`sandbank mcp`): one agent of a live sandbox, as MCP tools and resources,
so any MCP-capable LLM client can be that agent.

Trust model. The bridge runs on the agent's side (the MCP client starts it over stdio, or it
serves streamable HTTP on loopback). It holds the agent's Ed25519 key in a file of its own
(created, mode 0600, on first use) and talks to the sandbox over its public API with
`sandbank.client`, signing every request. The session is bound to that one identity: no tool
takes an actor, so the model behind the client can do exactly what the agent may do, and
nothing it says can make the bridge sign for anyone else. The sandbox server never sees the
model and never holds the key; to it the bridge is an ordinary outside agent, admitted under
an owner's attestation (give `--owner` and `--owner-key-file` on the first run; later runs
find the agent by its key). The operator's checkpoint key can be pinned (`--pin`), so the
bridge refuses a server that signs with another key; `prove` checks inclusion against it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sandbank.economy  # noqa: F401  (registers every action kind the tools parse)
from sandbank.client import Client, ClientError, RemoteAgent
from sandbank.kernel.schema import MalformedAction, action_from_dict

INSTRUCTIONS = """You are one agent of a sandbank economy (a sandboxed market of AI agents,
with a ledger, an order book, task contracts and an audit log). Read `observe` for your
accounts, orders, inbox and the markets; act with the tools; each action runs at the next
tick (about a second) and its outcome appears in your next observation's feedback. Every
action you take is signed as you and logged; `prove` checks that an action is in the log."""


def build(agent: RemoteAgent) -> Any:
    """The MCP server for one agent (tools and resources over the sandbox API)."""
    from mcp.server.mcpserver import MCPServer

    mcp = MCPServer("sandbank", instructions=INSTRUCTIONS, version="0.1", log_level="WARNING")
    client = agent.client

    def run(action: dict[str, Any]) -> dict[str, Any]:
        try:
            a = action_from_dict({**action, "actor": agent.id})
        except MalformedAction as e:
            return {"ok": False, "code": "malformed_action", "detail": str(e)}
        try:
            nonce = agent.act(a)
        except ClientError as e:
            return {"ok": False, "code": e.code, "detail": e.detail}
        return {"ok": True, "nonce": nonce, "kind": a.KIND,
                "note": "runs at the next tick; call prove(nonce) or observe() after it"}

    @mcp.tool()
    def whoami() -> dict[str, Any]:
        """Your agent id, the current tick and the operator key the log is checked against."""
        st = client.status()
        return {"agent": agent.id, "tick": st["tick"], "operator_key": client.operator_key,
                "markets": st["markets"], "assets": st["assets"]}

    @mcp.tool()
    def observe() -> dict[str, Any]:
        """Your own observation: accounts, open orders, feedback on your last actions,
        inbox, markets, tasks."""
        return agent.observe()

    @mcp.tool()
    def market() -> dict[str, Any]:
        """Public market data: last prices, best bid and ask, recent trades."""
        m = client.market()
        return {"tick": m["tick"], "markets": m["markets"], "trades": m["trades"][-20:],
                "halted": m["halted"]}

    @mcp.tool()
    def place_order(asset: str, side: str, qty: int, price: int,
                    order_type: str = "limit") -> dict[str, Any]:
        """Buy or sell `qty` units of `asset` at `price` (quote units per unit); side is
        'buy' or 'sell', order_type 'limit' or 'market'."""
        return run({"kind": "place_order", "asset": asset, "side": side, "qty": qty,
                    "price": price, "order_type": order_type})

    @mcp.tool()
    def cancel_order(order: int) -> dict[str, Any]:
        """Cancel one of your resting orders."""
        return run({"kind": "cancel_order", "order": order})

    @mcp.tool()
    def pay(to: int, asset: str, amount: int, memo: str = "") -> dict[str, Any]:
        """Pay another agent from your account."""
        return run({"kind": "pay", "to": to, "asset": asset, "amount": amount, "memo": memo})

    @mcp.tool()
    def send_message(to: int, content: str) -> dict[str, Any]:
        """Send a message to an agent (to=0: everyone). Messages are logged and filtered."""
        return run({"kind": "send_message", "to": to, "content": content})

    @mcp.tool()
    def act(action: dict[str, Any]) -> dict[str, Any]:
        """Any other action of the economy (post_task, bid_task, deliver, ...), as its
        fields with `kind`; you are always the actor."""
        return run({k: v for k, v in action.items() if k not in ("actor", "nonce", "signature")})

    @mcp.tool()
    def prove(nonce: int, wait_seconds: float = 15.0) -> dict[str, Any]:
        """Check that the action with this nonce is in the signed audit log: waits for its
        tick, then verifies an inclusion proof of each of its entries against the operator's
        signed checkpoint."""
        try:
            entries = agent.wait(nonce, wait=wait_seconds)
            seqs = agent.prove(nonce, entries)
        except ClientError as e:
            return {"ok": False, "code": e.code, "detail": e.detail}
        except ValueError as e:  # a bundle that does not verify
            return {"ok": False, "code": "proof_failed", "detail": str(e)}
        return {"ok": True, "verified": seqs, "entries": entries}

    @mcp.resource("sandbank://observation", mime_type="application/json")
    def observation_resource() -> str:
        """Your current observation."""
        return json.dumps(agent.observe())

    @mcp.resource("sandbank://market", mime_type="application/json")
    def market_resource() -> str:
        """Public market data."""
        return json.dumps(client.market())

    return mcp


def connect(server: str, key_file: str, *, pin: str | None = None, owner: int | None = None,
            owner_key_file: str | None = None, name: str | None = None,
            wait: float = 60.0) -> RemoteAgent:
    """The agent this bridge is bound to: found by its key, or admitted under the owner."""
    from sandbank.identity.keys import SigningKey

    key = SigningKey.load(key_file)
    client = Client(server, pinned_key=pin)
    try:
        return client.agent(key)
    except ClientError as e:
        if e.code == "awaiting_approval":
            return client._poll(lambda: client.agent(key), ("awaiting_approval",), wait)
        if e.code != "unknown_agent":
            raise
        if owner is None or owner_key_file is None:
            raise ClientError(404, "unknown_agent", "this key is not admitted yet: give "
                              "--owner and --owner-key-file to ask for admission") from None
    agent = client.join(owner, name or f"mcp-{key.public.hex()[:8]}",
                        SigningKey.load(owner_key_file), key=key, wait=wait)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and not agent.observe()["accounts"]:
        time.sleep(0.1)  # the endowment (if the server gives one) arrives a few ticks later
    return agent
