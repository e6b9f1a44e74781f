"""MQTT sink (paho-mqtt 2.x): availability, camera status, region counts, alerts, stats.

Topics (``P`` = ``mqtt.topic_prefix``):

- ``P/available``: ``online`` / ``offline``, retained, QoS 1 (birth message and last will).
- ``P/<camera>/status``: ``{state, reason, fps, ts}``, retained, ``qos_status``.
- ``P/<camera>/<region>/count``: ``{count, raw, state, level, reason, ts}`` (plus
  ``density`` in people/m², ``los`` and ``area_m2`` for a region with a floor area), retained,
  ``qos_count``; on change (count rounded to 0.1, state or level) and at least every
  ``count_interval_s``.
- ``P/<camera>/<region>/alert``: ``{id, camera, region, level, previous, count, threshold,
  ts, renotify}``, ``qos_alert`` (1 or 2), not retained (events).
- ``P/stats``: ``{ts, uptime_s, cameras, service, mqtt}`` every ``stats_interval_s``,
  retained, ``qos_count`` (the last :class:`StatsEvent` plus the sink's own figures).

A sharded replica (``replica="<index>"``, see :mod:`streamcount.sharding`) publishes its
availability and stats on ``P/available/<index>`` and ``P/stats/<index>`` (subscribe to
``P/available/#`` to see every replica), so no replica's last will marks another replica's
cameras offline; its client id gets ``-shard<index>`` appended (``client_id`` is shared by the
replicas' config) and its spool lives in ``<spool_dir>/shard-<index>``.

**No alert is lost.** ``handle(AlertEvent)`` first appends the message to the on-disk
:class:`~streamcount.sinks.spool.Spool` (fsync'd); a delivery thread publishes the spooled
alerts strictly in order, one at a time, and deletes each only after the broker acknowledged
it (PUBACK / PUBCOMP). While disconnected the spool just grows (bounded by ``spool_max``);
paho re-sends an unacknowledged message after a reconnect; alerts spooled by a previous run
are delivered at start-up. Delivery is *at least once*: a crash between the acknowledgement
and the deletion of the spool file re-sends that alert after the restart; consumers can
de-duplicate by ``id``.

Retained state (statuses, counts) is re-published after every reconnect, so a broker
restarted without persistence gets it back; ``online`` is published retained on every
connect, the last will ``offline`` uses the same topic, QoS and retain flag. Credentials are
never logged.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from streamcount.config.schema import MqttConfig
from streamcount.messages import (AlertEvent, CountState, CountUpdate, StatsEvent,
                                           StatusEvent)
from streamcount.sinks.spool import Spool

log = logging.getLogger(__name__)

ONLINE = "online"
OFFLINE = "offline"
#: how often the delivery thread wakes up for periodic work (s)
TICK_S = 0.2
#: unacknowledged-publish bookkeeping kept for the alert in flight
_ACK_MEMORY = 65536


def _round(v: float | None, nd: int = 2) -> float | None:
    return None if v is None else round(float(v), nd)


@dataclass
class _Retained:
    topic: str
    payload: str
    qos: int
    published_at: float  # monotonic


def alert_payload(e: AlertEvent) -> dict[str, Any]:
    """The JSON object published for an alert event."""
    return {"id": e.id, "camera": e.camera, "region": e.region, "level": e.level,
            "previous": e.previous, "count": _round(e.count), "threshold": e.threshold,
            "ts": e.ts, "renotify": e.renotify}


def count_payload(u: CountUpdate) -> dict[str, Any]:
    """The JSON object published for a region count."""
    state = u.state.value if isinstance(u.state, CountState) else str(u.state)
    out = {"count": _round(u.count), "raw": _round(u.raw), "state": state,
           "level": u.level or "normal", "reason": u.reason, "ts": u.ts,
           "method": u.method}  # detect / density / hybrid (None while unknown)
    if u.area_m2 is not None:  # a calibrated region: people/m² and the LoS letter
        out.update(density=_round(u.density, 3), los=u.los, area_m2=_round(u.area_m2))
    return out


def status_payload(s: StatusEvent) -> dict[str, Any]:
    """The JSON object published for a camera status."""
    return {"state": s.state, "reason": s.reason, "fps": s.fps, "ts": s.ts}


class MqttSink:
    """Publishes pipeline events to an MQTT broker (see the module docstring).

    Args:
        cfg: the ``mqtt:`` section.
        cameras: camera names; each gets a retained ``unknown``/``starting`` status at the
            first connect unless a status event came first (replaces a stale retained
            status from a previous run).
        name: the sink's name (bus logs, stats).
        close_timeout_s: how long ``close`` waits for spooled alerts to be delivered.
        reconnect_delay_s: (first, max) delay between reconnect attempts (doubling).
        replica: the shard index of a sharded replica: per-replica availability and stats
            topics, client id and spool directory (see the module docstring).
        discovery: Home Assistant discovery configs (``{topic: payload}``, see
            :mod:`streamcount.sinks.homeassistant`), published retained at every connect and
            whenever a message ``online`` arrives on ``birth_topic``.
        birth_topic: Home Assistant's birth message topic.

    Raises:
        streamcount.sinks.spool.SpoolError: the spool directory is unusable or in use.
    """

    def __init__(self, cfg: MqttConfig, *, cameras: Sequence[str] = (), name: str = "mqtt",
                 close_timeout_s: float = 2.0,
                 reconnect_delay_s: tuple[float, float] = (1.0, 30.0),
                 replica: str | None = None, discovery: dict[str, str] | None = None,
                 birth_topic: str | None = None) -> None:
        self.cfg = cfg
        self._discovery: dict[str, str] = dict(discovery or {})
        self._cleared: set[str] = set()  # removed configs still to clear on the broker
        self.birth_topic = birth_topic
        self.discovery_publications = 0
        self.replica = replica
        self.name = name
        self.prefix = cfg.topic_prefix
        self.close_timeout_s = close_timeout_s
        self.reconnect_delay_s = reconnect_delay_s
        spool_dir = cfg.effective_spool_dir
        if replica is not None:
            spool_dir = os.path.join(spool_dir, f"shard-{replica}")
        self.spool = Spool(spool_dir, cfg.spool_max)
        self._cameras = list(cameras)
        self._started = time.monotonic()
        self._cond = threading.Condition()
        self._connected = False
        self._stopping = False
        self._retained: dict[str, _Retained] = {}
        self._last_counts: dict[str, tuple[float | None, str, str | None]] = {}
        self._last_stats: StatsEvent | None = None
        self._stats_due = time.monotonic() + cfg.stats_interval_s
        self._acks: OrderedDict[int, int] = OrderedDict()
        self._ack_gen = itertools.count(1)
        self._last_ack = 0
        self.alerts_delivered = 0
        self.connects = 0
        self._client = self._make_client()
        self._client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._deliver, name=f"{name}:deliver",
                                        daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------------------- set-up

    def _make_client(self) -> mqtt.Client:
        cfg = self.cfg
        client_id = cfg.client_id or f"streamcount-{socket.gethostname()}-{os.getpid()}"
        if self.replica is not None:
            client_id = f"{client_id}-shard{self.replica}"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv311, clean_session=True)
        if cfg.username is not None:
            c.username_pw_set(cfg.username, cfg.password)
        if cfg.tls.enabled:
            t = cfg.tls
            c.tls_set(ca_certs=t.ca_file, certfile=t.certfile, keyfile=t.keyfile,
                      cert_reqs=ssl.CERT_NONE if t.insecure else ssl.CERT_REQUIRED)
            if t.insecure:
                c.tls_insecure_set(True)
                log.warning("MQTT TLS to %s:%d without certificate verification (insecure)",
                            cfg.host, cfg.port)
        c.will_set(self.availability_topic, OFFLINE, qos=1, retain=True)
        c.reconnect_delay_set(min_delay=self.reconnect_delay_s[0],  # type: ignore[arg-type]
                              max_delay=self.reconnect_delay_s[1])  # type: ignore[arg-type]
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    def topic(self, *parts: str) -> str:
        """``<prefix>/<parts...>``."""
        return "/".join((self.prefix, *parts))

    def _own(self, name: str) -> str:
        return self.topic(name) if self.replica is None else self.topic(name, self.replica)

    @property
    def availability_topic(self) -> str:
        """``P/available``, or ``P/available/<replica>`` for a sharded replica."""
        return self._own("available")

    @property
    def stats_topic(self) -> str:
        """``P/stats``, or ``P/stats/<replica>`` for a sharded replica."""
        return self._own("stats")

    # -------------------------------------------------------------------- paho callbacks

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("MQTT broker %s:%d refused the connection: %s", self.cfg.host,
                      self.cfg.port, reason)
            return
        self.connects += 1
        log.info("connected to MQTT broker %s:%d", self.cfg.host, self.cfg.port)
        client.publish(self.availability_topic, ONLINE, qos=1, retain=True)
        now = time.monotonic()
        with self._cond:
            for cam in self._cameras:  # replace a stale status from a previous run
                topic = self.topic(cam, "status")
                if topic not in self._retained:
                    text = json.dumps({"state": "unknown", "reason": "starting", "fps": None,
                                       "ts": time.time()}, separators=(",", ":"))
                    self._retained[topic] = _Retained(topic, text, self.cfg.qos_status, now)
            retained = list(self._retained.values())
        for r in retained:
            client.publish(r.topic, r.payload, qos=r.qos, retain=True)
        if self.birth_topic:
            client.subscribe(self.birth_topic, qos=1)
        self._publish_discovery(client)
        with self._cond:
            self._connected = True
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.birth_topic and bytes(msg.payload).strip() == ONLINE.encode():
            log.info("Home Assistant is online (%s): re-publishing discovery", msg.topic)
            self._publish_discovery(client)

    def _publish_clears(self, client: mqtt.Client) -> None:
        with self._cond:
            cleared, self._cleared = self._cleared, set()
        for topic in sorted(cleared):
            client.publish(topic, b"", qos=1, retain=True)

    def _publish_discovery(self, client: mqtt.Client) -> None:
        self._publish_clears(client)
        with self._cond:
            configs = list(self._discovery.items())
        for topic, payload in configs:
            client.publish(topic, payload, qos=1, retain=True)
        if configs:
            self.discovery_publications += 1

    def set_discovery(self, configs: dict[str, str]) -> None:
        """Replace the discovery configs (a reload): publish new and changed ones, clear the
        removed ones with an empty retained payload."""
        with self._cond:
            old, self._discovery = self._discovery, dict(configs)
            self._cleared |= old.keys() - configs.keys()
            self._cleared -= configs.keys()
            connected = self._connected
        if not connected:
            return  # the next connect publishes the new set and clears the removed ones
        self._publish_clears(self._client)
        for topic, payload in configs.items():
            if old.get(topic) != payload:
                self._client.publish(topic, payload, qos=1, retain=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: Any, properties: Any) -> None:
        with self._cond:
            was = self._connected
            self._connected = False
            self._cond.notify_all()
        if was and not self._stopping:
            log.warning("disconnected from MQTT broker %s:%d (%s); reconnecting",
                        self.cfg.host, self.cfg.port, reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        # runs on paho's thread while paho holds its message lock: only bookkeeping here
        with self._cond:
            self._last_ack = self._acks[mid] = next(self._ack_gen)
            self._acks.move_to_end(mid)
            while len(self._acks) > _ACK_MEMORY:
                self._acks.popitem(last=False)
            self._cond.notify_all()

    # ---------------------------------------------------------------------------- events

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up."""
        return self._connected

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected (True) or ``timeout`` seconds passed (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._connected, timeout)

    def handle(self, event: object) -> None:
        """Publish (or spool) one pipeline event; other types are ignored."""
        if isinstance(event, AlertEvent):
            item = {"topic": self.topic(event.camera, event.region, "alert"),
                    "payload": json.dumps(alert_payload(event), separators=(",", ":")),
                    "qos": self.cfg.qos_alert, "id": event.id}
            try:
                self.spool.append(item)
            except OSError as e:  # disk full, permissions: publish without the guarantee
                log.error("cannot spool alert %s (%s); publishing it unspooled", event.id, e)
                self._client.publish(item["topic"], item["payload"], qos=self.cfg.qos_alert)
                return
            with self._cond:
                self._cond.notify_all()
        elif isinstance(event, CountUpdate):
            self._handle_count(event)
        elif isinstance(event, StatusEvent):
            self._publish_retained(self.topic(event.camera, "status"), status_payload(event),
                                   self.cfg.qos_status, force=True)
        elif isinstance(event, StatsEvent):
            self._last_stats = event
            self._publish_stats()

    def _handle_count(self, u: CountUpdate) -> None:
        topic = self.topic(u.camera, u.region, "count")
        state = u.state.value if isinstance(u.state, CountState) else str(u.state)
        key = (None if u.count is None else round(u.count, 1), state, u.level)
        changed = self._last_counts.get(topic) != key
        self._last_counts[topic] = key
        self._publish_retained(topic, count_payload(u), self.cfg.qos_count, force=changed,
                               interval=self.cfg.count_interval_s)

    def _publish_retained(self, topic: str, payload: dict[str, Any], qos: int, *,
                          force: bool, interval: float | None = None) -> None:
        """Remember ``payload`` as the retained state of ``topic``; publish it when ``force``
        or when the last publication is older than ``interval``."""
        text = json.dumps(payload, separators=(",", ":"))
        now = time.monotonic()
        with self._cond:
            prev = self._retained.get(topic)
            due = force or prev is None or (interval is not None
                                            and now - prev.published_at >= interval)
            self._retained[topic] = _Retained(topic, text, qos,
                                              now if due else prev.published_at)
            connected = self._connected
        if due and connected:
            self._client.publish(topic, text, qos=qos, retain=True)

    def _publish_stats(self) -> None:
        s = self._last_stats
        now = time.time()
        payload = {"ts": s.ts if s else now,
                   "uptime_s": s.uptime_s if s else round(time.monotonic() - self._started, 3),
                   "cameras": s.cameras if s else {}, "service": s.service if s else {},
                   "mqtt": self.stats()}
        self._stats_due = time.monotonic() + self.cfg.stats_interval_s
        if self._connected:
            text = json.dumps(payload, default=str, separators=(",", ":"))
            self._client.publish(self.stats_topic, text, qos=self.cfg.qos_count,
                                 retain=True)

    def stats(self) -> dict[str, Any]:
        """The sink's own figures (also in the stats topic)."""
        return {"connected": self._connected, "connects": self.connects,
                "spooled_alerts": len(self.spool), "alerts_delivered": self.alerts_delivered,
                "spool_dropped": self.spool.dropped}

    # ------------------------------------------------------------------ delivery thread

    def _refresh(self) -> None:
        """Periodic work: stats, and unchanged counts older than ``count_interval_s``."""
        now = time.monotonic()
        if now >= self._stats_due:
            self._publish_stats()
        interval = self.cfg.count_interval_s
        with self._cond:
            stale = [r for r in self._retained.values() if r.topic.endswith("/count")
                     and now - r.published_at >= interval]
            for r in stale:
                r.published_at = now
            connected = self._connected
        if connected:
            for r in stale:
                self._client.publish(r.topic, r.payload, qos=r.qos, retain=True)

    def _deliver(self) -> None:
        inflight: tuple[int, int, int] | None = None  # (spool seq, mid, ack generation)
        while True:
            with self._cond:
                self._cond.wait(TICK_S)
                if self._stopping:
                    return
                connected = self._connected
                if inflight is not None:
                    seq, mid, gen = inflight
                    if self._acks.get(mid, 0) > gen:
                        del self._acks[mid]
                        inflight = None
                        acked = seq
                    else:
                        acked = None
                else:
                    acked = None
                gen_now = self._last_ack
            if acked is not None:
                self.spool.remove(acked)
                self.alerts_delivered += 1
            try:
                self._refresh()
            except Exception:
                log.exception("MQTT periodic publish failed")
            if inflight is None and connected:
                inflight = self._send_next(gen_now)

    def _send_next(self, gen: int) -> tuple[int, int, int] | None:
        """Publish the oldest spooled alert; ``(seq, mid, gen)`` to wait for, or None."""
        entry = self.spool.peek()
        if entry is None:
            return None
        seq, item = entry
        try:
            topic, payload, qos = str(item["topic"]), str(item["payload"]), int(item["qos"])
        except (KeyError, TypeError, ValueError):
            log.warning("spool %s: dropping malformed entry #%d", self.spool.directory, seq)
            self.spool.remove(seq)
            return None
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=False)
        except Exception:
            log.exception("MQTT publish of alert %s failed; retrying", item.get("id"))
            return None
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("MQTT publish of alert %s failed (%s); retrying", item.get("id"),
                        mqtt.error_string(info.rc))
            return None
        return seq, info.mid, gen

    def flush(self, timeout: float) -> bool:
        """Wait until every spooled alert is delivered (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while len(self.spool) and time.monotonic() < deadline:
            time.sleep(0.02)
        return not len(self.spool)

    def close(self) -> None:
        """Deliver what can be delivered within ``close_timeout_s``, publish ``offline``
        (retained), disconnect. Undelivered alerts stay in the spool for the next run."""
        if self._connected:
            self.flush(self.close_timeout_s)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()
        if self._connected:
            info = self._client.publish(self.availability_topic, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=self.close_timeout_s)
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()
        self.spool.close()
        if len(self.spool):
            log.warning("%d alert(s) not delivered yet; kept in %s for the next run",
                        len(self.spool), self.spool.directory)
