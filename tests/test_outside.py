"""Must-shows of issue 7 with real processes: an outside agent process and an MCP client
join a served scenario, trade with its in-process population, and verify inclusion proofs
of their own trades."""

import asyncio
import json
import subprocess
import sys

from sandbank.client import Client
from tests.live_server import ROOT, LiveServer


def test_an_outside_agent_process_trades_with_the_population_and_proves_it(tmp_path):
    with LiveServer(tmp_path) as srv:
        pin = Client(srv.url).status()["operator_key"]
        r = subprocess.run([sys.executable, str(ROOT / "examples" / "remote_agent.py"),
                            "--url", srv.url, "--operator-token", srv.env["SANDBANK_OPERATOR_TOKEN"],
                            "--pin", pin, "--name", "visitor"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "bought" in r.stdout and "proven" in r.stdout, r.stdout


def test_an_mcp_client_is_an_agent_through_tools(tmp_path):
    from mcp import Client as MCPClient
    from mcp.client.stdio import StdioServerParameters

    with LiveServer(tmp_path) as srv:
        owner, owner_key = srv.owner("mcp-owner")
        params = StdioServerParameters(command=sys.executable, args=[
            "-m", "sandbank.cli", "mcp", "--server", srv.url,
            "--key-file", str(tmp_path / "agent.key"), "--owner", str(owner),
            "--owner-key-file", owner_key, "--name", "llm-agent",
            "--pin", Client(srv.url).status()["operator_key"]])

        async def session():
            async with MCPClient(params, read_timeout_seconds=60) as c:
                tools = {t.name for t in (await c.list_tools()).tools}
                assert {"observe", "place_order", "prove", "pay", "act"} <= tools
                who = structured(await c.call_tool("whoami", {}))
                obs = structured(await c.call_tool("observe", {}))
                assert obs["agent"] == who["agent"]
                wgt = next(a["balance"] for a in obs["accounts"] if a["asset"] == "WGT")
                placed = structured(await c.call_tool("place_order", {
                    "asset": "WGT", "side": "buy", "qty": 2, "price": 130}))
                assert placed["ok"], placed
                proof = structured(await c.call_tool("prove", {"nonce": placed["nonce"]}))
                assert proof["ok"] and proof["verified"], proof
                assert any(e["kind"] == "order_placed" for e in proof["entries"])
                # bought from the in-process population (the market makers)
                for _ in range(50):
                    obs = structured(await c.call_tool("observe", {}))
                    now = next(a["balance"] for a in obs["accounts"] if a["asset"] == "WGT")
                    if now == wgt + 2:
                        break
                    await asyncio.sleep(0.1)
                assert now == wgt + 2
                bad = structured(await c.call_tool("act", {"action": {"kind": "warp_drive"}}))
                assert not bad["ok"] and bad["code"] == "malformed_action"
                res = await c.read_resource("sandbank://market")
                assert json.loads(res.contents[0].text)["markets"][0]["asset"] == "WGT"
                return who["agent"]

        agent = asyncio.run(session())
        assert agent > 8  # not one of the scenario's 8


def structured(result):
    """A tool's result as data (structured content, or the JSON text)."""
    assert not result.is_error, result
    if result.structured_content is not None:
        sc = result.structured_content
        return sc.get("result", sc) if set(sc) == {"result"} else sc
    return json.loads(result.content[0].text)


def test_the_mcp_bridge_also_serves_streamable_http(tmp_path):
    import time

    from mcp import Client as MCPClient

    from tests.live_server import free_port

    with LiveServer(tmp_path) as srv:
        owner, owner_key = srv.owner("http-owner")
        port = free_port()
        bridge = subprocess.Popen([
            sys.executable, "-m", "sandbank.cli", "mcp", "--server", srv.url,
            "--key-file", str(tmp_path / "agent.key"), "--owner", str(owner),
            "--owner-key-file", owner_key, "--transport", "streamable-http", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            import socket

            deadline = time.monotonic() + 60
            while True:  # until the bridge has joined and listens
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline and bridge.poll() is None, "no bridge"
                    time.sleep(0.1)

            async def session():
                async with MCPClient(f"http://127.0.0.1:{port}/mcp") as c:
                    placed = structured(await c.call_tool("place_order", {
                        "asset": "WGT", "side": "buy", "qty": 1, "price": 130}))
                    return structured(await c.call_tool("prove", {"nonce": placed["nonce"]}))

            proof = asyncio.run(session())
            assert proof["ok"] and proof["verified"]
        finally:
            bridge.terminate()
            bridge.wait(timeout=10)


def test_mcp_tool_schemas_list_the_choices_and_bad_arguments_are_refused_on_the_spot(tmp_path):
    """An LLM reading the schemas needs no guessing (enums, a description per parameter);
    a wrong side or an order beyond the agent's cash is refused before anything is signed
    (both once returned ok: true); and prove reports the kernel's refusal with its reason."""
    from mcp import Client as MCPClient
    from mcp.client.stdio import StdioServerParameters

    with LiveServer(tmp_path) as srv:
        owner, owner_key = srv.owner("schema-owner")
        params = StdioServerParameters(command=sys.executable, args=[
            "-m", "sandbank.cli", "mcp", "--server", srv.url,
            "--key-file", str(tmp_path / "agent.key"), "--owner", str(owner),
            "--owner-key-file", owner_key, "--name", "schema-agent"])

        async def session():
            async with MCPClient(params, read_timeout_seconds=60) as c:
                tools = {t.name: t for t in (await c.list_tools()).tools}
                for name in ("place_order", "cancel_order", "pay", "send_message", "prove"):
                    props = tools[name].input_schema["properties"]
                    for param, schema in props.items():
                        assert schema.get("description"), (name, param)
                order = tools["place_order"].input_schema["properties"]
                assert order["side"]["enum"] == ["buy", "sell"]
                assert order["order_type"]["enum"] == ["limit", "market"]
                assert order["asset"]["enum"] == ["WGT"]
                assert order["qty"]["minimum"] == 1
                # a bad side: refused by the schema (the tool never runs)
                long = await c.call_tool("place_order", {"asset": "WGT", "side": "long",
                                                         "qty": 1, "price": 100})
                assert long.is_error
                obs = structured(await c.call_tool("observe", {}))
                cash = next(a["available"] for a in obs["accounts"] if a["asset"] == "CRD")
                wgt = next(a["available"] for a in obs["accounts"] if a["asset"] == "WGT")
                big = structured(await c.call_tool("place_order", {
                    "asset": "WGT", "side": "buy", "qty": cash, "price": 100}))
                assert big == {"ok": False, "code": "insufficient_funds", "submitted": False,
                               "detail": big["detail"]} and str(cash) in big["detail"]
                short = structured(await c.call_tool("place_order", {
                    "asset": "WGT", "side": "sell", "qty": wgt + 1, "price": 100}))
                assert short["code"] == "insufficient_assets" and not short["ok"]
                broke = structured(await c.call_tool("pay", {"to": 1, "asset": "CRD",
                                                             "amount": cash + 1}))
                assert broke["code"] == "insufficient_funds"
                gone = structured(await c.call_tool("cancel_order", {"order": 999999}))
                assert gone["code"] == "unknown_order"
                # what the spot checks cannot know, the kernel refuses; prove says why
                sent = structured(await c.call_tool("act", {"action": {
                    "kind": "pay", "to": 999999, "asset": "CRD", "amount": 1}}))
                assert sent["ok"], sent
                proof = structured(await c.call_tool("prove", {"nonce": sent["nonce"]}))
                assert not proof["ok"] and proof["verified"], proof
                assert proof["code"] == proof["outcome"]["reason"] and proof["code"] != "ok"
                assert proof["detail"]
                # and an accepted order's outcome says what it did
                placed = structured(await c.call_tool("place_order", {
                    "asset": "WGT", "side": "buy", "qty": 1, "price": 1}))
                proof = structured(await c.call_tool("prove", {"nonce": placed["nonce"]}))
                assert proof["ok"] and proof["outcome"]["rested"] == 1, proof

        asyncio.run(session())


def test_joining_needs_no_python_keygen_admit_owner_then_the_mcp_bridge(tmp_path):
    import os

    from mcp import Client as MCPClient
    from mcp.client.stdio import StdioServerParameters

    def cli(*args, env=None):
        return subprocess.run([sys.executable, "-m", "sandbank.cli", *args], capture_output=True,
                              text=True, timeout=120, env=env)

    owner_key = tmp_path / "owner.key"
    made = cli("keygen", str(owner_key))
    assert made.returncode == 0 and len(made.stdout.strip()) == 64, made.stderr
    assert oct(owner_key.stat().st_mode & 0o777) == "0o600"
    again = cli("keygen", str(owner_key))  # never overwritten
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    with LiveServer(tmp_path) as srv:
        env = {**os.environ, "SANDBANK_OPERATOR_TOKEN": srv.env["SANDBANK_OPERATOR_TOKEN"]}
        no_token = cli("admit-owner", "acme", "--key-file", str(owner_key), "--evidence", "x",
                       "--server", srv.url, env={k: v for k, v in env.items()
                                                 if k != "SANDBANK_OPERATOR_TOKEN"})
        assert no_token.returncode == 2 and "SANDBANK_OPERATOR_TOKEN" in no_token.stderr
        wrong = cli("admit-owner", "acme", "--key-file", str(owner_key), "--evidence", "x",
                    "--server", srv.url, env={**env, "SANDBANK_OPERATOR_TOKEN": "w" * 32})
        assert wrong.returncode == 1 and "refused" in wrong.stderr, wrong.stderr
        admitted = cli("admit-owner", "acme", "--key-file", str(owner_key), "--evidence",
                       "checked by hand", "--server", srv.url, env=env)
        assert admitted.returncode == 0, admitted.stderr
        owner = int(admitted.stdout.strip())
        params = StdioServerParameters(command=sys.executable, args=[
            "-m", "sandbank.cli", "mcp", "--server", srv.url, "--key-file",
            str(tmp_path / "agent.key"), "--owner", str(owner), "--owner-key-file",
            str(owner_key), "--name", "no-python"])

        async def session():
            async with MCPClient(params, read_timeout_seconds=60) as c:
                return structured(await c.call_tool("whoami", {}))["agent"]

        assert asyncio.run(session()) > 8


def test_an_unreachable_server_is_one_line_not_a_traceback(tmp_path):
    from tests.live_server import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    key = tmp_path / "k.key"
    runs = [
        ([sys.executable, "-m", "sandbank.cli", "mcp", "--server", dead, "--key-file", str(key)],
         2),
        ([sys.executable, "-m", "sandbank.cli", "admit-owner", "o", "--key-file", str(key),
          "--evidence", "e", "--server", dead], 1),
        ([sys.executable, str(ROOT / "examples" / "remote_agent.py"), "--url", dead,
          "--operator-token", "t" * 20], 1),
    ]
    subprocess.run([sys.executable, "-m", "sandbank.cli", "keygen", str(key)], check=True,
                   capture_output=True)
    import os

    env = {**os.environ, "SANDBANK_OPERATOR_TOKEN": "t" * 20}
    for cmd, code in runs:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == code, (cmd, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot reach" in lines[0] and dead in lines[0], r.stderr
