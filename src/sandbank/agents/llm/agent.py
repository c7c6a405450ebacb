"""An agent whose decisions come from a language model.

The economy's actions are offered as tools (JSON schemas made from the action dataclasses);
the model's reply is parsed strictly: every tool call must name an offered action and carry
arguments that parse into that action — anything else is a *malformed* reply, recorded and
counted, never a silent no-op. Every prompt and reply is submitted as a `trace` action, so
its hash is in the audit log and its text in the store.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import sandbank.economy  # noqa: F401  (registers every action kind)
from sandbank import telemetry
from sandbank.agents.base import AsyncAgent, policy
from sandbank.agents.llm.client import Cassette, ChatClient
from sandbank.controls.traces import Trace
from sandbank.kernel.observation import Observation
from sandbank.kernel.schema import ACTION_TYPES, Action, MalformedAction, action_from_dict

DEFAULT_TOOLS = ["place_order", "cancel_order", "bid_task", "deliver", "subcontract",
                 "award_task", "send_message", "pay"]
SYSTEM = ("You are an agent in a simulated economy. Each turn you see your observation as "
          "JSON and may call tools to act. Amounts are integers in minor units.")

_JSON_TYPES = {"int": {"type": "integer"}, "str": {"type": "string"},
               "bool": {"type": "boolean"},
               "dict[str, int]": {"type": "object", "additionalProperties": {"type": "integer"}},
               "list[int]": {"type": "array", "items": {"type": "integer"}},
               "list[str]": {"type": "array", "items": {"type": "string"}}}


def tool_schema(kind: str) -> dict[str, Any]:
    cls = ACTION_TYPES[kind]
    props, required = {}, []
    for f in dataclasses.fields(cls):
        if f.name in ("actor", "nonce", "signature"):
            continue
        props[f.name] = dict(_JSON_TYPES.get(str(f.type), {"type": "string"}))
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    return {"type": "function", "function": {
        "name": kind, "description": (cls.__doc__ or kind).strip().split("\n")[0],
        "parameters": {"type": "object", "properties": props, "required": required,
                       "additionalProperties": False}}}


def plain(obj: Any) -> Any:
    """An observation as JSON-ready data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: plain(v) for f in dataclasses.fields(obj)
                if (v := getattr(obj, f.name)) is not None or not f.metadata.get("omit_if_none")}
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        return {k: plain(v) for k, v in obj._asdict().items()}
    if isinstance(obj, list | tuple):
        return [plain(x) for x in obj]
    if isinstance(obj, Mapping):  # e.g. public reputation: JSON keys are strings
        return {str(k): plain(v) for k, v in sorted(obj.items())}
    return obj


@policy("llm", params={"base_url": "", "model": "", "api_key_env": "OPENAI_API_KEY",
                       "cassette": "", "mode": "live", "tools": DEFAULT_TOOLS,
                       "system": SYSTEM, "temperature": 0, "max_actions": 5, "timeout": 60,
                       "retries": 2, "backoff": 0.5},
        types={"temperature": (int, float), "timeout": (int, float), "backoff": (int, float)})
class LLMAgent(AsyncAgent):
    def _client(self) -> ChatClient:
        if not hasattr(self, "client"):
            p = self.params
            for kind in p["tools"]:
                if kind not in ACTION_TYPES:
                    raise ValueError(f"llm: unknown tool {kind!r}")
            if p["mode"] != "replay":
                from sandbank.extras import require

                require("llm", "the llm policy's calls to a model")
            cassette = Cassette(p["cassette"]) if p["cassette"] else None
            self.client = ChatClient(p["base_url"], p["model"], api_key_env=p["api_key_env"],
                                     timeout=p["timeout"], cassette=cassette, mode=p["mode"],
                                     retries=p["retries"], backoff=p["backoff"])
            self.tools = [tool_schema(k) for k in p["tools"]]
        return self.client

    async def act_async(self, obs: Observation) -> list[Action]:
        p = self.params
        try:
            client = self._client()
        except Exception as e:  # a missing extra, a bad cassette: every call fails, said so
            return [Trace(actor=self.id, prompt="", response=f"{type(e).__name__}: {e}",
                          model=p["model"] or "?", outcome="error")]
        messages = [{"role": "system", "content": p["system"]},
                    {"role": "user", "content": json.dumps(plain(obs), sort_keys=True)}]
        request = {"model": p["model"], "messages": messages, "tools": self.tools,
                   "tool_choice": "auto", "temperature": p["temperature"]}
        prompt = json.dumps(request, sort_keys=True)
        try:
            with telemetry.chat(p["model"], client.base_url, mode=client.mode,
                                temperature=p["temperature"]) as call:  # (a no-op untraced)
                body = await client.complete(request)
                call.reply(body)
        except Exception as e:  # network, HTTP status, cassette miss: a counted failure
            return [Trace(actor=self.id, prompt=prompt, response=f"{type(e).__name__}: {e}",
                          model=p["model"], outcome="error")]
        response = json.dumps(body, sort_keys=True)
        actions, outcome = self.parse(body)
        return [*actions, Trace(actor=self.id, prompt=prompt, response=response,
                                model=p["model"], outcome=outcome)]

    def parse(self, body: Any) -> tuple[list[Action], str]:
        """(actions, outcome): outcome is ok, no_action, or malformed: <why>."""
        try:
            message = body["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            return [], "malformed: no choices[0].message"
        calls = message.get("tool_calls") or []
        if not calls:
            return [], "no_action" if message.get("content") else "malformed: empty reply"
        allowed = set(self.params["tools"])
        actions: list[Action] = []
        for call in calls[: self.params["max_actions"]]:
            try:
                name = call["function"]["name"]
                args = json.loads(call["function"]["arguments"] or "{}")
                if name not in allowed:
                    return [], f"malformed: tool {name!r} was not offered"
                if not isinstance(args, dict) or {"actor", "kind", "nonce", "signature"} & set(args):
                    return [], f"malformed: arguments of {name} must be an object of its fields"
                actions.append(action_from_dict({**args, "kind": name, "actor": self.id}))
            except (KeyError, TypeError, ValueError, MalformedAction) as e:
                return [], f"malformed: {e}"[:200]
        return actions, "ok"
