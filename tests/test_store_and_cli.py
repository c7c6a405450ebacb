import sqlite3

import pytest
from typer.testing import CliRunner

from sandbank.cli import app
from sandbank.store.base import Entry, StoredCheckpoint
from sandbank.store.sqlite import SQLiteStore

runner = CliRunner()


def test_a_tick_is_written_all_or_nothing():
    s = SQLiteStore(":memory:")
    cp = StoredCheckpoint(1, 1, b"r" * 32, b"s" * 32, "note")
    s.append_tick([Entry(0, 1, "x", b"{}", b"h" * 32)], [], cp)
    with pytest.raises(sqlite3.IntegrityError):  # duplicate checkpoint tick: whole tick refused
        s.append_tick([Entry(1, 1, "x", b"{}", b"h" * 32)], [(8, 0, b"n" * 32)], cp)
    assert s.entry_count() == 1
    assert s.nodes(8, 0, 0) == []
    assert [c.tick for c in s.checkpoints()] == [1]


def test_demo_is_the_main_job_and_reports_what_happened(tmp_path):
    out = tmp_path / "runs" / "demo"
    res = runner.invoke(app, ["demo", "--out", str(out), "--ticks", "30"])
    assert res.exit_code == 0, res.output
    text = res.output.replace("\n", "")
    for part in ("verified: True", "replay: ok", "final root", "tasks_passed", "report:",
                 str(out / "report.html")):
        assert part in text, part
    assert (out / "report.html").is_file() and (out / "log.db").is_file()
    res = runner.invoke(app, ["demo", "--out", str(out), "--ticks", "30"])
    assert res.exit_code == 2 and "--overwrite" in res.output  # never silently replaced
    log = str(out / "log.db")
    res = runner.invoke(app, ["inspect", log])
    assert res.exit_code == 0 and "run_started" in res.output and "identity" in res.output
    res = runner.invoke(app, ["inspect", log, "--entry", "0"])
    assert '"kind":"run_started"' in res.output


def test_demo_refuses_nonsense_arguments(tmp_path):
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "--ticks", "0"])
    assert res.exit_code == 2 and "ticks" in res.output
