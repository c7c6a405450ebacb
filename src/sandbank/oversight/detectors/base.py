"""The detector protocol: each reads a tick (and the key risk indicators) and returns findings,
each with a score, the agents it concerns and the log entries it rests on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from sandbank.oversight.tickview import TickView

MAX_EVIDENCE = 256


@dataclass
class Finding:
    detector: str
    score: int  # thousandths: 0 (nothing) .. 1000 (certain)
    subjects: list[int]
    evidence: list[int]  # sequence numbers of log entries
    summary: str
    key: str = ""  # what it is about (a game, a market, a lineage): one alert per cooldown
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the market, for breakers


def sample(seqs: list[int], limit: int = MAX_EVIDENCE) -> list[int]:
    """At most `limit` evidence entries, spread over the whole list (first and last kept)."""
    seqs = sorted(set(seqs))
    if len(seqs) <= limit:
        return seqs
    step = (len(seqs) - 1) / (limit - 1)
    return sorted({seqs[round(i * step)] for i in range(limit)})


class Detector:
    NAME: ClassVar[str] = ""
    PARAMS: ClassVar[dict[str, Any]] = {}
    DOC: ClassVar[str] = ""

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        unknown = set(params or {}) - set(self.PARAMS) - {"enabled", "response"}
        if unknown:
            raise ValueError(f"detector {self.NAME}: unknown parameter(s) {sorted(unknown)}; "
                             f"known: {sorted(self.PARAMS)}")
        self.p = {**self.PARAMS, **(params or {})}
        self._last: dict[str, int] = {}

    def observe(self, v: TickView, kri: dict[str, float]) -> list[Finding]:  # pragma: no cover
        raise NotImplementedError

    def cooling(self, key: str, tick: int) -> bool:
        """Did this key alert within the cooldown? (Asks only: `fresh` remembers.)"""
        last = self._last.get(key)
        return last is not None and tick - last < self.p.get("cooldown", 20)

    def fresh(self, key: str, tick: int) -> bool:
        """True (and remembered) unless this key alerted within the cooldown."""
        if self.cooling(key, tick):
            return False
        self._last[key] = tick
        return True


REGISTRY: dict[str, type[Detector]] = {}


def detector(cls: type[Detector]) -> type[Detector]:
    assert cls.NAME and cls.NAME not in REGISTRY
    REGISTRY[cls.NAME] = cls
    return cls
