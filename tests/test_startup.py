"""Start-up: the CLI imports no inference runtime for commands that do not infer, and the
start-up clock reports its phases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamcount.startup import StartupClock

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "openvino", "nncf", "onnxruntime", "onnx", "tensorrt", "torch_tensorrt")

_PROBE = """
import contextlib, io, json, sys
from streamcount.cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as e:
        code = e.code
print(json.dumps({"code": code, "stdout": out.getvalue(),
                  "heavy": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def run_cli(*args: str, env: dict[str, str] | None = None) -> dict:
    """Run the CLI entry in a fresh interpreter; its exit code, output and heavy imports."""
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, check=True,
                          env=None if env is None else {**os.environ, **env})
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [
    ("--help",),
    ("count", "--help"),
    ("validate", "configs/service.example.yaml"),
    ("validate", "configs/service.minimal.yaml"),
])
def test_commands_that_do_not_infer_import_no_runtime(args: tuple[str, ...]) -> None:
    result = run_cli(*args)
    # the example configs replay ../shared/data/video/vtest.avi: without the shared data
    # validation reports the missing file (exit 2), still without importing a runtime
    needs_shared = args[0] == "validate"  # both example configs replay vtest.avi
    if not needs_shared or (ROOT.parent / "shared/data/video/vtest.avi").is_file():
        assert result["code"] in (0, None), result
    else:
        assert result["code"] == 2, result
    assert result["heavy"] == [], f"{' '.join(args)} imported {result['heavy']}"


def test_models_list_and_info_need_torch_only_the_first_time(tmp_path: Path) -> None:
    """Parameter and FLOP counts come from the network on torch's meta device once, then from
    the cache: later ``models list`` / ``models info`` import no runtime."""
    env = {"STREAMCOUNT_CACHE": str(tmp_path / "cache")}
    first = run_cli("models", "list", "--json", env=env)
    run_cli("models", "info", "csrnet_1_4", env=env)
    again = run_cli("models", "list", "--json", env=env)
    info = run_cli("models", "info", "csrnet_1_4", env=env)
    assert again["heavy"] == [] and info["heavy"] == []
    assert json.loads(again["stdout"]) == json.loads(first["stdout"])
    assert json.loads(info["stdout"])["params"] == 1_017_681  # the csrnet_1_4 student


def test_help_lists_every_command_without_importing_them() -> None:
    from streamcount.cli.main import COMMANDS

    result = run_cli("--help")
    for name in COMMANDS:
        assert f"    {name}" in result["stdout"]


def test_command_help_texts_match_their_modules() -> None:
    from streamcount.cli.main import COMMANDS, build_parser

    parser = build_parser()  # every module imported
    sub = next(a for a in parser._actions if a.dest == "command")
    for action in sub._choices_actions:
        assert COMMANDS[action.dest] == action.help, action.dest


def test_startup_clock_phases_in_order() -> None:
    clock = StartupClock()
    clock.begin()
    clock.mark("imports")
    clock.mark("model load")
    names = [n for n, _ in clock.phases()]
    assert names[-2:] == ["imports", "model load"]
    assert all(s >= 0 for _, s in clock.phases())
    line = clock.report()
    assert line.startswith("start-up: ") and "model load" in line and "total" in line
    clock.note("backend compile", 0.25)
    clock.note("backend compile", 0.25)
    assert clock.notes() == {"backend compile": 0.5}
    assert clock.report().endswith("; of which backend compile 0.50 s")


@pytest.mark.slow
def test_verbose_count_logs_where_start_up_went(tmp_path: Path, vtest_avi: Path) -> None:
    """``streamcount -v count`` logs one start-up line and ``summary.json`` keeps the phases
    and the stage profile (on a real video with the default model)."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "streamcount", "-v", "count", str(vtest_avi),
                           "--fps", "1", "--max-side", "256", "--counting", "density",
                           "--out", str(out), "--quiet"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600, check=True)
    lines = [ln for ln in proc.stderr.splitlines() if "start-up: " in ln]
    assert len(lines) == 1, proc.stderr[-2000:]
    for phase in ("imports", "model load", "density backend", "first frame"):
        assert phase in lines[0]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["startup"])[:2] == ["interpreter", "imports"]
    assert summary["startup"]["first frame"] >= 0
    if summary["backend"]["backend"].startswith("openvino"):  # compiles once per shape
        assert "of which backend compile" in lines[0]
        assert summary["startup_of_which"]["backend compile"] > 0
    stages = summary["profile"]["stages"]
    assert stages["density inference"]["calls"] >= 1 and summary["profile"]["frames"] == 80
