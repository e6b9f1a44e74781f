"""Authentication on the HTTP port: bearer token (header, or ?token= once then a cookie) and
basic auth, on a real MetricsServer; and the credentials never reach the logs."""

from __future__ import annotations

import base64
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from streamcount.config.redact import RedactingFilter
from streamcount.console.auth import COOKIE, HttpAuth
from streamcount.sinks.metrics import MetricsServer


def snapshot() -> dict[str, object]:
    return {"running": True, "cameras": {}}


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[MetricsServer]:
    m = MetricsServer(snapshot, "127.0.0.1", 0, auth=request.param)
    m.start()
    yield m
    m.shutdown()


def get(m: MetricsServer, path: str, headers: dict[str, str] | None = None
        ) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(f"http://127.0.0.1:{m.port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


@pytest.mark.parametrize("server", [HttpAuth(token="t0ken")], indirect=True)
def test_bearer_token_and_cookie(server: MetricsServer) -> None:
    for path in ("/metrics", "/healthz", "/api/state"):
        code, headers = get(server, path)
        assert code == 401 and "Bearer" in headers["WWW-Authenticate"]
    assert get(server, "/healthz", {"Authorization": "Bearer t0ken"})[0] == 200
    assert get(server, "/healthz", {"Authorization": "Bearer wrong"})[0] == 401
    code, headers = get(server, "/healthz?token=t0ken")
    assert code == 200 and headers["Set-Cookie"].startswith(f"{COOKIE}=t0ken;")
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
    assert get(server, "/metrics", {"Cookie": f"{COOKIE}=t0ken"})[0] == 200
    assert get(server, "/metrics", {"Cookie": f"{COOKIE}=nope"})[0] == 401


@pytest.mark.parametrize("server", [HttpAuth(username="op", password="pa:ss")], indirect=True)
def test_basic_auth(server: MetricsServer) -> None:
    code, headers = get(server, "/api/state")
    assert code == 401 and headers["WWW-Authenticate"].startswith("Basic")
    good = base64.b64encode(b"op:pa:ss").decode()
    bad = base64.b64encode(b"op:wrong").decode()
    assert get(server, "/api/state", {"Authorization": f"Basic {good}"})[0] == 200
    assert get(server, "/api/state", {"Authorization": f"Basic {bad}"})[0] == 401
    assert get(server, "/api/state?token=op")[0] == 401  # no token configured


@pytest.mark.parametrize("server", [HttpAuth(token="t0ken")], indirect=True)
def test_token_in_the_request_line_is_redacted(server: MetricsServer,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.DEBUG, logger="streamcount.sinks.metrics"):
        get(server, "/healthz?token=t0ken")
    assert "token=***" in caplog.text and "t0ken" not in caplog.text


def test_health_may_be_public() -> None:
    m = MetricsServer(snapshot, "127.0.0.1", 0, auth=HttpAuth(token="t0ken"),
                      health_public=True)
    m.start()
    try:
        assert get(m, "/healthz")[0] == 200
        assert get(m, "/metrics")[0] == 401 and get(m, "/api/state")[0] == 401
    finally:
        m.shutdown()
