"""A TestClient that checks every successful JSON answer against the model the OpenAPI schema
documents for its route (server/models.py), so the schema cannot drift from the behaviour."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from sandbank.server import models


def documented_model(app, method: str, path: str, status: int):
    """The response model the schema names for this request, or None."""
    for template, ops in app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path) and method in ops:
            answer = ops[method]["responses"].get(str(status), {})
            ref = answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
            return getattr(models, ref.rsplit("/", 1)[1]) if ref else None
    return None


def check_answer(app, method: str, path: str, status: int, body) -> None:
    model = documented_model(app, method.lower(), path, status)
    if 200 <= status < 300 and model is not None:
        model.model_validate(body)  # raises if the answer is not what the schema says


def checked_client(app, source: str = "testclient") -> TestClient:
    """`source`: the client address the server sees (its per-source limits key on it)."""
    def hook(response) -> None:
        response.read()
        if response.headers.get("content-type", "").startswith("application/json"):
            check_answer(app, response.request.method, response.request.url.path,
                         response.status_code, response.json())

    client = TestClient(app, client=(source, 50000))
    client.event_hooks = {"request": [], "response": [hook]}
    return client
