"""Bring your own agent: user policies by import path, entry point and --path; agent hosts
(separate contained processes); what a hostile policy can do in-process and cannot in a
host; the same log whatever the number of hosts; deadlines, crashes and containment."""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sandbank.agents import hosts as hosts_mod
from sandbank.agents.hosts import Containment
from sandbank.cli import app
from sandbank.lab.runner import RunError, run_scenario
from sandbank.lab.scenario import ScenarioError, parse_scenario
from sandbank.store.sqlite import SQLiteStore

POLICIES = Path(__file__).parent / "policies"  # a user's code, outside the package
PATHS = (str(POLICIES),)
BWRAP = hosts_mod.containment().bwrap is not None
needs_bwrap = pytest.mark.skipif(not BWRAP, reason="bubblewrap is not usable on this machine")


def scenario(extra: list[dict] | None = None, *, ticks: int = 12, agents: dict | None = None,
             seed: int = 5) -> dict:
    doc = {"name": "byo", "seed": seed, "ticks": ticks, "assets": ["CRD", "WGT"],
           "markets": [{"asset": "WGT", "quote": "CRD"}],
           "endowment": {"CRD": 100_000, "WGT": 50},
           "owners": [{"name": "ada"}, {"name": "mallory"}],
           "population": [{"policy": "zi_trader", "count": 6, "owner": "ada"},
                          *(extra or [])]}
    if agents is not None:
        doc["agents"] = agents
    return doc


def run(doc: dict, out: Path, key: Path, paths: tuple[str, ...] = PATHS):
    sc = parse_scenario(doc, "<test>", paths=paths)
    return run_scenario(sc, out, overwrite=True, key_file=key)


def entries(path: Path) -> list[bytes]:
    store = SQLiteStore(path / "log.db", readonly=True, create=False)
    try:
        return [e.body for e in store.entries()]
    finally:
        store.close()


# ------------------------------------------------------------------ finding policies


def test_a_policy_by_import_path_is_resolved_and_its_parameters_checked(tmp_path):
    quoter = {"policy": "byo.traders:Quoter", "count": 2, "owner": "mallory",
              "params": {"width": 3}}
    sc = parse_scenario(scenario([quoter]), "<t>", paths=PATHS)
    g = sc.population[1]
    assert g.ref.spec == "byo.traders:Quoter" and not g.ref.builtin
    assert g.params == {"asset": "WGT", "fair": 100, "width": 3, "qty": 2, "work": 0}
    for params, said in (({"widht": 3}, "unknown parameter 'widht' of policy byo.traders:Quoter "
                                        "(did you mean 'width'?)"),
                         ({"width": "3"}, "parameter 'width' of policy byo.traders:Quoter must "
                                          "be int, got '3'"),
                         ({"qty": True}, "must be int, got True")):
        with pytest.raises(ScenarioError, match=re.escape(said)):
            parse_scenario(scenario([{**quoter, "params": params}]), "<t>", paths=PATHS)
    # a class-attribute declaration (no decorator), and float accepting an int
    sleeper = {"policy": "byo.traders:Sleeper", "owner": "mallory", "params": {"seconds": 1}}
    assert parse_scenario(scenario([sleeper]), "<t>", paths=PATHS).population[1].params[
        "seconds"] == 1
    with pytest.raises(ScenarioError, match="population\\[1\\]: policy 'nowhere:X': no module "
                                            "'nowhere' on the import path"):
        parse_scenario(scenario([{"policy": "nowhere:X"}]), "<t>", paths=PATHS)
    with pytest.raises(ScenarioError, match="cannot load policy 'byo.traders:Nope'.*AttributeError"):
        parse_scenario(scenario([{"policy": "byo.traders:Nope"}]), "<t>", paths=PATHS)
    with pytest.raises(ScenarioError, match="is not a subclass of sandbank.agents.Agent"):
        parse_scenario(scenario([{"policy": "byo.traders:time"}]), "<t>", paths=PATHS)
    with pytest.raises(ScenarioError, match="unknown policy 'zi_trder' \\(did you mean 'zi_trader'"):
        parse_scenario(scenario([{"policy": "zi_trder"}]), "<t>", paths=PATHS)
    with pytest.raises(ScenarioError, match="agents.hosts must be int or NoneType"):
        parse_scenario(scenario(agents={"hosts": "2"}), "<t>")
    with pytest.raises(ScenarioError, match="unknown key 'host' in agents"):
        parse_scenario(scenario(agents={"host": 2}), "<t>")


def test_built_in_parameters_are_type_checked_too():
    bad = scenario()
    bad["population"][0]["params"] = {"max_qty": "3"}
    with pytest.raises(ScenarioError, match="parameter 'max_qty' of policy zi_trader must be int"):
        parse_scenario(bad, "<t>")


def test_an_installed_package_offers_policies_by_name(tmp_path, monkeypatch):
    site = tmp_path / "site"
    dist = site / "byo_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: byo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[sandbank.policies]\nquoter = byo.traders:Quoter\n")
    monkeypatch.syspath_prepend(str(site))
    sc = parse_scenario(scenario([{"policy": "quoter", "owner": "mallory"}]), "<t>", paths=PATHS)
    assert sc.population[1].ref.spec == "byo.traders:Quoter"
    with pytest.raises(ScenarioError, match="known: .*quoter"):
        parse_scenario(scenario([{"policy": "quoterr"}]), "<t>", paths=PATHS)


# ------------------------------------------------------------------ hosts


def test_the_same_log_with_0_1_and_2_hosts(tmp_path):
    """Per-agent generators and the sequencer's order: where agents run changes nothing."""
    key = tmp_path / "k.key"
    extra = [{"policy": "byo.traders:Quoter", "count": 3, "owner": "mallory"},
             {"policy": "market_maker", "count": 1, "owner": "mallory"}]
    logs, roots = [], []
    for n in (0, 1, 2):
        r = run(scenario(extra, agents={"hosts": n}), tmp_path / f"h{n}", key)
        ran = r.summary["agents_ran"]
        assert ran["hosted"] == (0 if n == 0 else 10) and ran["in_process"] == 10 - ran["hosted"]
        assert len(ran["hosts"]) == {0: 0, 1: 2, 2: 2}[n]  # owners never share a host
        assert r.summary["verified"] and r.summary["agent_errors"] == {}
        logs.append(entries(tmp_path / f"h{n}"))
        roots.append(r.summary["root"])
    assert logs[0] == logs[1] == logs[2] and len(set(roots)) == 1
    assert r.summary["final"]["fills"] > 0  # the user's traders traded
    three = run(scenario(extra, agents={"hosts": 3}), tmp_path / "h3", key)
    assert [h["agents"] for h in three.summary["agents_ran"]["hosts"]] == [3, 3, 4]
    assert three.summary["root"] == roots[0]


def test_user_policies_run_in_hosts_by_default(tmp_path):
    r = run(scenario([{"policy": "byo.traders:Quoter", "count": 2, "owner": "mallory"}]),
            tmp_path / "r", tmp_path / "k.key")
    ran = r.summary["agents_ran"]
    assert (ran["in_process"], ran["hosted"], ran["backend"]) == (6, 2, "process")
    assert ran["hosts"] == [{"host": 0, "owner": "mallory", "agents": 2, "status": "ok"}]
    assert set(ran["containment"]) >= {"network", "filesystem", "limits", "deadline"}


class Listener:
    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        self.sock.settimeout(0.2)
        while self.sock.fileno() != -1:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                self.received += conn.recv(100)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener():
    lis = Listener()
    yield lis
    lis.close()


def hostile(mode: str, port: int, target: Path, secret: Path | str = "") -> dict:
    return {"policy": "byo.hostile:Hostile", "count": 1, "owner": "mallory",
            "params": {"mode": mode, "port": port, "target": str(target), "secret": str(secret)}}


def test_a_hostile_policy_in_process_reaches_the_economy(tmp_path, listener):
    """What the hosts are for: the same policy in the runner's process (agents.hosts: 0)
    finds the runner, has the operator pay it (a signed, verifying log!), reads another
    agent's parameters, connects out and writes files."""
    target = tmp_path / "outside"
    target.mkdir()
    key = tmp_path / "k.key"
    r = run(scenario([hostile("steal", listener.port, target, key)], agents={"hosts": 0}),
            tmp_path / "in", key)
    assert r.summary["verified"]  # the theft is in the log, signed by the operator key
    assert any("not shipped with sandbank and run in the kernel's process" in w
               for w in r.summary["warnings"])
    assert listener.received.startswith(b"exfiltrated")
    assert len(list(target.iterdir())) == 12  # a file each tick, holding the run's secret
    assert (target / next(iter(sorted(p.name for p in target.iterdir())))).read_text() == \
        key.read_text()
    mallory = next(g for g in r.summary["groups"] if g["policy"] == "byo.hostile:Hostile")
    assert mallory["pnl"] >= 100_000 and mallory["pnl"] % 50_000 == 0  # the operator paid it
    # writing balances directly is caught at the end, as a run that failed (exit 1)
    with pytest.raises(RunError, match="ledger invariant is broken|live state disagrees") as e:
        run(scenario([hostile("tamper", listener.port, target)], agents={"hosts": 0}),
            tmp_path / "tamper", tmp_path / "k.key")
    assert e.value.exit_code == 1


@needs_bwrap
def test_a_hostile_policy_in_a_host_reaches_nothing(tmp_path, listener):
    target = tmp_path / "outside"
    target.mkdir()
    key = tmp_path / "k.key"
    r = run(scenario([hostile("steal", listener.port, target, key)]), tmp_path / "host", key)
    honest = run(scenario([hostile("idle", listener.port, target, key)]), tmp_path / "idle", key)
    assert listener.received == b"" and list(target.iterdir()) == []
    assert r.summary["root"] == honest.summary["root"]  # balances and log as an honest run's
    assert entries(tmp_path / "host") == entries(tmp_path / "idle")
    assert r.summary["verified"] and r.summary["ok"]
    # the host reported each attempt's failure, every tick
    assert r.summary["agent_errors"] == {"PermissionError": 12}
    assert r.summary["agent_error_examples"]["PermissionError"] == [
        "PermissionError: blocked: no kernel or runner in reach; network: ConnectionRefusedError; "
        "key: FileNotFoundError; disk: FileNotFoundError"]
    assert r.summary["agents_ran"]["hosts"][0]["status"] == "ok"
    assert not [w for w in r.summary["warnings"] if "NOT" in w]


def test_a_missed_deadline_a_hung_host_and_a_crashed_host(tmp_path):
    key = tmp_path / "k.key"
    slow = {"policy": "byo.traders:Sleeper", "owner": "mallory",
            "params": {"seconds": 4.0, "ticks": [5]}}
    r = run(scenario([slow], agents={"deadline": 1}), tmp_path / "slow", key)
    assert r.summary["agent_errors"] == {"missed deadline": 1}
    assert r.summary["agents_ran"]["hosts"][0]["status"] == "ok"
    # an agent that defeats the deadline: the watchdog kills its host, the run goes on
    stubborn = {**slow, "params": {"seconds": 30.0, "ticks": [5], "stubborn": True}}
    r = run(scenario([stubborn], agents={"deadline": 1}), tmp_path / "stubborn", key)
    assert r.summary["agents_ran"]["hosts"][0]["status"].startswith("down: it answered nothing")
    assert any("is down from tick" in w for w in r.summary["warnings"])
    assert r.summary["verified"] and r.summary["final"]["fills"] > 0
    crash = {**slow, "params": {"exit_at": 4 + r.summary["setup_ticks"] - 3}}
    r = run(scenario([crash]), tmp_path / "crash", key)
    status = r.summary["agents_ran"]["hosts"][0]["status"]
    assert status.startswith("down: the host exited (exit code 3") or "exit code 3" in status
    assert r.summary["verified"]


def test_missing_containment_is_said_and_can_be_required(tmp_path, monkeypatch):
    monkeypatch.setattr(hosts_mod, "containment", lambda: Containment(None, None))
    quoter = {"policy": "byo.traders:Quoter", "owner": "mallory"}
    r = run(scenario([quoter]), tmp_path / "open", tmp_path / "k.key")
    gaps = [w for w in r.summary["warnings"] if "NOT contained" in w]
    assert any(w.startswith("agent hosts: network: NOT contained") for w in gaps)
    assert any(w.startswith("agent hosts: filesystem: NOT contained") for w in gaps)
    assert r.summary["agents_ran"]["containment"]["network"].startswith("NOT contained")
    report = (tmp_path / "open" / "report.html").read_text()
    assert "agent hosts: network: NOT contained" in report and "Where the agents ran" in report
    heard: list[str] = []
    run_scenario(parse_scenario(scenario([quoter]), "<t>", paths=PATHS), tmp_path / "heard",
                 overwrite=True, key_file=tmp_path / "k.key", on_warning=heard.append)
    assert heard == r.summary["warnings"]
    with pytest.raises(RunError, match="containment required .* network: NOT contained"):
        run(scenario([quoter], agents={"require_containment": True}), tmp_path / "req",
            tmp_path / "k.key")


# ------------------------------------------------------------------ from the CLI


def test_a_user_policy_from_sandbank_run_and_sweep(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    doc = scenario([{"policy": "byo.traders:Quoter", "count": 2, "owner": "mallory"}], ticks=6)
    (tmp_path / "sc.yaml").write_text(json.dumps(doc))
    cli = CliRunner()
    res = cli.invoke(app, ["run", "sc.yaml", "--out", "r", "--path", str(POLICIES)])
    assert res.exit_code == 0, res.output
    assert "6 in this process, 2 in 1 process host(s)" in res.output
    # not on the path (an in-process test of this session may have put it on ours): exit 2
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not p.startswith(str(POLICIES))])
    res = cli.invoke(app, ["run", "sc.yaml", "--out", "r2"])
    assert res.exit_code == 2 and "no module 'byo' on the import path" in " ".join(
        res.output.split())
    (tmp_path / "sweep.yaml").write_text(json.dumps(
        {"scenario": "sc.yaml", "seeds": [1, 2], "grid": {"population.1.params.width": [2, 8]},
         "workers": 2}))
    res = cli.invoke(app, ["sweep", "sweep.yaml", "--out", "sw", "--path", str(POLICIES),
                           "--hosts", "1"])
    assert res.exit_code == 0, res.output
    assert "4 runs, 4 ok" in res.output


def test_the_documented_example_runs_as_written(tmp_path, monkeypatch):
    """docs/lab.md's example, taken from the page: the package, the scenario, the CLI and
    the Python call."""
    doc = (Path(__file__).parents[1] / "docs" / "lab.md").read_text()
    blocks = re.findall(r"```(\w*)\n(.*?)```", doc, re.S)
    package = next(b for lang, b in blocks if lang == "python" and "policies/mytraders" in b)
    yaml_doc = next(b for lang, b in blocks if lang == "yaml" and "# byo.yaml" in b)
    python = next(b for lang, b in blocks if lang == "python" and "run_scenario(load" in b)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policies" / "mytraders").mkdir(parents=True)
    (tmp_path / "policies" / "mytraders" / "__init__.py").write_text(package)
    (tmp_path / "byo.yaml").write_text(yaml_doc)
    res = CliRunner().invoke(app, ["run", "byo.yaml", "--path", "policies", "--out", "cli"])
    assert res.exit_code == 0, res.output
    assert "10 in this process, 2 in 1 process host(s)" in res.output
    namespace: dict = {}
    exec(compile(python, "docs/lab.md", "exec"), namespace)
    result = namespace["result"]
    assert result.ok and result.summary["agents_ran"]["hosted"] == 2
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    # (each folder has its own run key, so the roots differ; the economy does not)
    assert summary["final"] == result.summary["final"] and summary["final"]["fills"] > 0


@pytest.mark.parametrize("mode, status", [
    ("forge", None), ("impersonate", None),
    ("huge", "down: the host sent a frame of 4,294,967,280 bytes"),
    ("garbage", "down: the host sent a frame that is not JSON"),
    ("deep", "down: the host sent a frame that is not JSON"),
    ("flood", "down: the host sent more bytes than its agents' answers may take"),
    ("trickle", "down: it answered nothing for 2 s")])
def test_a_host_that_attacks_its_channel_gets_nothing_in(tmp_path, mode, status):
    """Code in a host owns the host's end of the pipe: what it writes there is checked like
    anything from outside. An answer for another owner's agent is ignored (said in the
    warnings), an action in another agent's name is an agent error, a frame too large or
    not JSON takes the host down; the honest agents' log is untouched."""
    key = tmp_path / "k.key"
    forger = {"policy": "byo.hostile:Forger", "owner": "mallory", "params": {"mode": mode},
              "name": "mallory"}
    r = run(scenario([forger], agents={"deadline": 1}), tmp_path / mode, key)
    idle = run(scenario([{**hostile("idle", 0, tmp_path), "name": "mallory"}]),
               tmp_path / "idle", key)
    assert r.summary["verified"]
    host = r.summary["agents_ran"]["hosts"][0]
    if status is None:
        assert host["status"] == "ok"
        assert r.summary["root"] == idle.summary["root"]  # agent 1 sold nothing at 1
    else:
        assert host["status"].startswith(status), host
        assert r.summary["root"] == idle.summary["root"]
    if mode == "forge":
        assert any("answered for agent 1, which it was not asked about" in w
                   for w in r.summary["warnings"])
    if mode == "impersonate":
        assert r.summary["final"]["agent_errors"] == 12


def test_what_a_host_reads_and_uses_is_bounded(tmp_path, monkeypatch):
    """The hosts see the policy's package, not the folder it sits in: a hostile policy
    placed in the working directory (no --path), with the run folder under it, cannot read
    the run's key; a --path folder that holds the run folder is refused before the run.
    A `resource.py` in a --path folder does not replace the standard library's (the limits
    hold: 1 GB is refused under memory_mb 256; /dev is read-only), and exception kinds a
    policy invents do not grow the runner's tables."""
    import shutil

    work, lib = tmp_path / "work", tmp_path / "lib"
    for folder in (work, lib):
        shutil.copytree(POLICIES / "byo", folder / "byo")
        (folder / "runs").mkdir()
    (lib / "resource.py").write_text("raise SystemExit('the shadow resource.py ran')\n")
    monkeypatch.chdir(work)
    key = work / "runs" / "r" / "run.key"
    r = run(scenario([hostile("steal", 9, work, key)]), work / "runs" / "r", key, paths=())
    assert "key: FileNotFoundError" in r.summary["agent_error_examples"]["PermissionError"][0]
    assert not list(work.glob("written-at-*"))
    with pytest.raises(RunError, match="agent hosts would see .*lib/runs/q.* keep policy folders"):
        run(scenario([hostile("idle", 9, lib)]), lib / "runs" / "q", key, paths=(str(lib),))
    greedy = {"policy": "byo.hostile:Forger", "owner": "mallory", "params": {"mode": "greedy"}}
    r = run(scenario([greedy], agents={"memory_mb": 256}, ticks=2), tmp_path / "g", key,
            paths=(str(lib),))
    assert r.summary["agent_error_examples"]["RuntimeError"] == [
        "RuntimeError: /dev/shm/fill: OSError; /dev/fill: OSError; memory: MemoryError"]
    kinds = {"policy": "byo.hostile:Forger", "owner": "mallory", "count": 3,
             "params": {"mode": "kinds"}}
    r = run(scenario([kinds], ticks=30), tmp_path / "k", key, paths=(str(lib),))
    assert len(r.summary["agent_errors"]) == 51 and r.summary["agent_errors"]["other"] == 90 - 50


def test_a_large_shard_in_small_batches_does_not_deadlock(tmp_path):
    """A host handed several batches a tick answers the first while the runner still
    writes the next; if the runner did not read while writing, both would block on full
    pipes (seen at 1,000 agents: the host 'took no request for 60 s')."""
    key = tmp_path / "k.key"
    doc = scenario(ticks=8)
    doc["population"][0]["count"] = 1000
    doc["safeguards"] = {"max_agents_per_owner": 1000}
    plain = run(doc, tmp_path / "in", key)
    hosted = run({**doc, "agents": {"hosts": 1, "deadline": 20}}, tmp_path / "host", key)
    assert hosted.summary["warnings"] == [] and hosted.summary["root"] == plain.summary["root"]


def test_a_policy_that_mutates_its_default_changes_no_other_run(tmp_path):
    """Parameters are each agent's own copy: the same seed and key give the same log run
    after run in one process, in-process or in a host."""
    key = tmp_path / "k.key"
    doc = scenario([{"policy": "byo.traders:Collector", "count": 2, "owner": "mallory"}])
    roots = [run({**doc, "agents": {"hosts": h}}, tmp_path / f"r{n}", key).summary["root"]
             for n, h in enumerate((0, 0, 1, 0))]
    assert len(set(roots)) == 1
