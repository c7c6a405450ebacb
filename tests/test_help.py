"""The help a user reads: every command's --help runs, cites no internal checklist numbers,
names only commands that exist, and the command list gives each a one-line summary."""

import re

from typer.testing import CliRunner

from sandbank.cli import app


def commands() -> set[str]:
    import typer.main

    return set(typer.main.get_command(app).commands)


def test_help_names_only_commands_that_exist_and_no_checklist_numbers():
    names = commands()
    assert {"run", "demo", "keygen", "admit-owner", "mcp", "inspect", "scorecard"} <= names
    top = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert top.exit_code == 0
    for name in sorted(names):
        r = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert r.exit_code == 0, (name, r.output)
        text = r.output + top.output
        assert not re.search(r"checklist\s*\d|§\s*\d|issue \d", text, re.I), name
        for cited in re.findall(r"`sandbank ([a-z][a-z-]*)", text):
            assert cited in names, f"{name}'s help names `sandbank {cited}`, which is no command"


def test_the_command_list_gives_one_sentence_each():
    import typer.main

    for name, c in typer.main.get_command(app).commands.items():
        short = c.short_help or ""
        assert short and "\n" not in short and short[-1] in ".?!", (name, short)
    r = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "250"})
    assert "Secrets come from" not in r.output  # the first sentence only


def test_each_extra_installs_the_modules_sandbank_names_for_it():
    """extras.py's map (the one-line hint for a missing module) agrees with pyproject.toml:
    every module an extra is said to bring comes from a distribution that extra lists."""
    import importlib.metadata as md
    import re
    import tomllib
    from pathlib import Path

    from sandbank.extras import EXTRAS

    extras = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    provides = md.packages_distributions()
    for extra, modules in EXTRAS.items():
        assert extra in extras, f"extras.py names an extra {extra!r} pyproject lacks"
        listed = {re.split(r"[\[<>=!~ ]", req, maxsplit=1)[0].lower().replace("_", "-")
                  for req in extras[extra]}
        for module in modules:
            dists = {d.lower().replace("_", "-") for d in provides.get(module, [])}
            assert dists & listed, f"{module} (extra {extra}) comes from {dists}, not {listed}"
