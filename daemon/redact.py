"""What of a notification URL may be shown: scheme, host and port. Imports nothing of ours.

Webhook and ping URLs carry their secret in different places: a password in the userinfo
(``https://user:pass@host``), a token in the query (``?token=…``), or the path itself
(a healthchecks.io check UUID, a Slack or Discord webhook path). So everything after the
host — userinfo, path, query and fragment — counts as secret and is never printed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

HIDDEN = "…"


def describe_url(url: str) -> str:
    """Given a URL, return ``scheme://host[:port]/…`` with userinfo, path, query and fragment left out."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return HIDDEN
    if not parts.scheme or not host:
        return HIDDEN
    if ":" in host:
        host = f"[{host}]"
    rest = "/" + HIDDEN if (parts.path not in ("", "/") or parts.query or parts.fragment or parts.username) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def check_http_url(url: str) -> str:
    """Given a URL from the config, return it unchanged. Raise ValueError (naming no secret) unless it is http(s) with a host."""
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {describe_url(url)!r}")
    if any(character in url for character in "\r\n\t "):
        raise ValueError("a URL must not contain spaces or line breaks")
    return url
