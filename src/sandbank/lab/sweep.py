"""Sweeps: a grid of scenario parameters × seeds, run in parallel, gathered in one table.

    scenario: flash_crash.yaml          # relative to this file
    seeds: [1, 2, 3]
    grid:                               # dotted paths into the scenario
      markets.0.band_bps: [0, 1000]
      policy.trade_fee_bps: [0, 20]
    metrics: [fills, halts, gini_wealth]
    workers: 2

Every grid key must name something the scenario has (or a known optional section), else
the sweep fails before running, naming the key. Each run writes its own folder; the sweep
writes `results.csv` and `results.parquet` (one row per run: the configuration, the seed,
every final metric — `metrics:` chooses only what the comparison plots — the run's folder
relative to the sweep's, the sandbank version and git revision) and `comparison.html`
(means per configuration).
The execution backend is an interface (`map`): `LocalBackend` runs a process pool here,
`RayBackend` a local Ray instance or a cluster (`sandbank sweep --backend ray`).
"""

from __future__ import annotations

import copy
import csv
import html
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sandbank.lab.scenario import ScenarioError, parse_scenario, read_yaml, with_agents

SWEEP_KEYS = {"scenario", "seeds", "grid", "metrics", "workers", "ticks"}


class Backend(Protocol):
    def map(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]: ...


class SerialBackend:
    def map(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
        return map(fn, items)


class LocalBackend:
    """A local process pool (one run per process at a time)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
        # workers that take the cores: each run checks its replay in its own process (a
        # replay beside each run would only contend for them; lab/beside.py)
        busy = self.workers * 2 > (os.cpu_count() or 1)
        with ProcessPoolExecutor(max_workers=self.workers, initializer=_replay_inline
                                 if busy else None) as pool:
            yield from pool.map(fn, items)


def _replay_inline() -> None:
    os.environ.setdefault("SANDBANK_REPLAY", "inline")


class RayBackend:
    """Runs on Ray (the `ray` extra): a local instance, or the cluster at `address`
    ("auto", or ray://host:10001; also $RAY_ADDRESS). Each run is a task of one CPU; the
    results come back in the grid's order, so the table is the process pool's."""

    def __init__(self, address: str = "") -> None:
        self.address = address

    def map(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
        from sandbank.agents.hosts import ray_init

        ray = ray_init(self.address)
        remote = ray.remote(num_cpus=1)(_call_inline)  # (one CPU a task: no replay beside)
        refs = [remote.remote(fn, item) for item in items]
        for ref in refs:
            yield ray.get(ref)


def _call_inline(fn: Callable[[Any], Any], item: Any) -> Any:
    _replay_inline()
    return fn(item)


@dataclass
class Sweep:
    scenario: dict[str, Any]
    scenario_path: Path
    seeds: list[int]
    grid: dict[str, list[Any]]
    metrics: list[str]
    workers: int
    ticks: int | None
    source: str
    paths: tuple[str, ...] = ()  # folders user policies are imported from (--path)

    def configurations(self) -> list[dict[str, Any]]:
        keys = sorted(self.grid)
        return [dict(zip(keys, values, strict=True))
                for values in itertools.product(*(self.grid[k] for k in keys))]


def _set(doc: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    node: Any = doc
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ScenarioError(f"{source}: grid key {dotted!r}: no item {part} in that list")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if part not in node:
                    if part in ("policy", "safeguards", "success", "params", "skills",
                                "oversight") or parts[0] == "oversight":
                        node[part] = {}
                    else:
                        raise ScenarioError(f"{source}: grid key {dotted!r}: the scenario has "
                                            f"no {part!r}")
                node = node[part]
        else:
            raise ScenarioError(f"{source}: grid key {dotted!r} goes inside a plain value")


def apply_config(sc: dict[str, Any], config: dict[str, Any], seed: int, source: str) -> dict[str, Any]:
    doc = copy.deepcopy(sc)
    for key, value in config.items():
        _set(doc, key, value, source)
    doc["seed"] = seed
    return doc


def load_sweep(path: str | Path, *, paths: tuple[str, ...] = (),
               agents: dict[str, Any] | None = None) -> Sweep:
    """A sweep file; `paths` and `agents` as for `load_scenario`."""
    path = Path(path)
    data = read_yaml(path, "sweep")
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a sweep is a mapping")
    unknown = sorted(set(data) - SWEEP_KEYS)
    if unknown:
        raise ScenarioError(f"{path}: unknown key {unknown[0]!r} in the sweep; allowed: "
                            f"{', '.join(sorted(SWEEP_KEYS))}")
    if "scenario" not in data:
        raise ScenarioError(f"{path}: missing required key 'scenario'")
    sc_path = (path.parent / data["scenario"]).resolve()
    if not sc_path.is_file():
        raise ScenarioError(f"{path}: scenario {data['scenario']!r} not found at {sc_path}")
    return make_sweep(read_yaml(sc_path, "scenario"), sc_path, data, str(path), paths=paths,
                      agents=agents)


def make_sweep(scenario: Any, sc_path: Path, data: dict[str, Any], source: str, *,
               paths: tuple[str, ...] = (), agents: dict[str, Any] | None = None) -> Sweep:
    """A sweep of the scenario mapping `scenario` (read from `sc_path`) by the sweep's
    `data` (seeds, grid, metrics, workers, ticks); every combination is checked."""
    path = source
    scenario = with_agents(scenario, agents)
    if not isinstance(scenario, dict):
        raise ScenarioError(f"{sc_path}: a scenario is a mapping")
    seeds = data.get("seeds", [scenario.get("seed", 0)])
    grid = data.get("grid", {})
    if not isinstance(seeds, list) or not all(type(s) is int for s in seeds) or not seeds:
        raise ScenarioError(f"{path}: seeds must be a non-empty list of integers")
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ScenarioError(f"{path}: grid maps dotted keys to non-empty lists of values")
    ticks = data.get("ticks")
    if ticks is not None and (type(ticks) is not int or ticks < 1):
        raise ScenarioError(f"{path}: ticks must be a positive integer")
    sweep = Sweep(scenario, sc_path, seeds, grid, list(data.get("metrics", [])),
                  int(data.get("workers", 2)), ticks, source,
                  tuple(str(Path(p).resolve()) for p in paths))
    for config in sweep.configurations():  # every combination must be a valid scenario
        doc = apply_config(scenario, config, seeds[0], path)
        parse_scenario(doc, f"{path} (grid {json.dumps(config)})", paths=sweep.paths,
                       base=sc_path.parent)
    return sweep


def _run_one(job: tuple[dict[str, Any], str, str, int | None, str, tuple[str, ...]]
             ) -> dict[str, Any]:
    from sandbank.lab.runner import run_scenario

    doc, source, out, ticks, key_file, paths = job
    sc = parse_scenario(doc, source, paths=paths, base=Path(source).parent)
    if ticks:
        sc.ticks = ticks
    result = run_scenario(sc, Path(out), overwrite=True, key_file=Path(key_file))
    s = result.summary
    return {"final": s["final"], "root": s["root"], "ok": s["ok"], "verified": s["verified"],
            "seconds": s["seconds"]}


def run_sweep(sweep: Sweep, out: Path, backend: Backend | None = None,
              on_done: Callable[[int, int], None] | None = None,
              key_file: Path | None = None) -> list[dict[str, Any]]:
    """Run every configuration × seed. One run secret serves the whole sweep (`key_file`,
    default `<out>/run.key`, created before any run starts): each run derives its keys from
    it under its own seed, so the same sweep file and key file give the same roots."""
    from sandbank.identity.keys import RunSecret
    from sandbank.lab.runner import KEY_FILE

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key_file = Path(key_file or out / KEY_FILE)
    RunSecret.load(key_file)  # created here, once, not by racing workers
    jobs, meta = [], []
    for ci, config in enumerate(sweep.configurations()):
        for seed in sweep.seeds:
            doc = apply_config(sweep.scenario, config, seed, sweep.source)
            folder = out / f"config{ci}-seed{seed}"
            jobs.append((doc, f"{sweep.scenario_path}", str(folder), sweep.ticks, str(key_file),
                         sweep.paths))
            meta.append((ci, config, seed, folder))
    backend = backend or LocalBackend(sweep.workers)
    from sandbank.lab.runner import build_info

    built = build_info()
    rows = []
    for i, ((ci, config, seed, folder), res) in enumerate(zip(meta, backend.map(_run_one, jobs),
                                                             strict=True)):
        final = res["final"]
        row = {"config": ci, **{k: json.dumps(v) if isinstance(v, list | dict) else v
                                for k, v in config.items()},
               "seed": seed, **{m: v for m, v in final.items() if m != "tick"},
               "ok": res["ok"], "verified": res["verified"], "root": res["root"],
               "run": str(folder.relative_to(out)), **built}
        rows.append(row)
        if on_done:
            on_done(i + 1, len(jobs))
    columns = list(dict.fromkeys(k for r in rows for k in r))  # every metric of any run
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, restval="")
        w.writeheader()
        w.writerows(rows)
    from sandbank.lab.tables import write_rows

    write_rows(rows, out / "results.parquet")
    write_comparison(out, sweep, rows)
    return rows


def _mean(values: Iterable[Any]) -> str:
    nums = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return f"{sum(nums) / len(nums):.4g}" if nums else ""


PLOTTED = ("welfare", "fills", "tasks_passed", "fraud_loss", "gini_wealth", "halts",
           "self_dealt", "boundary_denied")


def _series(run: str, column: str) -> list[tuple[float, float]]:
    path = Path(run) / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        out = []
        for r in csv.DictReader(f):
            try:
                out.append((float(r["tick"]), float(r[column])))
            except (KeyError, TypeError, ValueError):
                continue
    return out


def _bar_labels(keys: list[str], configs: list[dict[str, Any]]) -> list[list[str]]:
    """Each configuration's parameter values, a line per grid key, under its bar: the key's
    last part (band_bps=1000) unless two keys end alike; keys of one value are left out."""
    varied = [k for k in keys if len({json.dumps(c[k]) for c in configs}) > 1] or keys
    short = {k: k.rsplit(".", 1)[-1] for k in varied}
    if len(set(short.values())) < len(short):
        short = {k: k for k in varied}
    return [[f"{short[k]}={json.dumps(c[k])}"[:28] for k in varied] or ["base"]
            for c in configs]


def write_comparison(out: Path, sweep: Sweep, rows: list[dict[str, Any]]) -> Path:
    """comparison.html: per configuration, the mean over seeds of every metric (a table), a
    bar per configuration (mean, whiskers min..max over seeds) and the mean time series."""
    from sandbank.lab.report import STYLE, svg_bars, svg_multi

    keys = sorted(sweep.grid)
    metrics = [k for k in dict.fromkeys(k for r in rows for k in r)
               if k not in {"config", "seed", "ok", "verified", "root", "run", "sandbank",
                            "revision", *keys}]
    table, names = [], []
    for ci, config in enumerate(sweep.configurations()):
        mine = [r for r in rows if r["config"] == ci]
        names.append(f"{ci}: " + (", ".join(f"{k}={json.dumps(config[k])}" for k in keys) or "base"))
        table.append([ci] + [json.dumps(config[k]) for k in keys] + [len(mine)]
                     + [_mean(r.get(m) for r in mine) for m in metrics]
                     + [sum(1 for r in mine if r["ok"])])
    head = ["#"] + keys + ["seeds"] + [f"mean {m}" for m in metrics] + ["runs ok"]
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in table)
    plotted = [m for m in (sweep.metrics or PLOTTED) if m in metrics] + sorted(
        m for m in metrics if m.startswith("delta_") and not sweep.metrics)
    labels = _bar_labels(keys, sweep.configurations())
    charts, zero = [], []
    for m in plotted:
        bars, lines = [], []
        for ci, name in enumerate(names):
            mine = [r for r in rows if r["config"] == ci]
            vals = [(r["seed"], float(r[m]), f"{r['run']}/report.html") for r in mine
                    if isinstance(r.get(m), int | float) and not isinstance(r.get(m), bool)]
            if vals:
                nums = [v for _, v, _ in vals]
                bars.append({"label": labels[ci], "title": name, "mean": sum(nums) / len(nums),
                             "min": min(nums), "max": max(nums), "href": vals[0][2],
                             "seeds": vals})
            per_tick: dict[float, list[float]] = {}
            for r in mine:
                for x, y in _series(str(out / r["run"]), m):
                    per_tick.setdefault(x, []).append(y)
            lines.append((name, [(x, sum(v) / len(v)) for x, v in sorted(per_tick.items())]))
        if not any(b["min"] or b["max"] for b in bars) and not any(
                y for _, pts in lines for _, y in pts):
            zero.append(m)
            continue
        charts.append(svg_bars(bars, f"final {m} per configuration (mean over seeds, a dot per "
                                     f"seed; click a bar or a dot for its run's report)"))
        charts.append(svg_multi(lines, f"{m} over time (mean over seeds)",
                                y_zero=not m.startswith(("price_", "avg_price_", "vwap_"))))
    if zero:
        charts.append(f"<p class='zero-note'>{len(zero)} metric"
                      f"{'s were' if len(zero) > 1 else ' was'} zero throughout (not drawn): "
                      f"{html.escape(', '.join(zero))}.</p>")
    doc = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>sweep</title>"
           f"<style>{STYLE}</style></head><body>"
           f"<h1>Sweep of {html.escape(sweep.scenario.get('name', ''))}</h1>"
           f"<p>{len(rows)} runs: {len(table)} configurations × {len(sweep.seeds)} seeds. "
           f"Per-run rows in results.csv, each run's report in its folder.</p>"
           f"<h2>Configurations</h2><p>{'<br>'.join(html.escape(n) for n in names)}</p>"
           f"<h2>Compared</h2>{''.join(charts)}"
           f"<h2>Means over seeds</h2><div class='scroll'><table><tr>{th}</tr>{body}</table></div>"
           f"</body></html>")
    path = out / "comparison.html"
    path.write_text(doc)
    return path
