"""Reconnect pacing: exponential backoff with jitter, capped.

Each failed attempt doubles the base delay (``initial_s``, ``2*initial_s``, ... up to ``max_s``);
jitter spreads the delay *downwards* by up to ``jitter`` of it, so many cameras that dropped at
once do not reconnect in lock-step and no delay ever exceeds ``max_s``.
"""

from __future__ import annotations

import random
from typing import Protocol


class _ReconnectLike(Protocol):
    initial_s: float
    max_s: float
    jitter: float


class Backoff:
    """Delays between reconnect attempts.

    Args:
        initial_s: delay after the first failure.
        max_s: cap on every delay.
        jitter: fraction (0-1) by which a delay is randomly shortened.
        rng: random source (seed it for reproducible delays).

    Example:
        >>> b = Backoff(1.0, 8.0, jitter=0.0)
        >>> [b.next_delay() for _ in range(5)]
        [1.0, 2.0, 4.0, 8.0, 8.0]
    """

    def __init__(self, initial_s: float, max_s: float, jitter: float = 0.2,
                 rng: random.Random | None = None) -> None:
        if initial_s <= 0 or max_s <= 0:
            raise ValueError(f"backoff delays must be positive, got {initial_s}, {max_s}")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be within 0-1, got {jitter}")
        self.initial_s = float(initial_s)
        self.max_s = max(float(max_s), float(initial_s))
        self.jitter = float(jitter)
        self._rng = rng or random.Random()
        self.attempts = 0

    @classmethod
    def from_config(cls, cfg: _ReconnectLike, rng: random.Random | None = None) -> Backoff:
        """A backoff from a :class:`~streamcount.config.schema.ReconnectConfig`."""
        return cls(cfg.initial_s, cfg.max_s, cfg.jitter, rng)

    def next_delay(self) -> float:
        """The delay before the next attempt (counts the attempt)."""
        base = min(self.max_s, self.initial_s * (2.0 ** min(self.attempts, 62)))
        self.attempts += 1
        if self.jitter:
            base *= 1.0 - self.jitter * self._rng.random()
        return base

    def reset(self) -> None:
        """Back to ``initial_s``: call once a connection has delivered frames."""
        self.attempts = 0
