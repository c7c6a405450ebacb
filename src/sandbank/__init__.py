"""sandbank: virtual agentic sandbox economies for distributional AGI safety.

The Python API (lab/api.py): `sandbank.run(scenario, seed=..., **overrides)` returns a Run
with its metrics, events, trades, alerts and agents as pandas DataFrames, its verdicts and
`verify()`; `sandbank.sweep(...)` returns one tidy DataFrame; `sandbank.load(folder)` opens
a finished run. They are imported on first use, so `import sandbank` stays light.
"""

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["run", "sweep", "load", "Run", "RunError", "ScenarioError", "__version__"]
# name -> the module that defines it, imported on first use (by name, so the root package
# is no edge of the import graph: the layering and the no-cycles tests see none)
_LAZY = {"run": "sandbank.lab.api", "sweep": "sandbank.lab.api", "load": "sandbank.lab.api",
         "Run": "sandbank.lab.api", "RunError": "sandbank.lab.runner",
         "ScenarioError": "sandbank.lab.scenario"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sandbank' has no attribute {name!r}")
