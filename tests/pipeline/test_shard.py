"""A sharded service runs only its cameras: start, reload (the rule is kept), /metrics and
/api/state; ``run --shard`` and the environment reject bad values with one line, exit 2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from streamcount.cli.main import main as cli_main
from streamcount.config.loader import load_config
from streamcount.pipeline.service import Service
from streamcount.sharding import Shard, assign

pytestmark = pytest.mark.timeout(120)

CAMERAS = ("gate", "hall", "lobby", "platform", "tunnel", "bridge")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s, 64x48, 5 fps test pattern (cheap to decode six times over)."""
    path = tmp_path_factory.mktemp("clip") / "tiny.mp4"
    try:
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc=size=64x48:rate=5", "-t", "2", "-pix_fmt", "yuv420p",
                        str(path)], check=True, timeout=60)
    except FileNotFoundError:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    return path


def write_config(path: Path, model: Path, clip: Path, cameras: tuple[str, ...]) -> Path:
    cams = "".join(f"  - {{name: {c}, source: {clip}, loop: true, fps: 1}}\n" for c in cameras)
    path.write_text("http: {port: 0}\n"
                    f"inference: {{model: {model}, backend: torch, max_side: 64, threads: 1}}\n"
                    f"cameras:\n{cams}")
    return path


def get(url: str) -> str:
    import urllib.request
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def test_a_shard_runs_and_reloads_only_its_cameras(tmp_path: Path, model_file: Path,
                                                    tiny_clip: Path) -> None:
    path = write_config(tmp_path / "svc.yaml", model_file, tiny_clip, CAMERAS)
    shares = assign(CAMERAS, 3)
    assert all(shares.values()), shares  # the names were chosen so every replica has some
    svc = Service(load_config(path), path, shard=Shard(1, 3))
    svc.start()
    try:
        assert sorted(svc.camera_names()) == sorted(shares[1])
        port = svc.http_port
        metrics = get(f"http://127.0.0.1:{port}/metrics")
        for cam in CAMERAS:
            assert (f'camera="{cam}"' in metrics) == (cam in shares[1]), cam
        assert 'streamcount_shard{count="3",index="1"} 1.0' in metrics
        state = json.loads(get(f"http://127.0.0.1:{port}/api/state"))
        assert state["shard"] == "1/3" and sorted(state["cameras"]) == sorted(shares[1])

        # reload with more cameras: only the owned new ones start, the rule is kept
        more = (*CAMERAS, "cam1", "cam2", "cam3", "cam4")
        result = svc.reload(load_config(write_config(path, model_file, tiny_clip, more)))
        owned = assign(more, 3)[1]
        assert sorted(svc.camera_names()) == sorted(owned)
        assert sorted(result.added) == sorted(set(owned) - set(shares[1]))
        assert sorted(result.unchanged) == sorted(shares[1])
    finally:
        svc.stop()


@pytest.mark.parametrize("argv, env, message", [
    (["--shard", "3/3"], {}, "--shard: shard index must be 0..2 for 3 replica(s), got 3"),
    (["--shard", "one"], {}, "--shard: expected INDEX/COUNT such as 0/3, got 'one'"),
    ([], {"STREAMCOUNT_SHARD": "1/0"}, "STREAMCOUNT_SHARD: shard count must be"),
    ([], {"STREAMCOUNT_SHARD_COUNT": "2", "HOSTNAME": "laptop"}, "no shard index"),
])
def test_bad_shard_is_one_line_and_exit_2(
        tmp_path: Path, model_file: Path, tiny_clip: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str],
        message: str) -> None:
    for key in ("STREAMCOUNT_SHARD", "STREAMCOUNT_SHARD_COUNT", "STREAMCOUNT_SHARD_INDEX"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    path = write_config(tmp_path / "svc.yaml", model_file, tiny_clip, CAMERAS)
    assert cli_main(["run", str(path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("streamcount: error: ") and message in err and "\n" not in err


def test_validate_prints_the_assignment(tmp_path: Path, model_file: Path, tiny_clip: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path / "svc.yaml", model_file, tiny_clip, CAMERAS)
    assert cli_main(["validate", str(path), "--shards", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == [f"shard {i}/3: {', '.join(names)}"
                       for i, names in assign(CAMERAS, 3).items()]
    assert cli_main(["validate", str(path), "--shards", "0"]) == 2
    assert "shard count must be 1..10000, got 0" in capsys.readouterr().err
