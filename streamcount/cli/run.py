"""``streamcount run CONFIG``: the live counting service.

Loads and validates the config (a problem exits 2 with ``CONFIG:LINE: key.path: message``),
starts every enabled camera and runs until SIGTERM or SIGINT, then drains: the batch in flight
finishes, cameras and counts are published offline/unknown, sinks flush (undelivered MQTT
alerts stay spooled for the next run) and the exit code is 0. SIGHUP re-reads the config and
applies it without disturbing unchanged cameras; a config that does not validate is logged and
the running one is kept.

``--shard INDEX/COUNT`` (or ``STREAMCOUNT_SHARD``, or ``STREAMCOUNT_SHARD_COUNT`` with the
index from ``STREAMCOUNT_SHARD_INDEX`` or the pod name's ordinal) runs only the cameras this
replica owns by rendezvous hashing (:mod:`streamcount.sharding`); a reload keeps the rule.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

from streamcount.config.loader import load_config
from streamcount.config.redact import install_log_redaction
from streamcount.errors import UserError

log = logging.getLogger(__name__)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return v


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``run`` sub-command."""
    p = subparsers.add_parser(
        "run", help="run the live counting service on the cameras of a config file",
        description="Run the live service: per-region counts, alerts and camera status to "
                    "MQTT, Prometheus /metrics, /healthz and /api/state on the HTTP port, "
                    "JSONL and CSV files. SIGTERM/SIGINT stop it cleanly; SIGHUP reloads "
                    "the config.")
    p.add_argument("config", metavar="CONFIG", help="the service config (YAML)")
    p.add_argument("--once-for", type=_positive_float, metavar="SECONDS",
                   help="stop by itself after SECONDS (smoke tests, benchmarks)")
    p.add_argument("--shard", metavar="INDEX/COUNT",
                   help="run only the cameras replica INDEX (0-based) of COUNT owns, by "
                        "rendezvous hashing of the camera names (default: "
                        "$STREAMCOUNT_SHARD, or $STREAMCOUNT_SHARD_COUNT with "
                        "$STREAMCOUNT_SHARD_INDEX or the pod name's ordinal; else all)")
    p.set_defaults(func=run)
    return p


class _Signals:
    """SIGTERM/SIGINT set ``stop``, SIGHUP sets ``reload``; the main loop does the work."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.wake = threading.Event()
        self._previous: dict[int, Any] = {}

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop.set()
        self.wake.set()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.reload.set()
        self.wake.set()

    def __enter__(self) -> _Signals:
        for sig, fn in ((signal.SIGTERM, self._on_stop), (signal.SIGINT, self._on_stop),
                        (signal.SIGHUP, self._on_hup)):
            self._previous[sig] = signal.signal(sig, fn)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)


def _reload(service: Any, path: str) -> None:
    try:  # the same path as the console's region editor after a save
        result = service.reload_from_file()
    except UserError as e:
        log.error("config reload failed; keeping the running config: %s", e)
        return
    log.warning("config reloaded: added %s, removed %s, restarted %s, reconfigured %s%s",
                list(result.added), list(result.removed), list(result.restarted),
                list(result.reconfigured),
                f"; restart needed for {', '.join(result.needs_restart)}"
                if result.needs_restart else "")


def run(args: argparse.Namespace) -> int:
    """Run the service until a signal (or ``--once-for``); 0 on a clean stop."""
    install_log_redaction()
    from streamcount.sharding import resolve_shard

    shard = resolve_shard(args.shard)
    config = load_config(args.config)
    from streamcount.pipeline.service import Service

    service = Service(config, args.config, shard=shard)
    deadline = None if args.once_for is None else time.monotonic() + args.once_for
    with _Signals() as signals:
        service.start()
        port = service.http_port
        log.warning("streamcount running: %d camera(s)%s%s", len(service.camera_names()),
                    "" if shard is None else
                    f" of {len(list(config.enabled_cameras()))}, shard {shard}",
                    f", http://{config.http.host}:{port}/healthz" if port else "")
        try:
            while not signals.stop.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                signals.wake.wait(0.5 if left is None else min(0.5, left))
                signals.wake.clear()
                if signals.reload.is_set():
                    signals.reload.clear()
                    _reload(service, args.config)
        finally:
            service.stop()
    return 0
