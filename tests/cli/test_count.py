"""``streamcount count``: outputs, the summary table, every bad-input path (one line, exit 2)
and Ctrl-C in a real subprocess."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from streamcount.cli.main import main
from streamcount.models.card import ModelCard
from streamcount.models.registry import build
from streamcount.models.weights import PACKAGED_DIR, save_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "student.safetensors"
    save_model(path, build("csrnet_1_4"), ModelCard.for_arch("csrnet_1_4", "test-student"))
    return path


def run_cli(*args: str) -> int:
    return main(["count", *args])


def test_count_writes_outputs_and_prints_a_table(vtest_avi: Path, model_file: Path,
                                                 tmp_path: Path, capsys) -> None:
    regions = tmp_path / "regions.yaml"
    regions.write_text("regions:\n  - name: path\n"
                       "    reference_size: [768, 576]\n"
                       "    polygon: [[0, 200], [768, 120], [768, 420], [0, 500]]\n")
    out = tmp_path / "out"
    rc = run_cli(str(vtest_avi), "--model", str(model_file), "--backend", "torch",
                 "--regions", str(regions), "--fps", "0.2", "--max-side", "320",
                 "--out", str(out), "--plot")
    assert rc == 0
    printed = capsys.readouterr().out
    assert "path" in printed and "all" in printed and "frames    16" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["regions_file"] == str(regions)
    assert list(summary["regions"]) == ["path", "all"]
    assert (out / "counts.png").is_file()
    with (out / "counts.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 16


def test_quiet_prints_nothing(vtest_avi: Path, model_file: Path, tmp_path: Path, capsys) -> None:
    assert run_cli(str(vtest_avi), "--model", str(model_file), "--backend", "torch",
                   "--fps", "0.1", "--max-side", "160", "--out", str(tmp_path), "--quiet") == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def _bad_checkpoint(tmp_path: Path) -> Path:
    p = tmp_path / "wrong.safetensors"
    card = ModelCard.for_arch("csrnet_1_4", "wrong")
    save_file({"conv0_0.0.weight": torch.zeros(3, 3, 3, 3)}, str(p),
              metadata={"streamcount.card": card.to_json()})
    return p


@pytest.mark.parametrize("case", ["missing", "corrupt_video", "unsupported_image", "empty_folder",
                                  "bad_regions", "unknown_model", "wrong_checkpoint",
                                  "not_a_model", "unknown_backend", "bad_fps"])
def test_bad_input_is_one_line_and_exit_2(case: str, vtest_avi: Path, model_file: Path,
                                          tmp_path: Path, capsys) -> None:
    inp, model, extra = str(vtest_avi), str(model_file), []
    if case == "missing":
        inp = str(tmp_path / "nope.mp4")
    elif case == "corrupt_video":
        inp = str(tmp_path / "garbage.mp4")
        Path(inp).write_bytes(np.random.default_rng(0).bytes(50_000))
    elif case == "unsupported_image":
        inp = str(tmp_path / "pic.gif")
        Path(inp).write_bytes(b"GIF89a")
    elif case == "empty_folder":
        inp = str(tmp_path / "empty")
        Path(inp).mkdir()
    elif case == "bad_regions":
        r = tmp_path / "r.yaml"
        r.write_text("regions:\n  - name: x\n    polygon: [[0, 0], [1, 1], [1, 0], [0, 1]]\n")
        extra = ["--regions", str(r)]
    elif case == "unknown_model":
        model = "no-such-model"
    elif case == "wrong_checkpoint":
        model = str(_bad_checkpoint(tmp_path))
    elif case == "not_a_model":
        model = str(tmp_path / "junk.safetensors")
        Path(model).write_bytes(b"not safetensors at all")
    elif case == "bad_fps":
        extra = ["--fps", "-1"]
    backend = "no-such-backend" if case == "unknown_backend" else "torch"
    argv = [inp, "--model", model, "--backend", backend, "--max-side", "160",
            "--out", str(tmp_path / "out"), "--quiet", *extra]
    if case == "bad_fps":
        with pytest.raises(SystemExit) as e:
            run_cli(*argv)
        assert e.value.code == 2
        assert "must be positive" in capsys.readouterr().err
        return
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamcount: error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path: Path, model_file: Path) -> None:
    bad = tmp_path / "garbage.avi"
    bad.write_bytes(b"RIFF" + bytes(5000))
    p = subprocess.run([sys.executable, "-m", "streamcount", "count", str(bad), "--model",
                        str(model_file), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 2
    assert p.stderr.strip().startswith(f"streamcount: error: {bad}")
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_ctrl_c_keeps_csv_and_summary_valid(vtest_avi: Path, model_file: Path,
                                            tmp_path: Path) -> None:
    out = tmp_path / "out"
    regions = tmp_path / "r.json"
    regions.write_text(json.dumps({"regions": [
        {"name": "top", "polygon": [[0, 0], [1, 0], [1, 0.5], [0, 0.5]]}]}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamcount", "count", str(vtest_avi), "--model", str(model_file),
         "--backend", "torch", "--regions", str(regions), "--max-side", "160", "--batch", "2",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    csv_path = out / "counts.csv"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if csv_path.exists() and csv_path.read_text().count("\n") > 10:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        else:
            pytest.fail("no rows appeared")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "(interrupted)" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    frames = [int(r["frame"]) for r in rows if r["region"] == "all"]
    assert 0 < len(frames) < 795
    assert summary["frames_processed"] == len(frames) and len(rows) == 2 * len(frames)
    assert frames == list(range(len(frames)))
    assert summary["last_frame"] == frames[-1]
    counts = [float(r["count"]) for r in rows if r["region"] == "top"]
    assert summary["regions"]["top"]["mean"] == pytest.approx(np.mean(counts), abs=1e-3)
    assert summary["regions"]["top"]["max"] == pytest.approx(max(counts), abs=1e-3)


@pytest.mark.slow
@pytest.mark.skipif(not (PACKAGED_DIR / "default.safetensors").exists(),
                    reason="the packaged default model has not been trained into this build yet")
def test_default_model_and_auto_backend(vtest_avi: Path, tmp_path: Path, monkeypatch) -> None:
    """No --model, no --backend: the packaged model on the fastest backend whose counts stay
    within 2% of fp32 (int8 calibrated on the clip's first frames, in a fresh cache)."""
    monkeypatch.setenv("STREAMCOUNT_CACHE", str(tmp_path / "cache"))
    assert run_cli(str(vtest_avi), "--fps", "0.1", "--max-side", "320", "--out", str(tmp_path),
                   "--quiet") == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["model"]["name"] == "default" and summary["frames_processed"] == 8
    backend = summary["backend"]
    if backend.get("quantization"):
        # kept only if within 2 % of max(count, AUTO_MIN_COUNT people) on the first frames,
        # which bounds the plain relative deviation by 2 % x AUTO_MIN_COUNT / smallest count
        from streamcount.pipeline.offline import AUTO_MIN_COUNT

        with (tmp_path / "counts.csv").open() as fh:
            low = min(float(r["count"]) for r in csv.DictReader(fh) if r["region"] == "all")
        bound = 0.02 * max(1.0, AUTO_MIN_COUNT / max(low, 1.0))
        assert backend["quantization"]["calibration_deviation"] <= bound
    else:
        assert backend["precision"] in ("fp32", "bf16")
