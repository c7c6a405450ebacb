import os
import random
import shutil

import pytest
from hypothesis import settings

import sandbank.economy
from sandbank.demo import run_demo
from sandbank.kernel.schema import (
    OPERATOR,
    OpenAccount,
    RegisterAgent,
    RegisterOwner,
    Transfer,
    TransferSpec,
    agent_attestation_bytes,
)
from sandbank.kernel.sequencer import Kernel, KernelConfig
from sandbank.store.sqlite import SQLiteStore
from tests.keys import fixed_key, fixed_secret

# Shared 2-core CI machines are noisy: judge properties, never per-example wall time.
settings.register_profile("sandbank", deadline=None, print_blob=True)
settings.load_profile("sandbank")


_PG = {"server": None, "skipped": 0}


def pytest_configure(config):
    """Without SANDBANK_TEST_PG, the store tests get a throw-away PostgreSQL server if the
    binaries are installed (tests/pg_throwaway.py); set, it names the server to use."""
    if "SANDBANK_TEST_PG" in os.environ:
        return
    from tests.pg_throwaway import Throwaway

    server = Throwaway()
    dsn = server.start()
    _PG["server"] = server
    if dsn:
        os.environ["SANDBANK_TEST_PG"] = dsn


def pytest_unconfigure(config):
    if _PG["server"] is not None:
        _PG["server"].stop()


def pytest_runtest_logreport(report):
    if report.skipped and "SANDBANK_TEST_PG" in str(report.longrepr):
        _PG["skipped"] += 1


def pytest_terminal_summary(terminalreporter):
    if _PG["skipped"]:
        from tests.pg_throwaway import HOW

        why = _PG["server"].problem if _PG["server"] else "SANDBANK_TEST_PG is set empty"
        terminalreporter.write_sep("!", f"{_PG['skipped']} PostgreSQL store tests were SKIPPED",
                                   red=True, bold=True)
        terminalreporter.write_line(f"why: {why}")
        terminalreporter.write_line(f"to run them: {HOW}")


REVERSED_ORDER = os.environ.get("SANDBANK_TEST_ORDER") == "reversed"


class _Reversed(random.Random):
    """The tick's seeded shuffle, then reversed: two actors always swap places."""

    def shuffle(self, x):  # type: ignore[override]
        super().shuffle(x)
        x.reverse()


@pytest.fixture(autouse=True)
def _another_in_tick_order(monkeypatch):
    """With SANDBANK_TEST_ORDER=reversed, every kernel sequences a tick's actors in the
    reverse of the seeded order: a test that passes only by the seed's accident (one bid
    happening to be sequenced first) fails (tests/test_determinism.py runs the mechanism
    tests so)."""
    if REVERSED_ORDER:
        seeded = Kernel.rng_for

        def reversed_rng(self, tick):
            r = _Reversed()
            r.setstate(seeded(self, tick).getstate())  # the kernel's own generator, reversed
            return r

        monkeypatch.setattr(Kernel, "rng_for", reversed_rng)


@pytest.fixture(autouse=True)
def _policies_registered_by_a_test_are_its_own():
    """A policy a test defines is taken away after it (mutation testing runs the suite more
    than once in one interpreter); the package's own, registered when a test first imports
    their module, stay."""
    from sandbank.agents.base import POLICIES

    before = set(POLICIES)
    yield
    for name in set(POLICIES) - before:
        if not POLICIES[name].__module__.startswith("sandbank."):
            del POLICIES[name]


class Economy:
    """A small kernel with one owner, n agents (ids 1..n) each with one funded account."""

    def __init__(self, n=3, fund=1000, store=None, skills=None, **cfg):
        self.op = fixed_key(1, "operator")
        cfg.setdefault("seed", 1)
        self.k = sandbank.economy.new_kernel(store or SQLiteStore(":memory:"), KernelConfig(**cfg), self.op)
        self.owner_key = fixed_key(1, "owner")
        self.keys = {}
        self.op_nonce = 0
        self.nonces = {}
        self.do(RegisterOwner(actor=OPERATOR, name="o", owner_kind="human",
                              public_key=self.owner_key.public, evidence="checked"))
        for i in range(1, n + 1):
            key = fixed_key(1, f"agent{i}")
            self.keys[i] = key
            self.do(RegisterAgent(actor=OPERATOR, owner=1, name=f"a{i}", public_key=key.public,
                                  skills=(skills or {}).get(i, {}),
                                  attestation=self.owner_key.sign(
                                      agent_attestation_bytes(1, f"a{i}", key.public))))
        self.account = {}
        self.accounts = {}  # asset -> agent -> account id
        led = self.k.state.ledger
        for asset in self.k.config.assets:
            for i in range(1, n + 1):
                self.do(OpenAccount(actor=OPERATOR, asset=asset, holder=i))
            self.accounts[asset] = {i: led.account_of(i, asset).id for i in range(1, n + 1)}
        self.account = self.accounts["CRD"]
        if fund:
            tid = 1000
            for asset in self.k.config.assets:
                specs = []
                for i in range(1, n + 1):
                    tid += 1
                    specs.append(TransferSpec(id=tid, debit=led.treasury[asset],
                                              credit=self.accounts[asset][i], amount=fund))
                self.do(Transfer(actor=OPERATOR, transfers=specs))

    def sign(self, action):
        if not self.k.config.verify_signatures:
            return action
        if action.actor == OPERATOR:
            self.op_nonce += 1
            return action.signed(self.op, self.op_nonce)
        self.nonces[action.actor] = self.nonces.get(action.actor, 0) + 1
        return action.signed(self.keys[action.actor], self.nonces[action.actor])

    def do(self, *actions):
        """Submit actions (signed if the kernel wants signatures) and run one tick."""
        for a in actions:
            self.k.submit(self.sign(a))
        return self.k.step()

    def add_overseer(self, name, kind="overseer"):
        """Admit an overseer (kind monitor or overseer); returns its actor id."""
        from sandbank.controls.controls import RegisterOverseer

        key = fixed_key(1, f"overseer/{name}")
        self.do(RegisterOverseer(actor=OPERATOR, name=name, overseer_kind=kind,
                                 public_key=key.public, evidence="certified by the test"))
        oid = next(o.id for o in self.k.state.controls.overseers.values() if o.name == name)
        self.keys[oid] = key
        return oid

    def last_events(self, n=1):
        entries = list(self.k.store.entries(self.k.log.size - n))
        import orjson
        return [orjson.loads(e.body) for e in entries]

    def balance(self, i, asset="CRD"):
        return self.k.state.ledger.accounts[self.accounts[asset][i]].balance

    def available(self, i, asset="CRD"):
        return self.k.state.ledger.accounts[self.accounts[asset][i]].available


@pytest.fixture(scope="module")
def good_log(tmp_path_factory):
    """A signed demo log (the audit and verify tests damage copies of it)."""
    path = tmp_path_factory.mktemp("logs") / "good.db"
    demo_log(path, seed=4, ticks=40, agents=16, sign=True)
    return path


@pytest.fixture
def log(good_log, tmp_path):
    """A copy of `good_log` a test may damage."""
    path = tmp_path / "copy.db"
    shutil.copy(good_log, path)
    return path


def refusal(e: Economy, action) -> str | None:
    """Submit one action as it is (signed or not) alone in a tick: the reason it was refused
    for, or None if accepted. Every refusal must come with a message that explains it."""
    e.k.submit(action)
    reasons = e.k.step().reasons
    assert sum(reasons.values()) <= 1, reasons
    for d in e.k.log.last_committed:
        if d["kind"] == "rejected":
            assert isinstance(d["message"], str) and len(d["message"]) > 5, d
    return next(iter(reasons), None)


@pytest.fixture
def economy():
    return Economy


def demo_log(path, seed=3, ticks=30, agents=8, sign=False, on_tick=None, secret=None):
    """The hand-written demo economy into a SQLite file; keys from a fixed test secret unless
    `secret` is given (same seed and secret: the same log)."""
    store = SQLiteStore(path)
    result = run_demo(store, seed=seed, agents=agents, ticks=ticks, sign=sign, on_tick=on_tick,
                      secret=secret or fixed_secret())
    store.close()
    return result
