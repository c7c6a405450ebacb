"""The optional parts of sandbank and the extra that installs each (pyproject.toml's
`[project.optional-dependencies]`): a command that needs a missing one says, in one line,
which `pip install` to run — never a traceback."""

from __future__ import annotations

import importlib

# extra -> the modules it brings that sandbank imports
EXTRAS: dict[str, tuple[str, ...]] = {
    "server": ("fastapi", "uvicorn", "starlette", "mcp", "websockets", "httpx", "a2a"),
    "client": ("httpx",),
    "llm": ("httpx",),
    "postgres": ("psycopg",),
    "ray": ("ray",),
    "otel": ("opentelemetry",),
    "rl": ("pettingzoo", "gymnasium"),
    "inspect": ("inspect_ai", "openai"),
}
MODULE_EXTRA = {m: e for e, ms in reversed(EXTRAS.items()) for m in ms}


class MissingExtra(ImportError):
    pass


def hint(module: str | None, what: str = "this") -> str | None:
    """The line to print for a missing `module`, or None if no extra brings it."""
    root = (module or "").split(".")[0]
    extra = MODULE_EXTRA.get(root)
    if extra is None:
        return None
    return f"{what} needs {root}, from the {extra!r} extra: pip install 'sandbank[{extra}]'"


def require(extra: str, what: str) -> None:
    """Raise MissingExtra (one line naming the install) unless `extra`'s modules import."""
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise MissingExtra(f"{what} needs {module}, from the {extra!r} extra: "
                               f"pip install 'sandbank[{extra}]'") from e
