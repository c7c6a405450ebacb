"""The Python API (`import sandbank`): run a scenario or a sweep from a script or a notebook
and get its data as pandas DataFrames.

    import sandbank
    r = sandbank.run("demo", seed=2, ticks=30, policy__trade_fee_bps=20)
    r.ok, r.verdicts                      # the success criteria, judged
    r.metrics.plot(x="tick", y="welfare")  # per-tick metrics (a DataFrame)
    r.trades, r.alerts, r.agents, r.events
    r.verify().ok                         # the log checked, byte by byte
    table = sandbank.sweep("band_vs_crash")  # configuration x seed x every final metric

A scenario is a built-in name (`sandbank scenarios`), a YAML file, or a mapping. Keyword
overrides use `__` for the dots of a dotted key (`markets__0__band_bps=0` sets
`markets.0.band_bps`, as a sweep's grid does); `overrides={...}` takes dotted keys as they
are. Errors are the CLI's: `ScenarioError` for a bad scenario or override, `RunError` for a
run that cannot start or finish. The tables are read from the run folder's Parquet files
(lab/tables.py), so `sandbank.load(folder)` gives the same object for a finished run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from sandbank.lab.scenario import ScenarioError, builtin_dir, read_yaml, scenario_of
from sandbank.lab.tables import TABLES


def _frame(path: Path) -> Any:
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such table (a run folder from an older sandbank, "
                                f"or one whose run did not finish?)")
    return pd.read_parquet(path)


class Run:
    """A finished run's folder: its summary, judged success criteria and tables."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        path = self.out / "summary.json"
        if not path.is_file():
            raise FileNotFoundError(f"{self.out} holds no finished run (no summary.json)")
        self.summary: dict[str, Any] = json.loads(path.read_text())

    def __repr__(self) -> str:
        s = self.summary
        return (f"<sandbank.Run {s['scenario']} seed {s['seed']}, {s['agents']} agents × "
                f"{s['ticks']} ticks, {'ok' if self.ok else 'FAILED'}, {self.out}>")

    def _repr_html_(self) -> str:
        import html

        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v['actual']}</td><td>"
                       f"{v['required']}</td><td>{'ok' if v['ok'] else 'FAILED'}</td></tr>"
                       for k, v in self.verdicts.items())
        return (f"<p><b>{html.escape(repr(self))}</b></p>"
                f"<table><tr><th>criterion</th><th>actual</th><th>required</th><th></th></tr>"
                f"{rows}</table><p>report: {html.escape(str(self.report))}</p>")

    @property
    def ok(self) -> bool:
        """The log verified and every success criterion held."""
        return bool(self.summary["ok"])

    @property
    def verdicts(self) -> dict[str, dict[str, Any]]:
        """The scenario's success criteria: key -> required, actual, ok, meaning."""
        return self.summary["success"]

    @property
    def final(self) -> dict[str, Any]:
        """The last tick's metrics."""
        return self.summary["final"]

    @property
    def report(self) -> Path:
        return self.out / "report.html"

    @property
    def log(self) -> Path:
        return self.out / "log.db"

    # the tables (lab/tables.py), read once each
    metrics = cached_property(lambda self: _frame(self.out / "metrics.parquet"))
    events = cached_property(lambda self: _frame(self.out / "events.parquet"))
    trades = cached_property(lambda self: _frame(self.out / "trades.parquet"))
    alerts = cached_property(lambda self: _frame(self.out / "alerts.parquet"))
    trips = cached_property(lambda self: _frame(self.out / "trips.parquet"))
    agents = cached_property(lambda self: _frame(self.out / "agents.parquet"))

    def verify(self, key: str | None = None, checkpoint: str | Path | None = None) -> Any:
        """Verify the log (audit/verify.py): every entry, node and signed checkpoint. `key`:
        the operator's verifier key to pin (by default the log's own header is trusted,
        which proves integrity, not authorship); `checkpoint`: a signed checkpoint kept
        elsewhere that the log must extend (default: none — a log truncated together with
        its checkpoint file is then not detected). Returns the VerifyReport (`.ok`,
        `.problem`)."""
        from sandbank.audit.checkpoint import parse_verifier_key
        from sandbank.audit.verify import verify_log
        from sandbank.store.sqlite import SQLiteStore

        store = SQLiteStore(self.log, readonly=True, create=False)
        try:
            pinned = parse_verifier_key(key)[1] if key else None
            note = Path(checkpoint).read_text() if checkpoint else None
            return verify_log(store, pinned_key=pinned, pinned_checkpoint=note)
        finally:
            store.close()

    def replay(self) -> Any:
        """Rebuild the state from the log's events and check it against every signed digest
        (audit/replay.py); returns the ReplayResult (`.ok`, `.problem`)."""
        from sandbank.economy import replay_log
        from sandbank.store.sqlite import SQLiteStore

        store = SQLiteStore(self.log, readonly=True, create=False)
        try:
            return replay_log(store)
        finally:
            store.close()

    def tables(self) -> dict[str, Any]:
        """Every table, by name."""
        return {name: getattr(self, name) for name in TABLES}


def load(out: str | Path) -> Run:
    """A finished run's folder."""
    return Run(out)


def _builtin(spec: str | Path, *folders: str) -> Path | None:
    """`spec` as a file, else the built-in file of that name in the library's `folders`
    ("" the library itself), else None."""
    path = Path(spec)
    if path.is_file():
        return path
    name = str(spec).removesuffix(".yaml")
    if "/" in name:
        return None
    return next((c for f in folders if (c := builtin_dir() / f / f"{name}.yaml").is_file()), None)


def _scenario_doc(scenario: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str, Path]:
    """(mapping, source, base folder) of a built-in name, a file or a mapping."""
    if isinstance(scenario, Mapping):
        return dict(scenario), "<scenario>", Path.cwd()
    path = _builtin(scenario, "")
    if path is None and _builtin(scenario, "sweeps") is not None:
        raise ScenarioError(f"{scenario!s} is a built-in sweep, not a scenario: "
                            f"sandbank.sweep({str(scenario)!r})")
    if path is None:
        known = ", ".join(sorted(p.stem for p in builtin_dir().glob("*.yaml")))
        raise ScenarioError(f"no scenario file {scenario!s} and no built-in scenario of that "
                            f"name (built in: {known})")
    data = read_yaml(path, "scenario")
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping")
    return data, str(path), path.resolve().parent


def _dotted(overrides: Mapping[str, Any] | None, more: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(overrides or {})
    for key, value in more.items():
        out[key.replace("__", ".")] = value
    return out


def run(scenario: str | Path | Mapping[str, Any], *, seed: int | None = None,
        ticks: int | None = None, out: str | Path | None = None, overwrite: bool = False,
        key_file: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
        paths: tuple[str, ...] = (), on_tick: Any = None, trace: Any = None,
        **more: Any) -> Run:
    """Run a scenario into `out` (default `runs/<name>-seed<seed>`) and return the Run.
    `seed`, `ticks`: as the CLI's; `overrides` and keyword arguments: dotted keys of the
    scenario to set (see the module's docstring); `key_file`: the run secret (default
    `<out>/run.key`, created if absent); `overwrite`: replace a run already in `out`;
    `on_tick(done, total)`: progress; `trace`: OpenTelemetry spans of the decisions, model
    calls and actions — "file" (`<out>/trace.jsonl`), "otlp" (OTLP/HTTP to
    $OTEL_EXPORTER_OTLP_ENDPOINT) or a `sandbank.telemetry.Tracing` you configured and
    close. A run whose success criteria fail is returned (check `.ok`); one that cannot run
    raises RunError or ScenarioError."""
    from sandbank.lab.runner import run_scenario
    from sandbank.lab.sweep import apply_config

    doc, source, base = _scenario_doc(scenario)
    changes = _dotted(overrides, more)
    if changes:
        doc = apply_config(doc, changes, doc.get("seed", 0) if seed is None else seed, source)
    sc = scenario_of(doc, source, base=base, seed=seed, ticks=ticks, paths=tuple(map(str, paths)),
                     what=source + (f" (with {', '.join(sorted(changes))})" if changes else ""),
                     ticks_label="ticks")
    folder = Path(out) if out is not None else Path("runs") / f"{sc.name}-seed{sc.seed}"
    tracing = trace
    if isinstance(trace, str):
        from sandbank.telemetry import configure

        tracing = configure(trace, path=folder / "trace.jsonl")
    try:
        result = run_scenario(sc, folder, overwrite=overwrite, on_tick=on_tick,
                              key_file=Path(key_file) if key_file else None, trace=tracing)
    finally:
        if tracing is not None and tracing is not trace:
            tracing.close()
    return Run(result.out)


def sweep(spec: str | Path | Mapping[str, Any], *, grid: Mapping[str, list[Any]] | None = None,
          seeds: list[int] | None = None, ticks: int | None = None,
          out: str | Path | None = None, workers: int | None = None, backend: Any = None,
          key_file: str | Path | None = None, on_done: Any = None) -> Any:
    """Run a sweep and return its tidy table (pandas): one row per configuration × seed
    with the configuration's values, the seed, every final metric, `ok`, `verified`,
    `root`, the run's folder (relative to the sweep's) and the sandbank version and
    revision. `spec` is a sweep file (or built-in sweep name); or a scenario (name, file or
    mapping) with `grid` (dotted key -> values) and `seeds`. The table is also in the
    sweep folder as results.parquet and results.csv."""
    import pandas as pd

    from sandbank.lab.sweep import LocalBackend, Sweep, load_sweep, make_sweep, run_sweep

    sw: Sweep
    if grid is None and seeds is None and not isinstance(spec, Mapping):
        path = _builtin(spec, "sweeps")
        if path is None:
            raise ScenarioError(f"no sweep file {spec!s} (give a scenario with grid= and "
                                f"seeds= to sweep it)")
        sw = load_sweep(path)
        if ticks is not None:
            sw.ticks = ticks
    else:
        doc, source, _ = _scenario_doc(spec)
        sw = make_sweep(doc, Path(source) if source != "<scenario>" else Path.cwd() / "<scenario>",
                        {"seeds": seeds or [doc.get("seed", 0)], "grid": dict(grid or {}),
                         **({"ticks": ticks} if ticks else {})}, source)
    folder = Path(out) if out is not None else Path("runs") / f"sweep-{sw.scenario.get('name', 'scenario')}"
    run_sweep(sw, folder, LocalBackend(workers or sw.workers) if backend is None else backend,
              on_done=on_done, key_file=Path(key_file) if key_file else None)
    return pd.read_parquet(folder / "results.parquet")
