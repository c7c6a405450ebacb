"""The composition root: which mechanisms a standard economy has, and how it is made.

The kernel knows mechanisms only through their protocol (kernel/mechanism.py); this module
names the standard set and wires the kernel to the audit log. A run, a live sandbox, a
replay and a resumed log all build their economy here, so they all fold the same state.

`STANDARD` is ordered: each mechanism's part of the state digest follows the one before
(the ledger and the registry come first), so the order is part of the log format. Tick
hooks and guards run in their declared ranks, not in this order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sandbank.audit.log import AuditLog
from sandbank.audit.replay import ReplayReport
from sandbank.audit.replay import replay_log as _replay_log
from sandbank.boundary import boundary
from sandbank.controls import compartments, controls, emergency, policy, roles, traces
from sandbank.identity.keys import SigningKey
from sandbank.kernel.errors import ConfigError
from sandbank.kernel.mechanism import PUBLIC, Assembly, Mechanism
from sandbank.kernel.sequencer import Kernel, KernelConfig, assemble
from sandbank.markets import auctions, exchange, messaging, missions, payments, pricing, tasks
from sandbank.regulation import (
    antimonopoly,
    certification,
    federation,
    insurance,
    personhood,
)
from sandbank.reputation import reputation
from sandbank.store.base import Store

STANDARD: tuple[Mechanism, ...] = (
    policy.MECHANISM, exchange.MECHANISM, tasks.MECHANISM, auctions.MECHANISM,
    messaging.MECHANISM, payments.MECHANISM, traces.MECHANISM, pricing.MECHANISM,
    controls.MECHANISM, reputation.MECHANISM, emergency.MECHANISM, boundary.MECHANISM,
    roles.MECHANISM, compartments.MECHANISM, antimonopoly.MECHANISM,
    insurance.MECHANISM, missions.MECHANISM, federation.MECHANISM, certification.MECHANISM,
    personhood.MECHANISM,
)


def public_kinds(mechanisms: Sequence[Mechanism] = STANDARD) -> frozenset[str]:
    """The event kinds anyone may read (their log entries carry no blind)."""
    return frozenset(k for k, v in assembly(mechanisms).visibility.items() if v == PUBLIC)


def assembly(mechanisms: Sequence[Mechanism] = STANDARD) -> Assembly:
    """The kernel's view of a list of mechanisms (handlers, guards, hooks, config keys)."""
    return assemble(mechanisms)


def check_config(config: KernelConfig, mechanisms: Sequence[Mechanism] = STANDARD
                 ) -> KernelConfig:
    """`config` checked by the mechanisms that own its keys, defaults filled in; raises
    ConfigError naming the key (what a kernel built on it would raise)."""
    return config.complete(assembly(mechanisms))


def new_kernel(store: Store, config: KernelConfig, operator_key: SigningKey, *,
               mechanisms: Sequence[Mechanism] = (), **kw: Any) -> Kernel:
    """A new economy on an empty store: the standard mechanisms, then `mechanisms`."""
    return Kernel(store, config, operator_key, mechanisms=(*STANDARD, *mechanisms),
                  log=AuditLog, **kw)


def replay_log(store: Store, *, mechanisms: Sequence[Mechanism] = (), **kw: Any
               ) -> ReplayReport:
    """Replay a log of the standard economy (audit/replay.py), with extra `mechanisms`."""
    return _replay_log(store, (*STANDARD, *mechanisms), **kw)


def resume(store: Store, operator_key: SigningKey, *,
           mechanisms: Sequence[Mechanism] = ()) -> Kernel:
    """Continue a log after a stop or a crash: the state is rebuilt by replaying the
    events (checked against every signed state digest); the next tick follows the last
    committed one, and a tick that was being written when the process died is gone."""
    report = replay_log(store, mechanisms=mechanisms)
    if not report.ok or report.state is None or report.state.header is None:
        raise ConfigError(f"cannot resume this log: {report.problem}")
    header = report.state.header
    if bytes.fromhex(header.operator_key) != operator_key.public:
        raise ConfigError("this is not the key that signed the log")
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in header.config.items()}
    return Kernel(store, KernelConfig(**cfg), operator_key,
                  mechanisms=(*STANDARD, *mechanisms), log=AuditLog, _resume=report.state)
