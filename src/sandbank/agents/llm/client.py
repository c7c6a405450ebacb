"""A small OpenAI-compatible chat-completions client, with cassettes.

Works with vLLM, Ollama, llama.cpp servers and hosted providers (`POST {base_url}/chat/completions`).
A cassette is a JSON-lines file of (request hash, response): in `record` mode every response
is appended; in `replay` mode responses come only from the cassette (a request it does not
hold is a `CassetteMiss`, never a network call), so an LLM run is reproducible offline.
The request hash is SHA-256 of the request's sorted-key JSON.
"""

from __future__ import annotations

import json
import os
from hashlib import sha256
from pathlib import Path
from typing import Any

MODES = ("live", "record", "replay")


class CassetteMiss(LookupError):
    pass


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
                 mode: str = "live") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if mode != "live" and cassette is None:
            raise ValueError(f"mode {mode!r} needs a cassette")
        if mode != "replay" and not base_url:
            raise ValueError("a base_url is needed unless replaying a cassette")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = os.environ.get(api_key_env, "") if api_key_env else ""
        self.timeout = timeout
        self.cassette = cassette
        self.mode = mode

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        key = request_key(request)
        if self.mode == "replay":
            assert self.cassette is not None
            return self.cassette.get(key)
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with httpx.AsyncClient(timeout=self.timeout) as http:
            resp = await http.post(f"{self.base_url}/chat/completions", json=request,
                                   headers=headers)
            resp.raise_for_status()
            body = resp.json()
        if self.mode == "record":
            assert self.cassette is not None
            self.cassette.put(key, body)
        return body
