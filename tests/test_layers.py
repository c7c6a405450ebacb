"""The layering is checked by a tool, not kept by convention (DESIGN.md): import-linter's
contracts in pyproject.toml (run by `make test`), and no import circle between modules.
Each check is first shown to fail on a planted violation in a copy of the source."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def planted(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of the source tree with `line` added to `module` (a path under sandbank/)."""
    shutil.copytree(ROOT / "src" / "sandbank", tmp_path / "src" / "sandbank",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "sandbank" / module
    target.write_text(target.read_text() + f"\n{line}\n")
    return tmp_path


def lint(where: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(where / "src")}
    return subprocess.run([str(LINT), "--no-cache"], cwd=where, env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_import_contracts_hold_and_fail_on_an_upward_import(tmp_path):
    ok = lint(ROOT)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2 kept, 0 broken" in ok.stdout
    bad = lint(planted(tmp_path, "kernel/state.py",
                       "from sandbank.markets import exchange  # noqa: E402,F401"))
    assert bad.returncode == 1
    assert "sandbank.kernel.state -> sandbank.markets.exchange" in bad.stdout, bad.stdout


def circles(src: Path) -> list[list[str]]:
    """Strongly connected sets of more than one module of the package under `src`, by
    their runtime imports (imports under TYPE_CHECKING are for annotations only and never
    run). In a fresh interpreter: this one has imported the package from elsewhere."""
    out = subprocess.run(
        [sys.executable, "-c", "import json, tests.test_layers as t; "
                               "print(json.dumps(t._circles()))"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}"},
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _circles() -> list[list[str]]:
    g = grimp.build_graph("sandbank", cache_dir=None, exclude_type_checking_imports=True)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.find_modules_directly_imported_by(v)):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for m in sorted(g.modules):
        if m not in index:
            visit(m)
    return found


def test_no_module_imports_itself_through_others(tmp_path):
    assert circles(ROOT / "src") == []
    where = planted(tmp_path, "lab/scenario.py",
                    "from sandbank.lab.redteam import judge  # noqa: E402,F401")
    assert circles(where / "src") == [["sandbank.lab.generate", "sandbank.lab.redteam",
                                       "sandbank.lab.runner", "sandbank.lab.scenario",
                                       "sandbank.lab.sweep"]]
