"""HTTP authentication for everything on the service's HTTP port (console, API, metrics).

Either or both of:

- a **bearer token** (``http.token``): ``Authorization: Bearer <token>``; a browser opens
  ``/?token=<token>`` once and gets an ``HttpOnly``, ``SameSite=Strict`` cookie (EventSource
  and images cannot send headers);
- **basic auth** (``http.username`` / ``http.password``): browsers ask for it themselves.

Comparisons are constant-time; credentials are never logged (query strings are redacted by
:func:`streamcount.config.redact.redact`, headers are not logged at all).
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

COOKIE = "streamcount_token"


@dataclass(frozen=True)
class AuthResult:
    """Whether a request may proceed, and a cookie to set (the token came in the query)."""

    ok: bool
    set_cookie: str | None = None


class HttpAuth:
    """Checks requests against the configured token and/or basic credentials.

    Args:
        token: the bearer token (None: no token auth).
        username, password: basic credentials (None: no basic auth).

    Example:
        >>> auth = HttpAuth(token="s3cret")
        >>> auth.check({"Authorization": "Bearer s3cret"}, "").ok
        True
        >>> auth.check({}, "").ok
        False
    """

    def __init__(self, token: str | None = None, username: str | None = None,
                 password: str | None = None) -> None:
        self._token = token
        self._basic = (None if username is None or password is None
                       else base64.b64encode(f"{username}:{password}".encode()).decode())

    @property
    def enabled(self) -> bool:
        """Whether any credentials are required."""
        return self._token is not None or self._basic is not None

    def _token_ok(self, value: str | None) -> bool:
        return (self._token is not None and value is not None
                and hmac.compare_digest(value.encode(), self._token.encode()))

    def check(self, headers: Mapping[str, str], query: str) -> AuthResult:
        """Whether the request with these headers and query string may proceed."""
        if not self.enabled:
            return AuthResult(True)
        header = headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self._token_ok(value.strip()):
            return AuthResult(True)
        if (scheme.lower() == "basic" and self._basic is not None
                and hmac.compare_digest(value.strip().encode(), self._basic.encode())):
            return AuthResult(True)
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("Cookie") or "")
        except CookieError:  # a malformed cookie header is just not a credential
            cookie = SimpleCookie()
        if COOKIE in cookie and self._token_ok(cookie[COOKIE].value):
            return AuthResult(True)
        given = parse_qs(query).get("token", [None])[0]
        if self._token_ok(given):
            return AuthResult(True, f"{COOKIE}={given}; HttpOnly; SameSite=Strict; Path=/")
        return AuthResult(False)

    def challenge(self) -> dict[str, str]:
        """Headers of a 401 answer (basic auth makes browsers ask for credentials)."""
        if self._basic is not None:
            return {"WWW-Authenticate": 'Basic realm="streamcount", charset="UTF-8"'}
        return {"WWW-Authenticate": 'Bearer realm="streamcount"'}
