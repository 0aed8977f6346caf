"""Where a form post came from. Browsers send Origin (or at least Referer) with every
form POST; one from another site, or from nowhere, is refused, so a page elsewhere cannot
make a visitor's browser sign someone up or press an admin button (CSRF)."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import HTTPException, Request


def origin_of(url: str | None) -> str | None:
    if not url or url == "null":
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[": a bracket that opens no IPv6 address
        return None
    if not parts.scheme or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    suffix = "" if port in (None, default) else f":{port}"
    return f"{parts.scheme.lower()}://{host}{suffix}"


def require_same_origin(request: Request) -> None:
    expected = origin_of(request.app.state.settings.public_base_url)
    sent = request.headers.get("origin")
    got = origin_of(sent) if sent is not None else origin_of(request.headers.get("referer"))
    if got is None or got != expected:
        raise HTTPException(
            403,
            f"form posts must come from {expected} (PUBLIC_BASE_URL); "
            f"this one came from {got or 'an unknown origin'}",
        )
