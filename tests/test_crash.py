"""Kill the writer with SIGKILL mid-run: at most the tick being written is lost, and the
log still verifies, replays, and can be continued."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sandbank.audit.replay import replay_log
from sandbank.audit.verify import verify_log
from sandbank.store.sqlite import SQLiteStore

HERE = Path(__file__).parent


def check(path):
    s = SQLiteStore(path, readonly=True, create=False)
    v, r, last = verify_log(s), replay_log(s), s.last_checkpoint()
    s.close()
    assert v.ok, v.problem
    assert r.ok, r.problem
    return last.tick


def test_sigkill_mid_run_loses_at_most_the_open_tick_and_the_log_can_continue(tmp_path):
    path = tmp_path / "crash.db"
    proc = subprocess.Popen([sys.executable, str(HERE / "crash_writer.py"), str(path), "new",
                             str(HERE)], stdout=subprocess.PIPE, text=True)
    committed = 0
    deadline = time.monotonic() + 120
    while committed < 8 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("committed"):
            committed = int(line.split()[1])
    time.sleep(0.05)  # land inside a later tick
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert committed >= 8, "the writer never got going"
    last = check(path)
    assert last >= committed  # nothing acknowledged was lost

    out = subprocess.run([sys.executable, str(HERE / "crash_writer.py"), str(path), "resume",
                          str(HERE), str(last + 3)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert check(path) == last + 3
