"""The sink interface: where pipeline events go (MQTT, metrics, JSONL, CSV...)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Sink(Protocol):
    """Receives pipeline events on its own thread (see :class:`~streamcount.pipeline.bus.EventBus`).

    ``handle`` gets every event published on the bus, in order, and ignores the types it has
    no use for. It may raise: the bus logs the error and goes on with the next event.
    ``close`` is called once, after the last ``handle``.
    """

    name: str

    def handle(self, event: object) -> None:
        """Process one event."""
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...
