"""One rule for quoting a URL (in an error, the log, a summary, a report, a model's view):
never with the `user:password@` it may carry. Plain string work (urllib), so every layer —
the client, the LLM agents, the lab, the CLI — can use it without importing an HTTP library.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def has_credentials(url: str) -> bool:
    """Does `url` carry a user (and maybe a password) before its host?"""
    return "@" in url.partition("://")[2].partition("/")[0]


def without_credentials(url: str, unreadable: str = "(the URL)") -> str:
    """`url` without its `user:password@`; unchanged when it has none; `unreadable` when it
    carries some but cannot be parsed (so nothing of it is quoted)."""
    if not has_credentials(url):
        return url
    try:
        u = urlsplit(url)
        return urlunsplit(u._replace(netloc=u.netloc.rpartition("@")[2]))
    except ValueError:
        return unreadable
