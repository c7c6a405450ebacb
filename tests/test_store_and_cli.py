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
    out = tmp_path / "runs" / "demo.db"
    res = runner.invoke(app, ["demo", "--out", str(out), "--ticks", "25", "--agents", "8"])
    assert res.exit_code == 0, res.output
    for text in ("actions rejected", "verify: ok", "replay: ok", "final root", str(out)):
        assert text in res.output.replace("\n", ""), text
    assert out.exists()
    res = runner.invoke(app, ["demo", "--out", str(out), "--ticks", "25", "--agents", "8"])
    assert res.exit_code == 2 and "--overwrite" in res.output  # never silently replaced
    res = runner.invoke(app, ["inspect", str(out)])
    assert res.exit_code == 0 and "run_started" in res.output and "identity" in res.output
    res = runner.invoke(app, ["inspect", str(out), "--entry", "0"])
    assert '"kind":"run_started"' in res.output


def test_demo_refuses_nonsense_arguments(tmp_path):
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "d.db"), "--agents", "3"])
    assert res.exit_code == 2 and "agents" in res.output
