"""MqttSink without a broker: client set-up (TLS, last will), payloads, and alerts kept in the
spool while the broker is unreachable. Broker round trips: tests/integration/test_mqtt_broker.py.
"""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path

import pytest

from streamcount.config.schema import MqttConfig, TlsConfig
from streamcount.messages import AlertEvent, CountState, CountUpdate, StatusEvent
from streamcount.sinks.mqtt import (MqttSink, alert_payload, count_payload, status_payload)
from streamcount.sinks.spool import Spool


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(tmp_path: Path, **kw: object) -> MqttConfig:
    return MqttConfig(host="127.0.0.1", port=unused_port(), spool_dir=str(tmp_path / "spool"),
                      **kw)


def make_sink(cfg: MqttConfig, **kw: object) -> MqttSink:
    return MqttSink(cfg, reconnect_delay_s=(0.05, 0.1), **kw)


def alert(i: int) -> AlertEvent:
    return AlertEvent(f"id{i}", "cam", "queue", "warning", "normal", 41.26, 40.0, 100.0 + i)


def test_payloads() -> None:
    assert alert_payload(alert(1)) == {
        "id": "id1", "camera": "cam", "region": "queue", "level": "warning",
        "previous": "normal", "count": 41.26, "threshold": 40.0, "ts": 101.0,
        "renotify": False}
    u = CountUpdate("cam", "queue", 5.0, 12.3456, 11.98765, CountState.OK, level=None,
                    method="hybrid")
    assert count_payload(u) == {"count": 11.99, "raw": 12.35, "state": "ok", "level": "normal",
                                "reason": None, "ts": 5.0, "method": "hybrid"}
    u = CountUpdate("cam", "queue", 6.0, None, None, CountState.UNKNOWN, "stalled", "unknown")
    assert count_payload(u)["state"] == "unknown" and count_payload(u)["count"] is None
    assert status_payload(StatusEvent("cam", "online", None, 1.0, 4.9)) == {
        "state": "online", "reason": None, "fps": 4.9, "ts": 1.0}


def test_client_setup_will_and_credentials(tmp_path: Path, caplog) -> None:
    cfg = config(tmp_path, topic_prefix="site", username="op", password="pw-secret",
                 client_id="sc-test")
    sink = make_sink(cfg)
    try:
        c = sink._client
        assert c._client_id == b"sc-test"
        assert c._username == b"op" and c._password == b"pw-secret"
        assert c._will and c._will_topic == b"site/available" and c._will_payload == b"offline"
        assert c._will_retain and c._will_qos == 1
        assert c._ssl_context is None
    finally:
        sink.close()
    assert "pw-secret" not in caplog.text


def test_tls_system_cas_verify(tmp_path: Path) -> None:
    sink = make_sink(config(tmp_path, tls=TlsConfig(enabled=True)))
    try:
        ctx = sink._client._ssl_context
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        assert ctx.cert_store_stats()["x509_ca"] > 0 or ctx.get_ca_certs() is not None
    finally:
        sink.close()


def test_tls_insecure_without_ca_does_not_crash(tmp_path: Path) -> None:
    sink = make_sink(config(tmp_path, tls=TlsConfig(enabled=True, insecure=True)))
    try:
        ctx = sink._client._ssl_context
        assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    finally:
        sink.close()


def test_alerts_wait_in_the_spool_while_unreachable(tmp_path: Path) -> None:
    cfg = config(tmp_path, topic_prefix="sc")
    sink = make_sink(cfg, close_timeout_s=0.2)
    for i in range(3):
        sink.handle(alert(i))
    sink.handle(CountUpdate("cam", "queue", 1.0, 1.0, 1.0, CountState.OK))  # dropped offline
    assert not sink.connected
    assert sink.stats()["spooled_alerts"] == 3
    sink.close()
    with Spool(cfg.effective_spool_dir) as sp:
        items = [i for _, i in sp.items()]
    assert [i["topic"] for i in items] == ["sc/cam/queue/alert"] * 3
    assert [json.loads(i["payload"])["id"] for i in items] == ["id0", "id1", "id2"]
    assert all(i["qos"] == 1 for i in items)


def test_spool_in_use_is_an_error(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    sink = make_sink(cfg)
    try:
        with pytest.raises(OSError, match="in use"):
            make_sink(cfg)
    finally:
        sink.close()
