"""Counts over time per region as a PNG (matplotlib's Agg renderer via a bare Figure: no display, no pyplot)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from streamcount.messages import RegionCounts
from streamcount.regions import ALL

log = logging.getLogger(__name__)


class CountsPlot:
    """Collects (time, counts) per frame and draws ``counts.png`` when closed."""

    def __init__(self, path: str | Path, regions: Sequence[str], *, title: str = "") -> None:
        self.path = Path(path)
        self.regions = tuple(regions)
        self.title = title
        self.times: list[float] = []
        self.values: dict[str, list[float]] = {name: [] for name in self.regions}

    def write(self, counts: RegionCounts) -> None:
        """Add one frame's counts."""
        self.times.append(counts.pts_s)
        for name in self.regions:
            self.values[name].append(counts.counts[name])

    def close(self) -> Path | None:
        """Render the PNG (nothing when no frame was processed); returns its path."""
        if not self.times:
            return None
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

        fig = Figure(figsize=(10, 4.5), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        marker = "o" if len(self.times) < 30 else None
        for name in self.regions:
            ax.plot(self.times, self.values[name], label=name, marker=marker,
                    linewidth=2.2 if name == ALL else 1.3, color="black" if name == ALL else None)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("count")
        ax.grid(alpha=0.3)
        if self.title:
            ax.set_title(self.title)
        ax.legend(loc="upper left", fontsize="small", ncols=min(4, len(self.regions)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.path)
        log.debug("wrote %s", self.path)
        return self.path
