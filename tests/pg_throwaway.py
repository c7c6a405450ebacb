"""A throw-away PostgreSQL server for the store tests, when the test command is run without
SANDBANK_TEST_PG (a contributor's `make test`): if PostgreSQL's server binaries are
installed, a cluster is made in a temporary folder, listens on a Unix socket only, and is
stopped and deleted when the tests end. Without them, the PostgreSQL tests are skipped and
the summary says so loudly, with how to run them.

SANDBANK_TEST_PG set (`.ci/run` sets it) names the server to use; set to the empty string,
the PostgreSQL tests are skipped on purpose (mutation testing does that).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

HOW = ("install PostgreSQL's server (Debian: apt install postgresql) and run the test command "
       "again, or point SANDBANK_TEST_PG at a server: postgresql://user:pass@host:port/db "
       "(.ci/run does both)")


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Throwaway:
    def __init__(self) -> None:
        self.dir: Path | None = None
        self.pg_ctl: str | None = None
        self.as_user: list[str] = []
        self.problem = ""

    def start(self) -> str | None:
        """The DSN of a fresh server, or None (and `problem` says why)."""
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if not initdb or not pg_ctl:
            self.problem = "PostgreSQL's server binaries (initdb, pg_ctl) are not installed"
            return None
        self.dir = Path(tempfile.mkdtemp(prefix="sandbank-pg-"))
        if os.geteuid() == 0:  # initdb refuses to run as root: the cluster is postgres's
            runuser = shutil.which("runuser")
            try:
                import pwd

                pw = pwd.getpwnam("postgres")
            except KeyError:
                self.problem = "running as root and there is no postgres user to own a cluster"
                return None
            if not runuser:
                self.problem = "running as root without runuser to start a cluster as postgres"
                return None
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = [runuser, "-u", "postgres", "--"]
        data, port = self.dir / "data", _free_port()
        try:
            subprocess.run([*self.as_user, initdb, "-D", str(data), "-A", "trust", "-U",
                            "sandbank", "--no-sync"], check=True, capture_output=True,
                           timeout=120)
            subprocess.run([*self.as_user, pg_ctl, "-D", str(data), "-w", "-t", "60", "-l",
                            str(self.dir / "log"), "-o",
                            f"-p {port} -k {self.dir} -c listen_addresses='' -c fsync=off",
                            "start"], check=True, capture_output=True, timeout=120)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            err = getattr(e, "stderr", b"") or b""
            self.problem = f"a throw-away cluster did not start: {err.decode()[-300:] or e}"
            return None
        self.pg_ctl = pg_ctl
        return f"postgresql://sandbank@/postgres?host={self.dir}&port={port}"

    def stop(self) -> None:
        if self.pg_ctl and self.dir:
            subprocess.run([*self.as_user, self.pg_ctl, "-D", str(self.dir / "data"), "-m",
                            "immediate", "stop"], capture_output=True, timeout=60)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
