"""The oversight engine: after every committed tick, update the indicators, run the
detectors, raise an alert for each finding (with its evidence), and let the breakers
respond — all as actions of the monitor identity, executed in the next tick.

Configuration (a scenario's `oversight:` mapping; everything optional):

    oversight:
      enabled: true                 # false: no monitor at all (the ablation)
      mode: respond                 # alert: raise alerts only, never act (watch an attack)
      window: 20                    # indicators' window, in ticks
      hidden: [top_owner_share]     # indicators never exposed to agents
      detectors:                    # every detector runs unless `enabled: false`
        tacit_collusion: {window: 300, delta: 0.25}
        spoofing: {enabled: false}
      responses: {fraud: freeze, concentration: none}
      breakers: {pause_bps: 1500, halt_markets: 2}
      review: {pause: 5, throttle: 10}   # a human overseer resumes these after N ticks
      approvals: {capacity: 2, delay: 1} # and reviews boundary requests: so many a tick,
                                         # each after waiting so long (the rest time out)
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field
from typing import Any

from sandbank.controls.controls import RaiseAlert
from sandbank.kernel.schema import Action
from sandbank.oversight.breakers import Breakers
from sandbank.oversight.detectors import REGISTRY, Finding
from sandbank.oversight.indicators import Indicators
from sandbank.oversight.tickview import TickView

KEYS = {"enabled", "mode", "window", "hidden", "detectors", "responses", "breakers", "review",
        "approvals"}
MODES = ("respond", "alert")
REVIEWABLE = ("pause", "throttle", "halt", "freeze")


class OversightConfigError(ValueError):
    pass


@dataclass
class OversightConfig:
    enabled: bool = True
    mode: str = "respond"
    window: int = 20
    hidden: list[str] = field(default_factory=list)
    detectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    responses: dict[str, str] = field(default_factory=dict)
    breakers: dict[str, Any] = field(default_factory=dict)
    review: dict[str, int] = field(default_factory=dict)
    approvals: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: Any) -> OversightConfig:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise OversightConfigError("oversight must be a mapping")
        for key in data:
            if key not in KEYS:
                raise OversightConfigError(_unknown("key", key, KEYS))
        cfg = cls(**data)
        if cfg.mode not in MODES:
            raise OversightConfigError(f"mode must be one of {list(MODES)}")
        for name, params in cfg.detectors.items():
            if name not in REGISTRY:
                raise OversightConfigError(_unknown("detector", name, REGISTRY))
            if not isinstance(params, dict):
                raise OversightConfigError(f"detectors.{name} must be a mapping of parameters")
        for name in cfg.responses:
            if name not in REGISTRY:
                raise OversightConfigError(_unknown("detector", name, REGISTRY))
        for level, ticks in cfg.review.items():
            if level not in REVIEWABLE or type(ticks) is not int or ticks < 1:
                raise OversightConfigError(f"review: {level!r} must be one of {REVIEWABLE} "
                                           f"with a number of ticks >= 1")
        bad = set(cfg.approvals) - {"capacity", "delay", "approve"}
        if bad or any(type(v) is not int or v < 0 for v in cfg.approvals.values()):
            raise OversightConfigError("approvals: capacity, delay (ticks) and approve (1: "
                                       "approve, 0: deny) are non-negative integers")
        try:
            Oversight(cfg)  # detectors and breakers check their parameters
        except ValueError as e:
            raise OversightConfigError(str(e)) from None
        return cfg


def _unknown(what: str, name: Any, known: Any) -> str:
    hint = difflib.get_close_matches(str(name), sorted(known), n=1)
    return (f"unknown {what} {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; known: {', '.join(sorted(known))}")


class Oversight:
    def __init__(self, config: OversightConfig) -> None:
        self.config = config
        self.indicators: Indicators | None = None
        self.detectors = [cls(config.detectors.get(name))
                          for name, cls in sorted(REGISTRY.items())
                          if config.detectors.get(name, {}).get("enabled", True)]
        self.breakers = Breakers(config.breakers, config.responses)
        self.shared: dict[str, Any] = {}
        self.findings: list[tuple[int, int, Finding]] = []  # tick, alert id, finding
        self.timings: dict[str, float] = {}  # seconds per component (a profile, not state)

    def step(self, tick: int, events: list[dict[str, Any]], state: Any, content: Any,
             me: int) -> tuple[list[Action], dict[str, float]]:
        """The monitor's actions after tick `tick` (to run in the next), and the indicators."""
        if self.indicators is None:
            self.indicators = Indicators(state, self.config.window, self.config.hidden)
            self.shared["holdings"] = self.indicators.holdings  # asset -> Holdings, by owner too
        clock, t = time.perf_counter, self.timings
        t0 = clock()
        v = TickView(tick, events, state, content=content, shared=self.shared)
        t1 = clock()
        kri = self.indicators.update(v)
        t2 = clock()
        t["tickview"] = t.get("tickview", 0.0) + t1 - t0
        t["indicators"] = t.get("indicators", 0.0) + t2 - t1
        found: list[Finding] = []
        for d in self.detectors:
            t0 = clock()
            found.extend(d.observe(v, kri))
            t[d.NAME] = t.get(d.NAME, 0.0) + clock() - t0
        actions: list[Action] = []
        numbered = []
        next_id = state.controls.alerts
        for f in found:
            next_id += 1
            numbered.append((next_id, f))
            self.findings.append((tick, next_id, f))
            actions.append(RaiseAlert(actor=me, detector=f.detector, score=f.score,
                                      subjects=f.subjects, evidence=f.evidence,
                                      summary=f.summary))
        if self.config.mode == "respond":
            actions += self.breakers.decide(v, kri, numbered, me)
        return actions, kri

    def visible(self, kri: dict[str, float]) -> dict[str, float]:
        """The indicators that are not hidden."""
        return {k: v for k, v in kri.items() if k not in set(self.config.hidden)}
