"""The run's replay check on the second core, beside the running economy (issue 18).

A lab run ends by replaying its whole log: every signed state digest checked, the replayed
state compared with the live one part by part, and the run's event and trade tables built
on the way (`runner._check_live_state`, `tables.LogTables`). In one process that walk came
after the last tick and took about a third of the run. Here a second process
(`python -m sandbank.lab.beside`: it shares nothing with the kernel's process but the log
file, which it opens read-only) follows the log as each tick commits (`audit/follow.py`),
so when the last tick is written only its tail is left, and the parent verifies the log
meanwhile. (A plain subprocess, not `multiprocessing`: spawning re-imports the caller's
main module, which a script without a `__main__` guard does not survive.)

What it returns is what the in-process check compares: the replayed state's fingerprint per
part at the last tick, or the replay's problem. The parent decides; on any disagreement, or
if the side process fails for any reason (a mechanism that cannot be sent to another
process, say), the parent runs the in-process check, which names where states differ. So
the side process can make a run faster, never less checked.

Used when there is a second core and the run is large enough to gain (`AUTO_MIN`
agent-ticks; the process costs about a second to start); `SANDBANK_REPLAY=inline|beside`
forces a mode.

Protocol: the parent writes the pickled mechanisms (or nothing: the standard economy's,
imported there) to the child's stdin, length first, then closes stdin when the run's last
tick is written; the child writes one pickled answer to stdout.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

AUTO_MIN = 20_000  # agents × ticks from which the side process pays for its start


def wanted(agents: int, ticks: int) -> bool:
    """Whether this run's replay goes beside it (`SANDBANK_REPLAY`, else by size and cores)."""
    mode = os.environ.get("SANDBANK_REPLAY", "auto")
    if mode == "inline":
        return False
    if mode == "beside":
        return True
    return (os.cpu_count() or 1) >= 2 and agents * ticks >= AUTO_MIN


class Beside:
    """The side process of one run: started here; `finish()` once the last tick is
    written, then `result()`; `stop()` and `discard()` for a failed run."""

    def __init__(self, path: Path, out: Path, mechanisms: tuple[Any, ...]) -> None:
        from sandbank.economy import STANDARD

        self.out = Path(out)
        self.proc: Any = None
        self.error = ""  # why the side process could not check (the parent did instead)
        try:  # (the standard economy's are imported there; others must travel)
            blob = b"" if tuple(mechanisms) == tuple(STANDARD) else pickle.dumps(mechanisms)
        except Exception as e:
            self.error = f"cannot send the mechanisms to another process: {e}"
            return
        import sandbank

        env = dict(os.environ)
        root = str(Path(sandbank.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sandbank.lab.beside", str(path), str(out)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=env)
            self.proc.stdin.write(struct.pack(">Q", len(blob)) + blob)
            self.proc.stdin.flush()
        except OSError as e:
            self.error = f"cannot start the side process: {e}"
            self.stop()

    def finish(self) -> None:
        """The last tick is written: the side process reads the tail, then ends."""
        if self.proc is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def result(self) -> tuple[int, dict[str, bytes]] | str | None:
        """(last tick, fingerprints) of the replayed state; a problem the replay found (a
        string); or None when the side process failed and the parent must check alone."""
        if self.proc is None:
            return None
        self.finish()
        try:
            msg = pickle.loads(self.proc.stdout.read())  # (our own child's: trusted)
            self.proc.wait(timeout=30)
        except Exception as e:
            self.error = f"the side process gave no answer ({type(e).__name__})"
            return None
        finally:
            self.stop()
        if msg[0] == "ok":
            return msg[1], msg[2]
        if msg[0] == "problem":
            return str(msg[1])
        self.error = str(msg[1])
        return None

    def stop(self) -> None:
        """End the side process (at once, for a failed run)."""
        if self.proc is None:
            return
        self.finish()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc = None

    def discard(self) -> None:
        """Remove what the side process wrote (its check is redone in process, or the run
        failed)."""
        for name in ("events.parquet", "trades.parquet"):
            (self.out / name).unlink(missing_ok=True)


def _main(path: str, out: str) -> int:
    """The side process: follow the log, replay it with the tables on the way, answer."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        (n,) = struct.unpack(">Q", stdin.read(8))
        blob = stdin.read(n) if n else b""
        finished = threading.Event()

        def wait_for_the_end() -> None:  # stdin closes when the last tick is written
            stdin.read()
            finished.set()

        threading.Thread(target=wait_for_the_end, daemon=True).start()
        from sandbank.audit.follow import Following
        from sandbank.audit.replay import replay_log
        from sandbank.economy import STANDARD
        from sandbank.lab.tables import TRADE_SCHEMA, LogTables, write_rows
        from sandbank.store.sqlite import SQLiteStore

        store = SQLiteStore(path, readonly=True)
        tables = LogTables(Path(out))
        try:
            rp = replay_log(Following(store, finished.is_set),
                            pickle.loads(blob) if blob else STANDARD, on_entry=tables.add)
            last = store.last_checkpoint()
            if not rp.ok or rp.state is None or last is None:
                tables.abandon()
                answer: tuple[Any, ...] = ("problem", rp.problem or "no checkpoint")
            else:
                write_rows(tables.finish(), Path(out) / "trades.parquet", TRADE_SCHEMA)
                answer = ("ok", last.tick, rp.state.fingerprints(last.tick))
        finally:
            store.close()
    except BaseException as e:  # (answered; the parent checks in process instead)
        answer = ("error", f"{type(e).__name__}: {e}")
    stdout.write(pickle.dumps(answer))
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1], sys.argv[2]))
