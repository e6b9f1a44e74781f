"""MqttSink against a real mosquitto: topics and payloads, retained availability with a last
will, TLS, and no alert lost while the broker is down or the sink restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from streamcount.config.schema import AlertRule, MqttConfig, SmoothingConfig, TlsConfig
from streamcount.pipeline.aggregate import RegionAggregator
from streamcount.pipeline.alerts import EventIds
from streamcount.messages import (AlertEvent, CountState, CountUpdate, StatsEvent,
                                           StatusEvent)
from streamcount.sinks.mqtt import MqttSink

try:
    from tests.integration.mosquitto import (Mosquitto, Received, Subscriber, make_tls_files,
                                             mosquitto_binary, mosquitto_broker)
except ImportError:  # tests/integration is not a package: imported as a sibling module
    from mosquitto import (Mosquitto, Received, Subscriber, make_tls_files,  # type: ignore
                           mosquitto_binary, mosquitto_broker)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
__all__ = ["mosquitto_broker"]  # the fixture, re-exported for pytest

PREFIX = "sctest"


@pytest.fixture(autouse=True)
def _need_mosquitto() -> None:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")


def mqtt_config(broker: Mosquitto, tmp_path: Path, **kw: object) -> MqttConfig:
    kw.setdefault("spool_dir", str(tmp_path / "spool"))
    return MqttConfig(host=broker.host, port=broker.port, topic_prefix=PREFIX, keepalive=5, **kw)


def make_sink(cfg: MqttConfig, **kw: object) -> MqttSink:
    return MqttSink(cfg, reconnect_delay_s=(0.1, 0.3), **kw)


def payloads(msgs: list[Received]) -> list[dict]:
    return [json.loads(m.payload) for m in msgs]


class AlertSource:
    """Real alert transitions: a region aggregator fed a count profile that crosses a
    warning threshold up and down (one transition per crossing)."""

    def __init__(self) -> None:
        self.agg = RegionAggregator("gate", "queue", SmoothingConfig(method="none"),
                                    [AlertRule(level="warning", above=40, below=30)],
                                    EventIds())
        self.t = 0.0
        self.agg.update(0.0, self.t)

    def next(self) -> AlertEvent:
        value = 50.0 if self.agg.alerts.state == "normal" else 10.0
        self.t += 1.0
        _, events = self.agg.update(value, self.t)
        assert len(events) == 1
        return events[0]


def alert_ids(sub: Subscriber) -> list[str]:
    return [p["id"] for p in payloads(sub.on(f"{PREFIX}/gate/queue/alert"))]


def test_topics_payloads_and_availability(mosquitto_broker: Mosquitto, tmp_path: Path) -> None:
    sub = Subscriber(mosquitto_broker, [f"{PREFIX}/#"])
    cfg = mqtt_config(mosquitto_broker, tmp_path, count_interval_s=0.5, stats_interval_s=0.3)
    sink = make_sink(cfg, cameras=["gate", "lobby"])
    try:
        assert sink.wait_connected(10)
        avail = f"{PREFIX}/available"
        assert sub.wait_for(lambda m: any(x.topic == avail for x in m))
        assert sub.on(avail)[-1].text == "online"
        # lobby never reported: the stale status of a previous run is replaced
        assert sub.wait_for(lambda m: any(x.topic == f"{PREFIX}/lobby/status" for x in m))
        assert payloads(sub.on(f"{PREFIX}/lobby/status"))[-1]["state"] == "unknown"

        sink.handle(StatusEvent("gate", "online", None, 10.0, fps=4.8))
        count_topic = f"{PREFIX}/gate/queue/count"
        sink.handle(CountUpdate("gate", "queue", 11.0, 12.31, 12.04, CountState.OK))
        sink.handle(CountUpdate("gate", "queue", 11.5, 12.0, 12.01, CountState.OK))  # same 0.1
        sink.handle(CountUpdate("gate", "queue", 12.0, 15.0, 13.0, CountState.OK, level="warning"))
        sink.handle(CountUpdate("gate", "queue", 13.0, None, None, CountState.UNKNOWN, "stalled",
                                "unknown"))
        sink.handle(AlertEvent("01TEST", "gate", "queue", "warning", "normal", 41.0, 40.0, 12.0))
        sink.handle(StatsEvent(ts=14.0, uptime_s=3.0, cameras={"gate": {"fps": 4.8}}))

        alert_topic = f"{PREFIX}/gate/queue/alert"
        assert sub.wait_for(lambda m: any(x.topic == alert_topic for x in m))
        [a] = sub.on(alert_topic)
        assert a.qos == 1 and not a.retain
        assert json.loads(a.payload) == {"id": "01TEST", "camera": "gate", "region": "queue",
                                         "level": "warning", "previous": "normal",
                                         "count": 41.0, "threshold": 40.0, "ts": 12.0,
                                         "renotify": False}
        status = payloads(sub.on(f"{PREFIX}/gate/status"))
        assert {"state": "online", "reason": None, "fps": 4.8, "ts": 10.0} in status
        assert sub.wait_for(lambda m: sum(x.topic == count_topic for x in m) >= 3)
        counts = payloads(sub.on(count_topic))[:3]
        # the unchanged count (12.04 -> 12.01) was not published; the state change was
        assert [(c["count"], c["state"], c["level"]) for c in counts] == [
            (12.04, "ok", "normal"), (13.0, "ok", "warning"), (None, "unknown", "unknown")]
        assert counts[2]["reason"] == "stalled"
        # unchanged counts are re-published every count_interval_s
        assert sub.wait_for(lambda m: sum(x.topic == count_topic for x in m) >= 5)
        stats_topic = f"{PREFIX}/stats"
        assert sub.wait_for(lambda m: any(x.topic == stats_topic and b'"gate"' in x.payload
                                          for x in m))
        stats = [p for p in payloads(sub.on(stats_topic)) if p["cameras"]][-1]
        assert stats["cameras"] == {"gate": {"fps": 4.8}}
        assert stats["mqtt"]["connected"] is True

        # a late subscriber gets the retained state
        late = Subscriber(mosquitto_broker, [f"{PREFIX}/#"])
        try:
            assert late.wait_for(lambda m: {avail, count_topic, f"{PREFIX}/gate/status"}
                                 <= {x.topic for x in m})
            assert all(x.retain for x in late.messages)
            assert late.on(avail)[0].text == "online"
            assert json.loads(late.on(count_topic)[0].payload)["state"] == "unknown"
            assert not late.on(alert_topic)  # alerts are events, not retained
        finally:
            late.close()
    finally:
        sink.close()
    assert sub.wait_for(lambda m: m[-1].topic == avail and m[-1].text == "offline")
    sub.close()
    after = Subscriber(mosquitto_broker, [avail])
    assert after.wait_for(lambda m: bool(m))
    assert after.messages[0].text == "offline" and after.messages[0].retain
    after.close()


def test_last_will_when_the_process_is_killed(mosquitto_broker: Mosquitto, tmp_path: Path
                                               ) -> None:
    cfg = mqtt_config(mosquitto_broker, tmp_path)
    script = textwrap.dedent(f"""
        import sys, time
        from streamcount.config.schema import MqttConfig
        from streamcount.sinks.mqtt import MqttSink
        cfg = MqttConfig.model_validate_json({cfg.model_dump_json()!r})
        sink = MqttSink(cfg)
        assert sink.wait_connected(20)
        time.sleep(0.3)
        print("ready", flush=True)
        time.sleep(120)
        """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        sub = Subscriber(mosquitto_broker, [f"{PREFIX}/available"])
        assert sub.wait_for(lambda m: bool(m))
        assert sub.messages[0].text == "online" and sub.messages[0].retain
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # the broker publishes the last will when the dead client's socket closes
        assert sub.wait_for(lambda m: m[-1].text == "offline", timeout=20)
        sub.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    late = Subscriber(mosquitto_broker, [f"{PREFIX}/available"])
    assert late.wait_for(lambda m: bool(m))
    assert late.messages[0].text == "offline" and late.messages[0].retain
    late.close()


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Mosquitto:
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    yield broker
    broker.stop()


def outage_subscriber(broker: Mosquitto) -> Subscriber:
    # a persistent session: the broker queues QoS 1 alerts for it across its own restart
    return Subscriber(broker, [f"{PREFIX}/+/+/alert"], client_id="outage-sub", persistent=True)


def settle(sub: Subscriber, n: int) -> None:
    assert sub.wait_for(lambda m: len(m) >= n)
    time.sleep(0.3)  # let the subscriber's PUBACKs reach the broker before it is stopped


def wait_disconnected(sink: MqttSink) -> None:
    deadline = time.monotonic() + 20
    while sink.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not sink.connected


def test_no_alert_lost_while_the_broker_is_down(persistent_broker: Mosquitto, tmp_path: Path
                                                ) -> None:
    broker = persistent_broker
    sub = outage_subscriber(broker)
    source = AlertSource()
    sink = make_sink(mqtt_config(broker, tmp_path))
    produced: list[AlertEvent] = []
    try:
        assert sink.wait_connected(10)
        for _ in range(3):
            produced.append(source.next())
            sink.handle(produced[-1])
        settle(sub, 3)
        broker.stop()
        wait_disconnected(sink)
        for _ in range(5):  # transitions while the broker is down
            produced.append(source.next())
            sink.handle(produced[-1])
        assert len(sink.spool) == 5
        broker.start()
        assert sink.flush(30)
        assert sub.wait_for(lambda m: len(m) >= len(produced), timeout=20)
        time.sleep(0.5)  # anything duplicated would arrive now
    finally:
        sink.close()
        sub.close()
    assert alert_ids(sub) == [e.id for e in produced]  # all, in order, once each
    assert [p["level"] for p in payloads(sub.messages)] == ["warning", "normal"] * 4


def test_no_alert_lost_across_a_sink_restart(persistent_broker: Mosquitto, tmp_path: Path
                                             ) -> None:
    broker = persistent_broker
    sub = outage_subscriber(broker)
    source = AlertSource()
    cfg = mqtt_config(broker, tmp_path)
    produced: list[AlertEvent] = []
    sink = make_sink(cfg, close_timeout_s=0.5)
    try:
        assert sink.wait_connected(10)
        produced.append(source.next())
        sink.handle(produced[-1])
        settle(sub, 1)
        broker.stop()
        wait_disconnected(sink)
        for _ in range(3):
            produced.append(source.next())
            sink.handle(produced[-1])
    finally:
        sink.close()  # the broker is down: the 3 alerts stay in the spool
    sink = make_sink(cfg)  # a new process would do the same: same spool directory
    try:
        for _ in range(3):
            produced.append(source.next())
            sink.handle(produced[-1])
        assert len(sink.spool) == 6
        broker.start()
        assert sink.flush(30)
        assert sub.wait_for(lambda m: len(m) >= len(produced), timeout=20)
        time.sleep(0.5)
    finally:
        sink.close()
        sub.close()
    assert alert_ids(sub) == [e.id for e in produced]


def test_spool_of_a_previous_run_is_delivered_at_start_up(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    cfg = mqtt_config(broker, tmp_path)
    source = AlertSource()
    produced = [source.next() for _ in range(4)]
    sink = make_sink(cfg, close_timeout_s=0.2)  # nothing listens on the port yet
    for e in produced:
        sink.handle(e)
    sink.close()
    with broker:
        sub = Subscriber(broker, [f"{PREFIX}/#"])
        sink = make_sink(cfg)
        try:
            assert sink.flush(20)
            assert sub.wait_for(lambda m: len(alert_ids(sub)) >= 4)
        finally:
            sink.close()
            sub.close()
    assert alert_ids(sub) == [e.id for e in produced]


def test_tls(tmp_path: Path) -> None:
    try:
        files = make_tls_files(tmp_path / "tls")
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"openssl cannot create test certificates: {e}")
    with Mosquitto(tmp_path / "broker", tls=files) as broker:
        sub = Subscriber(broker, [f"{PREFIX}/#"], tls_ca=files.ca)
        good = make_sink(mqtt_config(broker, tmp_path, tls=TlsConfig(enabled=True,
                                                                       ca_file=str(files.ca))))
        try:
            assert good.wait_connected(10)
            good.handle(AlertEvent("tls1", "gate", "queue", "warning", "normal", 1.0, 1.0, 1.0))
            assert good.flush(10)
            assert sub.wait_for(lambda m: alert_ids(sub) == ["tls1"])
        finally:
            good.close()
            sub.close()
        # system CAs do not know the test CA: no connection, the alert stays spooled
        untrusted = make_sink(mqtt_config(broker, tmp_path, spool_dir=str(tmp_path / "s2"),
                                          tls=TlsConfig(enabled=True)), close_timeout_s=0.2)
        try:
            untrusted.handle(AlertEvent("x", "gate", "queue", "warning", "normal", 1, 1, 1.0))
            assert not untrusted.wait_connected(1.5)
            assert len(untrusted.spool) == 1
        finally:
            untrusted.close()
        insecure = make_sink(mqtt_config(broker, tmp_path, spool_dir=str(tmp_path / "s3"),
                                         tls=TlsConfig(enabled=True, insecure=True)))
        try:
            assert insecure.wait_connected(10)
        finally:
            insecure.close()
