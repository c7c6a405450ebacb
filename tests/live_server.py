"""A real `sandbank serve` process on a free loopback port, for the tests that need one
(outside agent processes, MCP over stdio, the browser, the load test's smoke run)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
OPERATOR_TOKEN = "test-operator-token-0123"
OVERSEER_TOKEN = "test-overseer-token-4567"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, folder: Path, *args: str, tick: float = 0.2,
                 scenario: str | None = "live/market.yaml", db: str | None = None) -> None:
        self.folder = Path(folder)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = db or str(self.folder / "live.db")
        self.cmd = [sys.executable, "-m", "sandbank.cli", "serve", "--db", self.db,
                    "--key-file", str(self.folder / "operator.key"), "--port", str(self.port),
                    "--tick-seconds", str(tick), *args]
        if scenario:
            self.cmd += ["--scenario", str(ROOT / "scenarios" / scenario)]
        self.env = dict(os.environ, SANDBANK_OPERATOR_TOKEN=OPERATOR_TOKEN,
                        SANDBANK_OVERSEER_TOKEN=OVERSEER_TOKEN)
        self.proc: subprocess.Popen | None = None

    def start(self, wait: float = 60.0) -> LiveServer:
        if getattr(self, "log", None):  # a restart: the previous run's handle
            self.log.close()
        self.log = open(self.folder / "server.out", "ab")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {(self.folder / 'server.out').read_text()}")
            try:
                st = httpx.get(f"{self.url}/v1/status", timeout=1).json()
                if st["console"]:  # the console overseer is admitted: ready
                    return self
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the server did not come up")

    def wait_tick(self, tick: int, wait: float = 30.0) -> int:
        """Wait until the economy has reached `tick`; the tick it is at."""
        deadline = time.monotonic() + wait
        while True:
            now = httpx.get(f"{self.url}/v1/status", timeout=5).json()["tick"]
            if now >= tick or time.monotonic() > deadline:
                return now
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "log", None):
            self.log.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def owner(self, name: str) -> tuple[int, str]:
        """Admit an owner (as the operator); its id and the path of its key file."""
        from sandbank.client import Client
        from sandbank.identity.keys import SigningKey

        path = self.folder / f"owner-{name}.key"
        key = SigningKey.load(path)
        oid = Client(self.url).admit_owner(OPERATOR_TOKEN, name, key, "test owner")
        return oid, str(path)
