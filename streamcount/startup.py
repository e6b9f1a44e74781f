"""Where a command's start-up time goes: named phases, timed from the process start.

The CLI calls :func:`begin` on entry and ``mark("imports")`` once the command's module is
imported; the command marks its own phases (``model load``, ``backend compile``, ``scale
probe``, ``parity check``, ``first frame``...) as it passes them. Each mark closes the phase
that ran since the previous one. Work that happens inside several phases (OpenVINO compiles a
model for each new input shape on its first inference) is added up with :func:`note` and
reported as ``of which backend compile ...``. ``streamcount --verbose`` logs :func:`report` once the first
frame is counted, and ``summary.json`` records :func:`phases`.

The timeline is per process (one command per process), so it is a module-level
:class:`StartupClock`; library users who never call :func:`begin` get phases timed from their
first :func:`mark`.

Example:
    >>> clock = StartupClock()
    >>> clock.begin()
    >>> clock.mark("imports")
    >>> [name for name, _ in clock.phases()]
    ['interpreter', 'imports']
"""

from __future__ import annotations

import logging
import os
import threading
import time

log = logging.getLogger(__name__)


def _process_age_s() -> float | None:
    """Seconds since this process started (Linux ``/proc``), None where unknown."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5), counted after "pid (comm)"
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


class StartupClock:
    """Named phases of one process's start-up, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: float | None = None
        self._phases: list[tuple[str, float]] = []
        self._notes: dict[str, float] = {}
        self._reported = False

    def begin(self) -> None:
        """Start the timeline now; the time since the process started becomes the phase
        ``interpreter`` (Python itself and the CLI's first imports)."""
        with self._lock:
            self._phases = []
            self._notes = {}
            self._reported = False
            self._last = time.perf_counter()
            age = _process_age_s()
            if age is not None:
                self._phases.append(("interpreter", age))

    def mark(self, phase: str) -> None:
        """Close ``phase``: it took the time since the previous mark (or :meth:`begin`)."""
        now = time.perf_counter()
        with self._lock:
            if self._last is not None:
                self._phases.append((phase, now - self._last))
            self._last = now

    def note(self, what: str, seconds: float) -> None:
        """Account ``seconds`` of ``what`` (e.g. ``backend compile``) that happened inside
        the phases, wherever it fell; reported as ``of which ...``."""
        with self._lock:
            self._notes[what] = self._notes.get(what, 0.0) + seconds

    def notes(self) -> dict[str, float]:
        """Seconds per :meth:`note` d activity."""
        with self._lock:
            return dict(self._notes)

    def phases(self) -> list[tuple[str, float]]:
        """``(phase, seconds)`` in order; a phase marked twice appears twice."""
        with self._lock:
            return list(self._phases)

    def total(self) -> float:
        """Seconds of all phases."""
        return sum(s for _, s in self.phases())

    def report(self) -> str:
        """One line: every phase and the total."""
        parts = ", ".join(f"{name} {s:.2f} s" for name, s in self.phases())
        notes = "".join(f"; of which {what} {s:.2f} s" for what, s in self.notes().items())
        return f"start-up: {parts}; total {self.total():.2f} s{notes}"

    def log_once(self) -> None:
        """Log :meth:`report` at INFO the first time it is called after :meth:`begin`."""
        with self._lock:
            if self._reported:
                return
            self._reported = True
        log.info("%s", self.report())


CLOCK = StartupClock()


def begin() -> None:
    """:meth:`StartupClock.begin` on the process clock."""
    CLOCK.begin()


def mark(phase: str) -> None:
    """:meth:`StartupClock.mark` on the process clock."""
    CLOCK.mark(phase)


def note(what: str, seconds: float) -> None:
    """:meth:`StartupClock.note` on the process clock."""
    CLOCK.note(what, seconds)


def phases() -> list[tuple[str, float]]:
    """:meth:`StartupClock.phases` of the process clock."""
    return CLOCK.phases()


def log_once() -> None:
    """:meth:`StartupClock.log_once` on the process clock."""
    CLOCK.log_once()
