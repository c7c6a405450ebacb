"""The detectors (each registers itself in `base.REGISTRY` under its name)."""

from sandbank.oversight.detectors import agents, collusion, market, structure  # noqa: F401
from sandbank.oversight.detectors.base import REGISTRY, Detector, Finding

__all__ = ["REGISTRY", "Detector", "Finding"]
