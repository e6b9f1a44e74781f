"""summary.json: per-region statistics and the atomic write."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from streamcount.messages import RegionCounts
from streamcount.sinks.summary import SummaryBuilder, write_json_atomic


def test_region_statistics() -> None:
    b = SummaryBuilder(["a", "all"])
    values = [(0, 1.0, 5.0), (10, 4.0, 6.0), (20, 2.0, 9.0)]
    for i, a, total in values:
        b.add(RegionCounts("cam", i, i / 10, 0.0, {"a": a, "all": total}, file=f"{i}.jpg"))
    doc = b.build(input="x.mp4", interrupted=False)
    assert doc["input"] == "x.mp4" and doc["frames_processed"] == 3 and doc["last_frame"] == 20
    assert doc["regions"]["a"] == {"mean": pytest.approx(7 / 3, abs=1e-4), "max": 4.0,
                                   "max_time_s": 1.0, "max_frame": 10, "max_file": "10.jpg"}
    assert doc["regions"]["all"]["max_frame"] == 20
    assert list(doc["regions"]) == ["a", "all"]


def test_empty_run_has_null_statistics() -> None:
    doc = SummaryBuilder(["all"]).build()
    assert doc["frames_processed"] == 0
    assert doc["regions"]["all"]["mean"] is None and doc["regions"]["all"]["max"] is None


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text("old")
    write_json_atomic(path, {"n": np.float32(1.5), "p": tmp_path, "t": (1, 2)})
    assert json.loads(path.read_text()) == {"n": 1.5, "p": str(tmp_path), "t": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text('{"ok": true}')

    class Unserialisable:
        def __repr__(self) -> str:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_json_atomic(path, {"bad": Unserialisable()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
