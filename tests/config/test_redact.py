"""Credential redaction in texts and log records."""

from __future__ import annotations

import logging

import pytest

from streamcount.config.redact import RedactingFilter, install_log_redaction, redact


@pytest.mark.parametrize("text,expected", [
    ("rtsp://admin:pw@10.0.0.5:554/ch1", "rtsp://***@10.0.0.5:554/ch1"),
    ("rtsp://admin@10.0.0.5/ch1", "rtsp://***@10.0.0.5/ch1"),
    ("rtsp://u:p@ss@host/x", "rtsp://***@host/x"),  # '@' inside the password
    ("open http://a:b@h/x and rtsps://c:d@k/y", "open http://***@h/x and rtsps://***@k/y"),
    ("https://h/live.m3u8?token=abc&x=1", "https://h/live.m3u8?token=***&x=1"),
    ("http://h/a?user=x&password=y", "http://h/a?user=x&password=***"),
    ("rtsp://192.0.2.1/stream mail a@b.example", "rtsp://192.0.2.1/stream mail a@b.example"),
    ("/videos/clip@2x.mp4", "/videos/clip@2x.mp4"),
    ("no url here", "no url here"),
])
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_filter_redacts_message_args_and_exception(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("streamcount.test.redact")
    flt = RedactingFilter()
    caplog.handler.addFilter(flt)
    try:
        log.warning("cannot open %s", "rtsp://user:topsecret@cam/1")
        try:
            raise OSError("connect rtsp://user:topsecret@cam/1 refused")
        except OSError:
            log.exception("failed")
    finally:
        caplog.handler.removeFilter(flt)
    assert "topsecret" not in caplog.text
    assert "rtsp://***@cam/1" in caplog.text
    assert caplog.records[0].getMessage() == "cannot open rtsp://***@cam/1"


def test_install_is_idempotent() -> None:
    logger = logging.getLogger("streamcount.test.install")
    h1, h2 = logging.StreamHandler(), logging.StreamHandler()
    logger.addHandler(h1)
    logger.addHandler(h2)
    try:
        f = install_log_redaction(logger)
        assert install_log_redaction(logger) is f
        assert h1.filters == [f] and h2.filters == [f]
    finally:
        logger.removeHandler(h1)
        logger.removeHandler(h2)


def test_request_line_and_authorization_values() -> None:
    from streamcount.config.redact import redact
    assert redact('"GET /camera/hall?token=s3cr3t HTTP/1.1" 200') == \
        '"GET /camera/hall?token=*** HTTP/1.1" 200'
    assert redact("Authorization: Bearer abcdef123456") == "Authorization: Bearer ***"
    assert redact("Basic b3A6cGE6c3M=") == "Basic ***"
    assert redact("a = b, no secrets") == "a = b, no secrets"
