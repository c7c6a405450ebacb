"""sandbank: virtual agentic sandbox economies for distributional AGI safety.

The Python API (lab/api.py): `sandbank.run(scenario, seed=..., **overrides)` returns a Run
with its metrics, events, trades, alerts and agents as pandas DataFrames, its verdicts and
`verify()`; `sandbank.sweep(...)` returns one tidy DataFrame; `sandbank.load(folder)` opens
a finished run. They are imported on first use, so `import sandbank` stays light.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["run", "sweep", "load", "Run", "RunError", "ScenarioError", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("run", "sweep", "load", "Run"):
        from sandbank.lab import api

        return getattr(api, name)
    if name == "RunError":
        from sandbank.lab.runner import RunError

        return RunError
    if name == "ScenarioError":
        from sandbank.lab.scenario import ScenarioError

        return ScenarioError
    raise AttributeError(f"module 'sandbank' has no attribute {name!r}")
