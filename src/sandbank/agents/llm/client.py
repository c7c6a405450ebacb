"""A small OpenAI-compatible chat-completions client, with cassettes.

Works with vLLM, Ollama, llama.cpp servers and hosted providers (`POST {base_url}/chat/completions`).
A cassette is a JSON-lines file of (request hash, response): in `record` mode every response
is appended; in `replay` mode responses come only from the cassette (a request it does not
hold is a `CassetteMiss`, never a network call), so an LLM run is reproducible offline.
The request hash is SHA-256 of the request's sorted-key JSON.

Live calls share one connection pool per endpoint (`base_url`) and event loop, and are
retried with exponential backoff on what may pass (a refused or dropped connection, a
timeout, HTTP 429 with its Retry-After, 5xx); anything else (401, 404, a reply that is not
JSON) fails at once. A call that still fails raises `LLMError`, whose message names the
endpoint, the cause and the attempts: the agent records it in its trace, the run reports it.
"""

from __future__ import annotations

import json
import os
import weakref
from hashlib import sha256
from pathlib import Path
from typing import Any

from sandbank.urls import has_credentials, without_credentials

MODES = ("live", "record", "replay")


class CassetteMiss(LookupError):
    pass


class LLMError(RuntimeError):
    """A model call that failed for good (after its retries)."""


MAX_RETRY_AFTER = 30.0  # seconds: the most a server's Retry-After is honoured
# event loop -> (endpoint, timeout) -> client: a pool lives on the loop it was made on (each
# thread that steps an economy has its own, agents/base.run_async), and goes with it
_pools: weakref.WeakKeyDictionary[Any, dict[tuple[str, float], Any]] = weakref.WeakKeyDictionary()


def pool(base_url: str, timeout: float) -> Any:
    """The endpoint's connection pool on the running event loop (one per endpoint and loop,
    shared by every agent that calls it there)."""
    import asyncio

    import httpx

    mine = _pools.setdefault(asyncio.get_running_loop(), {})
    client = mine.get((base_url, timeout))
    if client is None or client.is_closed:
        client = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=64))
        mine[(base_url, timeout)] = client
    return client


def shown(url: str) -> str:
    """A URL as errors (and so the log, the summary and the report) may quote it: without
    the credentials it may carry."""
    return without_credentials(url, "(the model endpoint)")


def request_key(request: dict[str, Any]) -> str:
    return sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Cassette:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._responses: dict[str, Any] = {}
        if self.path.is_file():
            for n, line in enumerate(self.path.read_text().splitlines(), start=1):
                if line.strip():
                    try:
                        rec = json.loads(line)
                        self._responses[rec["request"]] = rec["response"]
                    except (ValueError, KeyError) as e:
                        raise ValueError(f"{self.path}:{n}: not a cassette record ({e})") from None

    def get(self, key: str) -> Any:
        if key not in self._responses:
            raise CassetteMiss(f"request {key[:12]}… is not in cassette {self.path}")
        return self._responses[key]

    def put(self, key: str, response: Any) -> None:
        self._responses[key] = response
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"request": key, "response": response}, sort_keys=True) + "\n")


class ChatClient:
    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 60.0, cassette: Cassette | None = None,
                 mode: str = "live", retries: int = 2, backoff: float = 0.5) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if mode != "live" and cassette is None:
            raise ValueError(f"mode {mode!r} needs a cassette")
        if mode != "replay" and not base_url:
            raise ValueError("a base_url is needed unless replaying a cassette")
        if has_credentials(base_url):
            raise ValueError(f"base_url {shown(base_url)} must not carry credentials "
                             f"(user:password@): the key goes in the environment variable "
                             f"api_key_env names ({api_key_env or 'none set'})")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = os.environ.get(api_key_env, "") if api_key_env else ""
        self.timeout = timeout
        self.cassette = cassette
        self.mode = mode
        self.retries = max(0, int(retries))
        self.backoff = max(0.0, float(backoff))

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        key = request_key(request)
        if self.mode == "replay":
            assert self.cassette is not None
            return self.cassette.get(key)
        import asyncio

        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = f"{self.base_url}/chat/completions"
        where = shown(url)
        for attempt in range(self.retries + 1):
            wait = self.backoff * 2 ** attempt
            try:
                resp = await pool(self.base_url, self.timeout).post(url, json=request,
                                                                    headers=headers)
            except httpx.TransportError as e:  # refused, reset, timed out: may pass
                cause = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            else:
                if resp.status_code == 429 or resp.status_code >= 500:
                    cause = f"HTTP {resp.status_code} {resp.reason_phrase}"
                    after = resp.headers.get("retry-after", "")
                    if after.replace(".", "", 1).isdigit():
                        wait = min(MAX_RETRY_AFTER, float(after))
                elif resp.status_code >= 400:
                    raise LLMError(f"{where}: HTTP {resp.status_code} {resp.reason_phrase}: "
                                   f"{resp.text[:200]}")
                else:
                    try:
                        body = resp.json()
                    except ValueError:
                        raise LLMError(f"{where}: the reply is not JSON: {resp.text[:200]!r}") \
                            from None
                    if self.mode == "record":
                        assert self.cassette is not None
                        self.cassette.put(key, body)
                    return body
            if attempt < self.retries:
                await asyncio.sleep(wait)
        attempts = self.retries + 1
        raise LLMError(f"{where}: {cause} ({attempts} attempt{'s' if attempts > 1 else ''})")
