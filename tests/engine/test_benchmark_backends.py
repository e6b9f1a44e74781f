"""benchmarks/backends.py end to end on a tiny setting: table printed, JSON written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamcount.engine.cache import ENV_VAR, ArtefactCache

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.data]


def test_benchmark_writes_table_and_json(shanghaitech: Path, cache: ArtefactCache,
                                         tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "backends.py"),
           "--backends", "onnx,openvino,onnx-int8", "--sizes", "96x64,64x48", "--runs", "2",
           "--rounds", "1", "--warmup", "1", "--calibration", "2", "--eval-images", "2",
           "--data", str(shanghaitech), "--json", str(out)]
    env = os.environ | {ENV_VAR: str(cache.root)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert {(r["backend"], r["input"]) for r in rows} == {
        (b, s) for b in ("torch", "onnx", "openvino", "onnx-int8") for s in ("96x64", "64x48")}
    for r in rows:
        assert r["median_ms"] > 0 and r["fps"] > 0 and r["speedup_vs_torch"] > 0
        assert r["count_deviation"] is not None
    torch_rows = [r for r in rows if r["backend"] == "torch"]
    assert all(r["speedup_vs_torch"] == pytest.approx(1.0) for r in torch_rows)
    assert "| onnx-int8 | 96x64 (96x64) |" in proc.stdout
    assert result["setup"]["onnx-int8"]["describe"]["precision"] == "int8"
