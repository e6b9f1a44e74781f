"""Backend interface: uint8 BGR batches in, float32 density maps out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from streamcount.models.card import ModelCard


@runtime_checkable
class Backend(Protocol):
    """An inference runtime holding one model.

    ``infer`` takes ``uint8`` frames ``N x H x W x 3`` (BGR, H and W multiples of
    ``card.input_multiple``, all the same size) and returns ``float32`` densities
    ``N x H/s x W/s``. Backends are used from one thread at a time.
    """

    name: str
    card: ModelCard

    def infer(self, frames: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict[str, object]:
        """Runtime, precision, threads: what a summary or benchmark should record."""
        ...
