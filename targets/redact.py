"""Passwords never reach a log, a terminal, run.json or a report. The default `guest`
stays visible: it is public, and hiding it would make URLs harder to check."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_SECRET = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<pw>[^@\s]+)(?P<at>@)", re.I)


def redact(url: str) -> str:
    """One URL with its password (other than `guest`) masked."""
    parts = urlsplit(url)
    if parts.password is None or parts.password == "guest":
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def redact_text(text: str) -> str:
    """Every URL in a piece of text (an error message, a log line) with its password masked."""
    return _SECRET.sub(lambda m: m[0] if m["pw"] == "guest" else f"{m['head']}***{m['at']}", text)
