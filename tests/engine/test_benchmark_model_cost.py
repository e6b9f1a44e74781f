"""benchmarks/model_cost.py end to end on a tiny frame with two packaged models: table printed,
JSON written with each model's ratio to the baseline on the same backend; a bad model is one
line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamcount.engine.cache import ENV_VAR, ArtefactCache

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "benchmarks" / "model_cost.py")

pytestmark = pytest.mark.slow


def _run(args: list[str], cache: ArtefactCache) -> subprocess.CompletedProcess[str]:
    env = os.environ | {ENV_VAR: str(cache.root)}
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


def test_model_cost_writes_ratios_per_backend(cache: ArtefactCache, tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    proc = _run(["--models", "default,shb_student_gt", "--backends", "onnx,openvino",
                 "--size", "96x64", "--rounds", "1", "--runs", "2", "--threads", "1",
                 "--json", str(out)], cache)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = {(r["backend"], r["model"]): r for r in result["models"]}
    assert set(rows) == {(b, m) for b in ("onnx", "openvino")
                         for m in ("default", "shb_student_gt")}
    assert result["input"] == "96x64" and result["baseline"] == "default"
    for (backend, model), r in rows.items():
        assert r["ms_per_frame"] > 0 and r["fps"] == pytest.approx(1000 / r["ms_per_frame"])
        base = rows[(backend, "default")]["ms_per_frame"]
        assert r["ratio_to_baseline"] == pytest.approx(r["ms_per_frame"] / base)
    assert "shb_student_gt" in proc.stdout


def test_model_cost_bad_model_is_one_line(cache: ArtefactCache, tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    proc = _run(["--models", "default,no_such_model", "--json", str(out)], cache)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "no_such_model" in err[0]
    assert not out.exists()
