"""Count parity between backends: how far a backend's counts are from the fp32 reference."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def mean_abs_rel_diff(reference: Sequence[float], other: Sequence[float],
                      floor: float = 1.0) -> float:
    """Mean of ``|other - reference| / max(|reference|, floor)`` over paired counts.

    ``floor`` keeps near-empty scenes (a reference count near zero) from dominating.
    """
    ref = np.asarray(reference, dtype=np.float64)
    oth = np.asarray(other, dtype=np.float64)
    if ref.shape != oth.shape or ref.ndim != 1 or ref.size == 0:
        raise ValueError(f"need two equal-length non-empty count lists, got {ref.shape} "
                         f"and {oth.shape}")
    return float(np.mean(np.abs(oth - ref) / np.maximum(np.abs(ref), floor)))


@dataclass(frozen=True)
class Parity:
    """Counts of one backend against the reference on the same frames."""

    reference: tuple[float, ...]
    counts: tuple[float, ...]

    @property
    def mard(self) -> float:
        """Mean absolute relative difference of the counts (0.01 = 1%)."""
        return mean_abs_rel_diff(self.reference, self.counts)

    @property
    def max_rel(self) -> float:
        """Largest single relative difference."""
        ref = np.asarray(self.reference)
        return float(np.max(np.abs(np.asarray(self.counts) - ref) / np.maximum(np.abs(ref), 1.0)))


def counts_of(densities: np.ndarray) -> tuple[float, ...]:
    """Per-frame counts (density sums, in float64) of an ``N x h x w`` batch."""
    return tuple(float(x) for x in densities.astype(np.float64).sum(axis=(1, 2)))
