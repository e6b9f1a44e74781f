"""``streamcount bench model`` and ``bench capacity`` end to end on the CPU (tiny sizes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamcount.bench.streams import ensure_clip
from streamcount.cli.main import main
from streamcount.engine.cuda import probe_cuda


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STREAMCOUNT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STREAMCOUNT_HOME", str(tmp_path / "home"))


def test_bench_model_table_and_json(tmp_path: Path, capsys) -> None:
    out_json = tmp_path / "out" / "model.json"
    # an architecture with no weights anywhere: benchmarked with random weights, and said so
    rc = main(["bench", "model", "--model", "csrnet_1_5", "--backends", "torch,cuda",
               "--precisions", "fp32,fp16", "--batch", "1,2", "--sizes", "60x100",
               "--runs", "2", "--warmup", "0", "--threads", "1", "--json", str(out_json)])
    assert rc == 0
    out = capsys.readouterr().out
    data = json.loads(out_json.read_text())
    rows = {(r["backend"], r["precision"], r["batch"]): r for r in data["rows"]}
    ok = rows[("torch", "fp32", 1)]
    assert ok["status"] == "ok" and ok["size"] == "56x96"  # rounded to multiples of 8
    assert ok["frames_per_s"] > 0 and ok["runs"] == 2
    assert rows[("torch", "fp32", 2)]["status"] == "ok"
    assert rows[("torch", "fp16", 0)]["reason"] == "the torch backend runs fp32 only, not fp16"
    cuda = rows.get(("cuda", "fp32", 0)) or rows.get(("cuda", "fp32", 1))
    if probe_cuda().available:
        assert cuda["status"] == "ok"
    else:
        assert cuda["status"] == "unavailable" and "CUDA not available" in cuda["reason"]
    assert data["model"]["weights"] == "random" and data["machine"]["cpu_count"] >= 1
    assert "56x96" in out and "frames/s" in out


def test_bench_model_rejects_bad_sizes(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["bench", "model", "--sizes", "1920x"])
    assert e.value.code == 2
    assert "HxW" in capsys.readouterr().err


def test_bench_capacity_small(tmp_path: Path, capsys) -> None:
    """Two simulated 320x240 cameras at 2 inferences/s each on the torch backend."""
    clip = ensure_clip((240, 320), seconds=2, fps=10, directory=tmp_path)
    out_json = tmp_path / "cap.json"
    rc = main(["bench", "capacity", "--model", "csrnet_1_4", "--backend", "torch",
               "--source", str(clip), "--max-side", "160", "--fps", "2", "--duration", "2",
               "--warmup", "1", "--max-streams", "2", "--threads", "1", "--hwaccel", "auto",
               "--json", str(out_json)])
    assert rc == 0
    res = json.loads(out_json.read_text())["result"]
    assert res["input_size"] == [120, 160] and res["frame_size"] == [240, 320]
    assert res["decode"] in ("software", "cuda") and res["decode_note"]
    assert [t["streams"] for t in res["trials"]][:2] == [1, 2]
    # an idle-ish 2-core machine sustains 2 tiny streams; the numbers come from measurement
    t1 = res["trials"][0]
    assert t1["latency_p50_s"] is not None and t1["latency_p50_s"] < t1["latency_p95_s"] + 1e-9
    assert res["max_streams"] >= 1
    assert "capacity:" in capsys.readouterr().out


def test_bench_capacity_missing_source(capsys) -> None:
    rc = main(["bench", "capacity", "--backend", "torch", "--source", "/nonexistent/clip.mp4"])
    assert rc == 2
    assert "source clip not found: /nonexistent/clip.mp4" in capsys.readouterr().err


@pytest.mark.skipif(probe_cuda().available, reason="a CUDA GPU is present")
def test_bench_capacity_cuda_without_gpu_is_one_line(tmp_path: Path, capsys) -> None:
    clip = ensure_clip((240, 320), seconds=1, fps=10, directory=tmp_path)
    assert main(["bench", "capacity", "--backend", "cuda", "--source", str(clip)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("streamcount: error: CUDA not available: ")
