"""`sandbank` command line: run the demo, and audit any log without trusting its producer.

Exit codes: 0 ok; 1 the log failed a check; 2 bad input (no such file, bad argument).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import sandbank.economy
from sandbank.store.base import StoreError
from sandbank.store.sqlite import SQLiteStore

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="sandbank: virtual agentic sandbox economies with a verifiable log.")
# Not a terminal (a pipe, a file, CI): nothing is cut or folded at 80 columns.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 250)


MAX_INT = 2**53 - 1  # what the log's integers can hold


def _founding_governors(sc, keys: list[str], resumed: bool) -> tuple[bytes, ...]:
    """The founding governors' public keys for a served scenario (exit 2 on a bad one, or on
    a quorum no governor could reach). A resumed log has its governors already."""
    cfg = sc.kernel_config()
    from sandbank.controls.controls import founding_governors

    quorum = cfg.governance_quorum
    if resumed:
        if keys:
            _fail("--governor admits the founding governors of a new log; this one has its "
                  "governors (a new one is admitted by their quorum: add_governor)")
        return ()
    if keys and not quorum:
        _fail("--governor needs a scenario with safeguards.governance_quorum > 0")
    out = []
    for k in keys:
        try:
            raw = bytes.fromhex(k)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            _fail(f"--governor {k[:80]!r}: an Ed25519 public key is 64 hex characters")
        out.append(raw)
    if len(set(out)) != len(out):
        _fail("--governor names one key twice: each governor is a separate party")
    want = founding_governors(cfg)
    if quorum and len(out) < quorum:
        _fail(f"this scenario's safety changes need {quorum} governors' approval: give at "
              f"least {quorum} founding governors' public keys with --governor (the server "
              f"holds no governor's key, so it cannot simulate them)")
    if quorum and len(out) != want:
        _fail(f"the scenario admits {want} founding governors (safeguards.governance_governors"
              f", default the quorum); --governor gave {len(out)}")
    return tuple(out)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _store_errors(fn):
    """A damaged or unreadable log is a finding (exit 1) with a message, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StoreError as e:
            _fail(str(e), 1)

    return wrapper


def _open(log: Path) -> SQLiteStore:
    if not log.exists():
        _fail(f"no log at {log}")
    if log.is_dir():
        _fail(f"{log} is a directory: name the log file (a run folder keeps it as log.db)")
    try:
        return SQLiteStore(log, readonly=True, create=False)
    except StoreError as e:
        _fail(str(e), 1)
        raise  # unreachable


def _key_text(key: str, what: str) -> str:
    """A verifier key given on the command line, or the file holding one."""
    if not Path(key).is_file():
        return key
    try:
        return Path(key).read_text()
    except (OSError, UnicodeDecodeError) as e:
        _fail(f"cannot read the {what} file {key}: {e}")
        raise


def _pinned(key: str | None) -> tuple[str, bytes] | None:
    if key is None:
        return None
    from sandbank.audit.checkpoint import NoteError, parse_verifier_key

    try:
        return parse_verifier_key(_key_text(key, "--key"))
    except NoteError as e:
        _fail(str(e))
        raise


class _Lines:
    """Progress for a stderr that is no terminal (a CI log, a pipe, a notebook's cell): a
    plain line every `every` seconds (SANDBANK_PROGRESS_SECONDS, default 10) and one at the
    end if any was printed, instead of a bar that redraws (and shows nothing there). Work
    shorter than `every` prints nothing. Same calls as rich's Progress."""

    def __init__(self, what: str, unit: str, every: float) -> None:
        self.what, self.unit, self.every = what, unit, every
        self.tasks: dict[int, dict] = {}
        self.started = self.last = time.monotonic()
        self.printed = False

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.printed and exc[0] is None:
            for t in self.tasks.values():
                self._line(t)

    def add_task(self, description: str, total: float | None = None, **_: object) -> int:
        self.tasks[len(self.tasks)] = {"description": description, "total": total,
                                       "completed": 0}
        return len(self.tasks) - 1

    def update(self, task: int, *, completed: float | None = None, total: float | None = None,
               description: str | None = None, advance: float | None = None,
               **_: object) -> None:
        t = self.tasks[task]
        for key, value in (("completed", completed), ("total", total),
                           ("description", description)):
            if value is not None:
                t[key] = value
        if advance:
            t["completed"] += advance
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line(t)

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def _line(self, t: dict) -> None:
        done, total = int(t["completed"]), t["total"]
        what = self.what.replace("{task.description}", str(t["description"]))
        share = f"{done:,}/{int(total):,} {self.unit}".rstrip() if total else f"{done:,} " \
            f"{self.unit}".rstrip()
        pct = f" ({100 * done / total:.0f}%)" if total else ""
        err.print(f"{what}: {share}{pct}, {time.monotonic() - self.started:.0f}s", markup=False,
                  highlight=False)
        self.printed = True


def _bar(what: str, *columns: object, unit: str = "", disable: bool = False) -> Progress | _Lines:
    """A progress bar on a terminal (`what`, then `columns`), periodic lines elsewhere."""
    if err.is_terminal:
        return Progress(TextColumn(what), *columns, TimeElapsedColumn(), console=err,
                        transient=True, disable=disable)
    import os

    try:
        every = float(os.environ.get("SANDBANK_PROGRESS_SECONDS", "10"))
    except ValueError:
        every = 10.0
    return _Lines(what, unit, every)


def _progress(total: int, what: str) -> Progress | _Lines:
    return _bar(what, BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                unit="entries", disable=total < 200_000)


FORMATS = ("table", "md", "csv", "json")
FORMAT_HELP = ("table (for a terminal) | md (Markdown tables) | csv (each table as CSV, after "
               "a '# name' line, tables apart by a blank line) | json (one object); with md, "
               "csv and json, stdout holds only the data and everything else goes to stderr")


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        _fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def _emit(fmt: str, tables: list[tuple[str, list[str], list[list]]],
          meta: dict | None = None) -> None:
    """Print `tables` (name, columns, rows) in `fmt`; `meta` (a few key facts) goes first."""
    if fmt == "json":
        doc = dict(meta or {})
        for name, cols, rows in tables:
            doc[name] = [dict(zip(cols, r, strict=True)) for r in rows]
        sys.stdout.write(json.dumps(doc, indent=1, default=str) + "\n")
        return
    if fmt == "csv":
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")
        for i, (name, cols, rows) in enumerate(tables):
            sys.stdout.write(("\n" if i else "") + f"# {name}\n")
            w.writerow(cols)
            w.writerows(rows)
        return
    if fmt == "md":
        cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        parts = [" · ".join(f"{k} {v}" for k, v in meta.items())] if meta else []
        for name, cols, rows in tables:
            lines = [f"### {name}", "", "| " + " | ".join(cols) + " |",
                     "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
            parts.append("\n".join(lines))
        sys.stdout.write("\n\n".join(parts) + "\n")
        return
    if meta:
        out.print(" · ".join(f"{k} {v}" for k, v in meta.items()), highlight=False)
    for name, cols, rows in tables:
        t = Table(*cols, title=name)
        for r in rows:
            t.add_row(*(str(v) for v in r))
        out.print(t)


KEY_FILE_HELP = ("the run secret every key is derived from (created, mode 0600, if absent; "
                 "default: run.key in the run folder). Keep it private: whoever has it can sign "
                 "as the operator; the same file, scenario and seed give the same log")


def _run_and_report(sc, folder: Path, overwrite: bool, key_file: Path | None = None,
                    trace=None):
    """Run a scenario with a progress bar and print what happened; returns the result.
    `trace`: OpenTelemetry tracing of the run (sandbank/telemetry.py)."""
    from sandbank.lab.runner import RunError, run_scenario

    agents = sum(g.count for g in sc.population)
    try:
        with _bar(f"{sc.name}: {agents} agents", BarColumn(),
                  TextColumn("tick {task.completed}/{task.total}"), unit="ticks") as bar:
            task = bar.add_task("run", total=sc.ticks)
            result = run_scenario(sc, folder, overwrite=overwrite, key_file=key_file,
                                  trace=trace,
                                  on_tick=lambda done, _: bar.update(task, completed=done),
                                  on_warning=lambda w: err.print(f"[yellow]warning:[/] {w}",
                                                                 highlight=False))
    except RunError as e:
        _fail(str(e), e.exit_code)
        raise
    s = result.summary
    f = s["final"]
    out.print(f"[bold]{sc.name}[/] — seed {sc.seed}, {agents} agents, {sc.ticks} ticks in "
              f"{s['seconds']:.2f}s; {s['entries']:,} log entries, verified: {s['verified']}")
    t = Table(show_header=False, box=None)
    for key in ("welfare", "fills", "halts", "tasks_posted", "tasks_passed", "tasks_failed",
                "tasks_expired", "value_delivered", "fraud_attempts", "fraud_loss",
                "gini_wealth", "messages", "agent_errors",
                *(k for k in ("spawned", "self_dealt", "paid_after_message", "boundary_attempts",
                              "boundary_denied") if f.get(k)),
                *sorted(k for k in f if k.startswith(("price_", "delta_"))),
                *(["llm_calls", "llm_failures"] if f.get("llm_calls") else [])):
        t.add_row(key, str(f.get(key, "")))
    out.print(t)
    if s["rejections"]:
        r = Table("refused because", "count", title="why actions were refused")
        for reason, n in sorted(s["rejections"].items(), key=lambda x: -x[1])[:8]:
            r.add_row(reason, str(n))
        out.print(r)
    ran = s["agents_ran"]
    if ran["hosted"]:
        out.print(f"agents: {ran['in_process']} in this process, {ran['hosted']} in "
                  f"{len(ran['hosts'])} {ran['backend']} host(s)", highlight=False)
    llm = s.get("llm") or {}
    if llm.get("calls"):
        tokens = (f"; tokens: {llm['prompt_tokens']:,} prompt, {llm['completion_tokens']:,} "
                  f"completion")
        if llm["failures"]:
            causes = "; ".join(f"{c} (×{n})" for c, n in list(llm["causes"].items())[:3])
            err.print(f"[bold red]LLM: {llm['failures']:,} of {llm['calls']:,} model calls "
                      f"failed[/]{escape(tokens)}. Why: {escape(causes)}", highlight=False)
        else:
            out.print(f"LLM: {llm['calls']:,} model calls, none failed{tokens}", highlight=False)
    if s["oversight"]:
        out.print(_oversight_line(s), highlight=False)
    if s["warnings"]:
        err.print(f"[yellow]{len(s['warnings'])} warning(s)[/], said as they arose; all in "
                  f"{folder / 'summary.json'} and the report", highlight=False)
    for key, c in s["success"].items():
        mark = "[green]ok[/]" if c["ok"] else "[red]FAILED[/]"
        out.print(f"  {mark} {key}: required {c['required']}, got {c['actual']} ({c['meaning']})")
    out.print(f"report: [bold]{folder / 'report.html'}[/]  log: {folder / 'log.db'}  "
              f"latest checkpoint: {folder / 'checkpoint.txt'} (keep a copy: `verify "
              f"--checkpoint` then detects a truncated or rewritten log)", highlight=False)
    return result


def _llm_overrides(sc, mode: str | None, cassette: Path | None) -> None:
    """--llm-mode / --cassette over every llm group's parameters."""
    from sandbank.agents.llm.client import MODES

    if mode is not None and mode not in MODES:
        _fail(f"--llm-mode must be one of {', '.join(MODES)}, got {mode!r}")
    groups = [g for g in sc.population if g.policy == "llm"]
    if not groups:
        _fail("--llm-mode and --cassette set the llm policy's parameters; this scenario has no "
              "llm agents")
    if mode is None:  # a cassette alone: replay it if it exists (offline), else record one
        mode = "replay" if cassette is not None and cassette.is_file() else "record"
    if mode != "live" and cassette is None:
        _fail(f"--llm-mode {mode} needs --cassette FILE")
    if mode == "replay" and not cassette.is_file():
        _fail(f"--cassette {cassette}: no such file to replay")
    for g in groups:
        g.params["mode"] = mode
        g.params["cassette"] = str(cassette) if cassette is not None else ""


def _oversight_line(s: dict) -> str:
    """One line: alerts by detector, breaker trips by scope, tickets still open."""
    from collections import Counter

    def counted(items: list[dict], key: str) -> str:
        tally = Counter(x[key] for x in items)
        return ", ".join(f"{d} {n}" for d, n in sorted(tally.items(), key=lambda x: (-x[1], x[0])))

    alerts, trips = counted(s["alerts"], "detector"), counted(s["trips"], "scope")
    f = s["final"]
    return (f"oversight: {len(s['alerts'])} alerts" + (f" ({alerts})" if alerts else "")
            + f"; {len(s['trips'])} breaker trips" + (f" ({trips})" if trips else "")
            + f"; {f.get('tickets_open', 0)} tickets open at the end")


def _end(result) -> None:
    if not result.ok:
        err.print("[bold red]the run failed its success criteria[/]" if result.summary["verified"]
                  else "[bold red]the run's log does not verify[/]")
        raise typer.Exit(1)


PATH_HELP = ("a folder to import user policies from (repeatable; before the working "
             "directory). Hosts can read all of it (a folder holding the run is refused)")
HOSTS_HELP = ("agent hosts (separate contained processes) to run the population in; 0: all "
              "in this process (trusted code only); default: the scenario's, else hosts only "
              "for policies not shipped with sandbank")
CONTAIN_HELP = "fail, before the run, if any containment measure of the hosts is unavailable"


def _agent_overrides(hosts: int | None, require: bool) -> dict:
    """The `agents` settings the command line sets over the scenario's."""
    out: dict = {}
    if hosts is not None:
        out["hosts"] = hosts
    if require:
        out["require_containment"] = True
    return out


@app.command()
def run(
    scenario: Path = typer.Argument(..., help="a scenario file (YAML); see `sandbank scenarios`"),
    out_dir: Path | None = typer.Option(None, "--out",
                                        help="run folder (default: runs/<name>-seed<seed>)"),
    seed: int | None = typer.Option(None, help="override the scenario's seed"),
    ticks: int | None = typer.Option(None, min=1, help="override the scenario's ticks"),
    overwrite: bool = typer.Option(False, help="replace an existing run in --out"),
    key_file: Path | None = typer.Option(None, help=KEY_FILE_HELP),
    path: list[Path] = typer.Option([], "--path", help=PATH_HELP),
    hosts: int | None = typer.Option(None, min=0, max=256, help=HOSTS_HELP),
    require_containment: bool = typer.Option(False, help=CONTAIN_HELP),
    llm_mode: str | None = typer.Option(None, help="for every llm agent: live (call the "
                                        "model), record (call it and append each reply to "
                                        "--cassette) or replay (replies only from --cassette: "
                                        "offline, and a request it lacks is a failed call)"),
    cassette: Path | None = typer.Option(None, help="the cassette file (JSON lines) for "
                                         "--llm-mode record or replay; alone, it is replayed "
                                         "if it exists and recorded if not"),
    trace: str | None = typer.Option(None, help="OpenTelemetry spans of every agent "
                                     "decision, model call and action: otlp (OTLP over HTTP "
                                     "to --otel-endpoint) or file (JSON lines to "
                                     "--trace-file); the log is the same either way"),
    trace_file: Path | None = typer.Option(None, help="where --trace file writes (default: "
                                           "<out>/trace.jsonl; implies --trace file)"),
    otel_endpoint: str | None = typer.Option(None, help="the OTLP/HTTP collector for --trace "
                                             "otlp (default: $OTEL_EXPORTER_OTLP_ENDPOINT, "
                                             "else http://localhost:4318; implies --trace "
                                             "otlp)"),
) -> None:
    """Run a scenario; write the log, metrics, a summary and a report to the run folder."""
    from sandbank.extras import MissingExtra
    from sandbank.lab.scenario import ScenarioError, load_scenario
    from sandbank.telemetry import EXPORTERS, configure

    try:
        sc = load_scenario(scenario, seed=seed, ticks=ticks, paths=tuple(map(str, path)),
                           agents=_agent_overrides(hosts, require_containment))
    except ScenarioError as e:
        _fail(str(e))
        raise
    if llm_mode is not None or cassette is not None:
        _llm_overrides(sc, llm_mode, cassette)
    folder = out_dir or Path("runs") / f"{sc.name}-seed{sc.seed}"
    trace = trace or ("file" if trace_file else "otlp" if otel_endpoint else None)
    if trace is not None and trace not in EXPORTERS:
        _fail(f"--trace must be {' or '.join(EXPORTERS)}, got {trace!r}")
    if (trace == "otlp" and trace_file) or (trace == "file" and otel_endpoint):
        _fail("--trace-file goes with --trace file, --otel-endpoint with --trace otlp")
    try:
        tracing = configure(trace, path=trace_file or folder / "trace.jsonl",
                            endpoint=otel_endpoint)
    except (MissingExtra, ValueError) as e:
        _fail(str(e))
        raise
    try:
        result = _run_and_report(sc, folder, overwrite, key_file, trace=tracing)
    finally:
        if tracing is not None:
            tracing.close()
    if tracing is not None:
        out.print(f"trace: spans written to {tracing.describe}", highlight=False)
    _end(result)


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("runs/demo"), "--out", help="run folder"),
    seed: int | None = typer.Option(None, help="the run's seed (same seed, same log)"),
    ticks: int | None = typer.Option(None, min=1, help="number of ticks (default 60)"),
    overwrite: bool = typer.Option(False, help="replace an existing run in --out"),
    key_file: Path | None = typer.Option(None, help=KEY_FILE_HELP),
) -> None:
    """The main job: run the built-in mixed economy (the demo scenario) on the embedded
    SQLite store, verify and replay its log, and say where the report is."""
    from sandbank.economy import replay_log
    from sandbank.lab.scenario import ScenarioError, builtin_dir, load_scenario

    try:
        sc = load_scenario(builtin_dir() / "demo.yaml", seed=seed, ticks=ticks)
    except ScenarioError as e:
        _fail(str(e))
        raise
    result = _run_and_report(sc, out_dir, overwrite, key_file)
    store = SQLiteStore(out_dir / "log.db", readonly=True, create=False)
    t0 = time.perf_counter()
    rp = replay_log(store)
    store.close()
    out.print(f"replay: {'[green]ok[/]' if rp.ok else '[red]FAILED[/] ' + str(rp.problem)} "
              f"(state rebuilt from {rp.events:,} events equals all {rp.checkpoints:,} signed "
              f"digests, {rp.full} of them over the whole state; "
              f"{time.perf_counter() - t0:.2f}s)")
    s = result.summary
    out.print(f"final root: {s['root']}")
    out.print(f"operator key: {s['operator_key']}", highlight=False)
    log = out_dir / "log.db"
    out.print(f"try: sandbank verify {log} --key {s['operator_key']} · sandbank replay {log} · "
              f"sandbank proof {log} --entry 42 · open {out_dir / 'report.html'}", highlight=False)
    if not rp.ok:
        raise typer.Exit(1)
    _end(result)


@app.command()
def sweep(
    sweep_file: Path = typer.Argument(..., help="a sweep file (YAML): scenario, seeds, grid"),
    out_dir: Path | None = typer.Option(None, "--out", help="sweep folder (default: runs/sweep-<name>)"),
    workers: int | None = typer.Option(None, min=1, help="parallel runs (default: the file's, or 2)"),
    backend: str = typer.Option("process", help="process (a local pool) or ray (a local Ray "
                                "instance, or the cluster at $RAY_ADDRESS)"),
    path: list[Path] = typer.Option([], "--path", help=PATH_HELP),
    hosts: int | None = typer.Option(None, min=0, max=256, help=HOSTS_HELP),
    require_containment: bool = typer.Option(False, help=CONTAIN_HELP),
) -> None:
    """Run a grid of scenario parameters × seeds in parallel; write results.csv and a comparison."""
    from sandbank.agents.hosts import HostFailure
    from sandbank.lab.runner import RunError
    from sandbank.lab.scenario import ScenarioError
    from sandbank.lab.sweep import LocalBackend, RayBackend, load_sweep, run_sweep

    if backend not in ("process", "ray"):
        _fail(f"--backend must be process or ray, got {backend!r}")
    try:
        sw = load_sweep(sweep_file, paths=tuple(map(str, path)),
                        agents=_agent_overrides(hosts, require_containment))
    except ScenarioError as e:
        _fail(str(e))
        raise
    folder = out_dir or Path("runs") / f"sweep-{sw.scenario.get('name', 'scenario')}"
    total = len(sw.configurations()) * len(sw.seeds)
    with _bar(f"sweep: {total} runs", BarColumn(), TextColumn("{task.completed}/{task.total}"),
              unit="runs") as bar:
        task = bar.add_task("sweep", total=total)
        try:
            rows = run_sweep(sw, folder, RayBackend() if backend == "ray"
                             else LocalBackend(workers or sw.workers),
                             on_done=lambda done, _: bar.update(task, completed=done))
        except RunError as e:
            _fail(str(e), e.exit_code)
            raise
        except HostFailure as e:
            _fail(str(e))
            raise
    failed = [r for r in rows if not r["ok"]]
    out.print(f"{len(rows)} runs, {len(rows) - len(failed)} ok; results: "
              f"{folder / 'results.csv'}; comparison: {folder / 'comparison.html'}")
    if failed:
        err.print(f"[yellow]{len(failed)} run(s) failed their success criteria[/]")


@app.command()
def scorecard(
    files: list[Path] = typer.Argument(None, help="scenario files (default: the built-in library)"),
    seeds: str | None = typer.Option(None, help="comma-separated seeds (default: each file's)"),
    out_dir: Path = typer.Option(Path("runs/scorecard"), "--out",
                                 help="where the runs and the tables go"),
    workers: int = typer.Option(1, min=1, help="runs at once, each in its own process"),
    generate: int = typer.Option(0, min=0, help="instead of the library: N sampled variants "
                                 "of each attack family (lab/generate.py), judged the same "
                                 "way over three seeds"),
    search_budget: int = typer.Option(0, "--search", min=0, help="with or without --generate: "
                                      "an adversary that searches each family's space for the "
                                      "most harm done undetected, with this many runs"),
    family: list[str] = typer.Option([], help="only these families (repeatable)"),
    sample_seed: int = typer.Option(0, help="the generator's seed for --generate"),
    fmt: str = typer.Option("table", "--format", help=FORMAT_HELP),
) -> None:
    """Judge the safeguards: run the scenario library with them and without (the red team).

    Did the right detector fire
    on an attacker, with evidence, how fast, with how many false alerts, did the safeguards
    cut the harm in every seed — by the expected response, not another — and at what cost
    in welfare? With --generate / --search: the same over
    sampled attack variants, and the largest harm an attack did undetected."""
    _check_format(fmt)
    if generate or search_budget:
        if fmt != "table":
            _fail("--format applies to the library's scorecard; --generate and --search write "
                  "generated.md and search.json")
        _scorecard_generated(out_dir, workers, generate, search_budget, family, sample_seed,
                             seeds)
        return
    if family:
        _fail("--family needs --generate or --search")
    from sandbank.lab.redteam import COLUMNS, judge, summarise, write
    from sandbank.lab.scenario import ScenarioError, builtin_dir

    paths = files or sorted(builtin_dir().glob("*.yaml"))
    seed_list = _seeds(seeds)
    verdicts = []
    with _bar("red team: {task.description}", BarColumn(),
              TextColumn("{task.completed}/{task.total}"), unit="scenarios") as bar:
        task = bar.add_task("", total=len(paths))
        for path in paths:
            bar.update(task, description=path.stem)
            try:
                v = judge(path, out_dir, seed_list, workers=workers)
            except ScenarioError as e:
                _fail(str(e))
                raise
            if v is not None:
                verdicts.append(v)
            bar.advance(task)
    rows = summarise(verdicts)
    failures = [(c.scenario, c.seed, c.why) for v in verdicts for c in v.cases if not c.ok]
    csv_path, html_path = write(out_dir, verdicts)
    where = f"cases: {csv_path}  table: {out_dir / 'scorecard.md'}  report: {html_path}"
    if fmt != "table":
        _emit(fmt, [("scorecard", COLUMNS, [[r[c] for c in COLUMNS] for r in rows]),
                    ("failures", ["scenario", "seed", "why"], [list(f) for f in failures])])
        err.print(where, highlight=False, markup=False)
    else:
        t = Table(*COLUMNS)
        for row in rows:
            t.add_row(*[row[c] if c != "verdict" or row[c] == "ok" else f"[red]{row[c]}[/]"
                        for c in COLUMNS])
        out.print(t)
        for scenario, seed, why in failures:
            out.print(f"[red]{scenario} seed {seed}:[/] {escape(why)}", highlight=False)
        out.print(where, highlight=False, markup=False)
    if not verdicts or not all(v.ok for v in verdicts):
        raise typer.Exit(1)


def _seeds(seeds: str | None) -> list[int] | None:
    try:
        return [int(x) for x in seeds.split(",")] if seeds else None
    except ValueError:
        _fail(f"--seeds must be integers separated by commas, got {seeds!r}")
        raise


def _scorecard_generated(out_dir: Path, workers: int, n: int, budget: int,
                         families: list[str], sample_seed: int, seeds: str | None) -> None:
    import json

    from sandbank.lab.generate import FAMILIES
    from sandbank.lab.redteam import family_rows, generated, search, write_generated
    from sandbank.lab.runner import RunError
    from sandbank.lab.scenario import ScenarioError

    names = families or sorted(FAMILIES)
    unknown = [f for f in names if f not in FAMILIES]
    if unknown:
        _fail(f"unknown famil{'ies' if len(unknown) > 1 else 'y'} {unknown}; known: "
              f"{', '.join(sorted(FAMILIES))}")
    seed_list = _seeds(seeds)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    searched: list[dict] = []
    result = None
    with _bar("{task.description}", BarColumn(),
              TextColumn("{task.completed}/{task.total} runs"), unit="runs") as bar:
        try:
            if n:
                task = bar.add_task(f"{n} variants × {len(names)} families", total=None)
                result = generated(names, n, out_dir / "runs", seeds=seed_list,
                                   workers=workers, sample_seed=sample_seed,
                                   progress=lambda d, t: bar.update(task, completed=d,
                                                                    total=t))
                rows = family_rows(result)
            for name in names if budget else []:
                task = bar.add_task(f"adversary searching {name}", total=budget)
                searched.append(search(name, budget, out_dir / "runs", workers=workers,
                                       seed=sample_seed, seeds=seed_list,
                                       progress=lambda d, t, task=task:
                                       bar.update(task, completed=d, total=t)))
        except (ScenarioError, RunError) as e:
            _fail(f"a generated variant could not run: {e}")
    md = write_generated(out_dir, rows, searched, result)
    (out_dir / "search.json").write_text(json.dumps(searched, indent=1, default=str))
    out.print(md, highlight=False, markup=False)
    out.print(f"tables: {out_dir / 'generated.md'}  search: {out_dir / 'search.json'}",
              highlight=False)


app.command("redteam", help="Another name for `scorecard`.")(scorecard)


@app.command()
def serve(
    db: str = typer.Option("runs/live/log.db", help="a SQLite file, or postgresql://user:pw@host/db"),
    pg_schema: str = typer.Option("public", help="with PostgreSQL: the schema holding this log"),
    key_file: Path | None = typer.Option(None, help="the run secret the operator's, the "
                                         "console's and a scenario population's keys come from "
                                         "(created, mode 0600, if absent; default: run.key "
                                         "beside the SQLite log, runs/live/run.key with "
                                         "PostgreSQL). Never share it"),
    witness: list[str] = typer.Option([], help="URL=WITNESS_KEY: a witness (`sandbank "
                                      "witness`) and its verifier key: every checkpoint is sent "
                                      "to it with a consistency proof, and its cosignature kept "
                                      "if it verifies (repeat for several)"),
    governor: list[str] = typer.Option([], help="a founding governor's public key (hex; "
                                       "repeat for each): with a scenario whose "
                                       "safeguards.governance_quorum is set, safety changes "
                                       "need that many of their signed approvals "
                                       "(POST /v1/oversight/actions); the server holds none "
                                       "of their keys"),
    peer: list[str] = typer.Option([], help="a federated sandbox's operator verifier key "
                                   "(its GET /v1/status operator_key; repeat for each): its "
                                   "signed ban lists can be imported (`sandbank federate`), "
                                   "and the owners it banned cannot register here"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000, min=1, max=65535),
    tick_seconds: float = typer.Option(1.0, min=0.0, help="advance a tick this often "
                                       "(0: only on POST /v1/tick)"),
    scenario: Path | None = typer.Option(None, help="run this scenario's population (and its "
                                         "oversight) in-process, beside the agents that join"),
    assets: str = typer.Option("CRD,WGT", help="assets of a new economy (without --scenario)"),
    market: list[str] = typer.Option(["WGT/CRD"], help="ASSET/QUOTE markets of a new economy "
                                     "(without --scenario)"),
    admission: str = typer.Option("open", help="open | approval | stake"),
    endow: str = typer.Option("", help="what each agent admitted through the API receives, "
                              "e.g. CRD=10000,WGT=50 (default: the scenario's endowment)"),
    stake: int = typer.Option(0, min=0, max=MAX_INT, help="with --admission stake: fee-asset units of the "
                              "endowment held as a bond, forfeited on termination"),
    rate: float = typer.Option(50.0, min=0.001, max=1e6,
                               help="actions per second per identity (token bucket)"),
    burst: int = typer.Option(200, min=1, max=10**7,
                              help="bucket size: actions one identity may send at once"),
    source_rate: float = typer.Option(1000.0, min=0.001, max=1e7, help="requests per second "
                                      "from one source (the TCP peer) before its identity is "
                                      "checked: actions, batch items, streams"),
    source_burst: int = typer.Option(2000, min=1, max=10**8, help="... at once"),
    admission_rate: float = typer.Option(2.0, min=0.001, max=1e6, help="admission requests "
                                         "per second from one source (bursts of 10 times)"),
) -> None:
    """Run one economy live over HTTP, WebSocket and (through `sandbank mcp`) MCP. Secrets
    come from the environment: SANDBANK_OPERATOR_TOKEN (required) and SANDBANK_OVERSEER_TOKEN
    (the dashboard's overseer login; without it the console is off). An existing log is
    resumed: state rebuilt by replay. The dashboard is at /dashboard, the API at /docs."""
    import os
    import threading

    import uvicorn

    from sandbank.kernel.sequencer import ConfigError, KernelConfig
    from sandbank.server.app import Sandbox, SetupError, create_app, open_store, ticker

    token = os.environ.get("SANDBANK_OPERATOR_TOKEN", "")
    if len(token) < 16:
        _fail("set SANDBANK_OPERATOR_TOKEN to a secret of at least 16 characters")
    overseer_token = os.environ.get("SANDBANK_OVERSEER_TOKEN") or None
    if overseer_token == token:
        _fail("SANDBANK_OVERSEER_TOKEN must differ from the operator's token: overseers are "
              "separate from the operator")
    try:
        endowment = {a: int(v) for a, v in (x.split("=", 1) for x in endow.split(",") if x)}
    except ValueError:
        _fail(f"--endow {endow!r}: write ASSET=AMOUNT,ASSET=AMOUNT")
        raise
    from sandbank.audit.checkpoint import NoteError
    from sandbank.audit.witness import parse_witness_key
    from sandbank.server.sandbox import ADMISSION

    witnesses = []
    for option in witness:
        url, _, vkey = option.partition("=")
        if not url.startswith(("http://", "https://")) or not vkey:
            _fail(f"--witness {option!r}: write URL=WITNESS_KEY, the URL http(s)://…")
        try:
            witnesses.append((url, parse_witness_key(vkey)))
        except (NoteError, ValueError) as e:
            _fail(f"--witness {option!r}: {e}")
    from sandbank.audit.checkpoint import parse_verifier_key

    for option in peer:
        try:
            parse_verifier_key(option)
        except NoteError as e:
            _fail(f"--peer {option!r}: {e}")
    peers = {"peers": [{"key": p} for p in peer]} if peer else {}
    if admission not in ADMISSION:  # before anything is written
        _fail(f"--admission must be one of {', '.join(ADMISSION)}")
    if admission == "stake" and not stake:
        _fail("--admission stake needs --stake N (units of the fee asset held as a bond)")
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as e:
            _fail(f"cannot listen on {host}:{port}: {e.strerror}")
    postgres = db.startswith(("postgresql://", "postgres://"))
    if not postgres:
        if Path(db).is_dir():
            _fail(f"--db {db} is a directory: name the log file (e.g. {Path(db) / 'log.db'})")
        Path(db).parent.mkdir(parents=True, exist_ok=True)
    from sandbank.identity.keys import KeyFileError, RunSecret

    key_file = key_file or (Path("runs/live/run.key") if postgres else Path(db).parent / "run.key")
    try:
        secret = RunSecret.load(key_file)
    except KeyFileError as e:
        _fail(str(e))
        raise
    key = secret.key("operator")
    try:
        store = open_store(db, pg_schema)
    except Exception as e:  # a database that cannot be reached: say so, no traceback
        _fail(f"cannot open the log store {db}: {e}")
        raise
    econ = None
    resumed = store.last_checkpoint() is not None
    try:
        if scenario is not None:
            from sandbank.lab.runner import LabEconomy, RunError
            from sandbank.lab.scenario import ScenarioError, load_scenario

            try:
                sc = load_scenario(scenario)
                if peers:  # beside the scenario's own peers, if it names any
                    fed = dict(sc.sections.get("federation") or {})
                    fed["peers"] = [*fed.get("peers", []), *peers["peers"]]
                    sc.sections["federation"] = fed
                founders = _founding_governors(sc, governor, resumed)
                econ = LabEconomy(sc, store, secret, signatures=True, live=True,
                                  private=(key_file,), governors=founders)
            except (ScenarioError, RunError) as e:
                _fail(str(e))
            k = econ.k
            if not endow:
                endowment = dict(sc.endowment)
        elif governor:
            _fail("--governor needs --scenario: a scenario sets the quorum "
                  "(safeguards.governance_quorum)")
        elif store.last_checkpoint() is not None:
            k = sandbank.economy.resume(store, key)
            if peers and dict(k.config.federation or {}) != peers:
                _fail("--peer: this log was started with other federation peers "
                      f"({k.config.federation or 'none'}); a resumed economy keeps its own")
        else:
            names = tuple(a for a in assets.split(",") if a)
            markets = tuple({"asset": m.split("/")[0], "quote": m.split("/")[1]} for m in market)
            k = sandbank.economy.new_kernel(store, KernelConfig(
                assets=names, markets=markets, verify_signatures=True, origin="sandbank.live",
                **({"federation": peers} if peers else {})), key)
        if resumed:
            out.print(f"resumed at tick {k.tick} ({store.entry_count():,} entries, state "
                      f"rebuilt by replay)")
        box = Sandbox(k, secret, token, econ=econ, admission=admission, endowment=endowment,
                      stake=stake, overseer_token=overseer_token, rate=rate, burst=burst,
                      source_rate=source_rate, source_burst=source_burst,
                      admission_rate=admission_rate,
                      witnesses=witnesses)
        if not postgres:
            k.log.checkpoint_file = Path(db).parent / "checkpoint.txt"
    except (ConfigError, IndexError, SetupError) as e:
        _fail(f"cannot start the economy: {e}")
        raise
    stop = threading.Event()
    import time as _time

    last = {"at": _time.monotonic(), "entries": k.log.size, "accepted": 0, "rejected": 0}

    def report(s) -> None:  # a line a minute, so an operator sees the economy is alive
        last["accepted"] += s.accepted
        last["rejected"] += s.rejected
        now = _time.monotonic()
        if now - last["at"] >= 60:
            size = s.checkpoint.size
            out.print(f"tick {s.tick}: {size:,} entries (+{size - last['entries']:,}), "
                      f"{last['accepted']:,} actions accepted and {last['rejected']:,} refused in "
                      f"{now - last['at']:.0f} s; {len(box.subscribers)} streams", highlight=False)
            last.update(at=now, entries=s.checkpoint.size, accepted=0, rejected=0)

    if tick_seconds > 0:
        ticker(box, tick_seconds, stop, report)
    for w in box.witnesses:
        w.start(stop)
    out.print(f"serving on http://{host}:{port} (dashboard /dashboard, API /docs); log: {db}; "
              f"admission {admission}", highlight=False)
    try:
        # the source of a request is its TCP peer: a forwarded-for header is the caller's say-so
        # (uvicorn would believe it from loopback), and per-source limits key on the source
        uvicorn.run(create_app(box), host=host, port=port, log_level="warning",
                    proxy_headers=False, forwarded_allow_ips="")
    finally:
        stop.set()
        with box.lock:
            if econ is not None:
                econ.close()  # its agent hosts
            k.close()


@app.command()
def certify(
    policy: str = typer.Argument(..., help="the policy: a built-in name or package.module:Class"),
    key_file: Path = typer.Option(..., help="the certifier's run secret (created, mode 0600, if "
                                  "absent): its `certifier` key signs the certificate"),
    out_file: Path = typer.Option(Path("certificate.json"), "--out", help="where the "
                                  "certificate goes"),
    param: list[str] = typer.Option([], help="KEY=VALUE (JSON value) for the policy; repeat"),
    path: list[Path] = typer.Option([], help="a folder to import the policy from; repeat"),
    evaluate: list[str] = typer.Option([], "--eval", help="NAME=module:function>=THRESHOLD: an "
                                       "alignment evaluation, called with the robustness run's "
                                       "summary in its own contained process; repeat"),
    work: Path | None = typer.Option(None, help="where the battery's runs go (default: a "
                                     "temporary folder)"),
    network: bool = typer.Option(False, help="let the policy's host reach the network (an LLM "
                                 "policy's model); containment then fails"),
) -> None:
    """Run the entry battery on a policy (robustness against injected instructions,
    interruptibility, containment, your alignment evaluations), each in a contained agent
    host, and write the signed certificate a sandbox with `certification` requires for
    entry. Exit 0: every check passed; 1: some failed (the certificate says which, and a
    sandbox requiring them refuses it); 2: bad input."""
    import json as _json
    import tempfile

    from sandbank.identity.credentials import did_key
    from sandbank.identity.keys import KeyFileError, RunSecret
    from sandbank.lab.certify import CertifyError, battery, certificate, code_digest
    from sandbank.lab.runner import RunError
    from sandbank.lab.scenario import ScenarioError

    params = {}
    for item in param:
        k_, sep, v = item.partition("=")
        if not sep or not k_:
            _fail(f"--param {item!r}: write KEY=VALUE")
        try:
            params[k_] = _json.loads(v)
        except ValueError:
            params[k_] = v
    hooks = []
    for item in evaluate:
        name, sep, rest = item.partition("=")
        hook, sep2, threshold = rest.partition(">=")
        try:
            hooks.append((name, hook, float(threshold)))
        except ValueError:
            sep2 = ""
        if not sep or not sep2 or not name or ":" not in hook:
            _fail(f"--eval {item!r}: write NAME=module:function>=THRESHOLD")
    paths = tuple(str(p.resolve()) for p in path)
    folder = work or Path(tempfile.mkdtemp(prefix="sandbank-certify-"))

    def said(name: str, result: dict) -> None:
        figures = ", ".join(f"{k}={v}" for k, v in result.items()
                            if k not in ("passed", "measures"))
        out.print(f"  {'pass' if result['passed'] else 'FAIL'} {name}: {figures}",
                  highlight=False)

    try:
        code_digest(policy, paths)  # (refuses compiled files before anything runs)
        checks, ran_with = battery(policy, params, paths, folder, hooks, on_check=said,
                                   network=network)
        digest = code_digest(policy, paths, ran_with)
    except (CertifyError, ScenarioError, RunError) as e:
        _fail(str(e))
        raise
    try:  # (the key only now: nothing of the policy's ever ran beside it)
        key = RunSecret.load(key_file).key("certifier")
    except KeyFileError as e:
        _fail(str(e))
        raise
    out.print(f"certifier (pin it in certification.certifiers): {did_key(key.public)}",
              highlight=False)
    doc = certificate(policy, digest, checks, key, params=ran_with)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(_json.dumps(doc, indent=1))
    failed = [n for n, r in checks.items() if not r["passed"]]
    out.print(f"certificate: {out_file} (code digest {digest[:16]}…)"
              + (f"; FAILED: {', '.join(failed)}" if failed else "; every check passed"),
              highlight=False)
    if failed:
        raise typer.Exit(1)


@app.command()
def disclosures(
    log: str = typer.Argument(..., help="the log (a SQLite file)"),
    out_file: Path | None = typer.Option(None, "--out", help="write the report here as JSON "
                                         "(default: print it)"),
    issue_with: Path | None = typer.Option(None, "--issue-with", help="a run secret: issue "
                                           "each current disclosure as a W3C Verifiable "
                                           "Credential signed by its `disclosures` key"),
) -> None:
    """The agents' disclosures as the log records them (owner, skills, policy and its code
    digest, model, permeability, certifier, checks, expiry) and each agent's compliance
    now: current, lapsed, or none. The log is verified first (a log that does not verify
    gives no report: exit 1). With --issue-with, every current disclosure is also a
    `DisclosureCredential` (eddsa-jcs-2022, issuer the key's did:key)."""
    import json as _json
    from datetime import UTC, datetime

    from sandbank.audit.verify import verify_log
    from sandbank.store.sqlite import SQLiteStore

    if not Path(log).is_file():
        _fail(f"no log at {log}")
    store = SQLiteStore(log, readonly=True)
    checked = verify_log(store)
    if not checked.ok:
        store.close()
        _fail(f"{log} does not verify: {checked.problem}", code=1)
    agents: dict[int, dict] = {}
    last_tick = 0
    for e in store.entries():
        d = _json.loads(e.body)
        last_tick = max(last_tick, d.get("tick", 0))
        if d["kind"] == "agent_registered":
            agents[d["agent"]] = {"agent": d["agent"], "name": d["name"], "owner": d["owner"],
                                  "compliance": "none", "disclosure": None}
        elif d["kind"] == "disclosed" and d["agent"] in agents:
            agents[d["agent"]].update(compliance="current", disclosure={
                k: d[k] for k in ("tick", "policy", "policy_digest", "model", "permeability",
                                  "skills", "certifier", "checks", "certificate", "expires")})
        elif d["kind"] == "disclosure_lapsed" and d["agent"] in agents:
            agents[d["agent"]]["compliance"] = "lapsed"
    store.close()
    report: dict = {"log": log, "root": checked.root.hex() if checked.root else None,
                    "tick": last_tick, "agents": [agents[a] for a in sorted(agents)]}
    if issue_with is not None:
        from sandbank.identity import credentials as V
        from sandbank.identity.keys import KeyFileError, RunSecret

        try:
            key = RunSecret.load(issue_with, create=False).key("disclosures")
        except KeyFileError as e:
            _fail(str(e))
            raise
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        report["issuer"] = V.did_key(key.public)
        report["credentials"] = [V.issue({
            "@context": [V.VC_CONTEXT], "type": ["VerifiableCredential", "DisclosureCredential"],
            "issuer": report["issuer"], "validFrom": now,
            "credentialSubject": {"agent": a["agent"], "name": a["name"], "owner": a["owner"],
                                  "log_root": report["root"], **a["disclosure"]}}, key, now)
            for a in report["agents"] if a["compliance"] == "current"]
    text = _json.dumps(report, indent=1)
    if out_file is not None:
        out_file.write_text(text)
        counts = {c: sum(1 for a in agents.values() if a["compliance"] == c)
                  for c in ("current", "lapsed", "none")}
        out.print(f"{len(agents)} agents: {counts}; report: {out_file}", highlight=False)
    else:
        print(text)


@app.command()
def federate(
    source: str = typer.Option(..., "--from", help="the federated sandbox whose ban list to "
                               "carry (its URL, http(s)://…)"),
    into: str = typer.Option(..., help="the sandbox that imports it (its URL); its operator "
                             "token comes from SANDBANK_OPERATOR_TOKEN"),
) -> None:
    """Carry a federated sandbox's signed ban list into another: GET --from's
    /v1/federation/bans, POST it to --into's /v1/federation/import. The importing kernel
    checks the signature against the peer key it pinned (`serve --peer`) and that the list
    is newer than the last; the outcome is in its log (`bans_imported`, or the refusal)."""
    import os

    import httpx

    token = os.environ.get("SANDBANK_OPERATOR_TOKEN", "")
    if not token:
        _fail("set SANDBANK_OPERATOR_TOKEN to the importing sandbox's operator token")
    for url in (source, into):
        if not url.startswith(("http://", "https://")):
            _fail(f"{url!r} is not an http(s):// URL")
    try:
        got = httpx.get(source.rstrip("/") + "/v1/federation/bans", timeout=30)
        got.raise_for_status()
        doc = got.json()
        sent = httpx.post(into.rstrip("/") + "/v1/federation/import", json=doc, timeout=30,
                          headers={"Authorization": f"Bearer {token}"})
    except (httpx.HTTPError, ValueError) as e:
        _fail(f"cannot carry the ban list: {e}")
        raise
    if sent.status_code != 202:
        _fail(f"{into} refused the list: {sent.status_code} {sent.text[:300]}")
    out.print(f"carried {source}'s ban list ({doc.get('seq')} bans) into {into}: it is "
              f"checked at tick {sent.json().get('tick')}", highlight=False)


@app.command()
def witness(
    key_file: Path = typer.Option(..., help="the witness's own Ed25519 key (64 hex characters; "
                                  "created, mode 0600, if absent): never the operator's"),
    state: Path = typer.Option(..., help="where the witness keeps the latest checkpoint it "
                               "cosigned per log (a SQLite file)"),
    log: list[str] = typer.Option(..., help="a log it accepts: ORIGIN=VERIFIER_KEY (the "
                                  "origin and operator key `sandbank verify` prints); repeat"),
    name: str = typer.Option("sandbank.witness", help="the witness's key name (e.g. a URL "
                             "without scheme)"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(7380, min=1, max=65535),
) -> None:
    """Run a witness (C2SP tlog-witness): a separate party with its own key that cosigns a
    log's checkpoint only when it extends the last one it cosigned (a consistency proof), and
    keeps it. It refuses a fork or a truncated log; `serve --witness URL` feeds it, and its
    latest cosigned checkpoint (GET /checkpoint?origin=...) is what `verify --checkpoint
    --witness-key` checks a log against."""
    from sandbank.audit.witness import run_witness

    try:
        run_witness(key_file, state, log, host, port, name)
    except ValueError as e:
        _fail(str(e))


@app.command()
def mcp(
    server: str = typer.Option("http://127.0.0.1:8000", help="the sandbox's URL"),
    key_file: Path = typer.Option(..., help="this agent's key (created, 0600, on first use; "
                                  "it never leaves this process)"),
    owner: int | None = typer.Option(None, help="first run: the owner to be admitted under"),
    owner_key_file: Path | None = typer.Option(None, help="first run: the owner's key (hex "
                                               "seed), to attest this agent"),
    name: str | None = typer.Option(None, help="first run: the agent's name"),
    pin: str | None = typer.Option(None, help="the operator's verifier key to pin"),
    transport: str = typer.Option("stdio", help="stdio | streamable-http"),
    port: int = typer.Option(8765, min=1, max=65535, help="with streamable-http: the loopback port"),
) -> None:
    """Be one agent of a live sandbox as an MCP server (tools and resources), for an MCP
    client (an LLM) to act through. The key stays here; see docs/server.md (trust model)."""
    from sandbank.client import ClientError
    from sandbank.server.mcp import build, connect
    from sandbank.urls import without_credentials

    if transport not in ("stdio", "streamable-http"):
        _fail("--transport must be stdio or streamable-http")
    where = without_credentials(server, "(the server)")
    try:
        agent = connect(server, str(key_file), pin=pin, owner=owner,
                        owner_key_file=str(owner_key_file) if owner_key_file else None, name=name)
        app_ = build(agent)  # (reads the server's markets: inside, for one line if it fails)
    except ClientError as e:
        _fail(f"cannot join {where}: {e}")
        raise
    except (OSError, ValueError) as e:  # unreachable server, unreadable key file
        _fail(f"cannot join {where}: {e}")
        raise
    err.print(f"sandbank mcp: acting as agent {agent.id} on {where}")
    if transport == "stdio":
        app_.run("stdio")
    else:
        app_.run("streamable-http", host="127.0.0.1", port=port)


@app.command()
def keygen(
    key_file: Path = typer.Argument(..., help="where to write the new key (refused if it "
                                    "exists)"),
) -> None:
    """Make an Ed25519 key (an owner's or an agent's): its seed goes to KEY_FILE (mode 0600,
    64 hex characters; keep it secret), its public key is printed (give that to whoever
    admits you). `sandbank mcp --key-file` and `admit-owner --key-file` read such files."""
    from sandbank.identity.keys import KeyFileError, SigningKey

    if key_file.exists():
        _fail(f"{key_file} exists: a key file is never overwritten")
    if not key_file.parent.is_dir():
        _fail(f"no folder {key_file.parent} for the key file")
    try:
        key = SigningKey.load(key_file)
    except (KeyFileError, OSError) as e:
        _fail(f"cannot write {key_file}: {e}")
        raise
    out.print(key.public.hex())


@app.command("admit-owner")
def admit_owner(
    name: str = typer.Argument(..., help="the owner's name (a person or organisation)"),
    key_file: Path = typer.Option(..., help="the owner's key (from `sandbank keygen`; only its "
                                  "public key is sent)"),
    evidence: str = typer.Option(..., help="the attestation record: who vouched for this "
                                 "owner, how (logged)"),
    kind: str = typer.Option("organisation", help="organisation | human"),
    server: str = typer.Option("http://127.0.0.1:8000", help="the sandbox's URL"),
    wait: float = typer.Option(30.0, min=0, help="seconds to wait for the tick that admits it"),
) -> None:
    """(The operator's.) Admit an owner to a live sandbox and print its id, with the operator
    token from SANDBANK_OPERATOR_TOKEN (never on the command line). Agents then join under
    that owner: `sandbank mcp --owner ID --owner-key-file KEY_FILE`."""
    import os

    from sandbank.client import Client, ClientError
    from sandbank.identity.keys import KeyFileError, SigningKey
    from sandbank.urls import without_credentials

    token = os.environ.get("SANDBANK_OPERATOR_TOKEN", "")
    if not token:
        _fail("set SANDBANK_OPERATOR_TOKEN to the sandbox's operator token")
    if kind not in ("organisation", "human"):
        _fail("--kind must be organisation or human")
    try:
        key = SigningKey.load(key_file, create=False, what="owner key file")
    except KeyFileError as e:
        _fail(str(e))
        raise
    try:
        oid = Client(server).admit_owner(token, name, key, evidence, kind=kind, wait=wait)
    except ClientError as e:
        _fail(f"{without_credentials(server, '(the server)')} refused: {e}" if e.status else str(e), 1)
        raise
    out.print(oid)


@app.command()
def scenarios() -> None:
    """List the built-in scenario library."""
    from sandbank.lab.scenario import ScenarioError, builtin_dir, load_scenario

    folder = builtin_dir()
    files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    if not files:
        _fail(f"no built-in scenarios found in {folder}")
    t = Table("scenario", "agents", "ticks", "what it shows")
    for f in files:
        try:
            sc = load_scenario(f)
        except ScenarioError as e:
            t.add_row(f.stem, "", "", f"[red]{e}[/]")
            continue
        t.add_row(f.stem, str(sum(g.count for g in sc.population)), str(sc.ticks),
                  sc.description.split("\n")[0])
    out.print(t)
    out.print(f"run one: sandbank run {folder}/<scenario>.yaml", highlight=False)


@app.command()
def report(run_folder: Path = typer.Argument(..., help="a run folder from `sandbank run`")) -> None:
    """(Re)write a run's HTML report from its metrics and summary."""
    from sandbank.lab.report import write_report

    if not (run_folder / "summary.json").is_file() or not (run_folder / "metrics.csv").is_file():
        _fail(f"{run_folder} is not a run folder (no summary.json / metrics.csv)")
    out.print(f"report: {write_report(run_folder)}")


@app.command()
@_store_errors
def verify(
    log: Path = typer.Argument(..., help="a sandbank log (SQLite file)"),
    key: str | None = typer.Option(None, help="pin the operator key: a verifier key "
                                      "'name+hash+base64' (or a file holding one)"),
    checkpoint: Path | None = typer.Option(None, help="a checkpoint kept outside the log (a "
                                           "run's checkpoint.txt copied away, a client's, a "
                                           "witness's): fail unless the log extends it"),
    witness_key: str | None = typer.Option(None, help="a witness's verifier key: its "
                                           "cosignatures kept in the log must be valid (and "
                                           "the --checkpoint must carry one)"),
) -> None:
    """Check the whole log: entries against their columns, the Merkle roots, checkpoint
    signatures, stored contents, the action index; with --checkpoint, that the log extends a
    checkpoint kept elsewhere (the only way to catch a truncated or rewritten log)."""
    from sandbank.audit.checkpoint import NoteError, verifier_key
    from sandbank.audit.verify import verify_log

    pinned = _pinned(key)
    witness = None
    if witness_key is not None:
        from sandbank.audit.witness import parse_witness_key

        try:
            witness = parse_witness_key(_key_text(witness_key, "--witness-key"))
        except (NoteError, ValueError) as e:
            _fail(f"--witness-key: {e}")
    kept = None
    if checkpoint is not None:
        if not checkpoint.is_file():
            _fail(f"no checkpoint file at {checkpoint}")
        try:
            kept = checkpoint.read_text()
        except (OSError, UnicodeDecodeError) as e:
            _fail(f"cannot read the checkpoint file {checkpoint}: {e}")
        if witness is not None:
            from sandbank.audit.witness import open_cosignature

            try:
                open_cosignature(kept, *witness)
            except NoteError as e:
                err.print(f"[bold red]FAILED[/]: the kept checkpoint carries no valid "
                          f"cosignature by the witness {witness[0]}: {e}")
                raise typer.Exit(1) from None
    store = _open(log)
    total = store.entry_count()
    t0 = time.perf_counter()
    with _progress(total, "verifying") as bar:
        task = bar.add_task("verify", total=total)
        report = verify_log(store, pinned_key=pinned[1] if pinned else None,
                            progress=lambda n: bar.update(task, completed=n),
                            pinned_checkpoint=kept, witness=witness)
    dt = time.perf_counter() - t0
    store.close()
    if not report.ok:
        err.print(f"[bold red]FAILED[/]: {report.problem}")
        if report.bad_entry is not None:
            err.print(f"first bad entry: {report.bad_entry}")
        raise typer.Exit(1)
    out.print(f"[green]ok[/]: {report.entries:,} entries, {report.checkpoints:,} signed "
              f"checkpoints, root {report.root.hex()} ({dt:.2f}s, "
              f"{report.entries / max(dt, 1e-9):,.0f} entries/s)")
    assert report.operator_key is not None and report.key_name is not None
    signer = verifier_key(report.key_name, report.operator_key)
    if pinned is None:
        out.print(f"[yellow]signed by the key the log's own header names[/]: {signer}\n"
                  f"pin it with --key (from a trusted channel) to detect a log re-signed under "
                  f"another key", highlight=False)
    else:
        out.print(f"signed by the pinned key {signer}", highlight=False)
    if report.extends is not None:
        out.print(f"extends the kept checkpoint of tick {report.extends.tick} (size "
                  f"{report.extends.size:,})", highlight=False)
    else:
        out.print("[yellow]no kept checkpoint given[/]: a log cut short at a tick, or rewritten "
                  "whole and re-signed with the operator's key, passes this check; keep a copy "
                  "of its checkpoint.txt (or use a witness) and pass --checkpoint",
                  highlight=False)
    if witness is not None:
        out.print(f"{report.cosigned:,} checkpoints cosigned by the witness {witness[0]}",
                  highlight=False)


@app.command()
@_store_errors
def replay(log: Path = typer.Argument(..., help="a sandbank log (SQLite file)")) -> None:
    """Rebuild state from the events alone; compare with every checkpoint's state digest."""
    from sandbank.economy import replay_log

    store = _open(log)
    total = store.entry_count()
    t0 = time.perf_counter()
    with _progress(total, "replaying") as bar:
        task = bar.add_task("replay", total=total)
        report = replay_log(store, progress=lambda n: bar.update(task, completed=n))
    dt = time.perf_counter() - t0
    store.close()
    if not report.ok:
        err.print(f"[bold red]FAILED[/]: {report.problem}")
        raise typer.Exit(1)
    out.print(f"[green]ok[/]: {report.events:,} events replayed, state digest equal at all "
              f"{report.checkpoints:,} checkpoints ({report.full:,} of them over the whole "
              f"state), ledger invariants hold ({dt:.2f}s)")
    for asset, t in report.totals.items():
        out.print(f"  {asset}: minted {t['minted']:,}, burned {t['burned']:,}, "
                  f"in circulation {t['circulating']:,} (= minted − burned)")


@app.command()
@_store_errors
def proof(
    log: Path = typer.Argument(..., help="a sandbank log (SQLite file)"),
    entry: int | None = typer.Option(None, min=0, max=MAX_INT, help="inclusion proof for this entry (seq)"),
    from_size: int | None = typer.Option(None, "--from", min=0, max=MAX_INT,
                                            help="consistency proof from this tree size"),
    tick: int | None = typer.Option(None, min=0, max=MAX_INT, help="prove against this tick's checkpoint "
                                       "(default: the latest)"),
) -> None:
    """Print a proof bundle (JSON) that a third party checks with `sandbank check-proof`."""
    from sandbank.audit.proofs import BundleError, consistency_bundle, inclusion_bundle

    if (entry is None) == (from_size is None):
        _fail("give exactly one of --entry N or --from M")
    store = _open(log)
    try:
        if entry is not None:
            bundle = inclusion_bundle(store, entry, tick)
        else:
            assert from_size is not None
            bundle = consistency_bundle(store, from_size, tick)
    except (BundleError, StoreError) as e:
        _fail(str(e))
    finally:
        store.close()
    sys.stdout.write(json.dumps(bundle, indent=2) + "\n")


@app.command("check-proof")
def check_proof(
    bundle_file: Path = typer.Argument(..., help="a proof bundle from `sandbank proof` ('-': stdin)"),
    key: str | None = typer.Option(None, help="the operator's verifier key to trust "
                                      "(default: the one the bundle names)"),
) -> None:
    """Check a proof bundle offline, against a signed checkpoint."""
    from sandbank.audit.checkpoint import NoteError, parse_verifier_key
    from sandbank.audit.proofs import BundleError, check_bundle

    text = sys.stdin.read() if str(bundle_file) == "-" else None
    if text is None:
        if not bundle_file.is_file():
            _fail(f"no file at {bundle_file}" if not bundle_file.exists()
                  else f"{bundle_file} is not a file")
        try:
            text = bundle_file.read_text()
        except (OSError, UnicodeDecodeError) as e:
            _fail(f"cannot read {bundle_file}: {e}")
    try:
        bundle = json.loads(text)
    except json.JSONDecodeError as e:
        _fail(f"not JSON: {e}")
        raise
    pinned = _pinned(key)
    if pinned is None:
        try:
            pinned = parse_verifier_key(bundle.get("verifier_key", ""))
        except (NoteError, AttributeError) as e:
            _fail(f"bundle names no usable verifier key: {e}")
            raise
        err.print("[yellow]note:[/] trusting the key named in the bundle; pass --key to pin it")
    try:
        cp = check_bundle(bundle, *pinned)
    except BundleError as e:
        err.print(f"[bold red]INVALID[/]: {e}")
        raise typer.Exit(1) from None
    what = (f"entry {bundle['index']} is in" if bundle["type"] == "inclusion"
            else f"the tree of size {bundle['old_size']} is a prefix of")
    out.print(f"[green]valid[/]: {what} the log of {cp.origin!r} at tick {cp.tick} "
              f"(size {cp.size}, root {cp.root.hex()})")


@app.command()
@_store_errors
def provenance(
    log: Path = typer.Argument(..., help="a sandbank log (SQLite file)"),
    entry: int = typer.Option(..., min=0, max=MAX_INT, help="the event (seq) to explain"),
    limit: int = typer.Option(50, min=1, max=MAX_INT,
                              help="print at most this many events per direction"),
) -> None:
    """Show the causal ancestors and descendants of one event."""
    from sandbank.audit.provenance import Provenance

    store = _open(log)
    try:
        p = Provenance(store)
        up, down = p.ancestors(entry), p.descendants(entry)
    except KeyError as e:
        store.close()
        _fail(str(e.args[0]))
        raise
    for title, seqs in (("ancestors", up), ("descendants", down)):
        out.print(f"[bold]{title}[/] of entry {entry}: {len(seqs)}")
        for seq in seqs[:limit]:
            e = store.entry(seq)
            assert e is not None
            out.print(f"  {seq:>8} tick {e.tick:>6} {e.body.decode()[:160]}", highlight=False,
                      soft_wrap=True)
        if len(seqs) > limit:
            out.print(f"  ... {len(seqs) - limit} more (use --limit)")
    store.close()


@app.command()
@_store_errors
def inspect(
    log: Path = typer.Argument(..., help="a sandbank log (SQLite file)"),
    entry: int | None = typer.Option(None, min=0, max=MAX_INT, help="print this entry"),
    alert: int | None = typer.Option(None, min=1, max=MAX_INT,
                                     help="investigate this alert: its incident"),
    explain: bool = typer.Option(False, help="with --entry: investigate that event"),
    out_dir: Path | None = typer.Option(None, "--out", help="write incident.json (with "
                                        "inclusion proofs) and incident.html here"),
    fmt: str = typer.Option("table", "--format", help=FORMAT_HELP + "; an incident has no "
                            "csv form"),
) -> None:
    """Summarise a log (header, events by kind, alerts), print one entry, or reconstruct the
    incident behind an alert or an event (causal graph, root causes, money flows, proofs)."""
    _check_format(fmt)
    if fmt == "csv" and (alert is not None or explain):
        _fail("an incident has no csv form: --format table, md or json")
    store = _open(log)
    if alert is not None or explain:
        from sandbank.oversight.forensics import IncidentError, investigate, render_html, render_text

        if explain and entry is None:
            store.close()
            _fail("--explain needs --entry N")
        try:
            inc = investigate(store, alert=alert, entry=None if alert is not None else entry,
                              proofs=out_dir is not None)
        except IncidentError as e:
            store.close()
            _fail(str(e))
            raise
        store.close()
        shown = out if fmt == "table" else err
        if fmt == "json":
            sys.stdout.write(json.dumps(inc.to_json(), indent=1) + "\n")
        elif fmt == "md":
            sys.stdout.write(f"```text\n{render_text(inc)}\n```\n")
        else:
            out.print(render_text(inc), highlight=False, markup=False)
        if out_dir is not None:
            if out_dir.exists() and not out_dir.is_dir():
                _fail(f"--out {out_dir} is a file, not a folder")
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "incident.json").write_text(json.dumps(inc.to_json(), indent=1) + "\n")
            (out_dir / "incident.html").write_text(render_html(inc))
            shown.print(f"incident: {out_dir / 'incident.json'} (with {len(inc.proofs)} "
                        f"inclusion proofs) and {out_dir / 'incident.html'}", highlight=False)
        return
    if entry is not None:
        e = store.entry(entry)
        store.close()
        if e is None:
            _fail(f"no entry {entry}")
        assert e is not None
        sys.stdout.write(e.body.decode() + "\n")
        return
    header = store.entry(0)
    kinds = store.kind_counts()
    last = store.last_checkpoint()
    store.close()
    if header is None or last is None:
        _fail("the log is empty", 1)
    assert header is not None and last is not None
    try:
        h = json.loads(header.body)
        h["origin"], h["seed"], h["version"], h["safeguards"].items()  # noqa: B018
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        _fail(f"entry 0 is not a run header ({type(e).__name__}); `sandbank verify` says "
              f"what is wrong with this log", 1)
        raise
    alerts: list[list] = []
    if any(kind == "alert" for kind, _ in kinds):
        store = _open(log)
        cap = 30 if fmt == "table" else None  # (the data formats: every alert, uncut)
        for e in store.entries():
            if e.kind == "alert" and (cap is None or len(alerts) < cap):
                d = json.loads(e.body)
                alerts.append([d["alert"], d["tick"], d["detector"], d["score"],
                               ",".join(map(str, d["subjects"] if cap is None
                                            else d["subjects"][:6])),
                               d["summary"] if cap is None else d["summary"][:80]])
        store.close()
    meta = {"origin": h["origin"], "seed": h["seed"], "sandbank": h["version"],
            "entries": last.size, "last tick": last.tick}
    safeguards = [[name, s["layer"], "yes" if s["enabled"] else "no"]
                  for name, s in h["safeguards"].items()]
    tables = [("safeguards", ["safeguard", "layer", "enabled"], safeguards),
              ("events", ["event kind", "count"], [[kind, n] for kind, n in kinds]),
              ("alerts", ["alert", "tick", "detector", "score", "subjects", "summary"], alerts)]
    if fmt != "table":
        _emit(fmt, tables, meta)
        return
    out.print(f"origin {h['origin']} · seed {h['seed']} · sandbank {h['version']} · "
              f"{last.size:,} entries · last tick {last.tick}", highlight=False, markup=False)
    t = Table("safeguard", "layer", "enabled")
    for name, layer, on in safeguards:
        t.add_row(escape(name), layer, "yes" if on == "yes" else "[red]no[/]")
    out.print(t)
    t = Table("event kind", "count")
    for kind, n in kinds:
        t.add_row(kind, f"{n:,}")
    out.print(t)
    if alerts:
        t = Table("alert", "tick", "detector", "score", "subjects", "summary", title="alerts")
        for row in alerts:
            t.add_row(*(escape(str(v)) for v in row))
        out.print(t)
        out.print(f"investigate one: sandbank inspect {log} --alert N [--out DIR]",
                  highlight=False, markup=False)


def _version(value: bool) -> None:
    if value:
        from sandbank.lab.runner import build_info

        info = build_info()
        out.print(f"sandbank {info['sandbank']}"
                  + (f" ({info['revision']})" if info["revision"] else ""), highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                       help="print the version and exit")) -> None:
    """sandbank: virtual agentic sandbox economies with a verifiable log."""


def _short_helps() -> None:
    """The command list shows each command's first sentence on one line (typer would show the
    whole first paragraph with the docstring's line breaks)."""
    import inspect
    import re

    for c in app.registered_commands:
        if c.short_help is None:
            text = inspect.cleandoc(c.help or (c.callback.__doc__ if c.callback else "") or "")
            first = " ".join(text.split("\n\n")[0].split())
            c.short_help = re.split(r"(?<=[A-Za-z0-9)][.?!])\s(?=[A-Z(`])", first, maxsplit=1)[0]


_short_helps()


def main() -> None:
    from sandbank.extras import hint

    try:
        app(standalone_mode=True)
    except ModuleNotFoundError as e:  # an optional part that is not installed: one line
        line = hint(e.name, "this command")
        if line is None:
            raise
        err.print(f"[bold red]error:[/] {escape(line)}", highlight=False)
        raise SystemExit(2) from None
    except StoreError as e:
        err.print(f"[bold red]error:[/] {e}")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
