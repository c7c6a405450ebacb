"""Agent hosts, from the runner's side: contained processes (or Ray actors) that run shards
of agents, fed observations as data and read back actions as data (agents/host.py is the
program on the other side).

Containment of a process host, as strong as the machine allows, each measure reported
(`Containment.measures`) and none silently dropped:
- **network**: a network namespace of its own with nothing in it (bubblewrap's
  `--unshare-all`, else `unshare --net --map-root-user`), unless the scenario allows it;
- **filesystem**: an empty root with read-only views of only the code it needs (the Python
  installation, its site-packages, sandbank's source, the user's policy packages and `--path`
  folders), a private size-limited working directory, no view of the run folder (its key
  file), of the log, or of anything else (bubblewrap); without bubblewrap only a private
  working directory, the rest of the disk stays readable;
- **identity**: an unprivileged user inside its own user namespace (bubblewrap);
- **limits**: address space, CPU seconds, open files, file size, set in the host before any
  user code is imported (agents/host.py);
- **time**: a per-decision deadline in the host, and the runner's watchdog, which kills a
  host that has answered nothing for longer than the deadline (plus a grace second).
- **environment**: empty but for what Python needs (no API keys, no tokens).

Ray hosts (`backend: ray`) are actors: Ray's workers need the network and share Ray's
object store, so they are *not* contained, and Ray unpickles what an actor returns; the
report says so. Use them to scale trusted policies across machines.

Why hand-written: the protocol is a few length-prefixed frames over two pipes, and the
runner must read many hosts at once with a watchdog per host (selectors), never unpickle
anything a host sends, and bound every frame; no library does exactly that.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

from sandbank.agents.host import HEADER

MAX_ANSWER = 8 << 20  # bytes in one frame from a host; more and the host is killed
# bytes of answers a host may send in a tick: 1 MB and 32 KB per agent it was asked about
# (an honest answer is a few hundred bytes; the runner parses all of it, and a parsed
# frame takes many times its size in memory); more and the host is killed
TICK_BYTES, AGENT_BYTES = 1 << 20, 32 << 10
MAX_FRAMES = 10_000  # frames read from a host and not yet taken; more and the host is killed
MAX_ACTIONS = 1_000  # actions in one agent's decision; more is an error of that agent
GRACE = 1.0  # seconds beyond the deadline before the watchdog kills a silent host


class HostFailure(Exception):
    """A host did not answer as the protocol says (crashed, killed, hung, garbled)."""


class AgentFailure(Exception):
    """What became of an agent's decision in a host, other than actions: its exception
    (`kind` is the exception's type name), a missed deadline, or its host being down."""

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(message or kind)
        self.kind = kind


@dataclass(frozen=True)
class HostSettings:
    """What a scenario's `agents` section (and the CLI) say about hosts."""

    hosts: int | None = None  # None: hosts only for policies not shipped with sandbank
    backend: str = "process"  # process | ray
    deadline: float = 10.0  # seconds per decision (0: none)
    memory_mb: int = 2048
    cpu_seconds: int = 3600
    open_files: int = 64
    file_mb: int = 64  # the private working directory's size, and the largest file
    network: bool = False  # let hosts reach the network (an LLM endpoint, say)
    paths: tuple[str, ...] = ()  # folders user policies are imported from (readable by hosts)
    require_containment: bool = False
    ray_address: str = ""  # "" local (or $RAY_ADDRESS); "auto" an existing cluster

    def limits(self) -> dict[str, int]:
        return {"memory_mb": self.memory_mb, "cpu_seconds": self.cpu_seconds,
                "open_files": self.open_files, "file_mb": self.file_mb}


# ------------------------------------------------------------------ containment


def code_roots() -> list[str]:
    """What a host must read to run Python and sandbank: the installation, every
    site-packages on the path, and the folder sandbank's package sits in."""
    import sandbank

    roots = {sys.base_prefix, sys.prefix, sys.exec_prefix,
             str(Path(sandbank.__file__).resolve().parents[1])}
    for p in sys.path:
        if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir():
            roots.add(p)
    real = {str(Path(r).resolve()) for r in roots if Path(r).exists()}
    return sorted(roots | real)


def locate(module: str, paths: Iterable[str]) -> str | None:
    """Where the top-level package (or module) of `module` lives, found the way `import`
    would from `paths` then the interpreter's path, without running any of it."""
    top = module.split(".", 1)[0]
    spec = PathFinder.find_spec(top, [*paths, *sys.path[1:]])
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return str(Path(next(iter(spec.submodule_search_locations))).resolve())
    return str(Path(spec.origin).resolve()) if spec.origin else None


def _bind_args(path: str) -> list[str]:
    return ["--ro-bind", path, path]


@dataclass
class Containment:
    """How this machine can contain a host: probed once per process."""

    bwrap: str | None
    unshare: str | None

    def argv(self, settings: HostSettings, binds: Iterable[str]) -> list[str]:
        """The command that runs a host (agents/host.py) under this containment."""
        # -P: no working directory on the path; -s: no user site-packages
        program = [sys.executable, "-P", "-s", "-m", "sandbank.agents.host",
                   json.dumps(settings.limits())]
        if self.bwrap:
            args = [self.bwrap, "--unshare-all", "--die-with-parent", "--new-session",
                    "--uid", "65534", "--gid", "65534"]
            if settings.network:
                args.append("--share-net")
            for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/usr"):
                p = Path(top)
                if p.is_symlink():
                    args += ["--symlink", os.readlink(p), top]
                elif p.is_dir():
                    args += _bind_args(top)
            for etc in ("/etc/ld.so.cache", "/etc/localtime"):
                args += ["--ro-bind-try", etc, etc]
            if settings.network:
                for etc in ("/etc/resolv.conf", "/etc/hosts", "/etc/ssl", "/etc/nsswitch.conf"):
                    args += ["--ro-bind-try", etc, etc]
            for path in sorted(set(code_roots()) | set(binds)):
                if not path.startswith("/usr/"):
                    args += _bind_args(path)
            args += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
                     "--size", str(settings.file_mb << 20), "--tmpfs", "/sandbox",
                     "--chdir", "/sandbox", "--remount-ro", "/"]
            return args + program
        if self.unshare and not settings.network:
            return [self.unshare, "--net", "--pid", "--fork", "--kill-child", "--mount",
                    "--mount-proc", "--map-root-user", *program]
        return program

    def cwd(self, workdir: str) -> str | None:
        return None if self.bwrap else workdir

    def measures(self, settings: HostSettings, backend: str) -> dict[str, str]:
        """What contains a host of this run: one line per measure, 'NOT contained: ...'
        where the machine (or the scenario) leaves it open."""
        if backend == "ray":
            return {"network": "NOT contained: Ray actors need the network",
                    "filesystem": "NOT contained: Ray actors see the worker's disk",
                    "limits": "NOT set: Ray manages its workers' resources",
                    "deadline": f"{settings.deadline:g} s per shard (Ray's get timeout)",
                    "channel": "NOT contained: Ray unpickles what an actor returns"}
        net = ("NOT contained: allowed by the scenario (agents.network)" if settings.network
               else "own empty network namespace (bubblewrap)" if self.bwrap
               else "own empty network namespace (unshare)" if self.unshare
               else "NOT contained: no bubblewrap or unshare on this machine")
        fs = ("empty root, read-only code, private working directory (bubblewrap)"
              if self.bwrap else "NOT contained: private working directory only, the disk "
              "stays readable (install bubblewrap)")
        isolated = self.bwrap or (self.unshare and not settings.network)
        how = "bubblewrap" if self.bwrap else "unshare"
        return {"network": net, "filesystem": fs,
                "identity": ("unprivileged user in its own user namespace (bubblewrap)"
                             if self.bwrap else "own user namespace (unshare)" if isolated
                             else f"NOT contained: runs as the runner's user (uid {os.getuid()})"),
                "processes": (f"own process namespace ({how}): the runner is out of sight"
                              if isolated else "NOT contained: it can read the runner's memory "
                              "and environment through /proc and signal it"),
                "limits": (f"memory {settings.memory_mb} MB, CPU {settings.cpu_seconds} s, "
                           f"{settings.open_files} open files, files {settings.file_mb} MB"),
                "deadline": (f"{settings.deadline:g} s per decision, watchdog kills a host "
                             f"silent for {settings.deadline + GRACE:g} s"
                             if settings.deadline else "NOT set: no decision deadline"),
                "environment": ("empty (no variables of the runner's)" if isolated else
                                "NOT contained: empty, but the runner's is readable in /proc"),
                "channel": "actions back as JSON only, never unpickled"}


def _works(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.cache
def containment() -> Containment:
    """Probe what this machine offers (once per process)."""
    bwrap = shutil.which("bwrap")
    if bwrap and not _works([bwrap, "--unshare-all", "--uid", "65534", "--gid", "65534",
                             "--ro-bind", "/", "/", "--", "/bin/true"]):
        bwrap = None
    unshare = shutil.which("unshare")
    if unshare and not _works([unshare, "--net", "--pid", "--fork", "--kill-child", "--mount",
                               "--mount-proc", "--map-root-user", "/bin/true"]):
        unshare = None
    return Containment(bwrap, unshare)


def uncontained(measures: dict[str, str]) -> list[str]:
    return [f"{k}: {v}" for k, v in measures.items() if "NOT " in v]


def _env() -> dict[str, str]:
    """A host's whole environment. PYTHONPATH is only the folder the runner's sandbank came
    from (a source checkout on PYTHONPATH, say: the host runs the same code); the user's
    folders go on the import path after the standard library and site-packages, once the
    limits are set (agents/host.py), so a user's `resource.py` or `json.py` shadows
    nothing."""
    import sandbank

    env = {"PATH": "/usr/bin:/bin", "HOME": "/sandbox", "TMPDIR": "/sandbox",
           "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    home = Path(sandbank.__file__).resolve().parents[1]
    if home.name not in ("site-packages", "dist-packages"):  # (those are on the path anyway)
        env["PYTHONPATH"] = str(home)
    return env


# ------------------------------------------------------------------ process hosts


class ProcessHost:
    """One host process and its pipes."""

    def __init__(self, settings: HostSettings, binds: Iterable[str]) -> None:
        """`binds`: what the host must read beyond Python and sandbank (the user's policy
        packages and --path folders); nothing else of the disk is in its view."""
        c = containment()
        self.workdir = tempfile.mkdtemp(prefix="sandbank-host-")
        self.errfile = tempfile.TemporaryFile()
        env = _env()
        if not c.bwrap:
            env["HOME"] = env["TMPDIR"] = self.workdir
        self.proc = subprocess.Popen(
            c.argv(settings, list(binds)), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.errfile, env=env, cwd=c.cwd(self.workdir),
            close_fds=True, start_new_session=True)
        self.buffer = bytearray()
        self.frames: list[Any] = []  # parsed, not yet taken (some read while sending)
        self.budget = TICK_BYTES  # bytes it may still send this tick (HostPool.begin)
        self.down: str | None = None

    def send(self, request: Any, timeout: float = 60.0) -> None:
        """Write a request; a host that does not take it within `timeout` seconds (it
        stopped reading) is a failure, never a runner blocked for good. What the host
        answers meanwhile is read and kept (`frames`): a host blocked writing its answers
        to earlier batches reads no more, so not reading would deadlock both."""
        body = pickle.dumps(request, protocol=5)
        data = memoryview(HEADER.pack(len(body)) + body)
        assert self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        os.set_blocking(fd, False)
        end = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_WRITE)
            sel.register(self.fileno(), selectors.EVENT_READ)
            while data:
                try:
                    data = data[os.write(fd, data[:1 << 20]):]
                    continue
                except BlockingIOError:
                    pass
                except OSError as e:
                    raise HostFailure(f"the host does not take requests "
                                      f"({self.exit_reason() or e})") from None
                left = end - time.monotonic()
                ready = sel.select(left) if left > 0 else []
                if not ready:
                    raise HostFailure(f"the host took no request for {timeout:g} s")
                if any(key.fd == self.fileno() for key, _ in ready):
                    self._read()

    def fileno(self) -> int:
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def _read(self) -> None:
        """Read what is there; parse the whole frames it completes into `frames`."""
        chunk = os.read(self.fileno(), 1 << 20)
        if not chunk:
            raise HostFailure(f"the host exited ({self.exit_reason()})")
        self.budget -= len(chunk)
        if self.budget < 0:
            raise HostFailure("the host sent more bytes than its agents' answers may take "
                              "(1 MB and 32 KB per agent a tick)")
        self.buffer += chunk
        start = 0
        while len(self.buffer) - start >= HEADER.size:
            (n,) = HEADER.unpack_from(self.buffer, start)
            if n > MAX_ANSWER:
                raise HostFailure(f"the host sent a frame of {n:,} bytes (limit {MAX_ANSWER:,})")
            if len(self.buffer) - start < HEADER.size + n:
                break
            body = bytes(self.buffer[start + HEADER.size:start + HEADER.size + n])
            start += HEADER.size + n
            try:
                self.frames.append(json.loads(body))
            except (ValueError, RecursionError):  # (nested past the decoder's depth)
                raise HostFailure("the host sent a frame that is not JSON") from None
            except MemoryError:
                raise HostFailure("the host sent a frame the runner has no memory to read") from None
            if len(self.frames) > MAX_FRAMES:
                raise HostFailure(f"the host sent more than {MAX_FRAMES:,} frames unasked")
        del self.buffer[:start]

    def feed(self) -> list[Any]:
        """Read what is there; every whole frame not yet taken, parsed."""
        self._read()
        return self.taken()

    def taken(self) -> list[Any]:
        """The frames read and not yet taken (e.g. while a request was being sent)."""
        out, self.frames = self.frames, []
        return out

    def request(self, request: Any, timeout: float) -> Any:
        """Send one request (None: it was sent) and wait for its one answer."""
        if request is not None:
            self.send(request)
        sel = selectors.DefaultSelector()
        sel.register(self.fileno(), selectors.EVENT_READ)
        end = time.monotonic() + timeout
        try:
            while not self.frames:
                left = end - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise HostFailure(f"the host did not answer within {timeout:g} s")
                self._read()
            return self.frames.pop(0)
        finally:
            sel.close()

    def exit_reason(self) -> str:
        code = self.proc.poll()
        if code is None:
            return ""
        import signal

        why = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        self.errfile.seek(0, os.SEEK_END)
        size = self.errfile.tell()
        self.errfile.seek(max(0, size - 600))
        tail = self.errfile.read().decode("utf-8", "replace").strip().splitlines()
        return why + (f"; its last words: {tail[-1][:200]}" if tail else "")

    def kill(self, why: str) -> None:
        if self.down is None:
            self.down = why
        self._kill()

    def _kill(self) -> None:
        """The host and whatever it started (its own session: start_new_session)."""
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(("stop",), timeout=2)
                self.proc.wait(timeout=2)
            except (HostFailure, subprocess.TimeoutExpired):
                pass
        self._kill()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:  # unflushed bytes to a dead host
                    pass
        self.errfile.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


@functools.lru_cache(maxsize=256)
def describe(spec: str, paths: tuple[str, ...], binds: tuple[str, ...]) -> dict[str, Any]:
    """What an outside policy declares (its parameters and their defaults), asked of a
    contained host, so the runner never imports the user's code itself."""
    host = ProcessHost(HostSettings(deadline=30, cpu_seconds=60), binds)
    try:
        answer = host.request(("describe", spec, paths), timeout=60)
        return answer if isinstance(answer, dict) else {
            "error": f"cannot load policy {spec!r}: its host's answer is not a mapping"}
    except HostFailure as e:
        return {"error": f"cannot load policy {spec!r}: {e}"}
    finally:
        host.close()


# ------------------------------------------------------------------ ray hosts


_RAY_ACTOR: Any = None


def ray_init(address: str = "") -> Any:
    try:
        import ray
    except ImportError:
        raise HostFailure("backend ray needs the ray extra: pip install 'sandbank[ray]'") from None
    if not ray.is_initialized():
        if address or os.environ.get("RAY_ADDRESS"):
            ray.init(address=address or None, ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False,
                     ignore_reinit_error=True, log_to_driver=False)
    return ray


def _ray_actor(ray: Any) -> Any:
    global _RAY_ACTOR
    if _RAY_ACTOR is None:
        @ray.remote(num_cpus=1)
        class RayAgentHost:
            def __init__(self) -> None:
                from sandbank.agents.host import HostCore

                self.core = HostCore()

            def init(self, blob: bytes) -> bytes:
                from sandbank.agents.host import add_paths

                setup = pickle.loads(blob)
                add_paths(setup.get("paths", ()))
                return json.dumps(self.core.init(setup)).encode()

            def act(self, blob: bytes) -> bytes:
                answers: list[Any] = []
                self.core.act(pickle.loads(blob), answers.append)
                return json.dumps({"answers": answers, "done": len(answers)}).encode()

        _RAY_ACTOR = RayAgentHost
    return _RAY_ACTOR


class RayHost:
    def __init__(self, settings: HostSettings) -> None:
        self.ray = ray_init(settings.ray_address)
        self.actor = _ray_actor(self.ray).remote()
        self.down: str | None = None

    def request_init(self, setup: dict[str, Any], timeout: float) -> Any:
        try:
            return json.loads(self.ray.get(self.actor.init.remote(pickle.dumps(setup)),
                                           timeout=timeout))
        except Exception as e:  # noqa: BLE001 (Ray raises its own kinds)
            raise HostFailure(f"the Ray host failed to start its agents: {type(e).__name__}: {e}") from None

    def kill(self, why: str) -> None:
        if self.down is None:
            self.down = why
        self.close()

    def close(self) -> None:
        try:
            self.ray.kill(self.actor)
        except Exception:  # noqa: BLE001 (already gone)
            pass


# ------------------------------------------------------------------ the pool


@dataclass
class _Live:
    """A host's open business this tick: the agents it owes an answer, the batches it has
    not finished, when it last showed progress (Ray: the pending results)."""

    owed: set[int] = field(default_factory=set)
    requests: int = 0
    last: float = 0.0
    refs: list[Any] = field(default_factory=list)


@dataclass
class Shard:
    owner: str
    agents: list[tuple[int, str, dict[str, Any]]]  # (agent id, policy spec, params)


class HostPool:
    """The hosts of one run: start them, hand each tick's observations out, gather the
    decisions (from every host at once), and keep a host that failed down (its agents
    idle; the run goes on, and says so)."""

    def __init__(self, settings: HostSettings, shards: list[Shard], *, seed: int,
                 directory: Any, concurrency: int,
                 binds: Iterable[str] = (), paths: Iterable[str] = ()) -> None:
        """`binds`: what the hosts may read beyond Python and sandbank; `paths`: what they
        import user policies from (agents/loader.py PolicyRef)."""
        self.settings, self.shards = settings, shards
        self.hosts: list[Any] = []
        self.values: dict[int, dict[str, int]] = {}
        self.events: list[str] = []  # what went wrong with hosts, for the console and summary
        self.host_of: dict[int, int] = {}
        self._live: dict[int, _Live] = {}  # what each host was asked this tick
        self._out: dict[int, Any] | None = None  # this tick's decisions so far
        try:
            self._start(shards, tuple(binds), tuple(paths), seed, directory, concurrency)
        except BaseException:
            self.close()
            raise

    def _start(self, shards: list[Shard], binds: tuple[str, ...], paths: tuple[str, ...],
               seed: int, directory: Any, concurrency: int) -> None:
        settings = self.settings
        setups = [{"seed": seed, "deadline": settings.deadline, "concurrency": concurrency,
                   "directory": directory, "agents": shard.agents, "paths": paths}
                  for shard in shards]
        answers: list[Any] = []
        if settings.backend == "ray":
            for setup in setups:
                self.hosts.append(RayHost(settings))
                answers.append(self.hosts[-1].request_init(setup, timeout=120))
        else:  # start them all, then wait for each: they import and build in parallel
            self.hosts = [ProcessHost(settings, binds) for _ in shards]
            for host, setup in zip(self.hosts, setups, strict=True):
                try:
                    host.send(("init", setup))
                except HostFailure as e:
                    host.kill(str(e))
            for host in self.hosts:
                try:
                    answers.append(host.down and {"error": host.down}
                                   or host.request(None, timeout=120))
                except HostFailure as e:
                    answers.append({"error": str(e)})
        for i, (shard, answer) in enumerate(zip(shards, answers, strict=True)):
            if not isinstance(answer, dict) or "error" in answer:
                why = answer.get("error") if isinstance(answer, dict) else "not an answer"
                raise HostFailure(f"host {i} (owner {shard.owner}) could not start its agents: "
                                  f"{why}")
            for aid, *_ in shard.agents:
                self.host_of[aid] = i
            values = answer.get("values", {})
            for aid, v in values.items() if isinstance(values, dict) else ():
                if (aid.isascii() and aid.isdigit() and self.host_of.get(int(aid)) == i
                        and isinstance(v, dict) and v
                        and all(type(x) is int for x in v.values())):
                    self.values[int(aid)] = {str(a): x for a, x in v.items()}

    def decide(self, batches: dict[int, list[tuple[int, Any]]], tick: int) -> dict[int, Any]:
        """Each host's batch of (agent, observation) -> agent -> list of actions, or an
        AgentFailure. Every agent of a batch gets an entry."""
        for i, batch in batches.items():
            self.begin(i, batch, tick)
        return self.finish(tick)

    def begin(self, i: int, batch: list[tuple[int, Any]], tick: int) -> None:
        """Hand host `i` a batch of this tick (it starts deciding at once; a host may get
        several batches a tick, so it thinks while the runner builds the next)."""
        if self._out is None:  # the tick's first batch
            self._out, self._live = {}, {}
        host = self.hosts[i]
        if host.down is not None:
            for aid, _ in batch:
                self._out[aid] = AgentFailure("host down", host.down)
            return
        if i not in self._live and hasattr(host, "budget"):
            host.budget = TICK_BYTES
        live = self._live.setdefault(i, _Live())
        live.owed.update(aid for aid, _ in batch)
        if hasattr(host, "budget"):
            host.budget += AGENT_BYTES * len(batch)
        if self.settings.backend == "ray":
            live.refs.append(host.actor.act.remote(pickle.dumps(batch, protocol=5)))
            return
        try:
            host.send(("act", batch))
        except HostFailure as e:
            self._fail(i, str(e), tick, live, self._out)
            return
        live.requests += 1
        live.last = time.monotonic()

    def finish(self, tick: int) -> dict[int, Any]:
        """Wait for the decisions of every batch handed out since the last `finish`."""
        live, out = self._live, self._out if self._out is not None else {}
        self._live, self._out = {}, None
        if self.settings.backend == "ray":
            self._finish_ray(live, tick, out)
        else:
            self._finish_processes(live, tick, out)
        return out

    def _fail(self, i: int, why: str, tick: int, live: _Live, out: dict[int, Any]) -> None:
        host = self.hosts[i]
        if host.down is None:
            self.events.append(f"host {i} (owner {self.shards[i].owner}, "
                               f"{len(self.shards[i].agents)} agents) is down from tick {tick}: "
                               f"{why}; its agents idle for the rest of the run")
        host.kill(why)
        for aid in sorted(live.owed):
            out.setdefault(aid, AgentFailure("host down", why))

    def _finish_processes(self, live: dict[int, _Live], tick: int, out: dict[int, Any]) -> None:
        sel = selectors.DefaultSelector()
        waiting = {i: w for i, w in live.items() if w.requests and self.hosts[i].down is None}
        for i in waiting:
            sel.register(self.hosts[i].fileno(), selectors.EVENT_READ, i)
        patience = (self.settings.deadline + GRACE) if self.settings.deadline else None
        try:
            for i in list(waiting):  # what came while the batches were being sent
                frames = self.hosts[i].taken()
                if frames:
                    self._absorb(i, waiting, frames, tick, out, sel)
            while waiting:
                timeout = None if patience is None else max(
                    0.0, min(w.last for w in waiting.values()) + patience - time.monotonic())
                for key, _ in sel.select(timeout):
                    i = key.data
                    if i not in waiting:
                        continue
                    started = time.monotonic()
                    try:
                        frames = self.hosts[i].feed()
                    except HostFailure as e:
                        sel.unregister(key.fileobj)
                        self._fail(i, str(e), tick, waiting.pop(i), out)
                        continue
                    self._absorb(i, waiting, frames, tick, out, sel)
                    spent = time.monotonic() - started  # the runner's time, not the others'
                    for j, w in waiting.items():
                        if j != i:
                            w.last += spent
                if patience is not None:
                    now = time.monotonic()
                    late = [i for i, w in waiting.items() if now - w.last > patience]
                    ready = {key.data for key, _ in sel.select(0)} if late else set()
                    for i in [i for i in late if i not in ready]:  # (unread answers: not late)
                        sel.unregister(self.hosts[i].fileno())
                        self._fail(i, f"it answered nothing for {patience:g} s (an agent "
                                      f"defeated its deadline)", tick, waiting.pop(i), out)
        finally:
            sel.close()

    def _absorb(self, i: int, waiting: dict[int, _Live], frames: list[Any], tick: int,
                out: dict[int, Any], sel: selectors.BaseSelector) -> None:
        """Take host `i`'s frames; it is done with the tick when its last batch ended."""
        w = waiting[i]
        owed = len(w.owed), w.requests
        try:
            for frame in frames:
                if not w.requests:
                    raise HostFailure("the host sent more than it was asked for")
                if self._take(i, frame, w, out):
                    w.requests -= 1
        except HostFailure as e:
            sel.unregister(self.hosts[i].fileno())
            self._fail(i, str(e), tick, waiting.pop(i), out)
            return
        if (len(w.owed), w.requests) != owed:  # progress: a decision came
            w.last = time.monotonic()
        if not w.requests:
            for aid in sorted(w.owed):  # asked about, never answered
                out[aid] = AgentFailure("no answer", "the host did not answer for this agent")
            sel.unregister(self.hosts[i].fileno())
            del waiting[i]

    def _take(self, i: int, frame: Any, live: _Live, out: dict[int, Any]) -> bool:
        """Take one frame of host `i`'s answers; True when it ends one of its batches."""
        if not isinstance(frame, dict) or not isinstance(frame.get("answers"), list):
            raise HostFailure("the host sent a frame that is not an answer")
        for a in frame["answers"]:
            aid = a.get("agent") if isinstance(a, dict) else None
            # not one of its agents, or a second answer: ignored (and said)
            if type(aid) is not int or aid not in live.owed:
                if len(self.events) < 100:
                    self.events.append(f"host {i} answered for agent {aid!r}, which it was not "
                                       f"asked about (ignored)")
                continue
            live.owed.discard(aid)
            out[aid] = parse_answer(a)
        return "done" in frame

    def _finish_ray(self, live: dict[int, _Live], tick: int, out: dict[int, Any]) -> None:
        ray = self.hosts[0].ray if self.hosts else None
        longest = max((len(self.shards[i].agents) for i in live), default=1)
        budget = (max(1.0, self.settings.deadline * longest + GRACE) if self.settings.deadline
                  else None)
        for i, w in live.items():
            try:
                for ref in w.refs:
                    frame = json.loads(ray.get(ref, timeout=budget))
                    if not self._take(i, frame, w, out):
                        raise HostFailure("the Ray host's answer is not complete")
                for aid in sorted(w.owed):
                    out[aid] = AgentFailure("no answer", "the host did not answer for this agent")
            except Exception as e:  # noqa: BLE001 (Ray raises its own kinds)
                self._fail(i, f"{type(e).__name__}: {e}"[:300], tick, w, out)

    def close(self) -> None:
        for host in self.hosts:
            host.close()

    def status(self) -> list[dict[str, Any]]:
        return [{"host": i, "owner": s.owner, "agents": len(s.agents),
                 "status": "ok" if h.down is None else f"down: {h.down}"}
                for i, (s, h) in enumerate(zip(self.shards, self.hosts, strict=True))]


def parse_answer(a: dict[str, Any]) -> Any:
    """One agent's answer from a host: its actions (parsed like any action from outside;
    the runner signs them, so a host's nonce or signature is dropped) or an AgentFailure."""
    from sandbank.kernel.schema import MalformedAction, action_from_dict

    if a.get("missed"):
        return AgentFailure("missed deadline", "the agent did not decide in time")
    if "error" in a:
        text = str(a["error"])[:300]
        return AgentFailure(text.split(":", 1)[0][:60] or "error", text)
    actions = a.get("actions")
    if not isinstance(actions, list):
        return AgentFailure("bad answer", "the host's answer holds no list of actions")
    if len(actions) > MAX_ACTIONS:
        return AgentFailure("too many actions", f"{len(actions)} actions (limit {MAX_ACTIONS})")
    parsed = []
    for d in actions:
        if not isinstance(d, dict):
            return AgentFailure("MalformedAction", "an action must be a JSON object")
        d = {k: v for k, v in d.items() if k not in ("nonce", "signature")}
        try:
            parsed.append(action_from_dict(d))
        except MalformedAction as e:
            return AgentFailure("MalformedAction", str(e))
    return parsed
