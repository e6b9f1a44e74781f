"""Credential redaction for anything shown to a user or written to a log.

``redact`` masks the user-info part of every URL in a text (``rtsp://user:pw@host`` ->
``rtsp://***@host``), secret-looking query parameters (``?password=...``, ``token``,
``key``..., also in a bare HTTP request line) and ``Bearer``/``Basic`` credentials.
:class:`RedactingFilter` applies it to log records; :func:`install_log_redaction` puts it on
the root logger's handlers (the CLI and the service call it after configuring logging).
"""

from __future__ import annotations

import logging
import re

# user-info runs up to the last '@' before the first '/' of the authority, so a password that
# contains '@' is masked completely
_USERINFO_RE = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]*(?:@[^/\s@]*)*@")
_SECRET_QUERY_RE = re.compile(
    r"(?i)([?&](?:password|passwd|pass|pwd|token|access_token|key|secret|auth)=)[^&#\s]*")

# an HTTP Authorization value
_AUTH_HEADER_RE = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{6,}")

MASK = "***"


def redact(text: str) -> str:
    """``text`` with URL credentials and secret query parameters replaced by ``***``.

    Example:
        >>> redact("open rtsp://admin:s3cret@10.0.0.5:554/ch1 failed")
        'open rtsp://***@10.0.0.5:554/ch1 failed'
    """
    if "://" in text:
        text = _USERINFO_RE.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    if "=" in text:  # also in a bare request line: GET /?token=... HTTP/1.1
        text = _SECRET_QUERY_RE.sub(rf"\g<1>{MASK}", text)
    if "earer " in text or "asic " in text:
        text = _AUTH_HEADER_RE.sub(rf"\g<1> {MASK}", text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts URL credentials in the formatted message and exception.

    The record's ``msg`` is replaced by the redacted, fully formatted message (``args``
    cleared), so handlers further down never see the credentials.
    """

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003 - logging API name
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to report
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:  # possibly cached unredacted by a handler without this filter
            record.exc_text = redact(record.exc_text)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Add one :class:`RedactingFilter` to every handler of ``logger`` (default: root) that
    does not have one yet; returns the filter."""
    logger = logger or logging.getLogger()
    flt = next((f for h in logger.handlers for f in h.filters
                if isinstance(f, RedactingFilter)), None) or RedactingFilter()
    for h in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in h.filters):
            h.addFilter(flt)
    return flt
