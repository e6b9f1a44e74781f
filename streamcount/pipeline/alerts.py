"""The alert state machine of one region.

Each :class:`~streamcount.config.schema.AlertRule` is a level (``warning``, ``critical``...)
with its own hysteresis machine:

- **inactive -> active** when the smoothed count stays *above* ``above`` continuously for
  ``for_s`` seconds, and at least ``cooldown_s`` after the level was last entered;
- **active -> inactive** when the count stays *below* ``below`` (<= ``above``) continuously
  for ``clear_s`` seconds.

The region's state is the highest active level (levels are ordered by ``above``), else
``normal``; a count of ``None`` (the stream is unhealthy) makes it ``unknown``, resets every
rule (stale values never complete a duration) and suspends evaluation until counts return,
when the state is re-evaluated from scratch (``unknown -> normal``, then a level again only
after its ``for_s``).

Every change of the region state is **one** :class:`AlertEvent` (``previous -> level``),
including changes to and from ``unknown`` (``level="unknown"`` is not an alert *firing*:
consumers that page people react to rule levels only). The initial state before the first
count is ``unknown`` and its resolution to ``normal`` is silent: nothing was ever reported.
While a level with ``renotify_s`` is current, the event is repeated every ``renotify_s``
seconds with ``renotify=True`` and ``previous == level``.

Example:
    >>> from streamcount.config.schema import AlertRule
    >>> m = AlertMachine("cam", "queue", [AlertRule(level="warning", above=40, for_s=10,
    ...                                             below=30, clear_s=10)])
    >>> [e.level for t in range(0, 30) for e in m.update(50, float(t))]
    ['warning']
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from streamcount.config.schema import AlertRule
from streamcount.messages import AlertEvent

NORMAL = "normal"
UNKNOWN = "unknown"

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class EventIds:
    """ULID-style ids: 26 characters, time-sortable (ms), unique across processes (80 random
    bits) and strictly increasing within one generator."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def new(self) -> str:
        """The next id."""
        with self._lock:
            value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
            if value <= self._last:
                value = self._last + 1
            self._last = value
        return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in range(25, -1, -1))


@dataclass
class _RuleState:
    """Hysteresis state of one rule."""

    rule: AlertRule
    active: bool = False
    above_since: float | None = None  # count above `above` since
    below_since: float | None = None  # count below `below` since (while active)
    entered_at: float | None = None  # last activation, for the cooldown

    def reset(self) -> None:
        self.active = False
        self.above_since = self.below_since = None

    def step(self, count: float, ts: float) -> None:
        r = self.rule
        if not self.active:
            self.above_since = (self.above_since if self.above_since is not None else ts) \
                if count > r.above else None
            if self.above_since is None or ts - self.above_since < r.for_s:
                return
            if (r.cooldown_s and self.entered_at is not None
                    and ts - self.entered_at < r.cooldown_s):
                return
            self.active, self.entered_at, self.below_since = True, ts, None
        else:
            self.below_since = (self.below_since if self.below_since is not None else ts) \
                if count < r.exit_below else None
            if self.below_since is not None and ts - self.below_since >= r.clear_s:
                self.active = False
                self.above_since = ts if count > r.above else None


class AlertMachine:
    """Alert levels of one region (see the module docstring for the semantics).

    Args:
        camera: camera name (copied into events).
        region: region name.
        rules: the region's levels, any order (sorted by ``above``).
        ids: the id generator (shared by all machines of a service; default: a new one).
    """

    def __init__(self, camera: str, region: str, rules: Sequence[AlertRule],
                 ids: EventIds | None = None) -> None:
        self.camera = camera
        self.region = region
        self._rules = [_RuleState(r) for r in sorted(rules, key=lambda r: r.above)]
        self._ids = ids or EventIds()
        self._state = UNKNOWN
        self._started = False
        self._last_notified: float | None = None

    @property
    def state(self) -> str:
        """``normal``, ``unknown`` or the active level's name."""
        return self._state

    @property
    def levels(self) -> list[str]:
        """Rule levels, lowest threshold first."""
        return [r.rule.level for r in self._rules]

    def update(self, count: float | None, ts: float) -> list[AlertEvent]:
        """Feed one smoothed count (``None``: the stream is unhealthy) at time ``ts`` (s);
        returns the events (transitions, re-notifications) it causes, in order."""
        if count is None:
            for r in self._rules:
                r.reset()
            if not self._started or self._state == UNKNOWN:
                return []
            return [self._transition(UNKNOWN, None, None, ts)]
        for r in self._rules:
            r.step(count, ts)
        top = next((r for r in reversed(self._rules) if r.active), None)
        new = top.rule.level if top else NORMAL
        if not self._started:
            self._started = True
            self._state = NORMAL  # the initial unknown -> normal is silent
        if new != self._state:
            threshold = self._threshold(self._state, new)
            return [self._transition(new, count, threshold, ts)]
        if top is not None and top.rule.renotify_s and self._last_notified is not None \
                and ts - self._last_notified >= top.rule.renotify_s:
            self._last_notified = ts
            return [self._event(new, new, count, top.rule.above, ts, renotify=True)]
        return []

    def _threshold(self, old: str, new: str) -> float | None:
        by_level = {r.rule.level: r.rule for r in self._rules}
        if new in by_level and (old not in by_level or by_level[new].above
                                > by_level[old].above):
            return by_level[new].above  # entered a higher level
        if old in by_level:
            return by_level[old].exit_below  # left a level
        return None

    def _transition(self, new: str, count: float | None, threshold: float | None,
                    ts: float) -> AlertEvent:
        old, self._state = self._state, new
        self._last_notified = ts
        return self._event(new, old, count, threshold, ts)

    def _event(self, level: str, previous: str, count: float | None,
               threshold: float | None, ts: float, renotify: bool = False) -> AlertEvent:
        return AlertEvent(id=self._ids.new(), camera=self.camera, region=self.region,
                          level=level, previous=previous, count=count, threshold=threshold,
                          ts=ts, renotify=renotify)
