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

# (no `from __future__ import annotations`: the tools' annotations are evaluated where they
# are defined, so the schemas can use the server's own assets, built at start-up)
import json
import time
from typing import Annotated, Any, Literal

from pydantic import Field

import sandbank.economy  # noqa: F401  (registers every action kind the tools parse)
from sandbank.client import Client, ClientError, RemoteAgent
from sandbank.kernel.schema import MalformedAction, action_from_dict

INSTRUCTIONS = """You are one agent of a sandbank economy (a sandboxed market of AI agents,
with a ledger, an order book, task contracts and an audit log). Read `observe` for your
accounts, orders, inbox and the markets; act with the tools; each action runs at the next
tick (about a second) and its outcome appears in your next observation's feedback. Every
action you take is signed as you and logged; `prove` checks that an action is in the log."""


# Field descriptions an LLM reads in each tool's schema
QTY = Annotated[int, Field(ge=1, description="how many units (a whole number, at least 1)")]
PRICE = Annotated[int, Field(ge=0, description="limit price in quote units per unit (a whole "
                             "number); 0 for a market order")]
AGENT = Annotated[int, Field(ge=1, description="the receiving agent's id (see observe/market)")]
AMOUNT = Annotated[int, Field(ge=1, description="how much, in the asset's minor units (a whole "
                              "number, at least 1)")]
ORDER = Annotated[int, Field(ge=1, description="the id of one of your resting orders (observe "
                             "lists them under `orders`)")]
MEMO = Annotated[str, Field(max_length=256, description="a note kept with the payment (at most "
                            "256 characters)")]


def _choice(values: list[str], what: str) -> Any:
    """A parameter type that lists `values` as the schema's enum (the server's own assets)."""
    if not values:
        return Annotated[str, Field(min_length=1, description=what)]
    # (the enum spelled out too: pydantic writes a single choice as `const` alone)
    return Annotated[Literal[tuple(values)], Field(  # type: ignore[valid-type]
        description=what, json_schema_extra={"enum": list(values)})]


def _refused(code: str, detail: str) -> dict[str, Any]:
    return {"ok": False, "code": code, "detail": detail, "submitted": False}


def _available(obs: dict[str, Any], asset: str) -> int:
    return next((a["available"] for a in obs["accounts"] if a["asset"] == asset), 0)


def outcome(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """What an action's (proven) log entries say happened: a refusal with its reason and message, or
    what a placed order did (filled, rested, cancelled and why)."""
    if not entries:
        return {"ran": False}
    first = entries[0]
    withheld = [e.get("seq") for e in entries if e.get("kind") == "withheld"]
    if withheld:  # an agent reads every entry of its own action: a hidden one hides the verdict
        return {"ran": True, "refused": True, "reason": "withheld_entry",
                "message": f"the server withheld entries {withheld} of this action, so what "
                           f"it did cannot be proven"}
    refusal = next((e for e in entries if e.get("kind") == "rejected"), None)
    if refusal is not None:  # refused outright, or a later part of it refused (a batch)
        return {"ran": True, "refused": True, "reason": refusal.get("reason"),
                "message": refusal.get("message"), "partial": refusal is not first}
    out: dict[str, Any] = {"ran": True, "refused": False, "kind": first.get("kind")}
    if first.get("kind") == "order_placed":
        out.update(order=first.get("order"), filled=sum(f[2] for f in first.get("fills", [])),
                   rested=first.get("rested"), cancelled=first.get("cancelled"))
        if first.get("reason"):
            out["cancel_reason"] = first["reason"]
    return out


def build(agent: RemoteAgent) -> Any:
    """The MCP server for one agent (tools and resources over the sandbox API). Each tool's
    schema lists the allowed values (sides, order types, the server's assets) and describes
    every parameter; the arguments are checked on the spot against the agent's observation
    (cash and holdings available, its own orders) before anything is signed, so a model
    learns of a mistake at once rather than a tick later. The kernel stays the authority:
    `prove` reports its verdict, refusal reason included."""
    from mcp.server.mcpserver import MCPServer

    mcp = MCPServer("sandbank", instructions=INSTRUCTIONS, version="0.1", log_level="WARNING")
    client = agent.client
    st = client.status()
    markets = {m["asset"]: m["quote"] for m in client.market()["markets"]}
    Asset = _choice(sorted(markets), "the traded asset (one of the server's markets)")
    Money = _choice(sorted(st["assets"]), "the asset to pay in")

    def run(action: dict[str, Any]) -> dict[str, Any]:
        try:
            a = action_from_dict({**action, "actor": agent.id})
        except MalformedAction as e:
            return _refused("malformed_action", str(e))
        try:
            nonce = agent.act(a)
        except ClientError as e:
            return {"ok": False, "code": e.code, "detail": e.detail}
        return {"ok": True, "nonce": nonce, "kind": a.KIND,
                "note": "submitted: runs at the next tick; prove(nonce) tells whether it was "
                        "accepted (and why not), observe() shows its effect"}

    @mcp.tool()
    def whoami() -> dict[str, Any]:
        """Your agent id, the current tick and the operator key the log is checked against."""
        st = client.status()
        return {"agent": agent.id, "tick": st["tick"], "operator_key": client.operator_key,
                "markets": st["markets"], "assets": st["assets"]}

    @mcp.tool()
    def observe() -> dict[str, Any]:
        """Your own observation: accounts (balance, and `available`: what you can still
        spend), open orders, feedback on your last actions, inbox, markets, tasks."""
        return agent.observe()

    @mcp.tool()
    def market() -> dict[str, Any]:
        """Public market data: last prices, best bid and ask, recent trades."""
        m = client.market()
        return {"tick": m["tick"], "markets": m["markets"], "trades": m["trades"][-20:],
                "halted": m["halted"]}

    @mcp.tool()
    def place_order(asset: Asset, side: Annotated[Literal["buy", "sell"], Field(
                        description="buy: pay quote units for the asset; sell: give the asset "
                                    "for quote units")],
                    qty: QTY, price: PRICE = 0,
                    order_type: Annotated[Literal["limit", "market"], Field(
                        description="limit: rest at `price` until filled or cancelled; "
                                    "market: fill now at the best prices, the rest cancelled"
                    )] = "limit") -> dict[str, Any]:
        """Buy or sell `qty` units of `asset`. A limit order needs a price of at least 1 and,
        to buy, price × qty (plus the trade fee) of the quote asset available; to sell, qty
        of the asset available. A market order takes no price."""
        if order_type == "limit" and price < 1:
            return _refused("invalid_price", "a limit order needs a price of at least 1")
        if order_type == "market" and price:
            return _refused("invalid_field", "a market order takes no price (give price=0)")
        obs = agent.observe()
        if side == "buy" and order_type == "limit":
            quote = markets.get(asset, "")
            have = _available(obs, quote)
            if have < price * qty:
                return _refused("insufficient_funds", f"needs {price * qty} {quote} available "
                                f"(price × qty, before the fee); you have {have}")
        if side == "sell":
            have = _available(obs, asset)
            if have < qty:
                return _refused("insufficient_assets", f"needs {qty} {asset} available; "
                                f"you have {have}")
        return run({"kind": "place_order", "asset": asset, "side": side, "qty": qty,
                    "price": price, "order_type": order_type})

    @mcp.tool()
    def cancel_order(order: ORDER) -> dict[str, Any]:
        """Cancel one of your resting orders (its reserved funds are released)."""
        mine = [o["id"] for o in agent.observe()["orders"]]
        if order not in mine:
            return _refused("unknown_order", f"order {order} is not one of your resting "
                            f"orders {mine}")
        return run({"kind": "cancel_order", "order": order})

    @mcp.tool()
    def pay(to: AGENT, asset: Money, amount: AMOUNT, memo: MEMO = "") -> dict[str, Any]:
        """Pay another agent `amount` of `asset` from your account."""
        if to == agent.id:
            return _refused("invalid_field", "you cannot pay yourself")
        have = _available(agent.observe(), asset)
        if have < amount:
            return _refused("insufficient_funds", f"needs {amount} {asset} available; you "
                            f"have {have}")
        return run({"kind": "pay", "to": to, "asset": asset, "amount": amount, "memo": memo})

    @mcp.tool()
    def send_message(to: Annotated[int, Field(ge=0, description="the receiving agent's id; 0 "
                                              "sends to everyone")],
                     content: Annotated[str, Field(min_length=1, description="the message "
                                                   "text (logged, filtered, size-limited)")]
                     ) -> dict[str, Any]:
        """Send a message to an agent (to=0: everyone). Messages are logged and filtered."""
        return run({"kind": "send_message", "to": to, "content": content})

    @mcp.tool()
    def act(action: Annotated[dict[str, Any], Field(
            description="the action's fields with `kind` (e.g. {\"kind\": \"post_task\", ...}); "
                        "never `actor`, `nonce` or `signature`: you are always the actor")]
            ) -> dict[str, Any]:
        """Any other action of the economy (post_task, bid_task, deliver, ...), as its
        fields with `kind`; you are always the actor."""
        return run({k: v for k, v in action.items() if k not in ("actor", "nonce", "signature")})

    @mcp.tool()
    def prove(nonce: Annotated[int, Field(ge=1, description="the nonce a tool returned")],
              wait_seconds: Annotated[float, Field(ge=0, le=120, description="how long to "
                                                   "wait for the action's tick")] = 15.0
              ) -> dict[str, Any]:
        """Whether the action with this nonce was accepted, and proof that what happened is
        in the signed audit log: waits for its tick, verifies an inclusion proof of each of
        its entries against the operator's signed checkpoint, and reports the outcome — a
        refusal with its reason (`ok` is then false), or what an order did."""
        try:
            found = agent.proven(nonce, agent.wait(nonce, wait=wait_seconds))
        except ClientError as e:
            return {"ok": False, "code": e.code, "detail": e.detail}
        except ValueError as e:  # a bundle that does not verify
            return {"ok": False, "code": "proof_failed", "detail": str(e)}
        seqs = [seq for seq, _ in found]
        entries = [{"seq": seq, "kind": "withheld"} if body is None else body
                   for seq, body in found]
        what = outcome(entries)  # from the proven bodies, not the server's index
        if what.get("refused"):
            return {"ok": False, "code": what["reason"], "detail": what["message"],
                    "verified": seqs, "entries": entries, "outcome": what}
        return {"ok": True, "verified": seqs, "entries": entries, "outcome": what}

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
